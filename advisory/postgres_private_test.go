package advisory

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// Faults that need a server of the test's own: a full lock table, a server
// restart and crash, and a connection cut at the worst moments. The shared
// server is never stopped or starved.
func TestPostgresPrivateServer(t *testing.T) {
	t.Parallel()
	// A small lock table: max_locks_per_transaction × (max_connections +
	// max_prepared_transactions) slots, a few hundred here.
	srv := integration.StartPostgres(t, integration.WithServerArgs(
		"-c", "max_locks_per_transaction=10", "-c", "max_connections=20"))
	open := func(t *testing.T, dsn string) *sql.DB {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	admin := open(t, srv.DSN())
	if err := admin.PingContext(pgCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// tableFreed waits until no advisory lock is left on the private
	// server, on the admin connection opened before the table filled up.
	tableFreed := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var n int
			err := admin.QueryRowContext(pgCtx(t, 5*time.Second),
				"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").Scan(&n)
			if err == nil && n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("lock table not freed: %d advisory locks, %v", n, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	many := make([]keyhash.Key, 5000)
	for i := range many {
		many[i] = keyhash.Int64(int64(i) + 1_000_000)
	}

	// PITFALLS 4: a server restart ends every session; the holder hears of
	// it at once, and the pool works again after the restart.
	t.Run("Restart", func(t *testing.T) {
		db := open(t, srv.DSN())
		p, err := New(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		pgxp, err := pgxpool.New(context.Background(), srv.DSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pgxp.Close)
		pool, err := NewPool(pgxp, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := p.TryAcquire(pgCtx(t, 10*time.Second), "restart")
		if err != nil {
			t.Fatal(err)
		}
		b, err := pool.TryAcquire(pgCtx(t, 10*time.Second), "restart-pool")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		stopped := make(chan error, 1)
		go func() { stopped <- srv.Stop() }()
		for _, l := range []lockkit.Lock{a, b} {
			select {
			case <-l.Done():
				t.Logf("%s: Done %v after the shutdown began: %v", l.Name(), time.Since(start).Round(time.Millisecond), l.Err())
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: Done not closed after the server shut down", l.Name())
			}
			if !errors.Is(l.Err(), lockkit.ErrLost) {
				t.Errorf("Err() = %v", l.Err())
			}
		}
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		for _, l := range []lockkit.Lock{a, b} {
			if err := l.Release(context.Background()); !errors.Is(err, lockkit.ErrLost) {
				t.Errorf("Release = %v, want ErrLost", err)
			}
		}
		for _, lk := range []lockkit.Locker{p, pool} {
			l, err := lk.TryAcquire(pgCtx(t, 10*time.Second), "restart")
			if err != nil {
				t.Fatalf("after the restart: %v", err)
			}
			mustRelease(t, l)
		}
	})

	// A crash (SIGKILL of every server process): the kernel closes the
	// sockets, and the holder hears of it at once too.
	t.Run("Crash", func(t *testing.T) {
		db := open(t, srv.DSN())
		p, err := New(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		l, err := p.TryAcquire(pgCtx(t, 10*time.Second), "crash")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-l.Done():
			t.Logf("Done %v after SIGKILL: %v", time.Since(start).Round(time.Millisecond), l.Err())
		case <-time.After(pgLossBound):
			t.Fatalf("Done not closed within %v of the server's death", pgLossBound)
		}
		if err := l.Release(context.Background()); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("Release = %v", err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
	})

	// PITFALLS 5: the connection is cut right after the lock statement
	// reached the server. The acquire fails, and the server-side session
	// ends with the socket, so the lock it may have taken is not leaked.
	t.Run("CutDuringAcquireAndRelease", func(t *testing.T) {
		proxy := integration.NewProxy(t, srv.Addr())
		viaProxy := open(t, strings.Replace(srv.DSN(), srv.Addr(), proxy.Addr(), 1))
		p, err := New(viaProxy, nil)
		if err != nil {
			t.Fatal(err)
		}
		key := keyhash.Int64(424242)
		fired := proxy.ResetAfterStatement("pg_try_advisory_lock")
		l, err := p.TryLockKey(pgCtx(t, 10*time.Second), key, nil)
		if err == nil {
			_ = l.Release(context.Background())
			t.Fatal("acquire succeeded through a connection cut after the statement")
		}
		waitFired(t, fired)
		if errors.Is(err, lockkit.ErrNotAcquired) {
			t.Errorf("a cut acquire reported ErrNotAcquired (the key is not known to be held elsewhere): %v", err)
		}
		waitNoLocks(t, admin, key)

		// The same for a blocking acquire that waits for a holder.
		holder := rawSession(t, admin)
		if !rawTry(t, holder, key) {
			t.Fatal("raw try failed")
		}
		fired = proxy.ResetAfterStatement("pg_advisory_lock")
		res := make(chan error, 1)
		go func() {
			l, err := p.LockKey(pgCtx(t, 20*time.Second), key, nil)
			if err == nil {
				_ = l.Release(context.Background())
			}
			res <- err
		}()
		waitFired(t, fired)
		if err := <-res; err == nil {
			t.Fatal("blocking acquire succeeded through a cut connection")
		}
		rawUnlock(t, holder, key)
		waitNoLocks(t, admin, key)

		// Cut during the unlock: the release is not confirmed, so the
		// lock is reported lost, and the server session ends.
		l, err = p.TryLockKey(pgCtx(t, 10*time.Second), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		fired = proxy.ResetAfterStatement("pg_advisory_unlock")
		err = l.Release(pgCtx(t, 10*time.Second))
		waitFired(t, fired)
		if !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("Release through a cut connection = %v, want ErrLost", err)
		}
		waitNoLocks(t, admin, key)

		// Cut while held: the watcher's read fails at once.
		l, err = p.TryLockKey(pgCtx(t, 10*time.Second), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		proxy.CutAll()
		select {
		case <-l.Done():
			t.Logf("Done %v after the connection was cut: %v", time.Since(start).Round(time.Millisecond), l.Err())
		case <-time.After(pgLossBound):
			t.Fatalf("Done not closed within %v of the cut", pgLossBound)
		}
		_ = l.Release(context.Background())
		waitNoLocks(t, admin, key)
		if s := viaProxy.Stats(); s.InUse != 0 {
			t.Errorf("%d in use", s.InUse)
		}
	})
	// PITFALLS 10: out of shared memory (53200) is an error of its own.
	// PITFALLS 2, an unlock the server does not answer: the holder's
	// backend is stopped (SIGSTOP), so the unlock is not confirmed within
	// ReleaseTimeout. Release reports the lock lost and closes the session;
	// once the backend runs again it sees the closed socket, exits, and the
	// lock is free.
	t.Run("UnconfirmedRelease", func(t *testing.T) {
		db := open(t, srv.DSN())
		p, err := New(db, &Config{ReleaseTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		key := keyhash.Int64(777)
		// A confirmed release first: it arms the Locker's one unlock
		// timer, which must then re-arm for the unconfirmed one's bound.
		l, err := p.LockKey(pgCtx(t, 10*time.Second), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		mustRelease(t, l)
		time.Sleep(50 * time.Millisecond)
		l, err = p.LockKey(pgCtx(t, 10*time.Second), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(l.PID(), syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP backend %d: %v", l.PID(), err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				_ = syscall.Kill(l.PID(), syscall.SIGCONT)
			}
		}
		defer resume()
		start := time.Now()
		err = l.Release(context.Background())
		if !errors.Is(err, lockkit.ErrLost) || !strings.Contains(err.Error(), "not confirmed") {
			t.Fatalf("Release with a stopped backend = %v, want ErrLost, not confirmed", err)
		}
		took := time.Since(start)
		t.Logf("Release returned after %v: %v", took.Round(time.Millisecond), err)
		if took < 200*time.Millisecond {
			t.Errorf("Release gave up after %v, before its ReleaseTimeout of 200ms", took)
		}
		if s := db.Stats(); s.OpenConnections != 0 {
			t.Errorf("%d connections open; the session should have been closed", s.OpenConnections)
		}
		resume()
		waitNoLocks(t, admin, key)
	})

	t.Run("OutOfLockMemory", func(t *testing.T) {
		// The admin session is opened before the table fills up: a new
		// session needs a lock table entry to start.
		if err := admin.PingContext(pgCtx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		db := open(t, srv.DSN())
		err := WithTxLock(pgCtx(t, 20*time.Second), db, many, nil, func(context.Context, *sql.Tx) error {
			t.Error("fn ran")
			return nil
		})
		if !errors.Is(err, ErrOutOfLockMemory) || pgCode(err) != "53200" {
			t.Fatalf("WithTxLock on 5000 keys = %v, want ErrOutOfLockMemory with 53200", err)
		}
		t.Logf("transaction scope: %v", err)
		tableFreed(t)
		p, err := New(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.LockKeys(pgCtx(t, 20*time.Second), many, nil)
		if !errors.Is(err, ErrOutOfLockMemory) {
			t.Fatalf("LockKeys on 5000 keys = %v, want ErrOutOfLockMemory", err)
		}
		// A failed session-level statement keeps the keys it got, so
		// the session was closed; its backend exits a moment later, and
		// until then even a new connection can fail with 53200.
		tableFreed(t)
		_, err = p.TryLockKeys(pgCtx(t, 20*time.Second), many, nil)
		if !errors.Is(err, ErrOutOfLockMemory) {
			t.Fatalf("TryLockKeys on 5000 keys = %v, want ErrOutOfLockMemory", err)
		}
		// Nothing was left taking up the table: no session holds any of
		// the keys and the server grants locks again.
		tableFreed(t)
		l, err := p.LockKeys(pgCtx(t, 10*time.Second), many[:50], nil)
		if err != nil {
			t.Fatal(err)
		}
		mustRelease(t, l)
	})
}

func waitFired(t *testing.T, fired <-chan struct{}) {
	t.Helper()
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy's fault did not fire")
	}
}
