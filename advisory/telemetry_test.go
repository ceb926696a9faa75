package advisory

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/internal/telemetrytest"
)

func TestTelemetry(t *testing.T) {
	telemetrytest.Conformance(t, telemetrytest.Backend{
		Name:     "advisory",
		DBSystem: "postgresql",
		New: func(t *testing.T, tel *lockkit.Telemetry) lockkit.Locker {
			p, _ := newPG(t, 8, &Config{Telemetry: tel})
			return p
		},
	}, integration.Name(t))
}

// A pg_terminate_backend of the holder's session is exactly one loss, with
// reason session_ended, logged at Error; the held counter returns to 0.
func TestTelemetryTerminatedSession(t *testing.T) {
	rec := telemetrytest.New(t)
	p, _ := newPG(t, 2, &Config{Telemetry: rec.Telemetry})
	admin := pgAdmin(t)
	ctx := pgCtx(t, 30*time.Second)
	name := integration.Name(t)
	l, err := p.Lock(ctx, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	terminateHolder(t, admin, l.Keys()[0], false)
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("loss not detected")
	}
	if err := l.Release(ctx); !errors.Is(err, lockkit.ErrLost) {
		t.Fatalf("Release = %v, want the loss", err)
	}
	_ = l.Release(ctx)
	rm := rec.Collect(t)
	backend := telemetrytest.Attrs{"lockkit.backend": "advisory"}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", backend); got != 1 {
		t.Errorf("losses = %d, want 1", got)
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", telemetrytest.Attrs{"lockkit.reason": "session_ended"}); got != 1 {
		t.Errorf("losses{reason=session_ended} = %d, want 1", got)
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.held", backend); got != 0 {
		t.Errorf("held = %d, want 0", got)
	}
	if h := telemetrytest.HistogramOf(rm, "lockkit.lock.hold.duration", telemetrytest.Attrs{"lockkit.end": "lost"}); h.Count != 1 {
		t.Errorf("hold histogram has %d lost measurements, want 1", h.Count)
	}
	if logs := rec.Logs(); strings.Count(logs, "lockkit: lock lost") != 1 || !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "reason=session_ended") {
		t.Errorf("logs:\n%s", logs)
	}
}

// An acquire that fails for a reason other than the lock (here, a pool
// that is closed) counts as outcome error.
func TestTelemetryError(t *testing.T) {
	rec := telemetrytest.New(t)
	db := integration.Postgres(t)
	p, err := New(db, &Config{Telemetry: rec.Telemetry})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if _, err := p.TryAcquire(context.Background(), integration.Name(t)); err == nil || errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, sql.ErrConnDone) && !strings.Contains(err.Error(), "closed") {
		t.Fatalf("TryAcquire on a closed pool = %v", err)
	}
	if got := rec.Sum(t, "lockkit.lock.acquires", telemetrytest.Attrs{"lockkit.outcome": "error"}); got != 1 {
		t.Errorf("acquires{outcome=error} = %d, want 1", got)
	}
}

// WithTxLock records its acquire, and holds the locks while fn runs;
// WithTryTxLock on a key held elsewhere is busy.
func TestTelemetryWithTxLock(t *testing.T) {
	rec := telemetrytest.New(t)
	db := integration.Postgres(t)
	ctx := pgCtx(t, 30*time.Second)
	keys := testKeys(t, 2)
	opts := &TxOptions{Telemetry: rec.Telemetry}
	err := WithTxLock(ctx, db, keys, opts, func(ctx context.Context, tx *sql.Tx) error {
		if got := rec.Sum(t, "lockkit.lock.held", nil); got != 1 {
			t.Errorf("held = %d inside fn, want 1", got)
		}
		err := WithTryTxLock(ctx, db, keys[1:], opts, func(context.Context, *sql.Tx) error {
			t.Error("fn ran without the lock")
			return nil
		})
		if !errors.Is(err, lockkit.ErrNotAcquired) {
			t.Errorf("WithTryTxLock of a held key = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rm := rec.Collect(t)
	for o, want := range map[string]int64{"acquired": 1, "busy": 1} {
		if got := telemetrytest.SumOf(rm, "lockkit.lock.acquires", telemetrytest.Attrs{"lockkit.backend": "advisory", "lockkit.outcome": o}); got != want {
			t.Errorf("acquires{outcome=%s} = %d, want %d", o, got, want)
		}
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.held", nil); got != 0 {
		t.Errorf("held = %d after, want 0", got)
	}
	if h := telemetrytest.HistogramOf(rm, "lockkit.lock.hold.duration", telemetrytest.Attrs{"lockkit.end": "released"}); h.Count != 1 {
		t.Errorf("hold histogram has %d measurements, want 1", h.Count)
	}
}

func BenchmarkTelemetryOverhead(b *testing.B) {
	name := telemetrytest.BenchName()
	pool := integration.PgxPool(b)
	telemetrytest.Overhead(b, func(b *testing.B, tel *lockkit.Telemetry) lockkit.Locker {
		p, err := NewPool(pool, &Config{Telemetry: tel})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}, name)
}
