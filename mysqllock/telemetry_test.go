package mysqllock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/internal/telemetrytest"
	"github.com/lockkit/lockkit/mysqllock"
)

func TestTelemetry(t *testing.T) {
	telemetrytest.Conformance(t, telemetrytest.Backend{
		Name:     "mysqllock",
		DBSystem: "mysql",
		New: func(t *testing.T, tel *lockkit.Telemetry) lockkit.Locker {
			m, _ := newMySQL(t, &mysqllock.Config{ProbeInterval: testProbeInterval, Telemetry: tel})
			return m
		},
	}, integration.Name(t))
}

// A KILL of the holder's session is exactly one loss, with reason
// session_ended.
func TestTelemetryKilledSession(t *testing.T) {
	rec := telemetrytest.New(t)
	m, _ := newMySQL(t, &mysqllock.Config{ProbeInterval: testProbeInterval, Telemetry: rec.Telemetry})
	admin := integration.MySQL(t)
	ctx := ctxT(t, 30*time.Second)
	l, err := m.Lock(ctx, integration.Name(t))
	if err != nil {
		t.Fatal(err)
	}
	killConn(t, admin, l.ConnID())
	select {
	case <-l.Done():
	case <-time.After(mysqlLossBound(testProbeInterval)):
		t.Fatal("loss not detected")
	}
	if err := l.Release(context.Background()); !errors.Is(err, lockkit.ErrLost) {
		t.Fatalf("Release = %v, want the loss", err)
	}
	rm := rec.Collect(t)
	if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", nil); got != 1 {
		t.Errorf("losses = %d, want 1", got)
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", telemetrytest.Attrs{"lockkit.backend": "mysqllock", "lockkit.reason": "session_ended"}); got != 1 {
		t.Errorf("losses{reason=session_ended} = %d, want 1", got)
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.held", nil); got != 0 {
		t.Errorf("held = %d, want 0", got)
	}
	if logs := rec.Logs(); !strings.Contains(logs, "reason=session_ended") {
		t.Errorf("logs:\n%s", logs)
	}
}

func BenchmarkTelemetryOverhead(b *testing.B) {
	name := telemetrytest.BenchName()
	db := integration.MySQL(b)
	telemetrytest.Overhead(b, func(b *testing.B, tel *lockkit.Telemetry) lockkit.Locker {
		m, err := mysqllock.New(db, &mysqllock.Config{Telemetry: tel})
		if err != nil {
			b.Fatal(err)
		}
		return m
	}, name)
}
