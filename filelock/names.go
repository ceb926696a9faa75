package filelock

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/lockkit/lockkit/internal/invalid"
)

// Limits on lock names.
const (
	// MaxNameLen is the longest lock name accepted, in bytes. Longer names
	// are refused with an error matching lockkit.ErrInvalid.
	MaxNameLen = 4096

	// MaxPlainLen is the longest name that maps to a file of the same
	// name. Longer names are encoded (see [FileName]).
	MaxPlainLen = 200

	// Suffix ends every lock file name.
	Suffix = ".lock"

	// encodedPrefixLen bounds the readable part of an encoded file name.
	encodedPrefixLen = 64
	// hashHexLen is how many hex digits of SHA-256 an encoded name keeps
	// (128 bits).
	hashHexLen = 32
)

// FileName returns the name of the file, inside the lock directory, that
// holds the lock called name. It is a pure function of name: every process
// and every version of lockkit maps a name to the same file, and the file
// never lies outside the lock directory.
//
// A plain name — one to [MaxPlainLen] bytes of ASCII letters, digits, '.',
// '_' and '-', not starting with '.' — maps to name + ".lock", so the lock
// "nightly-backup" is the file "nightly-backup.lock" and util-linux flock(1)
// can share it:
//
//	flock /run/user/1000/lockkit/nightly-backup.lock -c 'backup.sh'
//
// Every other name (one holding '/', a NUL byte, a space, non-ASCII text, a
// leading '.', or longer than MaxPlainLen) is encoded: a readable prefix,
// then '~', then the first 32 hex digits of the SHA-256 of the name, then
// ".lock". The prefix is the name with leading dots dropped and every byte
// outside the plain set replaced by '_', cut to 64 bytes. For example "../x"
// maps to "_x~" + 32 hex digits + ".lock", and "a/b" to "a_b~" + 32 hex
// digits + ".lock". Plain names never contain '~', so the two forms never
// collide, and the hash keeps "a/b" and "a_b" apart.
//
// The empty name and names longer than [MaxNameLen] get an error matching
// lockkit.ErrInvalid.
func FileName(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return fileName(name), nil
}

func checkName(name string) error {
	if name == "" {
		return invalid.Errorf("filelock: empty lock name")
	}
	if len(name) > MaxNameLen {
		return invalid.Errorf("filelock: lock name is %d bytes, longer than %d", len(name), MaxNameLen)
	}
	return nil
}

// fileName maps a checked name to its file name.
func fileName(name string) string {
	if isPlain(name) {
		return name + Suffix
	}
	prefix := make([]byte, 0, encodedPrefixLen+1+hashHexLen+len(Suffix))
	for i := 0; i < len(name) && len(prefix) < encodedPrefixLen; i++ {
		c := name[i]
		if c == '.' && len(prefix) == 0 {
			continue
		}
		if !plainByte(c) {
			c = '_'
		}
		prefix = append(prefix, c)
	}
	sum := sha256.Sum256([]byte(name))
	prefix = append(prefix, '~')
	prefix = hex.AppendEncode(prefix, sum[:hashHexLen/2])
	return string(append(prefix, Suffix...))
}

func isPlain(name string) bool {
	if name == "" || len(name) > MaxPlainLen || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !plainByte(name[i]) {
			return false
		}
	}
	return true
}

func plainByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}
