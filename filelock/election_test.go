//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/locktest"
	"golang.org/x/sys/unix"
)

// TestElection runs the election suite on file locks with fencing tokens.
// Removing the leader's lock file is the fault (nothing else can take a
// flock away); the deposed leader learns of it within CheckInterval.
func TestElection(t *testing.T) {
	dir := t.TempDir()
	cfg := &Config{Fencing: true, CheckInterval: 20 * time.Millisecond}
	locktest.RunElection(t, locktest.ElectionConfig{
		Config: locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker { return newLocker(t, dir, cfg) },
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				if err := os.Remove(l.(*Lock).Path()); err != nil {
					t.Fatalf("remove the lock file: %v", err)
				}
			},
			LossBound: time.Second,
			Leftovers: func(t *testing.T, names []string) int { return leftovers(t, dir, names) },
		},
		FailoverBound: time.Second,
		// A crashed holder's flock ends with its last descriptor, and a
		// waiter is woken by the close (inotify) or polls within
		// PollMax.
		Crash: locktest.Crash{
			NewCrashingLocker: func(t *testing.T) (lockkit.Locker, func()) {
				c := &crashing{Locker: newLocker(t, dir, &Config{Fencing: true})}
				return c, c.crash
			},
			CrashFailoverBound: time.Second,
		},
	})
}

// crashing is a Locker whose held locks can be dropped the way the kernel
// drops a dead process's: their descriptors closed, without an unlock or a
// cleared record.
type crashing struct {
	*Locker
	mu    sync.Mutex
	locks []*Lock
}

func (c *crashing) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := c.Lock(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.locks = append(c.locks, lk)
	c.mu.Unlock()
	return lk, nil
}

func (c *crashing) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := c.TryLock(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.locks = append(c.locks, lk)
	c.mu.Unlock()
	return lk, nil
}

func (c *crashing) crash() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, lk := range c.locks {
		lk.mu.Lock()
		if !lk.closed && lk.fd >= 0 {
			_ = unix.Close(lk.fd)
			lk.fd = -1 // the handle's Release must not close a reused number
		}
		lk.mu.Unlock()
	}
}
