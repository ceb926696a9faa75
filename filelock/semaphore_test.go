//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"os"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/locktest"
)

// TestSemaphore runs the semaphore suite on file locks, without and with
// fencing tokens. Removing a holder's lock file is the kill (nothing else
// can take a flock away): a waiter takes the slot on a new file at once,
// and the holder learns of it within CheckInterval. A crashed holder's
// flock ends with its descriptor.
func TestSemaphore(t *testing.T) {
	for _, fencing := range []bool{false, true} {
		name := "plain"
		if fencing {
			name = "fencing"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := &Config{Fencing: fencing, CheckInterval: 20 * time.Millisecond}
			locktest.RunSemaphore(t, locktest.SemaphoreConfig{
				Config: locktest.Config{
					NewLocker: func(t *testing.T) lockkit.Locker { return newLocker(t, dir, cfg) },
					KillHolder: func(t *testing.T, l lockkit.Lock) {
						if err := os.Remove(l.(*Lock).Path()); err != nil {
							t.Fatalf("remove the lock file: %v", err)
						}
					},
					LossBound: time.Second,
					Tokens:    fencing,
					Leftovers: func(t *testing.T, names []string) int { return leftovers(t, dir, names) },
				},
				FailoverBound: time.Second,
				Crash: locktest.Crash{
					NewCrashingLocker: func(t *testing.T) (lockkit.Locker, func()) {
						c := &crashing{Locker: newLocker(t, dir, &Config{Fencing: fencing})}
						return c, c.crash
					},
					CrashFailoverBound: time.Second,
				},
			})
		})
	}
}
