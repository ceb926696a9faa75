//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/telemetrytest"
)

func TestTelemetry(t *testing.T) {
	telemetrytest.Conformance(t, telemetrytest.Backend{
		Name: "filelock",
		New: func(t *testing.T, tel *lockkit.Telemetry) lockkit.Locker {
			return newLocker(t, t.TempDir(), &Config{Telemetry: tel})
		},
	}, "telemetry")
}

// A lock file removed under a held lock is one loss, reason file_removed,
// whether a Check or the Release (with CheckInterval) finds it.
func TestTelemetryFileRemoved(t *testing.T) {
	rec := telemetrytest.New(t)
	l := newLocker(t, t.TempDir(), &Config{Telemetry: rec.Telemetry, CheckInterval: time.Hour})
	ctx := context.Background()
	for _, viaCheck := range []bool{true, false} {
		lk, err := l.Lock(ctx, "removed", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(lk.Path()); err != nil {
			t.Fatal(err)
		}
		if viaCheck {
			if err := lk.Check(); !errors.Is(err, ErrFileRemoved) {
				t.Fatalf("Check = %v", err)
			}
		}
		if err := lk.Release(ctx); !errors.Is(err, ErrFileRemoved) {
			t.Fatalf("Release = %v", err)
		}
	}
	rm := rec.Collect(t)
	if got := telemetrytest.SumOf(rm, "lockkit.lock.losses", telemetrytest.Attrs{"lockkit.reason": "file_removed"}); got != 2 {
		t.Errorf("losses{reason=file_removed} = %d, want 2", got)
	}
	if got := telemetrytest.SumOf(rm, "lockkit.lock.held", nil); got != 0 {
		t.Errorf("held = %d, want 0", got)
	}
	if logs := rec.Logs(); strings.Count(logs, "reason=file_removed") != 2 {
		t.Errorf("logs:\n%s", logs)
	}
}

func BenchmarkTelemetryOverhead(b *testing.B) {
	dir := b.TempDir()
	telemetrytest.Overhead(b, func(b *testing.B, tel *lockkit.Telemetry) lockkit.Locker {
		return newLocker(b, dir, &Config{Owner: "root", App: "filelock.test", Telemetry: tel})
	}, "bench")
}
