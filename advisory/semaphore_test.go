package advisory

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/locktest"
)

// TestPostgresSemaphore runs the semaphore suite on session advisory locks.
// Terminating the holder's backend is the kill, and stands for a crash:
// the server ends the session and its locks at once. Advisory locks carry
// no holder data, so callers that disagree on the number of permits are
// not told apart (the suite says so).
func TestPostgresSemaphore(t *testing.T) {
	admin := pgAdmin(t)
	locktest.RunSemaphore(t, locktest.SemaphoreConfig{
		Config: locktest.Config{
			// WaitAll holds a session per slot while it waits.
			NewLocker: func(t *testing.T) lockkit.Locker {
				p, _ := newPG(t, 16, nil)
				return p
			},
			LossBound:   pgLossBound,
			LeakOptions: pgLeakOptions,
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				terminateHolder(t, admin, l.(*Lock).Keys()[0], true)
			},
			Leftovers: func(t *testing.T, names []string) int {
				keys := make([]keyhash.Key, len(names))
				for i, n := range names {
					keys[i] = keyhash.NamespacedName("", n)
				}
				deadline := time.Now().Add(5 * time.Second)
				for {
					n := len(pgLocks(t, admin, keys...))
					if n == 0 || time.Now().After(deadline) {
						return n
					}
					time.Sleep(10 * time.Millisecond)
				}
			},
		},
		FailoverBound: 2 * time.Second,
	})
}
