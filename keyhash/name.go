package keyhash

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"unicode/utf8"

	"github.com/lockkit/lockkit/internal/invalid"
)

// MaxNameLen is the longest lock name, and the longest namespace, in bytes,
// that [ValidateName] and [ValidateNamespace] accept.
const MaxNameLen = 1024

// NameKeySQL is a PostgreSQL expression that computes [Name]($1) inside the
// server, for a text parameter $1:
//
//	SELECT pg_advisory_lock(('x' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16))::bit(64)::bigint)
//
// It hashes the UTF-8 bytes of the name (convert_to makes that true in a
// database of any encoding), keeps the first 16 hex digits (8 bytes) of the
// SHA-256 digest, and reads them as a big-endian two's-complement bigint.
// sha256() needs PostgreSQL 11 or later.
const NameKeySQL = `('x' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16))::bit(64)::bigint`

// NamespacedNameKeySQL is a PostgreSQL expression that computes
// [NamespacedName]($1, $2) inside the server, for text parameters $1 (the
// namespace) and $2 (the name). An empty namespace gives the same key as
// [NameKeySQL] on $2.
const NamespacedNameKeySQL = `('x' || left(encode(sha256(CASE WHEN $1 = '' THEN convert_to($2, 'UTF8') ELSE convert_to($1, 'UTF8') || decode('00', 'hex') || convert_to($2, 'UTF8') END), 'hex'), 16))::bit(64)::bigint`

// Hash64 returns the first 8 bytes of the SHA-256 digest of b, read as a
// big-endian two's-complement int64. It is the hash behind [Name]; any
// language with SHA-256 reproduces it, for example in Python:
//
//	int.from_bytes(hashlib.sha256(b).digest()[:8], "big", signed=True)
func Hash64(b []byte) int64 {
	sum := sha256.Sum256(b)
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// HashName returns Hash64 of the UTF-8 bytes of name: the bigint value of
// [Name](name).
func HashName(name string) int64 {
	var buf [hashBuf]byte
	return Hash64(append(buf[:0], name...))
}

// hashBuf is the size of the stack buffer that HashName and NamespacedName
// copy their input into for hashing: inputs that fit are hashed with no
// heap allocation (a []byte conversion of a string longer than 32 bytes
// allocates), longer ones are copied to the heap.
const hashBuf = 256

// Name returns the bigint key of a lock name: the first 8 bytes of the
// SHA-256 digest of the name's bytes, big-endian, as an int64 ([HashName]).
// PostgreSQL computes the same key with [NameKeySQL].
//
// Name hashes any string, including the empty one (Name("") is
// -2039914840885289964); it does not validate. Backends call [ValidateName]
// first, which refuses the empty name among others. Two different names
// collide with probability about n²/2⁶⁵ for n names: for a million names,
// about 3·10⁻⁸.
func Name(name string) Key { return Int64(HashName(name)) }

// NamespacedName returns the bigint key of name within namespace: the hash of
// the bytes
//
//	namespace + "\x00" + name
//
// — the namespace's UTF-8 bytes, one NUL byte, and the name's UTF-8 bytes —
// computed like [Name]. An empty namespace means no namespace:
// NamespacedName("", name) == Name(name). [ValidateName] and
// [ValidateNamespace] refuse NUL bytes, so for valid inputs the encoding is
// unambiguous: a namespaced key never equals the key of another
// (namespace, name) pair or of a plain name, except by a SHA-256 collision.
// PostgreSQL computes the same key with [NamespacedNameKeySQL].
func NamespacedName(namespace, name string) Key {
	if namespace == "" {
		return Name(name)
	}
	var buf [hashBuf]byte
	b := append(buf[:0], namespace...)
	b = append(b, 0)
	return Int64(Hash64(append(b, name...)))
}

// ValidateName reports whether name is a valid lock name, with an error
// matching [lockkit.ErrInvalid] if it is not. A valid name:
//
//   - is not empty;
//   - is at most [MaxNameLen] (1024) bytes long;
//   - is valid UTF-8 (PostgreSQL text cannot hold anything else, so
//     [NameKeySQL] could not compute the key of an invalid name);
//   - contains no NUL byte (PostgreSQL text cannot hold one, and it is the
//     separator of [NamespacedName]).
//
// Every backend calls it before any I/O.
func ValidateName(name string) error {
	if name == "" {
		return invalid.Errorf("keyhash: empty lock name")
	}
	return validate("lock name", name)
}

// ValidateNamespace is [ValidateName] for a namespace, except that the empty
// namespace is valid: it means no namespace.
func ValidateNamespace(namespace string) error {
	if namespace == "" {
		return nil
	}
	return validate("namespace", namespace)
}

func validate(what, s string) error {
	if len(s) > MaxNameLen {
		return invalid.Errorf("keyhash: %s is %d bytes long, more than %d", what, len(s), MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return invalid.Errorf("keyhash: %s %q is not valid UTF-8", what, s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return invalid.Errorf("keyhash: %s %q contains a NUL byte", what, s)
	}
	return nil
}
