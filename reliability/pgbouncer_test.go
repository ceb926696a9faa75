package reliability

import (
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/rowlock"
)

// pgBouncerDSN starts a pgbouncer (integration.StartPgBouncer) and returns
// a function that makes the URL of one of its databases ("single", "pair",
// "trio", "many").
func pgBouncerDSN(t testing.TB, poolMode string, extra ...string) func(db string) string {
	t.Helper()
	return integration.StartPgBouncer(t, poolMode, extra...).DSN
}

// openDB opens a database/sql pool on dsn, closed when t ends.
func openDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	d, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// TestPitfall07_PgBouncerTransactionMode runs advisory locks through
// PgBouncer in transaction mode.
//
// Session locks cannot work there: the lock is taken on whichever server
// connection ran the statement, which then serves other clients. With one
// server connection for all clients, a second client's try-lock runs in the
// very session that holds the lock, and the server would grant it again
// (stacking). lockkit's lock statement finds the first holder's session
// marker on that session and refuses, with an error matching
// lockkit.ErrUnsupported and advisory.ErrSharedSession that says what to
// use instead; from then on that Locker refuses every session lock.
//
// Transaction-scoped locks keep working: each transaction has a server
// connection to itself until it ends, and its xact lock excludes another
// transaction's until COMMIT.
func TestPitfall07_PgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	dsn := pgBouncerDSN(t, "transaction")
	open := func(db string) *sql.DB { return openDB(t, dsn(db)) }
	n := name(t)

	t.Run("session lock: refused", func(t *testing.T) {
		a, err := advisory.New(open("single"), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := advisory.New(open("single"), nil)
		if err != nil {
			t.Fatal(err)
		}
		la, err := a.TryAcquire(ctxT(t, 10*time.Second), n)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := b.TryAcquire(ctxT(t, 10*time.Second), n)
		if err == nil {
			_ = lb.Release(ctxT(t, 10*time.Second))
			t.Fatalf("through PgBouncer (transaction mode, one server connection) a second client also holds %q: two holders", n)
		}
		if !errors.Is(err, lockkit.ErrUnsupported) || !errors.Is(err, advisory.ErrSharedSession) {
			t.Fatalf("the second session lock through PgBouncer = %v, want ErrUnsupported and ErrSharedSession", err)
		}
		for _, want := range []string{"another lockkit handle", "WithTxLock", "rowlock", "session-mode"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the refusal %q does not mention %q", err, want)
			}
		}
		t.Logf("refused: %v", err)
		// The refusal sticks: b knows its server sessions are shared.
		if _, err := b.TryAcquire(ctxT(t, 10*time.Second), n+".other"); !errors.Is(err, advisory.ErrSharedSession) {
			t.Errorf("after the refusal, another name on the same Locker = %v, want ErrSharedSession", err)
		}
		stillHeld(t, la)
		// With one server connection, a's unlock reaches the session that
		// holds the lock: a clean release.
		if err := la.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Errorf("release through the single server connection: %v", err)
		}
		// Blocking acquires are refused the same way, before they wait.
		la, err = a.Acquire(ctxT(t, 10*time.Second), n)
		if err != nil {
			t.Fatal(err)
		}
		c, err := advisory.New(open("single"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Acquire(ctxT(t, 10*time.Second), n); !errors.Is(err, advisory.ErrSharedSession) {
			t.Errorf("a blocking acquire on the shared session = %v, want ErrSharedSession", err)
		}
		if err := la.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Errorf("release: %v", err)
		}
	})

	t.Run("session lock: refused on a key another client holds on the shared session", func(t *testing.T) {
		// A program that is not lockkit takes a session lock through the
		// pooler, on the one server session. It sets no marker; lockkit's
		// first lock statement on a connection sees that its server
		// session's pid is not the connection's (a pooler), looks in
		// pg_locks, and finds the key held by its own session: taking it
		// would stack on the other program's lock. (Later statements on a
		// pooled connection check the marker only: the scan of the lock
		// table costs too much for every acquire.) A refusal closes the
		// connection, so each acquire below starts on a new one.
		k := keyhash.Name(n + ".foreign")
		other := open("single")
		ctx := ctxT(t, 10*time.Second)
		if _, err := other.ExecContext(ctx, "SELECT pg_advisory_lock($1)", k.Int64()); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := other.ExecContext(ctxT(t, 10*time.Second), "SELECT pg_advisory_unlock($1)", k.Int64()); err != nil {
				t.Error(err)
			}
		}()
		a, err := advisory.New(open("single"), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.TryLockKey(ctx, k, nil)
		if !errors.Is(err, advisory.ErrSharedSession) || !errors.Is(err, lockkit.ErrUnsupported) {
			t.Fatalf("TryLockKey of a key the shared session holds for another client = %v, want ErrSharedSession", err)
		}
		t.Logf("refused: %v", err)
		_, err = a.LockKeys(ctx, []keyhash.Key{keyhash.Name(n + ".foreign2"), k}, nil)
		if !errors.Is(err, advisory.ErrSharedSession) {
			t.Fatalf("LockKeys with a key the shared session holds for another client = %v, want ErrSharedSession", err)
		}
		// This refusal is about one key, not the pool: other keys work.
		l, err := a.TryLockKey(ctx, keyhash.Name(n+".foreign3"), nil)
		if err != nil {
			t.Fatalf("another key after the refusal: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Error(err)
		}
	})

	t.Run("unlock on another server session: lost, never success", func(t *testing.T) {
		// Two server connections. a takes the lock on one of them; while a
		// transaction on another client occupies that one, a's unlock is
		// sent to the other.
		db := open("pair")
		a, err := advisory.New(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		la, err := a.TryLock(ctxT(t, 10*time.Second), n+".moved", nil)
		if err != nil {
			t.Fatal(err)
		}
		occupy := open("pair")
		ctx := ctxT(t, 20*time.Second)
		// Occupy the lock's server session with a transaction, so that
		// a's unlock can only run on the other one.
		begin := func() (*sql.Tx, int) {
			tx, err := occupy.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var pid int
			if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			return tx, pid
		}
		tx, pid := begin()
		if pid != la.PID() {
			// The other session: occupy the lock's with a second
			// transaction, then free this one.
			tx2, pid2 := begin()
			_ = tx.Rollback()
			tx, pid = tx2, pid2
		}
		defer tx.Rollback()
		if pid != la.PID() {
			t.Fatalf("the occupying transactions ran on pids other than the lock's %d", la.PID())
		}
		err = la.Release(ctxT(t, 10*time.Second))
		if err == nil {
			t.Fatal("the unlock ran on another server session and Release reported success")
		}
		if !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, advisory.ErrSharedSession) {
			t.Fatalf("Release = %v, want ErrLost and ErrSharedSession", err)
		}
		t.Logf("release: %v", err)
		if _, err := a.TryAcquire(ctxT(t, 10*time.Second), n+".moved2"); !errors.Is(err, advisory.ErrSharedSession) {
			t.Errorf("after the moved unlock, the Locker = %v, want ErrSharedSession", err)
		}
		// The lock stays with the server session it was taken on; the
		// occupying transaction can give it back, as a test's cleanup.
		var ok bool
		if err := tx.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", keyhash.Name(n+".moved").Int64()).Scan(&ok); err != nil || !ok {
			t.Errorf("cleanup: unlock on the lock's own session = %v, %v", ok, err)
		}
		if _, err := tx.ExecContext(ctx, "SELECT set_config('lockkit.holder', '', false)"); err != nil {
			t.Error(err)
		}
		if err := tx.Commit(); err != nil {
			t.Error(err)
		}
	})

	t.Run("server_reset_query_always: refused", func(t *testing.T) {
		// With server_reset_query_always = 1, PgBouncer runs DISCARD ALL
		// after every transaction, which drops the session's advisory
		// locks right after the lock statement: nothing would be held.
		// The first grant of every Locker is checked by a second
		// statement, which finds the marker gone.
		dsn := pgBouncerDSN(t, "transaction", "server_reset_query_always = 1")
		a, err := advisory.New(openDB(t, dsn("single")), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.TryAcquire(ctxT(t, 10*time.Second), n+".reset")
		if !errors.Is(err, advisory.ErrSharedSession) {
			t.Fatalf("TryAcquire through a pooler that resets every session = %v, want ErrSharedSession", err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("xact lock: excludes", func(t *testing.T) {
		db := open("pair")
		k := keyhash.Name(n + ".xact")
		ctx := ctxT(t, 20*time.Second)
		txA, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer txA.Rollback()
		if err := advisory.LockTx(ctx, txA, k); err != nil {
			t.Fatal(err)
		}
		txB, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer txB.Rollback()
		ok, err := advisory.TryLockTx(ctx, txB, k)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Fatal("a second transaction through PgBouncer took an xact lock another transaction holds")
		}
		if err := txB.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := txA.Commit(); err != nil {
			t.Fatal(err)
		}
		txC, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer txC.Rollback()
		if ok, err := advisory.TryLockTx(ctx, txC, k); err != nil || !ok {
			t.Fatalf("after COMMIT the xact lock is free: TryLockTx = %v, %v", ok, err)
		}
		if err := txC.Commit(); err != nil {
			t.Fatal(err)
		}
	})
	direct := openT(t, envSpec(t, kindPostgres))
	direct.eventuallyFree(t, n, 2*time.Second)
}

// TestRowlockWaitersThroughPgBouncer: through PgBouncer in transaction
// mode the lock table's waiters take no waiting room (a session advisory
// lock would stay with a server session that serves other clients): the
// Locker's first wait finds the pooler and its heads poll, as before the
// room. Two waiters in other Lockers still get the lock one after the
// other after the release.
func TestRowlockWaitersThroughPgBouncer(t *testing.T) {
	t.Parallel()
	dsn := pgBouncerDSN(t, "transaction")
	direct := integration.Postgres(t)
	if err := migrations.Up(ctxT(t, time.Minute), direct, migrations.Postgres, nil); err != nil {
		t.Fatal(err)
	}
	n := name(t)
	cfg := &rowlock.Config{Dialect: rowlock.Postgres, TTL: time.Minute, MaxPoll: 20 * time.Millisecond}
	locker := func() *rowlock.Locker {
		l, err := rowlock.New(openDB(t, dsn("trio")), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return l
	}
	holder, a, b := locker(), locker(), locker()
	held, err := holder.TryLock(ctxT(t, 10*time.Second), n, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *rowlock.Lock, 2)
	errs := make(chan error, 2)
	for _, l := range []*rowlock.Locker{a, b} {
		go func() {
			lk, err := l.Lock(ctxT(t, 30*time.Second), n, nil)
			if err != nil {
				errs <- err
				return
			}
			got <- lk
		}()
	}
	time.Sleep(300 * time.Millisecond) // both wait
	if err := held.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case lk := <-got:
			if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("a waiter did not acquire within 10s")
		}
	}
}
