package reliability

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/redislock"
)

// The fault matrix on private servers: faults that stop, kill or pause the
// server itself. These tests are not parallel: they share the binary's
// private servers (see privateServer) and leave them running.

// TestPitfall04_ServerRestart: the server is restarted — cleanly (it ends
// every session) or by SIGKILL and start (a crash: the kernel resets every
// connection). The holder is told within the bound; the same pool, whose
// idle connections went stale, then acquires again; nothing is left.
func TestPitfall04_ServerRestart(t *testing.T) {
	for _, kind := range []string{kindPostgres, kindMySQL} {
		for _, how := range []string{"clean", "crash"} {
			t.Run(kind+"/"+how, func(t *testing.T) {
				s, srv := privateSpec(t, kind)
				tune(&s)
				b := openT(t, s)
				n := name(t)
				l := mustAcquire(t, b, n)
				// Warm the pool with idle connections that the restart
				// makes stale.
				for range 3 {
					if _, err := b.db.ExecContext(ctxT(t, 5*time.Second), "SELECT 1"); err != nil {
						t.Fatal(err)
					}
				}

				faultAt := time.Now()
				var err error
				if how == "clean" {
					err = srv.Restart()
				} else if err = srv.Kill(); err == nil {
					err = srv.Start()
				}
				if err != nil {
					t.Fatal(err)
				}
				restart := time.Since(faultAt)
				var lastErr error
				took := waitDone(t, l, faultAt, restart+s.lossBound())
				t.Logf("%s %s restart took %v; loss reported after %v", kind, how, restart.Round(time.Millisecond), took.Round(time.Millisecond))
				releaseLost(t, l)

				// The pool's idle connections are stale now. An acquire
				// that runs into one fails with the connection error —
				// database/sql retries only when the driver knows nothing
				// was sent — and destroys it; it must never report the
				// lock as held elsewhere, and a few attempts (one per
				// stale connection at most) must get it.
				var l2 lockkit.Lock
				for attempt := 1; ; attempt++ {
					l2, err = b.locker.Acquire(ctxT(t, 10*time.Second), n)
					if err == nil {
						if attempt > 1 {
							t.Logf("acquired at attempt %d; the stale connections failed with: %v", attempt, lastErr)
						}
						break
					}
					lastErr = err
					if errors.Is(err, lockkit.ErrNotAcquired) {
						t.Fatalf("Acquire after the restart = %v: the lock is not held by anyone", err)
					}
					if attempt > 4 {
						t.Fatalf("Acquire on the same pool still failing after %d attempts: %v", attempt, err)
					}
				}
				if own, err := b.ownedBy(ctxT(t, 5*time.Second), n, l2); err != nil || !own {
					t.Errorf("the server does not show the new lock held by its session (%v)", err)
				}
				releaseOK(t, l2)
				b.eventuallyFree(t, n, time.Second)
			})
		}
	}
}

// TestPitfall04_ServerRestartKeepsLease: the lock table's leases live in
// the database, not in a session. A server restart shorter than the lease —
// clean, or a crash of a server whose commits reached the kernel — keeps
// the lease: renewals fail while the server is down and succeed again
// after, the lock is never reported lost, nobody else can take it, and its
// release works.
func TestPitfall04_ServerRestartKeepsLease(t *testing.T) {
	for _, kind := range []string{kindRowPG, kindRowMySQL} {
		for _, how := range []string{"clean", "crash"} {
			t.Run(kind+"/"+how, func(t *testing.T) {
				s, srv := privateSpec(t, kind)
				s.TTL, s.Renew = 10*time.Second, 100*time.Millisecond
				holder, other := openT(t, s), openT(t, s)
				n := name(t)
				l := mustAcquire(t, holder, n)
				var err error
				if how == "clean" {
					err = srv.Restart()
				} else if err = srv.Kill(); err == nil {
					err = srv.Start()
				}
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(3 * s.Renew) // renewals run against the restarted server
				stillHeld(t, l)
				// The other client's pool has stale connections too; a
				// try that fails on one must not be a grant.
				for attempt := 1; ; attempt++ {
					l2, err := other.locker.TryAcquire(ctxT(t, 5*time.Second), n)
					if err == nil {
						_ = l2.Release(ctxT(t, 5*time.Second))
						t.Fatal("a second client took a lease that survived the restart: two holders")
					}
					if errors.Is(err, lockkit.ErrNotAcquired) {
						break
					}
					if attempt > 4 {
						t.Fatalf("TryAcquire after the restart: %v", err)
					}
				}
				if own, err := holder.ownedBy(ctxT(t, 5*time.Second), n, l); err != nil || !own {
					t.Fatalf("the lease is not the holder's after the restart (%v)", err)
				}
				stillHeld(t, l)
				releaseOK(t, l)
				l3 := mustAcquire(t, other, n)
				if l3.Token() <= l.Token() {
					t.Errorf("token after the restart %d not above %d", l3.Token(), l.Token())
				}
				releaseOK(t, l3)
			})
		}
	}
}

