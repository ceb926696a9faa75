package advisory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// PITFALLS 1: lock and unlock on different pooled connections. A pool of 4,
// 1000 lock/unlock cycles from 16 goroutines on 8 keys: every lock excludes,
// and afterwards no advisory lock is left on the test's keys and every
// connection is back in the pool.
func TestPostgresPinnedCycles(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	for _, flavour := range []string{"sql", "pgxpool"} {
		t.Run(flavour, func(t *testing.T) {
			var (
				p  *Locker
				db *sql.DB
			)
			if flavour == "sql" {
				p, db = newPG(t, 4, nil)
			} else {
				pool := integration.PgxPool(t)
				var err error
				if p, err = NewPool(pool, nil); err != nil {
					t.Fatal(err)
				}
			}
			keys := testKeys(t, 8)
			const workers, cycles = 16, 1000
			var (
				next    atomic.Int64
				inside  [8]atomic.Int32
				overlap atomic.Int32
				wg      sync.WaitGroup
				errs    = make(chan error, workers)
			)
			ctx := pgCtx(t, 60*time.Second)
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > cycles {
							return
						}
						ki := int(i) % len(keys)
						var (
							l   *Lock
							err error
						)
						if i%2 == 0 {
							l, err = p.LockKey(ctx, keys[ki], nil)
						} else if l, err = p.TryLockKey(ctx, keys[ki], nil); errors.Is(err, lockkit.ErrNotAcquired) {
							continue
						}
						if err != nil {
							errs <- err
							return
						}
						if inside[ki].Add(1) != 1 {
							overlap.Add(1)
						}
						inside[ki].Add(-1)
						if err := l.Release(ctx); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if n := overlap.Load(); n != 0 {
				t.Errorf("%d times two holders of one key overlapped", n)
			}
			if rows := pgLocks(t, admin, keys...); len(rows) != 0 {
				t.Errorf("after 1000 cycles pg_locks still shows advisory locks on the test's keys: %+v", rows)
			}
			if db != nil {
				if s := db.Stats(); s.InUse != 0 || s.OpenConnections > 4 {
					t.Errorf("pool after the cycles: %d in use, %d open, want 0 in use and at most 4", s.InUse, s.OpenConnections)
				}
			}
		})
	}
}

