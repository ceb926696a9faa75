package etcdlock

import (
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/internal/telemetrytest"
)

func TestTelemetry(t *testing.T) {
	endpoints := integration.EtcdEndpoints(t)
	admin := etcdClient(t, endpoints...)
	prefix := testPrefix(t, admin)
	telemetrytest.Conformance(t, telemetrytest.Backend{
		Name:     "etcdlock",
		DBSystem: "etcd",
		New: func(t *testing.T, tel *lockkit.Telemetry) lockkit.Locker {
			return newLocker(t, etcdClient(t, endpoints...), &Config{Prefix: prefix, Telemetry: tel})
		},
	}, "telemetry")
}

// Keepalives of the lease are counted; a key deleted behind the holder is
// one loss, taken_over; a lock still held at Close is one loss, other.
func TestTelemetryRenewalsAndLosses(t *testing.T) {
	rec := telemetrytest.New(t)
	endpoints := integration.EtcdEndpoints(t)
	admin := etcdClient(t, endpoints...)
	prefix := testPrefix(t, admin)
	l := newLocker(t, etcdClient(t, endpoints...), &Config{Prefix: prefix, TTL: 2 * time.Second, RenewInterval: 150 * time.Millisecond, Telemetry: rec.Telemetry})

	lk := mustLock(t, l, "deleted")
	// Two keepalives, 150 ms apart, are due 300 ms after the acquire;
	// each is a round trip to the cluster, which a loaded machine may
	// delay. Wait for them to be counted, then check they came at about
	// the configured interval: at the default (TTL/3, 667 ms) the second
	// would come 1.33 s after the acquire.
	took := rec.WaitSum(t, "lockkit.lock.renewals", telemetrytest.Attrs{"lockkit.result": "ok"}, 2, 5*time.Second).Round(time.Millisecond)
	if took > 1200*time.Millisecond {
		t.Errorf("2 renewals took %v at a 150ms RenewInterval", took)
	}
	t.Logf("2 renewals counted %v after the acquire", took)
	if _, err := admin.Delete(ctxT(t, 10*time.Second), lk.Key()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, lk, 5*time.Second)
	_ = lk.Release(ctxT(t, 10*time.Second))

	lk2 := mustTry(t, l, "closed")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, lk2, 5*time.Second)
	_ = lk2.Release(ctxT(t, 10*time.Second))

	rm := rec.Collect(t)
	for reason, want := range map[string]int64{"taken_over": 1, "other": 1, "lease_expired": 0, "release_unconfirmed": 0} {
		if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", telemetrytest.Attrs{"lockkit.reason": reason}); got != want {
			t.Errorf("losses{reason=%s} = %d, want %d", reason, got, want)
		}
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.renewals", telemetrytest.Attrs{"lockkit.result": "failed"}); got != 0 {
		t.Errorf("renewals{result=failed} = %d, want 0", got)
	}
	for _, inst := range []string{"lockkit.lock.held", "lockkit.lock.waiting"} {
		if got := telemetrytest.SumOf(rm, inst, nil); got != 0 {
			t.Errorf("%s = %d at the end, want 0", inst, got)
		}
	}
	if logs := rec.Logs(); !strings.Contains(logs, "reason=taken_over") || !strings.Contains(logs, "reason=other") {
		t.Errorf("logs:\n%s", logs)
	}
}
