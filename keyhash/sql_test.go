package keyhash_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-migrate/migrate/v4/database"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// testNames returns names for the Go/SQL agreement tests: the pinned ones,
// edge cases, and random valid names (fixed seed) drawn from ASCII, Latin,
// CJK, emoji and combining characters, up to MaxNameLen bytes.
func testNames(t *testing.T) []string {
	names := []string{
		integration.Name(t),
		"a", "orders:42", "lockkit", "héllo wörld", "日本語", "🔒", "ß", "İ", "e\u0301",
		`quote'`, `dq"`, `back\slash`, "%_like", "tab\there", "new\nline", " lead", "trail ",
		"\u200b", "\ufeffbom", "\U0010FFFF", strings.Repeat("x", keyhash.MaxNameLen),
		strings.Repeat("€", keyhash.MaxNameLen/3),
	}
	pools := [][]rune{
		[]rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-/ "),
		[]rune("àéîõüçñøåæœßÀÉÎÕÜÇÑ"),
		[]rune("日本語中文한국어ひらがなカタカナ"),
		[]rune("🔒🔑🚀😀👍🏽🇯🇵"),
		{'\u0301', '\u0308', '\u200d', '\t', '\'', '"', '\\', '\u00a0', '\u2028'},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for len(names) < 400 {
		var b strings.Builder
		n := 1 + r.IntN(40)
		if r.IntN(20) == 0 {
			n = 200 + r.IntN(200)
		}
		for range n {
			p := pools[r.IntN(len(pools))]
			b.WriteRune(p[r.IntN(len(p))])
		}
		s := b.String()
		for len(s) > keyhash.MaxNameLen {
			_, size := utf8.DecodeLastRuneInString(s)
			s = s[:len(s)-size]
		}
		names = append(names, s)
	}
	for _, n := range names {
		if err := keyhash.ValidateName(n); err != nil {
			t.Fatalf("test name %q: %v", n, err)
		}
	}
	return names
}

func pgConn(t *testing.T, db *sql.DB) *sql.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Free whatever this session still holds before it goes back to the
		// pool, then discard it with the pool when the test ends.
		_, _ = c.ExecContext(context.Background(), "SELECT pg_advisory_unlock_all()")
		_ = c.Close()
	})
	return c
}

func queryBool(t *testing.T, c *sql.Conn, q string, args ...any) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b bool
	if err := c.QueryRowContext(ctx, q, args...).Scan(&b); err != nil {
		t.Fatalf("%s %v: %v", q, args, err)
	}
	return b
}

// tryKey and unlockKey take and release a keyhash.Key the way lockkit will:
// bound parameters, in the key's own key space.
func tryKey(t *testing.T, c *sql.Conn, k keyhash.Key) bool {
	t.Helper()
	if k.IsPair() {
		a, b := k.Pair()
		return queryBool(t, c, "SELECT pg_try_advisory_lock($1::int4, $2::int4)", a, b)
	}
	return queryBool(t, c, "SELECT pg_try_advisory_lock($1::int8)", k.Int64())
}

func unlockKey(t *testing.T, c *sql.Conn, k keyhash.Key) bool {
	t.Helper()
	if k.IsPair() {
		a, b := k.Pair()
		return queryBool(t, c, "SELECT pg_advisory_unlock($1::int4, $2::int4)", a, b)
	}
	return queryBool(t, c, "SELECT pg_advisory_unlock($1::int8)", k.Int64())
}