// TestPitfall22_ServerPaused: the server is frozen (SIGSTOP) for longer
// than a lease or a probe timeout, with a holder and a waiter.
//   - PostgreSQL: the holder keeps reporting held — the frozen server still
//     holds its lock and grants it to nobody — and a waiter's deadline
//     still ends its wait on time, although the server answers nothing.
//   - MySQL: the probe cannot confirm the lock within its timeout, so the
//     holder reports it lost and destroys its session; when the server
//     resumes, the waiter acquires — after the holder was told.
//   - Redis and the lock table: the lease cannot be renewed; the holder
//     reports it lost when the lease may have run out on its own clock,
//     which is before the server lets it expire, so the waiter acquires
//     after the holder was told, with a larger fencing token.
func TestPitfall22_ServerPaused(t *testing.T) {
	const pause = 1500 * time.Millisecond
	t.Run("postgres", func(t *testing.T) {
		s, srv := privateSpec(t, kindPostgres)
		holder, other := openT(t, s), openT(t, s)
		n := name(t)
		l := mustAcquire(t, holder, n)
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Resume() })
		pausedAt := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := other.locker.Acquire(ctx, n)
		cancel()
		if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire against a frozen server = %v, want ErrNotAcquired and DeadlineExceeded", err)
		}
		if took := time.Since(pausedAt); took > 2*time.Second {
			t.Errorf("Acquire with a 500ms deadline against a frozen server returned after %v", took)
		}
		time.Sleep(time.Until(pausedAt.Add(pause)))
		stillHeld(t, l)
		if err := srv.Resume(); err != nil {
			t.Fatal(err)
		}
		stillHeld(t, l)
		if own, err := holder.ownedBy(ctxT(t, 5*time.Second), n, l); err != nil || !own {
			t.Fatalf("after the pause the server does not show the holder's lock (%v)", err)
		}
		releaseOK(t, l)
		l2 := mustAcquire(t, other, n)
		releaseOK(t, l2)
		holder.eventuallyFree(t, n, time.Second)
	})

	for _, kind := range []string{kindMySQL, kindRedis, kindRowPG, kindRowMySQL} {
		t.Run(kind, func(t *testing.T) {
			s, srv := privateSpec(t, kind)
			tune(&s)
			if kind == kindRedis || isRow(kind) {
				s.TTL, s.Renew = 600*time.Millisecond, 150*time.Millisecond
			}
			holder, waiter := openT(t, s), openT(t, s)
			n := name(t)
			holder.forget(t, n)
			l := mustAcquire(t, holder, n)
			w := goAcquire(t, waiter, n, 20*time.Second)
			time.Sleep(100 * time.Millisecond)
			notYet(t, w, "before the pause")

			if err := srv.Pause(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Resume() }) // before the waiter's cleanup, on failure
			pausedAt := time.Now()
			bound := s.lossBound()
			if kind == kindRedis || isRow(kind) {
				bound = s.ttl() + 500*time.Millisecond // the lease ran out on the holder's clock (+ scheduling slack)
			}
			took := waitDone(t, l, pausedAt, bound)
			doneAt := time.Now()
			notYet(t, w, "while the server was frozen")
			time.Sleep(time.Until(pausedAt.Add(pause)))
			if err := srv.Resume(); err != nil {
				t.Fatal(err)
			}
			r := got(t, w, s.handoffBound())
			if err := r.l.Err(); err != nil && (isRow(kind) || kind == kindRedis) {
				// The waiter's acquire statement was sent before or during
				// the pause and stuck in it longer than the TTL: the lease
				// it got had already run out on its own clock (measured
				// from before the statement was sent) when it returned.
				// Conservative, so safe; it takes the lock again.
				t.Logf("the waiter's lease ran out before its acquire returned (%v); acquiring again", err)
				_ = r.l.Release(ctxT(t, 5*time.Second))
				r.l = mustAcquire(t, waiter, n)
			}
			if !r.at.After(doneAt) {
				t.Errorf("waiter acquired at %v, before the holder was told at %v: two holders", r.at, doneAt)
			}
			t.Logf("%s: holder told %v into the pause (%v); waiter acquired %v after resume",
				kind, took.Round(time.Millisecond), l.Err(), r.at.Sub(pausedAt.Add(pause)).Round(time.Millisecond))
			if kind == kindRedis && !errors.Is(l.Err(), redislock.ErrLeaseExpired) {
				t.Errorf("Err() = %v, want ErrLeaseExpired", l.Err())
			}
			if s.tokens() {
				if r.l.Token() <= l.Token() {
					t.Errorf("waiter's token %d not above the lost holder's %d", r.l.Token(), l.Token())
				}
			}
			releaseLost(t, l)
			if err := r.l.Release(ctxT(t, 10*time.Second)); err != nil {
				// A lease's local end counts from before its acquire
				// statement was sent; one sent during the pause may have
				// had little of its TTL left when it returned.
				if !(isRow(kind) || kind == kindRedis) || !errors.Is(err, lockkit.ErrLost) {
					t.Errorf("the waiter's Release: %v", err)
				} else {
					t.Logf("the waiter's lease, sent during the pause, ran out soon after it returned: %v", err)
				}
			}
			waiter.eventuallyFree(t, n, s.ttl()+time.Second)
		})
	}
}

