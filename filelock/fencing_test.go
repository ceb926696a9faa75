//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/locktest"
)

func TestConformanceFencing(t *testing.T) {
	dir := t.TempDir()
	cfg := &Config{Fencing: true, CheckInterval: 20 * time.Millisecond}
	locktest.Run(t, locktest.Config{
		NewLocker: func(t *testing.T) lockkit.Locker { return newLocker(t, dir, cfg) },
		KillHolder: func(t *testing.T, l lockkit.Lock) {
			if err := os.Remove(l.(*Lock).Path()); err != nil {
				t.Fatalf("remove the lock file: %v", err)
			}
		},
		LossBound: time.Second,
		Tokens:    true,
		Leftovers: func(t *testing.T, names []string) int { return leftovers(t, dir, names) },
	})
}

// TestFencingCounter: the token is kept in the lock file across releases,
// shared holders and other Lockers, and holders and conflicts show it.
func TestFencingCounter(t *testing.T) {
	dir := t.TempDir()
	a := newLocker(t, dir, &Config{Fencing: true})
	b := newLocker(t, dir, &Config{Fencing: true})
	plain := newLocker(t, dir, nil)
	ctx := ctxT(t, 10*time.Second)
	var last int64
	take := func(l *Locker, what string) {
		t.Helper()
		lk, err := l.TryLock(ctx, "job", nil)
		if err != nil {
			t.Fatal(err)
		}
		if lk.Token() <= last {
			t.Errorf("%s: token %d not above %d", what, lk.Token(), last)
		}
		last = lk.Token()
		_, err = plain.TryAcquire(ctx, "job")
		var he *lockkit.HeldError
		if !errors.As(err, &he) || he.Holder == nil || he.Holder.Token != lk.Token() {
			t.Errorf("%s: conflict %v, want the holder's token %d", what, err, lk.Token())
		}
		if s, err := plain.Inspect(ctx, "job"); err != nil || s.Holder == nil || s.Holder.Token != lk.Token() {
			t.Errorf("%s: Inspect = %+v, %v; want token %d", what, s, err, lk.Token())
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	take(a, "first")
	take(b, "another Locker")
	// A shared holder clears the record but keeps the counter.
	sh, err := plain.TryLock(ctx, "job", &Options{Mode: Shared})
	if err != nil {
		t.Fatal(err)
	}
	if sh.Token() != 0 {
		t.Errorf("shared lock has token %d, want 0", sh.Token())
	}
	_ = sh.Release(ctx)
	take(a, "after a shared holder")
	// A holder without fencing overwrites the counter: the clock keeps
	// tokens increasing.
	lk, err := plain.TryLock(ctx, "job", nil)
	if err != nil || lk.Token() != 0 {
		t.Fatalf("a lock without fencing: %v, token %d", err, lk.Token())
	}
	_ = lk.Release(ctx)
	take(b, "after a holder without fencing")
	// So does it when the file is removed.
	if err := os.Remove(a.mustPath(t, "job")); err != nil {
		t.Fatal(err)
	}
	take(a, "after the file was removed")
}

func (l *Locker) mustPath(t *testing.T, name string) string {
	t.Helper()
	p, err := l.Path(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTokenParsing(t *testing.T) {
	for _, c := range []struct {
		content string
		want    int64
	}{
		{`{"token":42,"pid":1}`, 42},
		{` "token":42,"pid":1}`, 42}, // cleared
		{`{"token":9223372036854775807,"pid":1}`, 9223372036854775807},
		{`{"token":9223372036854775808,"pid":1}`, 0}, // overflow
		{`{"token":12`, 0},                           // cut short
		{`{"pid":1,"token":42}`, 0},                  // not first: not ours
		{`{"token":-3,"pid":1}`, 0},
		{`x"token":42,`, 0},
		{``, 0},
	} {
		if got := parseToken([]byte(c.content)); got != c.want {
			t.Errorf("parseToken(%q) = %d, want %d", c.content, got, c.want)
		}
	}
	now := time.UnixMicro(1_000_000)
	if got := nextToken(5, now); got != 1_000_000 {
		t.Errorf("nextToken(5, 1e6µs) = %d, want the clock", got)
	}
	// A clock set back does not matter while the counter is kept.
	if got := nextToken(2_000_000, now); got != 2_000_001 {
		t.Errorf("nextToken(2e6, 1e6µs) = %d, want the counter plus one", got)
	}
	// The record reads back with its token.
	rec := []byte(`{"token":7,` + string(recordPrefix(1, "h", "", "", "")[1:]) + `2026-01-02T10:02:11Z","name":"n"}`)
	if h, name := parseHolder(rec); h == nil || h.Token != 7 || name != "n" {
		t.Errorf("parseHolder(%s) = %+v, %q", rec, h, name)
	}
}

// BenchmarkFencing compares an exclusive try and release with and without
// tokens, for the cost the documentation states.
func BenchmarkFencing(b *testing.B) {
	for _, fencing := range []bool{false, true} {
		name := "plain"
		if fencing {
			name = "fencing"
		}
		b.Run(name, func(b *testing.B) {
			l := newLocker(b, b.TempDir(), &Config{Fencing: fencing})
			ctx := context.Background()
			for b.Loop() {
				lk, err := l.TryLock(ctx, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				_ = lk.Release(ctx)
			}
		})
	}
}