func TestNameSQLAgrees(t *testing.T) {
	db := integration.Postgres(t)
	c := pgConn(t, db)
	ctx := context.Background()
	names := testNames(t)

	stmt, err := c.PrepareContext(ctx, "SELECT "+keyhash.NameKeySQL)
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	for _, n := range names {
		var got int64
		if err := stmt.QueryRowContext(ctx, n).Scan(&got); err != nil {
			t.Fatalf("NameKeySQL(%q): %v", n, err)
		}
		if want := keyhash.HashName(n); got != want {
			t.Errorf("NameKeySQL(%q) = %d, Go Name = %d", n, got, want)
		}
	}
	// The pinned values, checked by the server too.
	for _, p := range pinnedNames {
		var got int64
		if err := stmt.QueryRowContext(ctx, p.name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != p.want {
			t.Errorf("NameKeySQL(%q) = %d, pinned %d", p.name, got, p.want)
		}
	}

	nsStmt, err := c.PrepareContext(ctx, "SELECT "+keyhash.NamespacedNameKeySQL)
	if err != nil {
		t.Fatal(err)
	}
	defer nsStmt.Close()
	for i, n := range names {
		ns := names[(i*7+3)%len(names)]
		if i%10 == 0 {
			ns = "" // no namespace
		}
		if len(ns) > 100 {
			ns = "app"
		}
		var got int64
		if err := nsStmt.QueryRowContext(ctx, ns, n).Scan(&got); err != nil {
			t.Fatalf("NamespacedNameKeySQL(%q, %q): %v", ns, n, err)
		}
		if want := keyhash.NamespacedName(ns, n).Int64(); got != want {
			t.Errorf("NamespacedNameKeySQL(%q, %q) = %d, Go = %d", ns, n, got, want)
		}
	}
}

// TestNameSQLExcludesGoKey: a lock taken in SQL with NameKeySQL (as from psql)
// and a lock on the Go key exclude each other, in both directions, and the
// key shows in pg_locks as Key.Pair says.
func TestNameSQLExcludesGoKey(t *testing.T) {
	db := integration.Postgres(t)
	sqlSide, goSide := pgConn(t, db), pgConn(t, db)
	name := integration.Name(t) + ".日本語🔒"
	key := keyhash.Name(name)
	trySQL := "SELECT pg_try_advisory_lock(" + keyhash.NameKeySQL + ")"
	unlockSQL := "SELECT pg_advisory_unlock(" + keyhash.NameKeySQL + ")"

	if !queryBool(t, sqlSide, trySQL, name) {
		t.Fatal("SQL side: lock not acquired")
	}
	if tryKey(t, goSide, key) {
		t.Fatal("Go key acquired while the SQL expression holds the lock")
	}

	// pg_locks: a bigint key is classid = high 32 bits, objid = low 32 bits,
	// objsubid = 1.
	var pid int
	if err := sqlSide.QueryRowContext(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	hi, lo := key.Pair()
	var n int
	if err := sqlSide.QueryRowContext(context.Background(),
		`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1
		   AND classid = $2::int8::oid AND objid = $3::int8::oid AND objsubid = 1 AND granted`,
		pid, int64(uint32(hi)), int64(uint32(lo))).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("pg_locks rows for %v (classid %d, objid %d) = %d, want 1", key, uint32(hi), uint32(lo), n)
	}

	if !queryBool(t, sqlSide, unlockSQL, name) {
		t.Fatal("SQL side: unlock returned false")
	}
	if !tryKey(t, goSide, key) {
		t.Fatal("Go side: lock not acquired after the SQL side released it")
	}
	if queryBool(t, sqlSide, trySQL, name) {
		t.Fatal("SQL expression acquired while the Go key is held")
	}
	if !unlockKey(t, goSide, key) {
		t.Fatal("Go side: unlock returned false")
	}

	// Namespaced: the same, through NamespacedNameKeySQL.
	nsKey := keyhash.NamespacedName("lockkit-test", name)
	if !queryBool(t, sqlSide, "SELECT pg_try_advisory_lock("+keyhash.NamespacedNameKeySQL+")", "lockkit-test", name) {
		t.Fatal("SQL side: namespaced lock not acquired")
	}
	if tryKey(t, goSide, nsKey) {
		t.Fatal("namespaced Go key acquired while SQL holds it")
	}
	if !tryKey(t, goSide, key) {
		t.Fatal("the plain name's key is blocked by the namespaced lock")
	}
	unlockKey(t, goSide, key)
	if !queryBool(t, sqlSide, "SELECT pg_advisory_unlock("+keyhash.NamespacedNameKeySQL+")", "lockkit-test", name) {
		t.Fatal("SQL side: namespaced unlock returned false")
	}
}

// TestPairKeySpaceInPgLocks checks the pair half of the pg_locks mapping.
func TestPairKeySpaceInPgLocks(t *testing.T) {
	db := integration.Postgres(t)
	c := pgConn(t, db)
	k := keyhash.WithAdvisoryLock(integration.Name(t), 7)
	if !tryKey(t, c, k) {
		t.Fatal("not acquired")
	}
	a, b := k.Pair()
	var n int
	if err := c.QueryRowContext(context.Background(),
		`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
		   AND classid = $1::int8::oid AND objid = $2::int8::oid AND objsubid = 2`,
		int64(uint32(a)), int64(uint32(b))).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("pg_locks rows for pair %v = %d, want 1", k, n)
	}
	if !unlockKey(t, c, k) {
		t.Fatal("unlock false")
	}
}

