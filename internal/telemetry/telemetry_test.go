package telemetry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lockkit/lockkit"
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
