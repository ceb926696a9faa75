package lockstate

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lockkit/lockkit/internal/telemetry"
	"github.com/lockkit/lockkit/internal/telemetrytest"
)

var errExpired = errors.New("lease ran out")

func testRecorder(t *testing.T) (*telemetrytest.Recorder, *telemetry.Recorder) {
	rec := telemetrytest.New(t)
	r := telemetry.New(rec.Telemetry, telemetry.Backend{
		Name: "test",
		Reason: func(cause error, release bool) telemetry.Reason {
			if errors.Is(cause, errExpired) {
				return telemetry.LeaseExpired
			}
			return telemetry.Other
		},
	})
	return rec, r
}

// acquired runs an instrumented acquire that succeeds and returns its
// handle.
func acquired(t *testing.T, r *telemetry.Recorder, unlock UnlockFunc) *Handle {
	t.Helper()
	ctx, op := r.StartAcquire(context.Background(), "n", true)
	h := New("n", 0, unlock)
	h.Observe(op.End(ctx, nil))
	return h
}

func TestTelemetryRelease(t *testing.T) {
	rec, r := testRecorder(t)
	h := acquired(t, r, func(context.Context, bool) error { return nil })
	if got := rec.Sum(t, telemetry.Held, nil); got != 1 {
		t.Fatalf("held = %d while held, want 1", got)
	}
	if err := h.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = h.Release(context.Background()) // a second release records nothing
	rm := rec.Collect(t)
	if got := telemetrytest.SumOf(rm, telemetry.Held, nil); got != 0 {
		t.Errorf("held = %d after release, want 0", got)
	}
	if got := telemetrytest.HistogramOf(rm, telemetry.HoldDuration, telemetrytest.Attrs{"lockkit.end": "released"}); got.Count != 1 {
		t.Errorf("hold histogram has %d released measurements, want 1", got.Count)
	}
	if got := telemetrytest.SumOf(rm, telemetry.Losses, nil); got != 0 {
		t.Errorf("losses = %d, want 0", got)
	}
}

func TestTelemetryLossAndUnconfirmedRelease(t *testing.T) {
	rec, r := testRecorder(t)
	h := acquired(t, r, func(context.Context, bool) error { return nil })
	h.MarkLost(errExpired)
	h.MarkLost(errors.New("again")) // not a second loss
	_ = h.Release(context.Background())

	h2 := acquired(t, r, func(context.Context, bool) error { return errors.New("no answer") })
	if err := h2.Release(context.Background()); err == nil {
		t.Fatal("unconfirmed release returned nil")
	}

	rm := rec.Collect(t)
	for reason, want := range map[string]int64{"lease_expired": 1, "release_unconfirmed": 1} {
		if got := telemetrytest.SumOf(rm, telemetry.Losses, telemetrytest.Attrs{"lockkit.reason": reason}); got != want {
			t.Errorf("losses{reason=%s} = %d, want %d", reason, got, want)
		}
	}
	if got := telemetrytest.SumOf(rm, telemetry.Held, nil); got != 0 {
		t.Errorf("held = %d, want 0", got)
	}
	if got := telemetrytest.HistogramOf(rm, telemetry.HoldDuration, telemetrytest.Attrs{"lockkit.end": "lost"}); got.Count != 2 {
		t.Errorf("hold histogram has %d lost measurements, want 2", got.Count)
	}
	logs := rec.Logs()
	if strings.Count(logs, "lockkit: lock lost") != 2 || !strings.Contains(logs, "reason=lease_expired") || !strings.Contains(logs, "level=ERROR") {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestTelemetryLostBeforeObserve(t *testing.T) {
	rec, r := testRecorder(t)
	ctx, op := r.StartAcquire(context.Background(), "n", false)
	h := New("n", 0, func(context.Context, bool) error { return nil })
	h.MarkLost(errExpired) // the watcher fired before the backend returned
	h.Observe(op.End(ctx, nil))
	rm := rec.Collect(t)
	if got := telemetrytest.SumOf(rm, telemetry.Held, nil); got != 0 {
		t.Errorf("held = %d, want 0", got)
	}
	if got := telemetrytest.SumOf(rm, telemetry.Losses, telemetrytest.Attrs{"lockkit.reason": "lease_expired"}); got != 1 {
		t.Errorf("losses = %d, want 1", got)
	}
}

func TestTelemetryReleaseSpan(t *testing.T) {
	rec, r := testRecorder(t)
	h := acquired(t, r, func(context.Context, bool) error { return nil })
	ctx, parent := rec.Tracer.Start(context.Background(), "job")
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var names []string
	for _, s := range rec.Spans.Ended() {
		names = append(names, s.Name())
	}
	if strings.Join(names, ",") != "lockkit.release,job" {
		t.Errorf("spans %v, want the release inside the job", names)
	}
}

// A reader woken by Done finds the loss in the telemetry: the loss is
// reported (its reason asked for, counted and logged) before Done closes.
func TestDoneClosesAfterLossReported(t *testing.T) {
	rec := telemetrytest.New(t)
	var h *Handle
	var asked, doneEarly bool
	r := telemetry.New(rec.Telemetry, telemetry.Backend{
		Name: "test",
		Reason: func(error, bool) telemetry.Reason {
			asked = true
			select {
			case <-h.Done():
				doneEarly = true
			default:
			}
			return telemetry.Other
		},
	})
	h = acquired(t, r, func(context.Context, bool) error { return nil })
	h.MarkLost(errors.New("session terminated"))
	<-h.Done()
	if !asked || doneEarly {
		t.Errorf("loss reported: %v; Done closed before the report: %v", asked, doneEarly)
	}
	if got := rec.Sum(t, telemetry.Losses, nil); got != 1 {
		t.Errorf("losses = %d after Done, want 1", got)
	}
}