// TestPresetsExcludeToolSQL runs, in one session, the statement each tool
// sends (with its key computed by the reference algorithms of
// presets_test.go, not by keyhash), and checks that lockkit's key for the same
// name is then refused in another session, and the other way round.
func TestPresetsExcludeToolSQL(t *testing.T) {
	db := integration.Postgres(t)
	tool, lk := pgConn(t, db), pgConn(t, db)
	base := integration.Name(t)
	ctx := context.Background()

	var dbName, schema string
	if err := tool.QueryRowContext(ctx, "SELECT current_database(), current_schema()").Scan(&dbName, &schema); err != nil {
		t.Fatal(err)
	}
	migTable := "mig_" + strings.NewReplacer(".", "_", "-", "_").Replace(base)
	migID, _ := database.GenerateAdvisoryLockId(dbName, schema, migTable)

	wal := base + ".rails"
	walHash := refCRC32([]byte(wal)) & 0x7fffffff
	dj1 := base + ".django1"
	dj1Pos := int64(refCRC32([]byte(dj1)))
	dj1ID := (1<<31 - 1) & dj1Pos
	if dj1Pos&(1<<31) != 0 {
		dj1ID -= 1 << 31
	}
	dj2 := base + ".django2"
	sym := base + ".symfony"

	for _, c := range []struct {
		name   string
		lock   string // the tool's own statement
		args   []any
		unlock string
		key    keyhash.Key
		// exists is the tool's own "is it held" query, where it has one,
		// run on lockkit's session while lockkit holds the key.
		exists     string
		existsArgs []any
	}{
		{
			// golang-migrate database/postgres/postgres.go: pg_advisory_lock($1) with the decimal string.
			name: "golang-migrate", lock: "SELECT pg_try_advisory_lock($1)", args: []any{migID},
			unlock: "SELECT pg_advisory_unlock($1)", key: keyhash.MigratePostgresLockID(dbName, schema, migTable),
		},
		{
			// with_advisory_lock postgresql_advisory.rb prepare_sql, literal keys, a comment with the name.
			name:   "with_advisory_lock",
			lock:   fmt.Sprintf("SELECT pg_try_advisory_lock(%d,%d) AS t0123abcd /* %s */", walHash, 0, wal),
			unlock: fmt.Sprintf("SELECT pg_advisory_unlock(%d,%d) AS t0123abcd /* %s */", walHash, 0, wal),
			key:    keyhash.WithAdvisoryLock(wal, 0),
			exists: fmt.Sprintf(`SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory'
				AND database = (SELECT oid FROM pg_database WHERE datname = CURRENT_DATABASE())
				AND classid = %d AND objid = %d AND mode = 'ExclusiveLock'`, walHash, 0),
		},
		{
			// django-pglocks 1.0.3: "SELECT %s(%d)" with a literal signed int.
			name: "django-pglocks 1.x", lock: fmt.Sprintf("SELECT pg_try_advisory_lock(%d)", dj1ID),
			unlock: fmt.Sprintf("SELECT pg_advisory_unlock(%d)", dj1ID), key: keyhash.DjangoPGLocksV1(dj1),
		},
		{
			// django-pglocks 2.x: "SELECT pg_try_advisory_lock(%s)" with the bound bigint.
			name: "django-pglocks 2.x", lock: "SELECT pg_try_advisory_lock($1)", args: []any{refHash([]byte(dj2))},
			unlock: "SELECT pg_advisory_unlock($1)", key: keyhash.DjangoPGLocks(dj2),
		},
		{
			// Symfony PostgreSqlStore: pg_try_advisory_lock(:key), PDO binds a string by default.
			name: "symfony", lock: "SELECT pg_try_advisory_lock($1)", args: []any{fmt.Sprint(refCRC32([]byte(sym)))},
			unlock: "SELECT pg_advisory_unlock($1)", key: keyhash.Symfony(sym),
			exists:     "SELECT count(*) > 0 FROM pg_locks WHERE locktype='advisory' AND objid=$1 AND pid=pg_backend_pid()",
			existsArgs: []any{fmt.Sprint(refCRC32([]byte(sym)))},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !queryBool(t, tool, c.lock, c.args...) {
				t.Fatal("tool statement did not acquire")
			}
			if tryKey(t, lk, c.key) {
				t.Fatalf("lockkit key %v acquired while the tool holds the lock", c.key)
			}
			if !queryBool(t, tool, c.unlock, c.args...) {
				t.Fatal("tool unlock returned false")
			}
			if !tryKey(t, lk, c.key) {
				t.Fatalf("lockkit key %v not acquired after the tool released", c.key)
			}
			if queryBool(t, tool, c.lock, c.args...) {
				t.Fatal("tool statement acquired while lockkit holds the key")
			}
			if c.exists != "" && !queryBool(t, lk, c.exists, c.existsArgs...) {
				t.Fatal("the tool's own existence query does not see lockkit's lock")
			}
			if !unlockKey(t, lk, c.key) {
				t.Fatal("lockkit unlock returned false")
			}
		})
	}
}
