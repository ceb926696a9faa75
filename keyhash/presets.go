package keyhash

import "hash/crc32"

// GooseLockID is the advisory lock id goose takes while migrating on
// PostgreSQL, from v3.26.0 on: lock.DefaultLockID in
// github.com/pressly/goose/v3, file lock/session_locker_options.go, which
// is crc32.Checksum([]byte("goose"), crc32.MakeTable(crc32.IEEE)). goose's
// PostgreSQL session locker (lock/postgres.go) polls pg_try_advisory_lock($1)
// with it, unless the application chose another id with lock.WithLockID.
const GooseLockID int64 = 4097083626

// GooseLegacyLockID is the id goose v3.16.0 through v3.25.0 took instead of
// [GooseLockID]: crc64.Checksum([]byte("goose"), crc64.MakeTable(crc64.ECMA)).
// A goose of those versions and a newer one do not exclude each other.
const GooseLegacyLockID int64 = 5887940537704921958

// Goose returns the bigint key goose v3.26.0 and later lock while
// migrating on PostgreSQL, [GooseLockID].
func Goose() Key { return Int64(GooseLockID) }

// GooseLegacy returns the key goose v3.16.0 through v3.25.0 locked,
// [GooseLegacyLockID].
func GooseLegacy() Key { return Int64(GooseLegacyLockID) }

// WithAdvisoryLock returns the two-int key the Rails gem with_advisory_lock
// locks on PostgreSQL for lock_name name, reproducing lock_keys_for in
// github.com/ClosureTree/with_advisory_lock, file
// lib/with_advisory_lock/postgresql_advisory.rb:
//
//	[stable_hashcode(lock_name), ENV['WITH_ADVISORY_LOCK_PREFIX']].map { |ea| ea.to_i & 0x7fffffff }
//
// where stable_hashcode of a string is Zlib.crc32(name)
// (lib/with_advisory_lock/core_advisory.rb). The gem then runs
// pg_try_advisory_lock(hash, prefix): the name's hash comes first, the prefix
// second.
//
// prefix is the integer Ruby's String#to_i makes of the environment variable
// WITH_ADVISORY_LOCK_PREFIX: 0 when it is unset or does not start with a
// number. Only its low 31 bits count. For an Integer lock_name (not a string)
// the gem uses the integer itself: Pair(int32(n&0x7fffffff), ...).
func WithAdvisoryLock(name string, prefix int64) Key {
	return Pair(int32(crc32.ChecksumIEEE([]byte(name))&0x7fffffff), int32(prefix&0x7fffffff))
}

// WithAdvisoryLockMySQL returns the GET_LOCK name the Rails gem
// with_advisory_lock uses on MySQL and MariaDB: the environment variable
// WITH_ADVISORY_LOCK_PREFIX (as a string, "" when unset) followed by the lock
// name, as lock_keys_for in lib/with_advisory_lock/mysql_advisory.rb builds
// it: "#{ENV.fetch(LOCK_PREFIX_ENV, nil)}#{lock_name}".
func WithAdvisoryLockMySQL(prefix, name string) string { return prefix + name }

// DjangoPGLocks returns the bigint key django-pglocks 2.x locks for a string
// lock id, reproducing resolve_lock_id in github.com/Xof/django-pglocks,
// file src/django_pglocks/_lock.py:
//
//	int.from_bytes(hashlib.sha256(lock_id.encode("utf-8")).digest()[:8], byteorder="big", signed=True)
//
// This is the same hash as [Name], so a lockkit name and a django-pglocks 2.x
// string lock of the same text are the same lock.
func DjangoPGLocks(name string) Key { return Name(name) }

// DjangoPGLocksV1 returns the bigint key django-pglocks 1.x (before 2.0.0)
// locks for a string lock id: the CRC-32 of its UTF-8 bytes as a signed
// 32-bit integer, passed to the one-argument pg_advisory_lock (file
// django_pglocks/__init__.py in github.com/Xof/django-pglocks, 1.0.3):
//
//	pos = crc32(lock_id.encode("utf-8"))
//	lock_id = (2**31 - 1) & pos
//	if pos & 2**31:
//	    lock_id -= 2**31
func DjangoPGLocksV1(name string) Key {
	return Int64(int64(int32(crc32.ChecksumIEEE([]byte(name)))))
}

// DjangoPGLocksPair returns the two-int key django-pglocks (any version)
// locks for a tuple lock id (a, b): pg_advisory_lock(a, b). PostgreSQL
// refuses values outside int32, and so does DjangoPGLocksPair, with an error
// matching lockkit.ErrInvalid.
func DjangoPGLocksPair(a, b int64) (Key, error) {
	return PairRecord(a, b)
}

// Symfony returns the bigint key Symfony Lock's PostgreSqlStore (and
// DoctrineDbalPostgreSqlStore) locks for a resource name, reproducing
// getHashedKey in github.com/symfony/lock (the Lock component, split from
// symfony/symfony's src/Symfony/Component/Lock), file Store/PostgreSqlStore.php:
//
//	return crc32((string) $key);
//
// PHP's crc32 returns the unsigned CRC-32 on 64-bit builds, so the key is in
// [0, 2³²): pg_advisory_lock(crc32). (string) $key is the resource given to
// LockFactory::createLock.
func Symfony(resource string) Key {
	return Int64(int64(crc32.ChecksumIEEE([]byte(resource))))
}
