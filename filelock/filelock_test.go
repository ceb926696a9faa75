//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/locktest"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode, os.Args[len(os.Args)-helperArgs(mode):]))
	}
	goleak.VerifyTestMain(m)
}

func newLocker(t testing.TB, dir string, cfg *Config) *Locker {
	t.Helper()
	l, err := New(dir, cfg)
	if err != nil {
		t.Fatalf("New(%q): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// leftovers counts the names whose lock file a fresh descriptor cannot
// lock exclusively at once.
func leftovers(t *testing.T, dir string, names []string) int {
	n := 0
	for _, name := range names {
		f, err := FileName(name)
		if err != nil {
			t.Errorf("FileName(%q): %v", name, err)
			continue
		}
		fd, err := unix.Open(filepath.Join(dir, f), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			t.Errorf("open %s: %v", f, err)
			n++
			continue
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Errorf("%s still locked: %v", f, err)
			n++
		}
		unix.Close(fd)
	}
	return n
}

// TestConformance runs the lockkit conformance suite. Without a periodic
// check there is no KillHolder: a flock belongs to an open file description
// of the holder's process and nothing outside that process can take it
// away; killing the process is tested in TestSIGKILLFreesLock.
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	locktest.Run(t, locktest.Config{
		NewLocker: func(t *testing.T) lockkit.Locker { return newLocker(t, dir, nil) },
		Leftovers: func(t *testing.T, names []string) int { return leftovers(t, dir, names) },
	})
}

// TestConformanceCheckInterval runs the suite with the periodic path check
// on, where the one loss a live file lock can suffer — its file removed
// from under it — is the KillHolder fault.
func TestConformanceCheckInterval(t *testing.T) {
	dir := t.TempDir()
	cfg := &Config{CheckInterval: 20 * time.Millisecond}
	locktest.Run(t, locktest.Config{
		NewLocker: func(t *testing.T) lockkit.Locker { return newLocker(t, dir, cfg) },
		KillHolder: func(t *testing.T, l lockkit.Lock) {
			if err := os.Remove(l.(*Lock).Path()); err != nil {
				t.Fatalf("remove the lock file: %v", err)
			}
		},
		LossBound: time.Second,
		Leftovers: func(t *testing.T, names []string) int { return leftovers(t, dir, names) },
	})
}
