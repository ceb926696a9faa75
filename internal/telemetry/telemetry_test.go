package telemetry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/telemetrytest"
)

func TestOutcomeOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		wait bool
		want Outcome
	}{
		{nil, true, Acquired},
		{&lockkit.HeldError{Name: "n"}, false, Busy},
		{fmt.Errorf("wrapped: %w", &lockkit.HeldError{Name: "n"}), false, Busy},
		{&lockkit.HeldError{Name: "n", Cause: context.DeadlineExceeded}, true, Timeout},
		{&lockkit.HeldError{Name: "n", Cause: context.DeadlineExceeded}, false, Timeout},
		{&lockkit.HeldError{Name: "n", Cause: errors.New("lock_timeout")}, true, Timeout},
		{&lockkit.HeldError{Name: "n", Cause: errors.New("NOWAIT")}, false, Busy},
		{&lockkit.HeldError{Name: "n", Cause: fmt.Errorf("waiting for a connection: %w", context.Canceled)}, true, Cancelled},
		{lockkit.ErrDeadlock, true, Failed},
		{errors.New("connection refused"), false, Failed},
	} {
		if got := OutcomeOf(c.err, c.wait); got != c.want {
			t.Errorf("OutcomeOf(%v, %v) = %v, want %v", c.err, c.wait, got, c.want)
		}
	}
}

// With no SDK installed (the global providers) and no logger, an acquire,
// its hold and its release allocate nothing.
func TestNoSDKAllocatesNothing(t *testing.T) {
	r := New(nil, Backend{Name: "test"})
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, op := r.StartAcquire(ctx, "n", true)
		h := op.End(c, nil)
		h.Begin()
		_, span := h.StartRelease(c, "n")
		h.End("n", Released, nil, false)
		EndRelease(span, nil)
		r.Renewal(c, "n", nil)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per acquire and release, want 0", allocs)
	}
}

func TestLabelBefore(t *testing.T) {
	f := lockkit.LabelBefore(":/")
	for in, want := range map[string]string{"invoices:1042": "invoices:*", "jobs/nightly": "jobs/*", "plain": "*"} {
		if got := f(in); got != want {
			t.Errorf("LabelBefore(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkCycle is the telemetry of one uncontended try and its release,
// alone: what every backend adds to its own work. "off" has no SDK
// installed (the global providers); "sdk" records into the SDK's meter
// provider with a manual reader; "sdk+span" also starts the acquire and
// release spans under a sampled parent span.
func BenchmarkCycle(b *testing.B) {
	rec := telemetrytest.New(b)
	ctx := context.Background()
	sctx, parent := rec.Tracer.Start(ctx, "job")
	defer parent.End()
	for _, v := range []struct {
		name string
		r    *Recorder
		ctx  context.Context
	}{
		{"off", New(nil, Backend{Name: "bench"}), ctx},
		{"sdk", New(rec.Telemetry, Backend{Name: "bench"}), ctx},
		{"sdk+span", New(rec.Telemetry, Backend{Name: "bench", DBSystem: "postgresql"}), sctx},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, op := v.r.StartAcquire(v.ctx, "n", false)
				h := op.End(c, nil)
				h.Begin()
				_, span := h.StartRelease(v.ctx, "n")
				h.End("n", Released, nil, false)
				EndRelease(span, nil)
			}
		})
	}
}