// PITFALLS 1, sequentially: after every single cycle pg_locks shows nothing
// on the key — the unlock ran on the session that held the lock.
func TestPostgresUnlockOnSameSession(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	p, db := newPG(t, 4, nil)
	key := testKeys(t, 1)[0]
	// Fill the pool with idle sessions, so that a release that ran on
	// another session would be likely to show.
	var held []*Lock
	for i := range 3 {
		l, err := p.TryLockKey(pgCtx(t, 10*time.Second), testKeys(t, 4)[i+1], nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	for _, l := range held {
		mustRelease(t, l)
	}
	for i := range 40 {
		l, err := p.LockKey(pgCtx(t, 10*time.Second), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		rows := pgLocks(t, admin, key)
		if len(rows) != 1 || rows[0].pid != l.PID() || !rows[0].granted {
			t.Fatalf("cycle %d: pg_locks = %+v, want one granted row for pid %d", i, rows, l.PID())
		}
		mustRelease(t, l)
		if rows := pgLocks(t, admin, key); len(rows) != 0 {
			t.Fatalf("cycle %d: after Release pg_locks = %+v", i, rows)
		}
	}
	if s := db.Stats(); s.InUse != 0 {
		t.Errorf("%d connections still in use", s.InUse)
	}
}

// PITFALLS 2: a failed unlock must not return the session to the pool with
// the lock held. The session is put into an aborted transaction behind
// lockkit's back, so that the unlock statement fails while the server still
// holds the lock; Release must report the loss and destroy the session, and
// another session then takes the key.
func TestPostgresFailedUnlockDiscards(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	for _, flavour := range []string{"sql", "pgxpool"} {
		t.Run(flavour, func(t *testing.T) {
			var p *Locker
			var db *sql.DB
			if flavour == "sql" {
				p, db = newPG(t, 2, nil)
			} else {
				p = newPGPool(t, nil)
			}
			key := testKeys(t, 1)[0]
			l, err := p.LockKey(pgCtx(t, 10*time.Second), key, nil)
			if err != nil {
				t.Fatal(err)
			}
			pid := l.PID()
			if err := l.w.stop(); err != nil {
				t.Fatal(err)
			}
			err = l.pc.with(func(c *pgx.Conn) error {
				if _, err := c.Exec(context.Background(), "BEGIN"); err != nil {
					return err
				}
				_, err := c.Exec(context.Background(), "SELECT 1/0")
				if err == nil {
					return errors.New("1/0 succeeded")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if rows := pgLocks(t, admin, key); len(rows) != 1 || rows[0].pid != pid {
				t.Fatalf("before Release: pg_locks = %+v, want the lock held by %d", rows, pid)
			}
			err = l.Release(pgCtx(t, 10*time.Second))
			if !errors.Is(err, lockkit.ErrLost) || !strings.Contains(err.Error(), "25P02") {
				t.Fatalf("Release with a failing unlock = %v, want ErrLost with the server's 25P02", err)
			}
			if !errors.Is(l.Err(), lockkit.ErrLost) {
				t.Errorf("Err() = %v, want ErrLost", l.Err())
			}
			waitNoLocks(t, admin, key)
			other := rawSession(t, admin)
			if !rawTry(t, other, key) {
				t.Fatal("another session could not take the key after the failed unlock")
			}
			rawUnlock(t, other, key)
			if db != nil {
				if s := db.Stats(); s.InUse != 0 || s.OpenConnections != 0 {
					t.Errorf("pool: %d in use, %d open; want the session destroyed", s.InUse, s.OpenConnections)
				}
			}
		})
	}
}

// PITFALLS 2, second form: the unlock returns false (the session no longer
// holds the lock, because someone unlocked it on the session behind
// lockkit's back). Release must say so, not report success.
func TestPostgresUnlockFalseReported(t *testing.T) {
	t.Parallel()
	p, db := newPG(t, 2, nil)
	key := testKeys(t, 1)[0]
	l, err := p.LockKey(pgCtx(t, 10*time.Second), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.w.stop(); err != nil {
		t.Fatal(err)
	}
	st := single(fnUnlock, Exclusive, key)
	if err := l.pc.with(func(c *pgx.Conn) error {
		_, err := c.Exec(context.Background(), st.sql, st.args...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	err = l.Release(pgCtx(t, 10*time.Second))
	if !errors.Is(err, lockkit.ErrLost) || !strings.Contains(err.Error(), "not held") {
		t.Fatalf("Release after the lock was unlocked behind its back = %v, want ErrLost saying it was not held", err)
	}
	if s := db.Stats(); s.OpenConnections != 0 {
		t.Errorf("%d connections open; the session should have been destroyed", s.OpenConnections)
	}
}

// PITFALLS 3: stacking. The server grants a lock again to a session that
// holds it, so that one unlock does not free it. lockkit never stacks: two
// handles never share a session, and a key listed twice is taken once.
func TestPostgresStacking(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	p, _ := newPG(t, 4, nil)
	key := testKeys(t, 1)[0]

	t.Run("server stacks", func(t *testing.T) {
		// What lockkit guards against, shown on a raw session: lock ×2,
		// unlock ×1, and another session still cannot take the key.
		raw, other := rawSession(t, admin), rawSession(t, admin)
		if !rawTry(t, raw, key) || !rawTry(t, raw, key) {
			t.Fatal("raw session could not take the key twice")
		}
		if !rawUnlock(t, raw, key) {
			t.Fatal("first unlock returned false")
		}
		if rawTry(t, other, key) {
			t.Fatal("the key was free after one unlock of two locks; the server did not stack")
		}
		if !rawUnlock(t, raw, key) || rawUnlock(t, raw, key) {
			t.Fatal("second unlock should succeed and a third fail")
		}
	})

	t.Run("two handles, two sessions", func(t *testing.T) {
		a, err := p.LockKey(pgCtx(t, 10*time.Second), key, &Options{Mode: Shared})
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.LockKey(pgCtx(t, 10*time.Second), key, &Options{Mode: Shared})
		if err != nil {
			t.Fatal(err)
		}
		if a.PID() == b.PID() {
			t.Fatalf("two handles share session %d", a.PID())
		}
		rows := pgLocks(t, admin, key)
		if len(rows) != 2 || rows[0].pid == rows[1].pid {
			t.Fatalf("pg_locks = %+v, want two sessions each holding the key once", rows)
		}
		if _, err := p.TryLockKey(pgCtx(t, 10*time.Second), key, nil); !errors.Is(err, lockkit.ErrNotAcquired) {
			t.Fatalf("exclusive try while two shared holders = %v", err)
		}
		mustRelease(t, a)
		if _, err := p.TryLockKey(pgCtx(t, 10*time.Second), key, nil); !errors.Is(err, lockkit.ErrNotAcquired) {
			t.Fatalf("exclusive try while one shared holder remains = %v", err)
		}
		mustRelease(t, b)
	})

	t.Run("key listed twice is taken once", func(t *testing.T) {
		for _, try := range []bool{false, true} {
			acq := p.LockKeys
			if try {
				acq = p.TryLockKeys
			}
			l, err := acq(pgCtx(t, 10*time.Second), []keyhash.Key{key, key, key}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := l.Keys(); len(got) != 1 {
				t.Errorf("Keys() = %v, want the key once", got)
			}
			// Stacked, pg_locks would still show one row; the proof is
			// that one Release frees the key.
			mustRelease(t, l)
			other := rawSession(t, admin)
			if !rawTry(t, other, key) {
				t.Fatalf("try=%v: key still held after one Release: it was stacked", try)
			}
			rawUnlock(t, other, key)
		}
	})
	waitNoLocks(t, admin, key)
}

// PITFALLS 4: session death. The holder's backend is terminated: Done
// closes within the documented bound, Err says why, the session is gone
// from the pool, and a blocked waiter acquires.
func TestPostgresTerminatedHolder(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	p, db := newPG(t, 4, nil)
	key := testKeys(t, 1)[0]
	var lat []time.Duration
	for range 5 {
		l, err := p.LockKey(pgCtx(t, 10*time.Second), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *Lock, 1)
		go func() {
			w, err := p.LockKey(pgCtx(t, 20*time.Second), key, nil)
			if err != nil {
				t.Error(err)
			}
			got <- w
		}()
		waitInPgLocks(t, admin, key)
		doneAt := make(chan time.Time, 1)
		go func() {
			select {
			case <-l.Done():
				doneAt <- time.Now()
			case <-time.After(10 * time.Second):
				close(doneAt)
			}
		}()
		start := time.Now()
		if pid := terminateHolder(t, admin, key, false); pid != l.PID() {
			t.Fatalf("terminated %d, lock PID %d", pid, l.PID())
		}
		at, ok := <-doneAt
		if !ok || at.Sub(start) > pgLossBound {
			t.Fatalf("Done not closed within %v of pg_terminate_backend", pgLossBound)
		}
		lat = append(lat, at.Sub(start))
		if err := l.Err(); !errors.Is(err, lockkit.ErrLost) || !strings.Contains(err.Error(), "57P01") {
			t.Errorf("Err() = %v, want ErrLost with the server's 57P01", err)
		}
		w := <-got
		if w == nil {
			t.FailNow()
		}
		if err := l.Release(pgCtx(t, 10*time.Second)); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("Release of the lost lock = %v, want ErrLost", err)
		}
		if err := l.Release(pgCtx(t, 10*time.Second)); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("second Release of the lost lock = %v, want ErrLost", err)
		}
		mustRelease(t, w)
	}
	slices.Sort(lat)
	t.Logf("loss detection after pg_terminate_backend: min %v, median %v, max %v", lat[0], lat[len(lat)/2], lat[len(lat)-1])
	if s := db.Stats(); s.InUse != 0 {
		t.Errorf("%d connections in use", s.InUse)
	}
	waitNoLocks(t, admin, key)
}

// A NotificationResponse on the watched session (someone LISTENs on it) is
// not a loss.
func TestPostgresNotificationIsNotLoss(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	p := newPGPool(t, nil)
	key := testKeys(t, 1)[0]
	l, err := p.LockKey(pgCtx(t, 10*time.Second), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	// LISTEN on the held session, behind lockkit's back.
	if err := l.w.stop(); err != nil {
		t.Fatal(err)
	}
	channel := "lockkit_test_" + strings.ReplaceAll(fmt.Sprint(time.Now().UnixNano()), "-", "")
	if err := l.pc.with(func(c *pgx.Conn) error {
		_, err := c.Exec(context.Background(), "LISTEN "+channel)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	l.w.init(l.pc, l.w.nc, l.onLoss)
	l.w.begin()
	for range 3 {
		if _, err := admin.ExecContext(pgCtx(t, 5*time.Second), "SELECT pg_notify($1, 'x')", channel); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if err := l.Err(); err != nil {
		t.Fatalf("a notification ended the lock: %v", err)
	}
	mustRelease(t, l)
}

// PITFALLS 5 and 23: an acquire whose context ends while the server waits.
// The server stops waiting (cancel request), the session is destroyed, and
// a grant that raced with the cancellation is not leaked.
func TestPostgresCancelledWaitNotLeaked(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	p, db := newPG(t, 4, nil)
	key := testKeys(t, 1)[0]
	holder, err := p.LockKey(pgCtx(t, 10*time.Second), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		l, err := p.LockKey(ctx, key, nil)
		if err == nil {
			_ = l.Release(context.Background())
		}
		done <- err
	}()
	waitInPgLocks(t, admin, key)
	cancel()
	err = <-done
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait = %v, want ErrNotAcquired and context.Canceled", err)
	}
	// The server stopped waiting at once: no waiter left in pg_locks,
	// although the holder still holds.
	deadline := time.Now().Add(2 * time.Second)
	for {
		rows := pgLocks(t, admin, key)
		if len(rows) == 1 && rows[0].pid == holder.PID() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg_locks after the cancelled wait = %+v, want only the holder %d", rows, holder.PID())
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustRelease(t, holder)
	other := rawSession(t, admin)
	if !rawTry(t, other, key) {
		t.Fatal("the key was taken by the cancelled waiter after the holder released it")
	}
	rawUnlock(t, other, key)

	// Races: cancel the waiter at the moment the holder releases, many
	// times. Whoever wins, nothing stays held.
	for i := range 30 {
		h, err := p.LockKey(pgCtx(t, 10*time.Second), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan *Lock, 1)
		go func() {
			l, _ := p.LockKey(ctx, key, nil)
			res <- l
		}()
		waitInPgLocks(t, admin, key)
		go cancel()
		if i%2 == 0 {
			time.Sleep(time.Duration(i) * 20 * time.Microsecond)
		}
		mustRelease(t, h)
		if l := <-res; l != nil {
			mustRelease(t, l)
		}
		cancel()
		waitNoLocks(t, admin, key)
	}
	if s := db.Stats(); s.InUse != 0 {
		t.Errorf("%d connections in use", s.InUse)
	}
}

// PITFALLS 6 and 22: every held lock pins a connection. With a pool of 2 and
// two locks held, other work on the pool waits for its own deadline instead
// of hanging, and so does a third acquire.
func TestPostgresPoolExhaustion(t *testing.T) {
	t.Parallel()
	p, db := newPG(t, 2, nil)
	keys := testKeys(t, 3)
	a, err := p.LockKey(pgCtx(t, 10*time.Second), keys[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.LockKey(pgCtx(t, 10*time.Second), keys[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(new(int)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("query on an exhausted pool = %v, want DeadlineExceeded", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	_, err = p.LockKey(ctx2, keys[2], nil)
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire on an exhausted pool = %v, want ErrNotAcquired and DeadlineExceeded", err)
	}
	mustRelease(t, a)
	mustRelease(t, b)
}

// PITFALLS 8: the two key spaces never collide, and pg_locks shows each key
// the way lockTag says.
func TestPostgresKeySpaces(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	p := newPGPoolN(t, 8, nil) // 4 held locks, then a fifth session
	base := keyhash.Name(integration.Name(t)).Int64()
	hi, lo := int32(base>>32), int32(base)
	bigint := keyhash.Int64(int64(hi)<<32 | int64(uint32(lo)))
	pair := keyhash.Pair(hi, lo)
	neg := keyhash.Int64(-(base | 1))
	negPair := keyhash.Pair(-hi-1, -lo-1)
	if bigint.Int64() != base {
		t.Fatal("test keys built wrong")
	}
	keys := []keyhash.Key{bigint, pair, neg, negPair}
	var held []*Lock
	for _, k := range keys {
		// Each key is free although a key with the same 64 bits in the
		// other space is held.
		l, err := p.TryLockKey(pgCtx(t, 10*time.Second), k, nil)
		if err != nil {
			t.Fatalf("TryLockKey(%v) = %v", k, err)
		}
		held = append(held, l)
	}
	rows := pgLocks(t, admin, keys...)
	if len(rows) != len(keys) {
		t.Fatalf("pg_locks shows %d rows for %d keys: %+v", len(rows), len(keys), rows)
	}
	for i, k := range keys {
		found := false
		for _, r := range rows {
			if keyhash.Compare(r.key, k) == 0 && r.pid == held[i].PID() && r.granted && r.mode == "ExclusiveLock" {
				found = true
			}
		}
		if !found {
			t.Errorf("key %v held by %d not found in pg_locks %+v", k, held[i].PID(), rows)
		}
	}
	// The mapping, checked against the server's own view of one session
	// holding all four in one statement.
	l, err := p.TryLockKeys(pgCtx(t, 10*time.Second), keys, nil)
	if !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("TryLockKeys over held keys = %v, %v", l, err)
	}
	for _, l := range held {
		mustRelease(t, l)
	}
	l, err = p.TryLockKeys(pgCtx(t, 10*time.Second), keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	var srv []advisoryRow
	for _, r := range pgLocks(t, admin, keys...) {
		if r.pid == l.PID() {
			srv = append(srv, r)
		}
	}
	if len(srv) != 4 {
		t.Fatalf("one session holding 4 keys shows %d rows", len(srv))
	}
	mustRelease(t, l)
	waitNoLocks(t, admin, keys...)
}

func TestPostgresLockTagRoundTrip(t *testing.T) {
	for _, k := range []keyhash.Key{
		keyhash.Int64(0), keyhash.Int64(1), keyhash.Int64(-1), keyhash.Int64(1<<32 | 2),
		keyhash.Int64(-1 << 63), keyhash.Int64(1<<63 - 1),
		keyhash.Pair(0, 0), keyhash.Pair(1, 2), keyhash.Pair(-1, -2), keyhash.Pair(-1<<31, 1<<31-1),
	} {
		c, o, s := lockTag(k)
		back, ok := keyFromTag(c, o, s)
		if !ok || keyhash.Compare(back, k) != 0 {
			t.Errorf("lockTag(%v) = %d,%d,%d -> %v", k, c, o, s, back)
		}
	}
	c, o, s := lockTag(keyhash.Int64(1<<32 | 2))
	if c != 1 || o != 2 || s != 1 {
		t.Errorf("bigint 1<<32|2 -> %d,%d,%d, want 1,2,1", c, o, s)
	}
	c, o, s = lockTag(keyhash.Pair(1, 2))
	if c != 1 || o != 2 || s != 2 {
		t.Errorf("pair (1,2) -> %d,%d,%d, want 1,2,2", c, o, s)
	}
}

// Several keys: sorted, one statement, all or nothing for a try.
func TestPostgresSeveralKeys(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	p := newPGPool(t, nil)
	ks := testKeys(t, 5)
	pairs := []keyhash.Key{keyhash.Pair(int32(ks[0].Int64()), 1), keyhash.Pair(int32(ks[1].Int64()), -1)}
	all := append(slices.Clone(ks), pairs...)
	// Unsorted on purpose.
	input := []keyhash.Key{all[6], all[2], all[0], all[5], all[4], all[3], all[1]}

	blocker, err := p.TryLockKey(pgCtx(t, 10*time.Second), all[5], nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.TryLockKeys(pgCtx(t, 10*time.Second), input, nil)
	he := wantHeld(t, err, "TryLockKeys with one key held elsewhere")
	if he.Holder == nil || he.Holder.PID != blocker.PID() {
		t.Errorf("Holder = %v, want pid %d", he.Holder, blocker.PID())
	}
	// All or nothing: only the blocker holds anything.
	for _, r := range pgLocks(t, admin, all...) {
		if r.pid != blocker.PID() {
			t.Errorf("a key granted to the failed try is still held: %+v", r)
		}
	}
	// A blocking acquire of all keys waits for the blocker.
	got := make(chan *Lock, 1)
	go func() {
		l, err := p.LockKeys(pgCtx(t, 20*time.Second), input, nil)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	waitInPgLocks(t, admin, all[5])
	mustRelease(t, blocker)
	l := <-got
	if l == nil {
		t.FailNow()
	}
	sorted := sortKeys(all)
	if !slices.EqualFunc(l.Keys(), sorted, func(a, b keyhash.Key) bool { return keyhash.Compare(a, b) == 0 }) {
		t.Errorf("Keys() = %v, want %v", l.Keys(), sorted)
	}
	if rows := pgLocks(t, admin, all...); len(rows) != len(all) {
		t.Errorf("pg_locks shows %d of %d keys held", len(rows), len(all))
	}
	if want := keysName(sorted); l.Name() != want {
		t.Errorf("Name() = %q, want %q", l.Name(), want)
	}
	mustRelease(t, l)
	waitNoLocks(t, admin, all...)

	// Shared, several keys.
	s1, err := p.TryLockKeys(pgCtx(t, 10*time.Second), input, &Options{Mode: Shared})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := p.TryLockKeys(pgCtx(t, 10*time.Second), input, &Options{Mode: Shared})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.TryLockKeys(pgCtx(t, 10*time.Second), all[:1], nil); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("exclusive try over shared holders = %v", err)
	}
	mustRelease(t, s1)
	mustRelease(t, s2)
	waitNoLocks(t, admin, all...)
}

// Holder info on conflict: pid, application name, client address, user and
// since when.
func TestPostgresHolderInfo(t *testing.T) {
	t.Parallel()
	dsn := integration.PostgresDSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	holderDB, err := sql.Open("pgx", dsn+sep+"application_name=lockkit-holder-test")
	if err != nil {
		t.Fatal(err)
	}
	defer holderDB.Close()
	hp, err := New(holderDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPGPool(t, nil)
	name := integration.Name(t)
	before := time.Now()
	l, err := hp.Acquire(pgCtx(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	_, err = p.TryAcquire(pgCtx(t, 10*time.Second), name)
	he := wantHeld(t, err, "TryAcquire of a held name")
	h := he.Holder
	if h == nil {
		t.Fatal("no Holder in the conflict error")
	}
	if he.Name != name || h.PID != l.(*Lock).PID() || h.App != "lockkit-holder-test" || h.Owner != "postgres" {
		t.Errorf("HeldError = %+v, Holder = %+v; want name %q, pid %d, app lockkit-holder-test, owner postgres", he, h, name, l.(*Lock).PID())
	}
	// The client's address as the server sees it: the loopback for a
	// server on this machine, the bridge's gateway through a container's
	// published port, "" over a Unix socket.
	var seen string
	if err := holderDB.QueryRowContext(pgCtx(t, 10*time.Second), "SELECT coalesce(host(inet_client_addr()), '')").Scan(&seen); err != nil {
		t.Fatal(err)
	}
	if h.Host != seen {
		t.Errorf("Holder.Host = %q, want %q, the address the server sees the holder's client at", h.Host, seen)
	}
	// Since is when the holder's lock statement ended (server clock).
	if h.Since.Before(before.Add(-time.Second)) || h.Since.After(after.Add(time.Second)) {
		t.Errorf("Holder.Since = %v, want within [%v, %v]", h.Since, before, after)
	}
	t.Logf("conflict error: %v", err)
	mustRelease(t, l)
}

// Bad input: a clear error matching ErrInvalid before any I/O.
func TestPostgresBadInput(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, nil); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("New(nil) = %v", err)
	}
	if _, err := NewPool(nil, nil); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("NewPool(nil) = %v", err)
	}
	mysqlDB, err := sql.Open("mysql", "root@tcp(127.0.0.1:1)/none")
	if err != nil {
		t.Fatal(err)
	}
	defer mysqlDB.Close()
	if _, err := New(mysqlDB, nil); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("New(mysql db) = %v", err)
	}
	// A pool that cannot connect: bad input must fail before any I/O, so
	// the dead address is never dialled.
	dead, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	if _, err := New(dead, &Config{Namespace: "a\x00b"}); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("namespace with NUL = %v", err)
	}
	if _, err := New(dead, &Config{ReleaseTimeout: -1}); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("negative ReleaseTimeout = %v", err)
	}
	p, err := New(dead, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := pgCtx(t, 5*time.Second)
	for what, err := range map[string]error{
		"Acquire empty":       second(p.Acquire(ctx, "")),
		"TryAcquire empty":    second(p.TryAcquire(ctx, "")),
		"TryAcquire bad utf8": second(p.TryAcquire(ctx, "\xff")),
		"long name":           second(p.Acquire(ctx, strings.Repeat("x", keyhash.MaxNameLen+1))),
		"no keys":             second(p.LockKeys(ctx, nil, nil)),
		"no keys try":         second(p.TryLockKeys(ctx, []keyhash.Key{}, nil)),
		"bad mode":            second(p.LockKey(ctx, keyhash.Int64(1), &Options{Mode: 9})),
	} {
		if !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("%s = %v, want ErrInvalid", what, err)
		}
	}
	if s := dead.Stats(); s.OpenConnections != 0 {
		t.Errorf("bad input opened %d connections", s.OpenConnections)
	}
	// A cancelled context: not acquired, before any I/O.
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	for what, err := range map[string]error{
		"Acquire":     second(p.Acquire(cctx, "x")),
		"TryLockKeys": second(p.TryLockKeys(cctx, []keyhash.Key{keyhash.Int64(1)}, nil)),
	} {
		if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled ctx = %v", what, err)
		}
	}
	if s := dead.Stats(); s.OpenConnections != 0 {
		t.Errorf("a cancelled context opened %d connections", s.OpenConnections)
	}
}

func second[T any](_ T, err error) error { return err }

// Release twice, release after loss, release with a cancelled context.
func TestPostgresReleaseStates(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	p, db := newPG(t, 2, nil)
	key := testKeys(t, 1)[0]
	l, err := p.LockKey(pgCtx(t, 10*time.Second), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A cancelled context still releases: the unlock runs on a context
	// detached from its cancellation.
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Release(cctx); err != nil {
		t.Fatalf("Release with a cancelled ctx = %v", err)
	}
	if err := l.Release(context.Background()); !errors.Is(err, lockkit.ErrReleased) {
		t.Errorf("second Release = %v, want ErrReleased", err)
	}
	if rows := pgLocks(t, admin, key); len(rows) != 0 {
		t.Errorf("pg_locks after Release = %+v", rows)
	}
	if s := db.Stats(); s.OpenConnections != 1 || s.InUse != 0 {
		t.Errorf("pool after a clean release: %d open, %d in use; want the session back in the pool", s.OpenConnections, s.InUse)
	}
	// Marked lost from outside: Release discards the session.
	l, err = p.LockKey(pgCtx(t, 10*time.Second), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.state.MarkLost(errors.New("test"))
	if err := l.Release(context.Background()); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release of a lost lock = %v, want ErrLost", err)
	}
	waitNoLocks(t, admin, key)
	if s := db.Stats(); s.InUse != 0 {
		t.Errorf("%d in use", s.InUse)
	}
}

func TestKeysName(t *testing.T) {
	ks := make([]keyhash.Key, 20)
	for i := range ks {
		ks[i] = keyhash.Int64(int64(i + 1))
	}
	for _, c := range []struct {
		keys []keyhash.Key
		want string
	}{
		{ks[:1], "1"},
		{[]keyhash.Key{keyhash.Int64(42), keyhash.Pair(1, 2)}, "42+(1,2)"},
		{ks[:8], "1+2+3+4+5+6+7+8"},
		{ks, "1+2+3+4+5+6+7+…+20 (20 keys)"},
	} {
		if got := keysName(c.keys); got != c.want {
			t.Errorf("keysName = %q, want %q", got, c.want)
		}
	}
}
