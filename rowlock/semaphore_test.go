package rowlock_test

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/rowlock"
)

// TestSemaphore runs the semaphore suite on both dialects. ForceRelease is
// the kill: a waiter is woken by the notification (PostgreSQL) or polls
// within MaxPoll (MySQL), and the holder learns of it at its next renewal.
// A crashed holder's lease runs out within its TTL.
func TestSemaphore(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			e := setup(t, d)
			admin := e.locker(t, nil)
			locktest.RunSemaphore(t, locktest.SemaphoreConfig{
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
					Tokens:      true,
					Leftovers:   func(t *testing.T, names []string) int { return e.live(t, names) },
					LeakOptions: leakOptions,
				},
				FailoverBound: time.Second,
				Crash:         e.crash(),
			})
		})
	}
}
