//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"bufio"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

// TestFlockInterop checks that lockkit and util-linux flock(1) take the
// same lock for a plain name: DIR/NAME.lock.
func TestFlockInterop(t *testing.T) {
	flockBin, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("util-linux flock(1) not installed")
	}
	dir := t.TempDir()
	l := newLocker(t, dir, nil)
	path := filepath.Join(dir, "shared-job.lock")

	// lockkit holds: flock -n fails (exit 1), flock -s -n too.
	lk := mustTry(t, l, "shared-job", Exclusive)
	for _, args := range [][]string{{"-n", path, "true"}, {"-s", "-n", path, "true"}} {
		err := exec.Command(flockBin, args...).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("flock %v while lockkit holds = %v, want exit status 1", args, err)
		}
	}
	mustRelease(t, lk)
	if out, err := exec.Command(flockBin, "-n", path, "true").CombinedOutput(); err != nil {
		t.Errorf("flock -n after lockkit released = %v %s", err, out)
	}

	// lockkit shared coexists with flock -s.
	s := mustTry(t, l, "shared-job", Shared)
	if out, err := exec.Command(flockBin, "-s", "-n", path, "true").CombinedOutput(); err != nil {
		t.Errorf("flock -s -n while lockkit holds shared = %v %s", err, out)
	}
	mustRelease(t, s)

	// flock(1) holds: lockkit's TryAcquire fails, and Acquire waits until
	// flock(1)'s command exits.
	cmd := exec.Command(flockBin, path, "sh", "-c", "echo held; sleep 1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "held\n" {
		t.Fatalf("flock(1) did not start its command: %q %v", line, err)
	}
	got, err := l.TryAcquire(ctxT(t, time.Second), "shared-job")
	if !errors.Is(err, lockkit.ErrNotAcquired) {
		if got != nil {
			_ = got.Release(ctxT(t, time.Second))
		}
		t.Fatalf("TryAcquire while flock(1) holds = %v, want ErrNotAcquired", err)
	}
	if _, err := l.TryLock(ctxT(t, time.Second), "shared-job", &Options{Mode: Shared}); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("shared TryAcquire while flock(1) holds exclusively = %v, want ErrNotAcquired", err)
	}
	got, err = l.Acquire(ctxT(t, 10*time.Second), "shared-job")
	if err != nil {
		t.Fatalf("Acquire while flock(1) holds for 1s = %v", err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("Acquire returned while flock(1)'s command was still running")
	}
	mustRelease(t, got)
}
