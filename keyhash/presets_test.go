package keyhash_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/golang-migrate/migrate/v4/database"

	"github.com/lockkit/lockkit/keyhash"
)

// refCRC32 is CRC-32/IEEE (reflected polynomial 0xEDB88320, init and final
// xor 0xFFFFFFFF) computed bit by bit, independently of hash/crc32: the CRC
// that Ruby's Zlib.crc32, Python's zlib.crc32 and PHP's crc32 compute.
func refCRC32(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xEDB88320
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// refCRC64ECMA is CRC-64 with Go's crc64.ECMA table (reflected polynomial
// 0xC96C5795D7870F42, init and final xor all ones), bit by bit.
func refCRC64ECMA(b []byte) uint64 {
	crc := ^uint64(0)
	for _, c := range b {
		crc ^= uint64(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xC96C5795D7870F42
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

func TestReferenceCRCs(t *testing.T) {
	// Check values of the two references: the CRC catalogue's "123456789"
	// check for CRC-32/ISO-HDLC, and Python's zlib.crc32(b"goose").
	if got := refCRC32([]byte("123456789")); got != 0xCBF43926 {
		t.Fatalf("refCRC32 check = %#x", got)
	}
	if got := refCRC32([]byte("goose")); got != 4097083626 {
		t.Fatalf("refCRC32(goose) = %d", got)
	}
}

// Source: github.com/pressly/goose/v3, lock/session_locker_options.go.
// From v3.26.0 (checked in v3.26.0 and v3.30.0):
//
//	// crc32.Checksum([]byte("goose"), crc32.MakeTable(crc32.IEEE))
//	DefaultLockID int64 = 4097083626
//
// From v3.16.0 through v3.25.0:
//
//	// crc64.Checksum([]byte("goose"), crc64.MakeTable(crc64.ECMA))
//	DefaultLockID int64 = 5887940537704921958
//
// interop's TestGooseLockInterop takes the lock through goose's own
// locker.
func TestGoose(t *testing.T) {
	const goose, legacy = 4097083626, 5887940537704921958 // the constants as written in goose's source
	if got := int64(refCRC32([]byte("goose"))); got != goose {
		t.Fatalf("reference crc32(goose) = %d, want %d", got, goose)
	}
	if got := int64(refCRC64ECMA([]byte("goose"))); got != legacy {
		t.Fatalf("reference crc64(goose) = %d, want %d", got, legacy)
	}
	if keyhash.GooseLockID != goose || keyhash.Goose() != keyhash.Int64(goose) {
		t.Fatalf("Goose() = %v, want %d", keyhash.Goose(), int64(goose))
	}
	if keyhash.GooseLegacyLockID != legacy || keyhash.GooseLegacy() != keyhash.Int64(legacy) {
		t.Fatalf("GooseLegacy() = %v, want %d", keyhash.GooseLegacy(), int64(legacy))
	}
}

// Source: github.com/ClosureTree/with_advisory_lock,
// lib/with_advisory_lock/postgresql_advisory.rb (lock_keys_for) and
// lib/with_advisory_lock/core_advisory.rb (stable_hashcode: Zlib.crc32):
//
//	[stable_hashcode(lock_name), ENV['WITH_ADVISORY_LOCK_PREFIX']].map { |ea| ea.to_i & 0x7fffffff }
//
// and lib/with_advisory_lock/mysql_advisory.rb:
//
//	lock_str = "#{ENV.fetch(LOCK_PREFIX_ENV, nil)}#{lock_name}"
func TestWithAdvisoryLock(t *testing.T) {
	for _, c := range []struct {
		name   string
		prefix int64
		// Python: zlib.crc32(name.encode()) & 0x7fffffff
		wantHash, wantPrefix int32
	}{
		{"deploy", 0, 305871098, 0},
		{"import:users", 0, 569349326, 0},
		{"日本語", 42, 671830757, 42},
		{"deploy", -1, 305871098, 0x7fffffff}, // Ruby: -1 & 0x7fffffff
		{"deploy", 1<<31 + 5, 305871098, 5},
	} {
		ref := int32(refCRC32([]byte(c.name)) & 0x7fffffff)
		if ref != c.wantHash {
			t.Fatalf("reference crc32(%q)&0x7fffffff = %d, want %d", c.name, ref, c.wantHash)
		}
		got := keyhash.WithAdvisoryLock(c.name, c.prefix)
		if got != keyhash.Pair(c.wantHash, c.wantPrefix) {
			t.Errorf("WithAdvisoryLock(%q, %d) = %v, want (%d,%d)", c.name, c.prefix, got, c.wantHash, c.wantPrefix)
		}
	}
	if got := keyhash.WithAdvisoryLockMySQL("", "deploy"); got != "deploy" {
		t.Errorf("WithAdvisoryLockMySQL(\"\", deploy) = %q", got)
	}
	if got := keyhash.WithAdvisoryLockMySQL("myapp_", "deploy"); got != "myapp_deploy" {
		t.Errorf("WithAdvisoryLockMySQL(myapp_, deploy) = %q", got)
	}
}

// Sources: github.com/Xof/django-pglocks, src/django_pglocks/_lock.py (2.x,
// resolve_lock_id: sha256(...).digest()[:8], big-endian, signed) and
// django_pglocks/__init__.py (1.0.3: crc32 made signed 32-bit).
func TestDjangoPGLocks(t *testing.T) {
	for _, c := range pinnedNames {
		if got := keyhash.DjangoPGLocks(c.name); got != keyhash.Int64(c.want) {
			t.Errorf("DjangoPGLocks(%q) = %v, want %d", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		want int64 // Python, the 1.0.3 code verbatim
	}{
		{"deploy", -1841612550},
		{"import:users", -1578134322},
		{"日本語", -1475652891},
		{"goose", 4097083626 - 1<<32},
	} {
		// The 1.0.3 algorithm, written out.
		pos := int64(refCRC32([]byte(c.name)))
		ref := (1<<31 - 1) & pos
		if pos&(1<<31) != 0 {
			ref -= 1 << 31
		}
		if ref != c.want {
			t.Fatalf("reference v1(%q) = %d, want %d", c.name, ref, c.want)
		}
		if got := keyhash.DjangoPGLocksV1(c.name); got != keyhash.Int64(c.want) {
			t.Errorf("DjangoPGLocksV1(%q) = %v, want %d", c.name, got, c.want)
		}
	}
	k, err := keyhash.DjangoPGLocksPair(5, 9)
	if err != nil || k != keyhash.Pair(5, 9) {
		t.Errorf("DjangoPGLocksPair(5, 9) = %v, %v", k, err)
	}
	if _, err := keyhash.DjangoPGLocksPair(1<<31, 0); err == nil {
		t.Error("DjangoPGLocksPair(2^31, 0) accepted")
	}
}

// Source: github.com/symfony/lock (symfony/symfony's src/Symfony/Component/Lock),
// Store/PostgreSqlStore.php:
//
//	private function getHashedKey(Key $key): int { return crc32((string) $key); }
func TestSymfony(t *testing.T) {
	for _, c := range []struct {
		resource string
		want     int64 // Python: zlib.crc32(resource.encode()), PHP's unsigned crc32 on 64-bit
	}{
		{"deploy", 2453354746},
		{"import:users", 2716832974},
		{"日本語", 2819314405},
	} {
		if ref := int64(refCRC32([]byte(c.resource))); ref != c.want {
			t.Fatalf("reference crc32(%q) = %d, want %d", c.resource, ref, c.want)
		}
		if got := keyhash.Symfony(c.resource); got != keyhash.Int64(c.want) {
			t.Errorf("Symfony(%q) = %v, want %d", c.resource, got, c.want)
		}
	}
}

// refMigrate is golang-migrate's GenerateAdvisoryLockId (database/util.go,
// v4.20.1) written out with the reference CRC.
func refMigrate(db string, more ...string) int64 {
	s := db
	if len(more) > 0 {
		s = strings.Join(append(append([]string{}, more...), db), "\x00")
	}
	return int64(refCRC32([]byte(s)) * 1486364155)
}

var migrateCases = [][]string{
	{"test"},
	{"test", "public", "schema_migrations"},
	{"/test", "public", "schema_migrations"},
	{"test:schema_migrations"},
	{"prod", "billing", "migrations"},
	{"données", "schéma", "表"},
	{""},
	{"", ""},
	{"a", "b", "c", "d"},
}

// Source: github.com/golang-migrate/migrate/v4, database/util.go
// (GenerateAdvisoryLockId) — checked against the function itself.
func TestMigrateLockIDMatchesMigrate(t *testing.T) {
	// Python, the util.go algorithm: (zlib.crc32(s) * 1486364155) & 0xffffffff,
	// where s joins the extra names, then the database name, with "\x00".
	// Keyed by the call's arguments, in order.
	pinned := map[string]int64{
		"test":                                 2909270468,
		"test\x00public\x00schema_migrations":  2151868736,
		"/test\x00public\x00schema_migrations": 912609358,
		"test:schema_migrations":               874159513,
	}
	checked := 0
	for _, c := range migrateCases {
		got := keyhash.MigrateLockID(c[0], c[1:]...)
		s, err := database.GenerateAdvisoryLockId(c[0], c[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		want, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got != keyhash.Int64(want) {
			t.Errorf("MigrateLockID(%q) = %v, migrate says %s", c, got, s)
		}
		if ref := refMigrate(c[0], c[1:]...); ref != want {
			t.Errorf("reference(%q) = %d, migrate says %s", c, ref, s)
		}
		if p, ok := pinned[strings.Join(c, "\x00")]; ok {
			checked++
			if p != want {
				t.Errorf("pinned(%q) = %d, migrate says %s", c, p, s)
			}
		}
	}
	if checked != len(pinned) {
		t.Errorf("%d of %d pinned values matched a case", checked, len(pinned))
	}
}

// Source: github.com/golang-migrate/migrate/v4, database/postgres/postgres.go:
// Lock calls GenerateAdvisoryLockId(DatabaseName, migrationsSchemaName,
// migrationsTableName); database/mysql/mysql.go: Lock calls
// GenerateAdvisoryLockId(fmt.Sprintf("%s:%s", DatabaseName, MigrationsTable)).
func TestMigrateDriverKeys(t *testing.T) {
	aid, _ := database.GenerateAdvisoryLockId("test", "public", "schema_migrations")
	if got := keyhash.MigratePostgresLockID("test", "public", "schema_migrations").String(); got != aid || got != "2151868736" {
		t.Errorf("MigratePostgresLockID = %s, migrate %s, pinned 2151868736", got, aid)
	}
	if got := keyhash.MigratePostgresLockID("test", "public", ""); got.String() != aid {
		t.Errorf("empty table: %s, want %s", got, aid)
	}
	my, _ := database.GenerateAdvisoryLockId("test:schema_migrations")
	if got := keyhash.MigrateMySQLLockName("test", ""); got != my || got != "874159513" {
		t.Errorf("MigrateMySQLLockName = %s, migrate %s", got, my)
	}
	if got := keyhash.MigrateMySQLLockName("test", "other"); got == my {
		t.Errorf("table ignored: %s", got)
	}
}

func TestDescribe(t *testing.T) {
	targets := []keyhash.MigrateTarget{{Database: "other"}, {Database: "test"}}
	for _, c := range []struct {
		k          keyhash.Key
		tool, want string
	}{
		{keyhash.Int64(4097083626), keyhash.ToolGoose, "goose migration lock"},
		{keyhash.Int64(5887940537704921958), keyhash.ToolGoose, "goose migration lock (goose before v3.26.0)"},
		{keyhash.Int64(2151868736), keyhash.ToolMigrate, `migrations of database "test", table "public"."schema_migrations"`},
		{keyhash.Int64(912609358), keyhash.ToolMigrate, `migrations of database "/test", table "public"."schema_migrations"`},
	} {
		tool, detail, ok := keyhash.Describe(c.k, targets...)
		if !ok || tool != c.tool || detail != c.want {
			t.Errorf("Describe(%v) = %q, %q, %v; want %q, %q", c.k, tool, detail, ok, c.tool, c.want)
		}
	}
	custom := keyhash.MigratePostgresLockID("prod", "billing", "migs")
	if tool, _, ok := keyhash.Describe(custom, keyhash.MigrateTarget{"prod", "billing", "migs"}); !ok || tool != keyhash.ToolMigrate {
		t.Errorf("custom target not recognised")
	}
	for _, k := range []keyhash.Key{keyhash.Int64(2151868736 + 1), keyhash.Name("x"), keyhash.Pair(0, 1), custom} {
		if tool, detail, ok := keyhash.Describe(k, targets...); ok {
			t.Errorf("Describe(%v) = %q, %q; want no match", k, tool, detail)
		}
	}
	// Without targets, migrate's keys are not recognised.
	if _, _, ok := keyhash.Describe(keyhash.Int64(2151868736)); ok {
		t.Error("migrate key recognised without targets")
	}
}
