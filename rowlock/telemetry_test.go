package rowlock_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/telemetrytest"
	"github.com/lockkit/lockkit/rowlock"
)

func TestTelemetry(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		dbSystem := "postgresql"
		if e.dialect == rowlock.MySQL {
			dbSystem = "mysql"
		}
		telemetrytest.Conformance(t, telemetrytest.Backend{
			Name:     "rowlock",
			DBSystem: dbSystem,
			New: func(t *testing.T, tel *lockkit.Telemetry) lockkit.Locker {
				return e.locker(t, &rowlock.Config{Telemetry: tel})
			},
		}, e.name(t))
	})
}

// Renewals are counted ok and failed; a lease force-released behind the
// holder is one loss, taken_over; a lease left to run out is one loss,
// lease_expired.
func TestTelemetryRenewalsAndLosses(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		rec := telemetrytest.New(t)
		// Automatic renewals every 100ms of a 3s lease: only a stall of
		// nearly 3s ends it on the holder's clock, which would count a
		// second lease_expired below.
		l := e.locker(t, &rowlock.Config{TTL: 3 * time.Second, RenewInterval: 100 * time.Millisecond, Telemetry: rec.Telemetry})
		ctx := ctxT(t, 30*time.Second)

		lk, err := l.Lock(ctx, e.name(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		rec.WaitSum(t, "lockkit.lock.renewals", telemetrytest.Attrs{"lockkit.result": "ok"}, 2, 5*time.Second)
		// Force-released: the next renewal finds the lease gone.
		if _, err := l.ForceRelease(ctx, lk.Name()); err != nil {
			t.Fatal(err)
		}
		if err := lk.Renew(ctx); !errors.Is(err, lockkit.ErrLost) {
			t.Fatalf("Renew after ForceRelease = %v", err)
		}
		_ = lk.Release(ctx)

		// Not renewed: the 300ms lease runs out on the holder's clock.
		lk2, err := l.Lock(ctx, e.name(t), &rowlock.Options{TTL: 300 * time.Millisecond, RenewInterval: rowlock.NoRenew})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-lk2.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("lease did not run out")
		}
		_ = lk2.Release(ctx)

		rm := rec.Collect(t)
		for reason, want := range map[string]int64{"taken_over": 1, "lease_expired": 1} {
			if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", telemetrytest.Attrs{"lockkit.reason": reason}); got != want {
				t.Errorf("losses{reason=%s} = %d, want %d", reason, got, want)
			}
		}
		if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", nil); got != 2 {
			t.Errorf("losses = %d, want 2", got)
		}
		if got := telemetrytest.SumOf(rm, "lockkit.lock.renewals", telemetrytest.Attrs{"lockkit.result": "failed"}); got < 1 {
			t.Errorf("renewals{result=failed} = %d, want at least 1", got)
		}
		if got := telemetrytest.SumOf(rm, "lockkit.lock.held", nil); got != 0 {
			t.Errorf("held = %d, want 0", got)
		}
		logs := rec.Logs()
		for _, want := range []string{"level=WARN msg=\"lockkit: lease renewal failed\"", "reason=taken_over", "reason=lease_expired"} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %q:\n%s", want, logs)
			}
		}
	})
}

// A lease taken by an acquire whose caller gave up is given back, and the
// give-back is logged at Info.
func TestTelemetryGiveBackLogged(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		rec := telemetrytest.New(t)
		l := e.locker(t, &rowlock.Config{Telemetry: rec.Telemetry})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var once sync.Once
		rowlock.SetTestHook(l, func(op string) func() {
			if op == "acquire" {
				once.Do(func() {
					cancel()
					time.Sleep(50 * time.Millisecond) // the caller returns first
				})
			}
			return func() {}
		})
		if _, err := l.TryAcquire(ctx, e.name(t)); !errors.Is(err, context.Canceled) {
			t.Fatalf("TryAcquire = %v, want it cancelled", err)
		}
		if err := l.Close(); err != nil { // waits for the give-back
			t.Fatal(err)
		}
		if logs := rec.Logs(); !strings.Contains(logs, "level=INFO msg=\"lockkit: gave back a lease taken by an abandoned acquire\"") {
			t.Errorf("logs:\n%s", logs)
		}
		if got := rec.Sum(t, "lockkit.lock.acquires", telemetrytest.Attrs{"lockkit.outcome": "cancelled"}); got != 1 {
			t.Errorf("acquires{outcome=cancelled} = %d, want 1", got)
		}
	})
}

// LockTx and TryLockTx record their acquires (acquired, busy); the hold,
// which ends with the transaction, is not recorded.
func TestTelemetryLockTx(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		rec := telemetrytest.New(t)
		l := e.locker(t, &rowlock.Config{Telemetry: rec.Telemetry})
		ctx := ctxT(t, 30*time.Second)
		name := e.name(t)
		tx1, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx1.Rollback()
		if err := l.LockTx(ctx, tx1, name); err != nil {
			t.Fatal(err)
		}
		tx2, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx2.Rollback()
		if err := l.TryLockTx(ctx, tx2, name); !errors.Is(err, lockkit.ErrNotAcquired) {
			t.Fatalf("TryLockTx of a locked name = %v", err)
		}
		rm := rec.Collect(t)
		for o, want := range map[string]int64{"acquired": 1, "busy": 1} {
			if got := telemetrytest.SumOf(rm, "lockkit.lock.acquires", telemetrytest.Attrs{"lockkit.outcome": o}); got != want {
				t.Errorf("acquires{outcome=%s} = %d, want %d", o, got, want)
			}
		}
		if got := telemetrytest.SumOf(rm, "lockkit.lock.held", nil); got != 0 {
			t.Errorf("held = %d, want 0 (transaction locks are not counted)", got)
		}
	})
}

func BenchmarkTelemetryOverhead(b *testing.B) {
	for _, d := range dialects {
		b.Run(string(d), func(b *testing.B) {
			e := setup(b, d)
			name := telemetrytest.BenchName()
			telemetrytest.Overhead(b, func(b *testing.B, tel *lockkit.Telemetry) lockkit.Locker {
				return e.locker(b, &rowlock.Config{Telemetry: tel})
			}, name)
		})
	}
}
