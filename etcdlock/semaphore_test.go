package etcdlock

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
)

// TestSemaphore runs the semaphore suite on the shared cluster. Deleting a
// holder's key is the kill: the next waiter's watch fires at once, and so
// does the holder's. A crashed holder (its client closed, its lease not
// revoked) frees its permit when the lease runs out. etcd keys carry no
// per-acquire data, so callers that disagree on the number of permits are
// not told apart (the suite says so).
func TestSemaphore(t *testing.T) {
	endpoints := integration.EtcdEndpoints(t)
	admin := etcdClient(t, endpoints...)
	prefix := testPrefix(t, admin)
	adminLocker := newLocker(t, admin, &Config{Prefix: prefix})
	locktest.RunSemaphore(t, locktest.SemaphoreConfig{
		Config: locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker {
				return newLocker(t, etcdClient(t, endpoints...), &Config{Prefix: prefix, TTL: 5 * time.Second})
			},
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				c := etcdClient(t, endpoints...)
				if _, err := c.Delete(ctxT(t, 10*time.Second), l.(*Lock).Key()); err != nil {
					t.Fatal(err)
				}
			},
			LossBound: time.Second, // a watch event
			Tokens:    true,
			Leftovers: func(t *testing.T, names []string) int {
				n := 0
				for _, name := range names {
					n += countKeys(t, admin, adminLocker.Prefix(name))
				}
				return n
			},
		},
		FailoverBound: time.Second,
		Crash: locktest.Crash{
			NewCrashingLocker: func(t *testing.T) (lockkit.Locker, func()) {
				c := etcdClient(t, endpoints...)
				l := newLocker(t, c, &Config{Prefix: prefix, TTL: 2 * time.Second})
				return l, func() { _ = c.Close() }
			},
			CrashFailoverBound: 2*time.Second + 2*time.Second, // TTL, plus slack for a loaded machine
		},
	})
}
