package rowlock_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/rowlock"
)

// TestRenewQueuedBehindForceRelease: a renewal that was sent before a
// force-release and reaches the row only after it has committed must find
// the lease gone. MySQL fixes a statement's UTC_TIMESTAMP() when the
// statement starts, so a renewal that waited on the row lock compares the
// ended lease's expires_at with a time from before it ended; the release
// statements must leave expires_at where such a renewal sees it ended.
func TestRenewQueuedBehindForceRelease(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, e *env) {
		l := e.locker(t, &rowlock.Config{TTL: time.Minute})
		n := e.name(t)
		lk, err := l.TryAcquire(ctxT(t, 5*time.Second), n)
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Release(context.Background())

		// Hold the row lock, so the renewal below queues behind it.
		tx, blocker := lockRow(t, e, n)
		renewed := make(chan error, 1)
		go func() { renewed <- lk.(*rowlock.Lock).Renew(ctxT(t, 10*time.Second)) }()
		waitBlockedBy(t, e, blocker, "UPDATE")

		// End the lease in the blocking transaction: a statement that
		// starts after the renewal's, and commits before it runs.
		force := rowlock.ForceStatement(e.dialect, "lockkit_locks")
		args := []any{n}
		if e.dialect == rowlock.Postgres {
			args = append(args, "lockkit_test_nobody")
		}
		if _, err := tx.Exec(force, args...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := <-renewed; !errors.Is(err, lockkit.ErrLost) {
			t.Fatalf("Renew queued behind a force-release = %v, want ErrLost", err)
		}
		if live := e.live(t, []string{n}); live != 0 {
			t.Fatalf("%d live lease after the force-release", live)
		}
	})
}

// TestTakeoverQueuedBehindRelease: a try-acquire that started before the
// holder's release and reaches the row after it has committed takes the
// lease, rather than report the ended lease as held.
func TestTakeoverQueuedBehindRelease(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, e *env) {
		holder := e.locker(t, &rowlock.Config{TTL: time.Minute})
		other := e.locker(t, &rowlock.Config{TTL: time.Minute})
		n := e.name(t)
		lk, err := holder.TryAcquire(ctxT(t, 5*time.Second), n)
		if err != nil {
			t.Fatal(err)
		}
		rl := lk.(*rowlock.Lock)
		defer rl.Release(context.Background())

		tx, blocker := lockRow(t, e, n)
		type result struct {
			l   lockkit.Lock
			err error
		}
		took := make(chan result, 1)
		go func() {
			l, err := other.TryAcquire(ctxT(t, 10*time.Second), n)
			took <- result{l, err}
		}()
		waitBlockedBy(t, e, blocker, "INSERT")

		// The holder's own release statement, run in the blocking
		// transaction.
		q, err := rowlock.Statements(e.dialect, "lockkit_locks")
		if err != nil {
			t.Fatal(err)
		}
		release := q.Release
		args := []any{n, rl.Owner(), rl.Token()}
		if e.dialect == rowlock.Postgres {
			args = append(args, "lockkit_test_nobody")
		}
		if _, err := tx.Exec(release, args...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		r := <-took
		if r.err != nil {
			t.Fatalf("TryAcquire queued behind the release = %v, want the lease", r.err)
		}
		if r.l.Token() <= rl.Token() {
			t.Errorf("new token %d not above the released %d", r.l.Token(), rl.Token())
		}
		if err := r.l.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
}

// lockRow begins a transaction that locks name's row (FOR UPDATE), rolled
// back when the test ends unless committed, and returns it with the
// server's id for its session.
func lockRow(t *testing.T, e *env, name string) (*sql.Tx, int64) {
	t.Helper()
	tx, err := e.db.BeginTx(ctxT(t, 10*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	if _, err := tx.Exec("SELECT name FROM lockkit_locks WHERE name = "+e.ph(1)+" FOR UPDATE", name); err != nil {
		t.Fatal(err)
	}
	q := "SELECT pg_backend_pid()"
	if e.dialect == rowlock.MySQL {
		q = "SELECT CONNECTION_ID()"
	}
	var id int64
	if err := tx.QueryRow(q).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return tx, id
}

// waitBlockedBy waits until a statement that holds verb runs on the
// test's lock table while the session blocker holds a row lock: on
// PostgreSQL, one that waits for blocker's lock; on MySQL, one running in
// the test's private database (InnoDB's lock-wait tables are a cache that
// is not refreshed while polled more often than every 100 ms, which
// parallel tests do).
func waitBlockedBy(t *testing.T, e *env, blocker int64, verb string) {
	t.Helper()
	q, args := `SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid)) AND query LIKE $2`, []any{blocker, "%" + verb + "%"}
	if e.dialect == rowlock.MySQL {
		q, args = `SELECT count(*) FROM information_schema.processlist
WHERE db = DATABASE() AND command IN ('Query', 'Execute') AND info LIKE ?`, []any{verb + "%"}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var c int
		if err := e.db.QueryRow(q, args...).Scan(&c); err != nil {
			t.Fatal(err)
		}
		if c > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s waited for the row lock held by session %d", verb, blocker)
}
