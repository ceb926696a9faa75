package redislock

import (
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/internal/telemetrytest"
)

func TestTelemetry(t *testing.T) {
	telemetrytest.Conformance(t, telemetrytest.Backend{
		Name:     "redislock",
		DBSystem: "redis",
		New: func(t *testing.T, tel *lockkit.Telemetry) lockkit.Locker {
			c := integration.Redis(t)
			l := newLocker(t, c, &Config{Prefix: testPrefix(t, c), Telemetry: tel})
			t.Cleanup(func() { _ = l.Close() })
			return l
		},
	}, "telemetry")
}

// Automatic renewals are counted; a key deleted behind the holder is one
// loss, taken_over; a lease not renewed is one loss, lease_expired.
func TestTelemetryRenewalsAndLosses(t *testing.T) {
	rec := telemetrytest.New(t)
	c := integration.Redis(t)
	// Renewals every 100ms of a 3s lease: only a stall of nearly 3s ends
	// it on the holder's clock, which would count a second lease_expired
	// and no failed renewal below.
	l := newLocker(t, c, &Config{Prefix: testPrefix(t, c), TTL: 3 * time.Second, RenewInterval: 100 * time.Millisecond, Telemetry: rec.Telemetry})
	defer l.Close()

	lk := mustLock(t, l, "renewed")
	rec.WaitSum(t, "lockkit.lock.renewals", telemetrytest.Attrs{"lockkit.result": "ok"}, 2, 5*time.Second)
	if err := c.Del(ctxT(t, 5*time.Second), lk.Key()).Err(); err != nil {
		t.Fatal(err)
	}
	// The next renewal finds the key gone (taken_over); the lease itself
	// would run out on the holder's clock only after 3s (lease_expired,
	// which the counts below reject).
	waitDone(t, lk, 5*time.Second)
	_ = lk.Release(ctxT(t, 5*time.Second))

	l2 := newLocker(t, c, &Config{Prefix: testPrefix(t, c), TTL: 200 * time.Millisecond, NoAutoRenew: true, Telemetry: rec.Telemetry})
	defer l2.Close()
	lk2 := mustLock(t, l2, "expires")
	waitDone(t, lk2, 2*time.Second)
	_ = lk2.Release(ctxT(t, 5*time.Second))

	rm := rec.Collect(t)
	for reason, want := range map[string]int64{"taken_over": 1, "lease_expired": 1} {
		if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", telemetrytest.Attrs{"lockkit.reason": reason}); got != want {
			t.Errorf("losses{reason=%s} = %d, want %d", reason, got, want)
		}
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.renewals", telemetrytest.Attrs{"lockkit.result": "failed"}); got != 1 {
		t.Errorf("renewals{result=failed} = %d, want 1 (the one that found the key gone)", got)
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.held", nil); got != 0 {
		t.Errorf("held = %d, want 0", got)
	}
	if logs := rec.Logs(); !strings.Contains(logs, "reason=taken_over") || !strings.Contains(logs, "reason=lease_expired") {
		t.Errorf("logs:\n%s", logs)
	}
}

func BenchmarkTelemetryOverhead(b *testing.B) {
	c := integration.Redis(b)
	prefix := testPrefix(b, c)
	telemetrytest.Overhead(b, func(b *testing.B, tel *lockkit.Telemetry) lockkit.Locker {
		return newLocker(b, c, &Config{Prefix: prefix, Telemetry: tel})
	}, "bench")
}
