package rowlock_test

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/rowlock"
)

// TestElection runs the election suite on both dialects. Waiters on
// PostgreSQL are woken by the release's notification; on MySQL they poll
// within MaxPoll. ForceRelease is the fault: the deposed leader learns of it
// at its next renewal, within RenewInterval.
func TestElection(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			e := setup(t, d)
			admin := e.locker(t, nil)
			locktest.RunElection(t, locktest.ElectionConfig{
				Config: locktest.Config{
					NewLocker: func(t *testing.T) lockkit.Locker {
						return e.locker(t, &rowlock.Config{TTL: 3 * time.Second, RenewInterval: 100 * time.Millisecond})
					},
					KillHolder: func(t *testing.T, l lockkit.Lock) {
						ok, err := admin.ForceRelease(ctxT(t, 10*time.Second), l.Name())
						if err != nil || !ok {
							t.Fatalf("ForceRelease = %v, %v; want true", ok, err)
						}
					},
					LossBound:   2 * time.Second,
					Leftovers:   func(t *testing.T, names []string) int { return e.live(t, names) },
					LeakOptions: leakOptions,
				},
				// A waiter is woken by the notification (PostgreSQL) or
				// polls within MaxPoll (100ms, MySQL).
				FailoverBound: time.Second,
				// A crashed leader's lease runs out within its TTL; a
				// waiter tries again when the lease it saw ends.
				Crash: e.crash(),
			})
		})
	}
}

// crash is the election and semaphore suites' crash hook: a Locker on a
// pool of its own with a 1 s lease, whose crash closes the pool (no
// release, no renewals). The lease runs out within its TTL, and a waiter
// tries again when the lease it saw ends.
func (e *env) crash() locktest.Crash {
	return locktest.Crash{
		NewCrashingLocker: func(t *testing.T) (lockkit.Locker, func()) {
			db := e.open(t, nil)
			l := e.lockerOn(t, db, &rowlock.Config{TTL: time.Second})
			return l, func() { _ = db.Close() }
		},
		CrashFailoverBound: 2 * time.Second, // TTL, plus slack for a loaded machine
	}
}
