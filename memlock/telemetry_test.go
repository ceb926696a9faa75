package memlock_test

import (
	"context"
	"errors"
	"testing"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/telemetrytest"
	"github.com/lockkit/lockkit/memlock"
)

func TestTelemetry(t *testing.T) {
	telemetrytest.Conformance(t, telemetrytest.Backend{
		Name: "memlock",
		New: func(t *testing.T, tel *lockkit.Telemetry) lockkit.Locker {
			return memlock.NewWithConfig(&memlock.Config{Telemetry: tel})
		},
	}, "telemetry")
}

func TestTelemetryLose(t *testing.T) {
	rec := telemetrytest.New(t)
	l := memlock.NewWithConfig(&memlock.Config{Telemetry: rec.Telemetry})
	lk, err := l.Lock(context.Background(), "n")
	if err != nil {
		t.Fatal(err)
	}
	l.Lose("n", errors.New("simulated"))
	_ = lk.Release(context.Background())
	rm := rec.Collect(t)
	if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", telemetrytest.Attrs{"lockkit.reason": "other"}); got != 1 {
		t.Errorf("losses = %d, want 1", got)
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.held", nil); got != 0 {
		t.Errorf("held = %d, want 0", got)
	}
}

func TestTelemetryNameLabel(t *testing.T) {
	rec := telemetrytest.New(t)
	rec.Telemetry.NameLabel = lockkit.LabelBefore(":")
	l := memlock.NewWithConfig(&memlock.Config{Telemetry: rec.Telemetry})
	for _, name := range []string{"invoices:1", "invoices:2", "jobs"} {
		lk, err := l.Lock(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		_ = lk.Release(context.Background())
	}
	rm := rec.Collect(t)
	for label, want := range map[string]int64{"invoices:*": 2, "*": 1} {
		if got := telemetrytest.SumOf(rm, "lockkit.lock.acquires", telemetrytest.Attrs{"lockkit.lock.name": label}); got != want {
			t.Errorf("acquires{lock.name=%s} = %d, want %d", label, got, want)
		}
	}
}

func BenchmarkTelemetryOverhead(b *testing.B) {
	telemetrytest.Overhead(b, func(b *testing.B, tel *lockkit.Telemetry) lockkit.Locker {
		return memlock.NewWithConfig(&memlock.Config{Telemetry: tel})
	}, "bench")
}
