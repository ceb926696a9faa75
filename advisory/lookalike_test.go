package advisory

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// stubFunctions are look-alikes of every function lockkit's statements
// call, for a schema placed before pg_catalog in search_path: the lock
// functions return true (or nothing) and lock nothing, the marker functions
// forget, pg_backend_pid lies, the comparisons say yes, and pg_locks is
// empty — a server that pretends as CockroachDB's advisory functions do,
// and worse.
var stubFunctions = []string{
	`CREATE FUNCTION %[1]s.pg_advisory_lock(bigint) RETURNS void LANGUAGE sql AS 'SELECT'`,
	`CREATE FUNCTION %[1]s.pg_advisory_lock(integer, integer) RETURNS void LANGUAGE sql AS 'SELECT'`,
	`CREATE FUNCTION %[1]s.pg_advisory_lock_shared(bigint) RETURNS void LANGUAGE sql AS 'SELECT'`,
	`CREATE FUNCTION %[1]s.pg_try_advisory_lock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	`CREATE FUNCTION %[1]s.pg_try_advisory_lock(integer, integer) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	`CREATE FUNCTION %[1]s.pg_try_advisory_lock_shared(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	`CREATE FUNCTION %[1]s.pg_advisory_unlock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	`CREATE FUNCTION %[1]s.pg_advisory_unlock(integer, integer) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	`CREATE FUNCTION %[1]s.pg_advisory_unlock_shared(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	`CREATE FUNCTION %[1]s.pg_advisory_xact_lock(bigint) RETURNS void LANGUAGE sql AS 'SELECT'`,
	`CREATE FUNCTION %[1]s.pg_try_advisory_xact_lock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	`CREATE FUNCTION %[1]s.current_setting(text, boolean) RETURNS text LANGUAGE sql AS 'SELECT '''''`,
	`CREATE FUNCTION %[1]s.set_config(text, text, boolean) RETURNS text LANGUAGE sql AS 'SELECT $2'`,
	`CREATE FUNCTION %[1]s.pg_backend_pid() RETURNS integer LANGUAGE sql AS 'SELECT 1'`,
	`CREATE FUNCTION %[1]s.texteq(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	`CREATE FUNCTION %[1]s.int4eq(integer, integer) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	`CREATE VIEW %[1]s.pg_locks AS SELECT * FROM pg_catalog.pg_locks WHERE false`,
}

// stubServerDSN creates a schema of stubFunctions on the shared server and
// returns a DSN whose sessions search it before pg_catalog
// (options=-c search_path=SCHEMA,pg_catalog). The schema is dropped when
// t ends.
func stubServerDSN(t *testing.T) string {
	t.Helper()
	admin := pgAdmin(t)
	schema := "lkstub_" + strings.ToLower(strings.NewReplacer(".", "_", "-", "_").Replace(integration.Name(t)[len(integration.Name(t))-12:]))
	ctx := pgCtx(t, 20*time.Second)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	})
	for _, f := range stubFunctions {
		if _, err := admin.ExecContext(ctx, strings.ReplaceAll(f, "%[1]s", schema)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	u, err := url.Parse(integration.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("options", "-c search_path="+schema+",pg_catalog")
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String()
}

// A schema of look-alike functions before pg_catalog in search_path: the
// stubs are real (unqualified calls reach them, and two sessions both "get"
// a key), yet lockkit's locks exclude, because every function its
// statements call is schema-qualified. Before lockkit qualified its calls,
// the second session was granted the lock.
func TestPostgresStubsInSearchPath(t *testing.T) {
	t.Parallel()
	dsn := stubServerDSN(t)
	open := func() *sql.DB {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		db.SetMaxOpenConns(4)
		return db
	}
	key := testKeys(t, 1)[0]
	ctx := pgCtx(t, 30*time.Second)

	// The stubs are what an unqualified call reaches.
	raw1, raw2 := rawSession(t, open()), rawSession(t, open())
	for _, c := range []*sql.Conn{raw1, raw2} {
		var ok bool
		if err := c.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1::bigint)", key.Int64()).Scan(&ok); err != nil || !ok {
			t.Fatalf("the stub pg_try_advisory_lock = %v, %v", ok, err)
		}
	}
	var n int
	if err := raw1.QueryRowContext(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the stub pg_locks shows %d rows, %v", n, err)
	}

	a, err := New(open(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(open(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	c, err := NewPool(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := integration.Name(t)
	la, err := a.TryLock(ctx, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.TryLock(ctx, name, nil)
	wantHeld(t, err, "a second session's TryLock behind the stubs")
	_, err = c.TryLock(ctx, name, nil)
	wantHeld(t, err, "a pgxpool session's TryLock behind the stubs")
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = b.Lock(short, name, nil)
	cancel()
	wantHeld(t, err, "a blocking Lock behind the stubs")
	mustRelease(t, la)

	keys := testKeys(t, 3)
	lk, err := a.LockKeys(ctx, append(keys, keyhash.Pair(7, int32(keys[0].Int64()))), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.TryLockKeys(ctx, keys[1:], nil)
	wantHeld(t, err, "TryLockKeys behind the stubs")
	mustRelease(t, lk)

	// Transaction-scoped locks, through database/sql and pgx.
	db := open()
	tx1, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback()
	if err := LockTx(ctx, tx1, key); err != nil {
		t.Fatal(err)
	}
	tx2, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx2.Rollback()
	if ok, err := TryLockTx(ctx, tx2, key); err != nil || ok {
		t.Errorf("a second transaction's TryLockTx behind the stubs = %v, %v; want false", ok, err)
	}
	err = WithTryPgxTxLock(ctx, pool, []keyhash.Key{key}, nil, func(context.Context, pgx.Tx) error {
		t.Error("WithTryPgxTxLock ran fn while another transaction held the key")
		return nil
	})
	wantHeld(t, err, "WithTryPgxTxLock behind the stubs")
	_ = tx1.Rollback()
	_ = tx2.Rollback()
	for _, c := range []*sql.Conn{raw1, raw2} {
		_ = c.Close()
	}
	waitNoLocks(t, pgAdmin(t), key)
}

// A server whose own advisory lock functions return true and lock nothing,
// as CockroachDB's do: simulated on a private server by replacing
// pg_catalog's functions. The first grant of every Locker is checked in
// pg_locks, so the first acquire is refused with ErrLockNotEnforced (which
// matches lockkit.ErrUnsupported) naming the server, and every later one
// at once.
func TestPostgresLockNotEnforced(t *testing.T) {
	t.Parallel()
	srv := integration.StartPostgres(t)
	admin, err := sql.Open("pgx", srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	ctx := pgCtx(t, 30*time.Second)
	// A SQL function whose body is one SELECT is inlined by the planner;
	// only then does the replacement take effect, for fmgr calls a
	// built-in function by its oid, whatever pg_proc says. The void stub
	// returns a void value, not NULL, as a C function returning void does.
	for _, f := range []string{
		`CREATE OR REPLACE FUNCTION pg_catalog.pg_try_advisory_lock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
		`CREATE OR REPLACE FUNCTION pg_catalog.pg_advisory_lock(bigint) RETURNS void LANGUAGE sql AS 'SELECT ''''::void'`,
		`CREATE OR REPLACE FUNCTION pg_catalog.pg_advisory_unlock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	} {
		if _, err := admin.ExecContext(ctx, f); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	// The stubs are in place: two sessions both "get" the key.
	c1, c2 := rawSession(t, admin), rawSession(t, admin)
	k := keyhash.Int64(42)
	if !rawTry(t, c1, k) || !rawTry(t, c2, k) {
		t.Fatal("the replaced pg_try_advisory_lock did not grant twice")
	}
	for _, c := range []*sql.Conn{c1, c2} {
		if _, err := c.ExecContext(ctx, "SELECT pg_catalog.pg_advisory_lock(42)"); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := c1.QueryRowContext(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("pg_locks shows %d advisory locks, %v", n, err)
	}

	for _, try := range []bool{true, false} {
		db, err := sql.Open("pgx", srv.DSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		p, err := New(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		acquire := p.Lock
		if try {
			acquire = p.TryLock
		}
		_, err = acquire(ctx, "x", nil)
		if !errors.Is(err, ErrLockNotEnforced) || !errors.Is(err, lockkit.ErrUnsupported) {
			t.Fatalf("try=%v: the first acquire on a server that locks nothing = %v, want ErrLockNotEnforced", try, err)
		}
		if !strings.Contains(err.Error(), "PostgreSQL 1") || !strings.Contains(err.Error(), "rowlock") {
			t.Errorf("the refusal %q does not name the server and the alternative", err)
		}
		t.Logf("refused: %v", err)
		// Refused from now on, without asking the server.
		if _, err := acquire(ctx, "y", nil); !errors.Is(err, ErrLockNotEnforced) {
			t.Errorf("try=%v: the second acquire = %v, want ErrLockNotEnforced", try, err)
		}
		if s := db.Stats(); s.InUse != 0 {
			t.Errorf("%d connections still in use", s.InUse)
		}
	}

	// A waiting lock function that returns NULL, without an error, has
	// not waited for anything either.
	if _, err := admin.ExecContext(ctx, `CREATE OR REPLACE FUNCTION pg_catalog.pg_advisory_lock(bigint) RETURNS void LANGUAGE sql AS 'SELECT NULL::void'`); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	p, err := New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Lock(ctx, "z", nil); !errors.Is(err, ErrLockNotEnforced) {
		t.Errorf("Lock when pg_advisory_lock returns NULL = %v, want ErrLockNotEnforced", err)
	}
}
