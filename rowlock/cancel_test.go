package rowlock_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/rowlock"
)

// TestCancelDuringAcquireLeavesNothingHeld cancels TryAcquire at random
// moments around its statement, many times: whatever the moment, the lock
// is free afterwards (or the call returned it), never held by a lease nobody
// knows the token of until its TTL (a minute here) runs out.
func TestCancelDuringAcquireLeavesNothingHeld(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		a := e.locker(t, &rowlock.Config{TTL: time.Minute})
		b := e.locker(t, &rowlock.Config{TTL: time.Minute})
		name := e.name(t)
		took := attemptTime(t, a, name)
		cancelled := 0
		// waitFree waits until b takes and releases the lock: at once, or
		// as soon as a lease a cancelled statement took after all has
		// been given back.
		waitFree := func(i int, delay time.Duration) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for {
				lb, err := b.TryAcquire(ctxT(t, 5*time.Second), name)
				if err == nil {
					if err := lb.Release(context.Background()); err != nil {
						t.Fatal(err)
					}
					return
				}
				if !errors.Is(err, lockkit.ErrNotAcquired) {
					t.Fatal(err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d (cancel after %v): the lock is still held 5s after a cancelled TryAcquire: %v", i, delay, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		for i := range 60 {
			ctx, cancel := context.WithCancel(context.Background())
			delay := time.Duration(rand.Int64N(int64(took) + 1))
			timer := time.AfterFunc(delay, cancel)
			lk, err := a.TryAcquire(ctx, name)
			timer.Stop()
			cancel()
			var he *lockkit.HeldError
			switch {
			case err == nil:
				if err := lk.Release(context.Background()); err != nil {
					t.Fatalf("round %d: release: %v", i, err)
				}
			case errors.Is(err, lockkit.ErrNotAcquired) && errors.Is(err, context.Canceled):
				cancelled++
			case errors.As(err, &he) && he.Holder != nil && he.Holder.Owner == a.Owner():
				// The previous round's cancelled statement took the lease
				// after b's check and a is giving it back: that give-back
				// must still free the lock, below.
			default:
				t.Fatalf("round %d: TryAcquire = %v", i, err)
			}
			waitFree(i, delay)
		}
		t.Logf("%d of 60 attempts cancelled (attempt takes %v)", cancelled, took)
		if cancelled == 0 {
			t.Error("no attempt was cancelled: the test did not test anything")
		}
	})
}

// TestCloseGivesBackAbandonedLeases: Close right after a cancelled
// TryAcquire waits until a lease its statement took after all is given
// back, so the lock is free the moment Close returns, even if the caller
// closes the *sql.DB next.
func TestCloseGivesBackAbandonedLeases(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		b := e.locker(t, &rowlock.Config{TTL: time.Minute})
		name := e.name(t)
		took := attemptTime(t, e.locker(t, &rowlock.Config{TTL: time.Minute}), name)
		cancelled := 0
		for i := range 40 {
			a, err := rowlock.New(e.db, &rowlock.Config{Dialect: e.dialect, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			delay := time.Duration(rand.Int64N(int64(took) + 1))
			timer := time.AfterFunc(delay, cancel)
			lk, err := a.TryAcquire(ctx, name)
			timer.Stop()
			cancel()
			if err == nil {
				if err := lk.Release(context.Background()); err != nil {
					t.Fatalf("round %d: release: %v", i, err)
				}
			} else if errors.Is(err, context.Canceled) {
				cancelled++
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			lb, err := b.TryAcquire(ctxT(t, 5*time.Second), name)
			if err != nil {
				t.Fatalf("round %d (cancel after %v): right after Close: %v", i, delay, err)
			}
			if err := lb.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if cancelled == 0 {
			t.Error("no attempt was cancelled: the test did not test anything")
		}
	})
}

// attemptTime is how long a warm try + release of name takes here: the
// fastest of five. Cancelling within it lands around the statement.
func attemptTime(t *testing.T, l *rowlock.Locker, name string) time.Duration {
	t.Helper()
	took := time.Hour
	for range 5 {
		start := time.Now()
		lk := mustTry(t, l, name, nil)
		if err := lk.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		took = min(took, time.Since(start))
	}
	return took
}
