package etcdlock

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
)

// TestElection runs the election suite on the shared cluster: terms are
// the holder key's create revision, Leader and Observe read it back
// through List, and observers are woken by an etcd watch (Pushed). Deleting
// the leader's key is the kill; a crashed leader (its client closed, its
// lease not revoked) is succeeded when the lease runs out. etcd keys carry
// no per-acquire data, so candidates campaign without values.
func TestElection(t *testing.T) {
	endpoints := integration.EtcdEndpoints(t)
	admin := etcdClient(t, endpoints...)
	prefix := testPrefix(t, admin)
	adminLocker := newLocker(t, admin, &Config{Prefix: prefix})
	// A gRPC client connects on its first call, and its transports (a
	// reader and a writer per endpoint) live until Close. The admin client
	// lives as long as this test and kills leaders in the subtests, so it
	// connects here: else the first subtest that kills would count its
	// transports as goroutines that subtest leaked.
	countKeys(t, admin, prefix)
	locktest.RunElection(t, locktest.ElectionConfig{
		Config: locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker {
				return newLocker(t, etcdClient(t, endpoints...), &Config{Prefix: prefix, TTL: 5 * time.Second})
			},
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				if _, err := admin.Delete(ctxT(t, 10*time.Second), l.(*Lock).Key()); err != nil {
					t.Fatal(err)
				}
			},
			LossBound: time.Second, // a watch event
			Leftovers: func(t *testing.T, names []string) int {
				n := 0
				for _, name := range names {
					n += countKeys(t, admin, adminLocker.Prefix(name))
				}
				return n
			},
		},
		FailoverBound: time.Second,
		Pushed:        true,
		NewCrashingLocker: func(t *testing.T) (lockkit.Locker, func()) {
			c := etcdClient(t, endpoints...)
			l := newLocker(t, c, &Config{Prefix: prefix, TTL: 2 * time.Second})
			return l, func() { _ = c.Close() }
		},
		CrashFailoverBound: 2*time.Second + 2*time.Second, // TTL, plus slack for a loaded machine
	})
}