// TestPitfall18_RedisRestartNoPersistence: redis-server without persistence
// is killed and started again while a lock is held: the key is gone, so a
// second client acquires at once — possibly before the holder's next
// renewal tells it (within one renew interval). That window is why the
// resource must check fencing tokens: the new holder's token is larger, and
// the resource refuses the old holder's late write.
func TestPitfall18_RedisRestartNoPersistence(t *testing.T) {
	s, srv := privateSpec(t, kindRedis)
	tune(&s)
	s.TTL, s.Renew = 10*time.Second, 100*time.Millisecond
	holder, other := openT(t, s), openT(t, s)
	res := t.TempDir()
	n := name(t)
	l := mustAcquire(t, holder, n)
	if err := fencedWrite(res, l.Token(), 1); err != nil {
		t.Fatal(err)
	}

	faultAt := time.Now()
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	l2, err := other.locker.TryAcquire(ctxT(t, 10*time.Second), n)
	if err != nil {
		t.Fatalf("TryAcquire after the restart = %v, want acquired: the key was lost", err)
	}
	if l2.Token() <= l.Token() {
		t.Errorf("token after the restart %d, not above the lost holder's %d", l2.Token(), l.Token())
	}
	if err := fencedWrite(res, l2.Token(), 2); err != nil {
		t.Errorf("the new holder's write: %v", err)
	}
	// The old holder may not know yet; the resource protects itself.
	if err := fencedWrite(res, l.Token(), 1); !errors.Is(err, errStale) {
		t.Errorf("the old holder's late write = %v, want it refused as stale", err)
	}
	took := waitDone(t, l, faultAt, time.Since(faultAt)+s.lossBound())
	if !errors.Is(l.Err(), redislock.ErrNotOwner) {
		t.Errorf("Err() = %v, want ErrNotOwner", l.Err())
	}
	t.Logf("old holder told %v after the kill", took.Round(time.Millisecond))
	releaseLost(t, l)
	releaseOK(t, l2)
	other.eventuallyFree(t, n, time.Second)
	st, err := readResource(res)
	if err != nil {
		t.Fatal(err)
	}
	if st.Writes != 2 || st.Rejected != 1 || st.Writer != 2 {
		t.Errorf("resource = %+v, want 2 writes, 1 refused, last by the new holder", st)
	}
}

