package etcdlock

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
)

// conformance runs locktest on the shared cluster with kill as KillHolder,
// which gets a client of its own (a client first used inside a check would
// count as a leak of that check).
func conformance(t *testing.T, kill func(t *testing.T, c *clientv3.Client, lk *Lock)) {
	endpoints := integration.EtcdEndpoints(t)
	admin := etcdClient(t, endpoints...)
	prefix := testPrefix(t, admin)
	adminLocker := newLocker(t, admin, &Config{Prefix: prefix})
	locktest.Run(t, locktest.Config{
		NewLocker: func(t *testing.T) lockkit.Locker {
			// A client of its own: a Locker stands for a process.
			return newLocker(t, etcdClient(t, endpoints...), &Config{Prefix: prefix, TTL: 5 * time.Second})
		},
		KillHolder: func(t *testing.T, l lockkit.Lock) {
			kill(t, etcdClient(t, endpoints...), l.(*Lock))
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
	})
}

// The conformance suite on a 3-member cluster, the holder killed by
// deleting its key.
func TestConformanceDeleteKey(t *testing.T) {
	conformance(t, func(t *testing.T, c *clientv3.Client, lk *Lock) {
		if _, err := c.Delete(ctxT(t, 10*time.Second), lk.Key()); err != nil {
			t.Fatal(err)
		}
	})
}

// The conformance suite with the holder killed by revoking its lease, as
// `etcdctl lease revoke` does.
func TestConformanceRevokeLease(t *testing.T) {
	conformance(t, func(t *testing.T, c *clientv3.Client, lk *Lock) {
		if _, err := c.Revoke(ctxT(t, 10*time.Second), lk.Lease()); err != nil {
			t.Fatal(err)
		}
	})
}
