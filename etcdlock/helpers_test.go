package etcdlock

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(integration.EtcdCleanup(m)) }

// etcdClient opens an etcd client on endpoints, closed when the test ends.
// Its log is silenced: a killed member makes the client log every
// reconnect.
func etcdClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	return etcdClientDial(t, nil, endpoints...)
}

// etcdClientDial is etcdClient with gRPC dial options (interceptors).
func etcdClientDial(t testing.TB, dial []grpc.DialOption, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		DialOptions: dial,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client on %v: %v", endpoints, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// testPrefix returns a key prefix unique to this test, and deletes every key
// under it when the test ends.
func testPrefix(t testing.TB, admin *clientv3.Client) string {
	t.Helper()
	prefix := "lockkit-test/" + strings.ToLower(rand.Text()[:10]) + "/"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = admin.Delete(ctx, prefix, clientv3.WithPrefix())
	})
	return prefix
}

// newLocker makes a Locker on c, closed when the test ends.
func newLocker(t testing.TB, c *clientv3.Client, cfg *Config) *Locker {
	t.Helper()
	l, err := New(c, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func mustTry(t testing.TB, l *Locker, name string) *Lock {
	t.Helper()
	lk, err := l.TryLock(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatalf("TryLock(%q) = %v, want held", name, err)
	}
	return lk
}

func mustLock(t testing.TB, l *Locker, name string) *Lock {
	t.Helper()
	lk, err := l.Lock(ctxT(t, 30*time.Second), name)
	if err != nil {
		t.Fatalf("Lock(%q) = %v, want held", name, err)
	}
	return lk
}

func mustRelease(t testing.TB, lk *Lock) {
	t.Helper()
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Release(%q) = %v", lk.Name(), err)
	}
}

// wantHeld checks that a try on name fails with a *lockkit.HeldError, and
// returns it.
func wantHeld(t testing.TB, l *Locker, name string) *lockkit.HeldError {
	t.Helper()
	lk, err := l.TryLock(ctxT(t, 10*time.Second), name)
	if err == nil {
		_ = lk.Release(context.Background())
		t.Fatalf("TryLock(%q) succeeded, want held elsewhere", name)
	}
	var he *lockkit.HeldError
	if !errors.As(err, &he) {
		t.Fatalf("TryLock(%q) = %v, want a *lockkit.HeldError", name, err)
	}
	return he
}

// waitDone waits up to d for the lock to end and returns how long it took.
func waitDone(t testing.TB, lk *Lock, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-lk.Done():
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("lock %q still held %v later", lk.Name(), d)
		return 0
	}
}

// countKeys returns the keys under prefix.
func countKeys(t testing.TB, c *clientv3.Client, prefix string) int {
	t.Helper()
	resp, err := c.Get(ctxT(t, 10*time.Second), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("count %s: %v", prefix, err)
	}
	return int(resp.Count)
}

// suiteConfig is the shared cluster as the election and semaphore suites
// take it: Lockers of their own clients with a 5 s lease, deleting a
// holder's key as the kill (a watch event away for the holder and the next
// waiter), and a crashing Locker (its client closed, its 2 s lease not
// revoked) for failovers after a crash.
func suiteConfig(t *testing.T) (locktest.Config, locktest.Crash) {
	endpoints := integration.EtcdEndpoints(t)
	admin := etcdClient(t, endpoints...)
	prefix := testPrefix(t, admin)
	adminLocker := newLocker(t, admin, &Config{Prefix: prefix})
	// A gRPC client connects on its first call, to one endpoint and then,
	// in the background, to the others; its transports (a reader and a
	// writer each) live until Close. So the admin client, which lives as
	// long as the suite, makes no call inside a leak-checked subtest (only
	// in NoLeftovers): each kill has a client of its own, closed when its
	// subtest ends.
	cfg := locktest.Config{
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
		Leftovers: func(t *testing.T, names []string) int {
			n := 0
			for _, name := range names {
				n += countKeys(t, admin, adminLocker.Prefix(name))
			}
			return n
		},
	}
	crash := locktest.Crash{
		NewCrashingLocker: func(t *testing.T) (lockkit.Locker, func()) {
			c := etcdClient(t, endpoints...)
			l := newLocker(t, c, &Config{Prefix: prefix, TTL: 2 * time.Second})
			return l, func() { _ = c.Close() }
		},
		CrashFailoverBound: 2*time.Second + 2*time.Second, // TTL, plus slack for a loaded machine
	}
	return cfg, crash
}