// TestPitfall16_HolderPausedPastLease: the holder process is frozen
// (SIGSTOP) for longer than its lease. Nothing in the lock can stop it from
// believing it holds the lock the moment it thaws; a second client takes
// over with a larger fencing token once the lease ran out, and the
// resource refuses the thawed holder's write. The thawed holder then learns
// of the loss by itself.
func TestPitfall16_HolderPausedPastLease(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{kindRedis, kindRowPG, kindRowMySQL} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			holderPausedPastLease(t, kind)
		})
	}
}

func holderPausedPastLease(t *testing.T, kind string) {
	s := faultSpec(t, kind)
	s.TTL, s.Renew = 500*time.Millisecond, 100*time.Millisecond
	res := t.TempDir()
	other := openT(t, s)
	n := name(t)
	other.forget(t, n)
	c := startChild(t, "script", s, n, nil)
	held := c.next("held", 10*time.Second)
	c.do(command{Op: "write", Name: n, Path: res})
	c.next("wrote", 10*time.Second)

	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// What the frozen holder's lease has left, by the server's clock: it
	// ends no earlier than readAt+left.
	readAt := time.Now()
	left, err := other.leaseLeft(ctxT(t, 10*time.Second), n)
	if err != nil {
		t.Fatal(err)
	}
	l, err := other.locker.Acquire(ctxT(t, 10*time.Second), n)
	if err != nil {
		t.Fatal(err)
	}
	// The margin covers the servers' clock granularity only: no delay on
	// this machine can make the takeover come sooner.
	if wait := time.Since(readAt); wait < left-20*time.Millisecond {
		t.Errorf("took over %v after the frozen holder's lease had %v left: before it ran out", wait, left)
	} else {
		t.Logf("took over %v after the frozen holder's lease had %v left (TTL %v)", wait, left, s.TTL)
	}
	if l.Token() <= held.Token {
		t.Errorf("new token %d not above the frozen holder's %d", l.Token(), held.Token)
	}
	if err := fencedWrite(res, l.Token(), 2); err != nil {
		t.Fatalf("new holder's write: %v", err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Write at once, as a thawed process would.
	c.do(command{Op: "write", Name: n, Path: res})
	var sawFenced, sawLost bool
	for !(sawFenced && sawLost) {
		select {
		case e, ok := <-c.events:
			if !ok {
				t.Fatalf("helper exited: %s", c.stderr.String())
			}
			switch e.Event {
			case "fenced":
				sawFenced = true
			case "wrote":
				t.Fatalf("the resource accepted the thawed holder's write with token %d after token %d", e.Token, l.Token())
			case "lost":
				sawLost = true
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("thawed holder: fenced %v, lost %v after 5s", sawFenced, sawLost)
		}
	}
	releaseOK(t, l)
}

// TestPitfall22_HolderPaused: a frozen holder process keeps a session lock
// (PostgreSQL, MySQL, a file) for as long as it is frozen: no lease runs
// out. Waiters must therefore be bounded: a waiter's deadline ends its wait
// with ErrNotAcquired and DeadlineExceeded, and leaves nothing behind.
func TestPitfall22_HolderPaused(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{kindPostgres, kindMySQL, kindFile} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := faultSpec(t, kind)
			waiter := openT(t, s)
			n := name(t)
			c := startChild(t, "script", s, n, nil)
			c.next("held", 10*time.Second)
			if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
			_, err := waiter.locker.Acquire(ctx, n)
			cancel()
			if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Acquire while the holder is frozen = %v, want ErrNotAcquired and DeadlineExceeded", err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("a waiter with a 700ms deadline returned after %v", took)
			}
			if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			c.do(command{Op: "release", Name: n})
			if e := c.next("released", 10*time.Second); e.Err != "" {
				t.Errorf("the thawed holder's release: %s", e.Err)
			}
			l := mustAcquire(t, waiter, n)
			releaseOK(t, l)
			if kind != kindFile {
				waiter.eventuallyFree(t, n, time.Second)
			}
		})
	}
}
