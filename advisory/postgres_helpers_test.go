package advisory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// Helpers of the PostgreSQL tests.

// pgLeakOptions are the conformance suites' leak options: the suites share
// an admin pool, which outlives each check.
var pgLeakOptions = []goleak.Option{integration.IgnorePgxBackgroundReader}

func pgCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// pgAdmin is a separate pool for looking at pg_locks and terminating
// backends, from outside the lockers under test.
func pgAdmin(t testing.TB) *sql.DB {
	t.Helper()
	db := integration.Postgres(t)
	db.SetMaxOpenConns(4)
	return db
}

// newPG returns a locker over a fresh database/sql pool of size n.
func newPG(t testing.TB, n int, cfg *Config) (*Locker, *sql.DB) {
	t.Helper()
	db := integration.Postgres(t)
	db.SetMaxOpenConns(n)
	p, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, db
}

// newPGPool returns a locker over a fresh pgxpool.
func newPGPool(t testing.TB, cfg *Config) *Locker {
	t.Helper()
	p, err := NewPool(integration.PgxPool(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newPGPoolN returns a locker over a fresh pgxpool of at most n connections.
func newPGPoolN(t testing.TB, n int32, cfg *Config) *Locker {
	t.Helper()
	pc, err := pgxpool.ParseConfig(integration.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = n
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	p, err := NewPool(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testKeys returns n fresh bigint keys unique to this test.
func testKeys(t testing.TB, n int) []keyhash.Key {
	ks := make([]keyhash.Key, n)
	base := integration.Name(t)
	for i := range ks {
		ks[i] = keyhash.Name(fmt.Sprintf("%s#%d", base, i))
	}
	return ks
}

// advisoryRow is one pg_locks row of an advisory lock.
type advisoryRow struct {
	pid     int
	mode    string
	granted bool
	key     keyhash.Key
}

// pgLocks returns the advisory locks in pg_locks, in the current database,
// on keys (granted or waiting).
func pgLocks(t testing.TB, admin *sql.DB, keys ...keyhash.Key) []advisoryRow {
	t.Helper()
	cls := make([]int64, len(keys))
	objs := make([]int64, len(keys))
	subs := make([]int16, len(keys))
	for i, k := range keys {
		c, o, s := lockTag(k)
		cls[i], objs[i], subs[i] = int64(c), int64(o), s
	}
	rows, err := admin.QueryContext(pgCtx(t, 10*time.Second), `
SELECT l.pid, l.mode, l.granted, l.classid::bigint, l.objid::bigint, l.objsubid
FROM pg_locks l JOIN unnest($1::bigint[], $2::bigint[], $3::int2[]) AS q(c, o, s)
  ON l.classid = q.c::oid AND l.objid = q.o::oid AND l.objsubid = q.s
WHERE l.locktype = 'advisory'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY l.pid`, cls, objs, subs)
	if err != nil {
		t.Fatalf("pg_locks: %v", err)
	}
	defer rows.Close()
	var out []advisoryRow
	for rows.Next() {
		var (
			r    advisoryRow
			c, o int64
			s    int16
		)
		if err := rows.Scan(&r.pid, &r.mode, &r.granted, &c, &o, &s); err != nil {
			t.Fatal(err)
		}
		k, ok := keyFromTag(uint32(c), uint32(o), s)
		if !ok {
			t.Fatalf("pg_locks row with objsubid %d", s)
		}
		r.key = k
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitNoLocks waits until pg_locks shows nothing on keys (a discarded
// session's backend may take a moment to exit) and fails if it never does.
func waitNoLocks(t testing.TB, admin *sql.DB, keys ...keyhash.Key) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rows := pgLocks(t, admin, keys...)
		if len(rows) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("advisory locks left on the test's keys: %+v", rows)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminateHolder terminates, with pg_terminate_backend, the backend that
// pg_locks shows holding key; it returns that backend's pid. With wait it
// returns only once the backend has exited and so released its locks: a
// terminated backend sends its FATAL error (which closes the holder's Done)
// a moment before it releases them.
func terminateHolder(t testing.TB, admin *sql.DB, key keyhash.Key, wait bool) int {
	t.Helper()
	var pid int
	for _, r := range pgLocks(t, admin, key) {
		if r.granted {
			pid = r.pid
		}
	}
	if pid == 0 {
		t.Fatalf("no holder of %v in pg_locks", key)
	}
	var ok bool
	timeout := 0
	if wait {
		timeout = 5000
	}
	if err := admin.QueryRowContext(pgCtx(t, 10*time.Second), "SELECT pg_terminate_backend($1, $2)", pid, timeout).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
	return pid
}

// rawSession is one plain database/sql session, for doing to the server
// what another program would.
func rawSession(t testing.TB, db *sql.DB) *sql.Conn {
	t.Helper()
	c, err := db.Conn(pgCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawTry runs pg_try_advisory_lock(key) on c.
func rawTry(t testing.TB, c *sql.Conn, k keyhash.Key) bool {
	t.Helper()
	st := single(fnTry, Exclusive, k)
	var ok bool
	if err := c.QueryRowContext(pgCtx(t, 10*time.Second), st.sql, st.args...).Scan(&ok); err != nil {
		t.Fatalf("%s: %v", st.sql, err)
	}
	return ok
}

// rawUnlock runs pg_advisory_unlock(key) on c.
func rawUnlock(t testing.TB, c *sql.Conn, k keyhash.Key) bool {
	t.Helper()
	st := single(fnUnlock, Exclusive, k)
	var ok bool
	if err := c.QueryRowContext(pgCtx(t, 10*time.Second), st.sql, st.args...).Scan(&ok); err != nil {
		t.Fatalf("%s: %v", st.sql, err)
	}
	return ok
}

func mustRelease(t testing.TB, l lockkit.Lock) {
	t.Helper()
	if err := l.Release(pgCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Release(%q) = %v", l.Name(), err)
	}
}

func wantHeld(t testing.TB, err error, what string) *lockkit.HeldError {
	t.Helper()
	var he *lockkit.HeldError
	if !errors.As(err, &he) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("%s = %v, want a *lockkit.HeldError", what, err)
	}
	return he
}

// waitInPgLocks waits until pg_locks shows a waiter (granted = false) on k.
func waitInPgLocks(t testing.TB, admin *sql.DB, k keyhash.Key) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range pgLocks(t, admin, k) {
			if !r.granted {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no waiter on %v appeared in pg_locks", k)
}
