package mysqllock

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"

	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/keyhash"
)

// Limits of MySQL and MariaDB user-lock names, and of the names lockkit
// renders for them.
const (
	// MaxNameChars is the longest GET_LOCK name, in characters, that
	// lockkit sends: MySQL 5.7 and later refuse longer names (error 3057,
	// ER_USER_LOCK_WRONG_NAME). MariaDB 10.11 accepts up to 192 bytes, but
	// lockkit caps names at this portable limit on both servers.
	MaxNameChars = 64

	// MaxNameBytes is the longest GET_LOCK name, in bytes of UTF-8,
	// that lockkit sends: MariaDB 10.11 refuses longer names (error 1059,
	// "Identifier name is too long"), so 64 four-byte characters would not
	// fit there.
	MaxNameBytes = 192

	// mysqlHashPrefixChars is how many characters of an over-long name are
	// kept readable in front of its hash.
	mysqlHashPrefixChars = 31
	// mysqlHashHexDigits is how many hex digits of the SHA-256 digest an
	// over-long name keeps: 128 bits.
	mysqlHashHexDigits = 32
)

// mysqlNameSep separates the namespace from a lock name, as MySQL's manual
// suggests ("db_name.str"); mysqlKeySep separates it from a rendered
// keyhash.Key, so that keys and names never meet in one namespace.
const (
	mysqlNameSep = "."
	mysqlKeySep  = "#"
)

// UserLockName returns the GET_LOCK name lockkit uses for name within
// namespace. It is the whole naming scheme of the MySQL backend:
//
//  1. With a namespace the full name is namespace + "." + name; with an
//     empty namespace it is name alone.
//
//  2. If the full name has at most [MaxNameChars] (64) characters and
//     at most [MaxNameBytes] (192) bytes, it is used unchanged, so
//     that other tools (or a mysql shell) can take the same lock by its
//     plain name.
//
//  3. Otherwise it is hashed to exactly 64 characters: its first 31
//     characters, a "~", and the first 32 hex digits (128 bits) of the
//     SHA-256 digest of its UTF-8 bytes, in lower case. Inside the server
//     the same name is
//
//     CONCAT(LEFT(@full, 31), '~', LEFT(SHA2(@full, 256), 32))
//
//     on a utf8mb4 connection.
//
// The readable prefix keeps SHOW PROCESSLIST and IS_USED_LOCK lookups
// recognisable; the digest keeps two long names that share a prefix apart.
// A name of 64 characters that happens to look like a hashed one ("…~" and
// 32 hex digits) is the same lock as the name it was hashed from: the
// rendered name is the lock.
//
// The name must be valid by keyhash.ValidateName (not empty, valid UTF-8, no
// NUL byte — MariaDB would read "a\x00b" as "a" — and at most
// keyhash.MaxNameLen bytes), and the namespace empty or valid and free of
// "." and "#"; otherwise the error matches lockkit.ErrInvalid.
func UserLockName(namespace, name string) (string, error) {
	if err := validateNamespace(namespace); err != nil {
		return "", err
	}
	if err := validateName(name); err != nil {
		return "", err
	}
	return renderName(namespace, mysqlNameSep, name), nil
}

// KeyUserLockName returns the GET_LOCK name lockkit uses for the advisory key k
// within namespace: namespace + "#" + k.String() (for example "test#42" or
// "test#(1,2)"), or "#" + k.String() with an empty namespace. Keys and names
// use different separators, so a key never shares a lock with a name of the
// same namespace. Unlike on PostgreSQL, keyhash.Name("x") is not the lock of
// the name "x" here: it is the key's number, rendered.
func KeyUserLockName(namespace string, k keyhash.Key) (string, error) {
	if err := validateNamespace(namespace); err != nil {
		return "", err
	}
	return renderName(namespace, mysqlKeySep, k.String()), nil
}

func renderName(namespace, sep, name string) string {
	full := name
	if namespace != "" {
		full = namespace + sep + name
	}
	if len(full) <= MaxNameBytes && utf8.RuneCountInString(full) <= MaxNameChars {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	prefix := full
	n := 0
	for i := range full {
		if n == mysqlHashPrefixChars {
			prefix = full[:i]
			break
		}
		n++
	}
	return prefix + "~" + hex.EncodeToString(sum[:])[:mysqlHashHexDigits]
}

// validateName checks a lock name before any I/O, by the rule every
// backend shares (keyhash.ValidateName).
func validateName(name string) error { return keyhash.ValidateName(name) }

// validateNamespace checks a namespace; the empty one means none.
func validateNamespace(ns string) error {
	if err := keyhash.ValidateNamespace(ns); err != nil {
		return err
	}
	if strings.ContainsAny(ns, mysqlNameSep+mysqlKeySep) {
		return invalid.Errorf("mysqllock: MySQL namespace %q contains %q or %q, which separate it from names and keys", ns, mysqlNameSep, mysqlKeySep)
	}
	return nil
}
