//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

// TestSIGKILLFreesLock: a holder process killed with SIGKILL frees the lock
// at once, because the kernel closes its descriptors.
func TestSIGKILLFreesLock(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, nil)
	cmd, _ := startHolder(t, dir, "victim")

	lk, err := l.TryAcquire(ctxT(t, 5*time.Second), "victim")
	if err == nil {
		_ = lk.Release(ctxT(t, 5*time.Second))
		t.Fatal("TryAcquire succeeded while the helper process held the lock")
	}
	var he *lockkit.HeldError
	if !errors.As(err, &he) {
		t.Fatalf("TryAcquire = %v, want a *lockkit.HeldError", err)
	}
	if he.Holder == nil || he.Holder.PID != cmd.Process.Pid {
		t.Fatalf("HeldError.Holder = %v, want the helper's pid %d", he.Holder, cmd.Process.Pid)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // reaped: its descriptors are closed
	lk, err = l.TryAcquire(ctxT(t, 5*time.Second), "victim")
	if err != nil {
		t.Fatalf("TryAcquire right after the holder was SIGKILLed = %v, want held", err)
	}
	if err := lk.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestSIGKILLWakesWaiter: a waiter blocked in Acquire takes the lock when
// the holder process is SIGKILLed, without the holder ever releasing.
func TestSIGKILLWakesWaiter(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, nil)
	cmd, _ := startHolder(t, dir, "victim")
	type result struct {
		lk  lockkit.Lock
		err error
		at  time.Time
	}
	res := make(chan result, 1)
	go func() {
		lk, err := l.Acquire(ctxT(t, 20*time.Second), "victim")
		res <- result{lk, err, time.Now()}
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case r := <-res:
		t.Fatalf("Acquire returned while the helper held the lock: %v", r.err)
	default:
	}
	killed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("Acquire after the holder was SIGKILLed = %v", r.err)
	}
	t.Logf("waiter held the lock %v after SIGKILL was sent", r.at.Sub(killed))
	if err := r.lk.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestReadOnlyHolder: a process that may not write the lock file (another
// user's, mode 0644) still locks it, through a read-only descriptor, and
// excludes others; it writes no holder record. Needs root, to run the
// helper as another user.
func TestReadOnlyHolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper process as another user")
	}
	dir := filepath.Join(t.TempDir(), "locks")
	l := newLocker(t, dir, &Config{DirMode: 0o755})
	for _, d := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		if err := os.Chmod(d, 0o755); err != nil { // t.TempDir is 0700
			t.Fatal(err)
		}
	}
	lk := mustTry(t, l, "ro", Exclusive) // root creates the file, 0644
	mustRelease(t, lk)

	t.Setenv(helperUIDEnv, "65534")
	_, _ = startHolder(t, dir, "ro")
	got, err := l.TryAcquire(ctxT(t, 5*time.Second), "ro")
	var he *lockkit.HeldError
	if !errors.As(err, &he) {
		if got != nil {
			_ = got.Release(ctxT(t, 5*time.Second))
		}
		t.Fatalf("TryAcquire while a read-only helper holds = %v, want a HeldError", err)
	}
	if he.Holder != nil {
		t.Errorf("holder record %+v, want none from a read-only holder (the last one was cleared)", he.Holder)
	}
}

// TestCrossProcessExclusion: several OS processes increment a counter file
// with a read-modify-write under the lock; no increment may be lost.
func TestCrossProcessExclusion(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(t.TempDir(), "counter")
	if err := os.WriteFile(counter, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	const procs, rounds = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, procs)
	for range procs {
		cmd := helper(t, "count", dir, "counter", counter, strconv.Itoa(rounds))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("helper: %v", err)
	}
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(procs*rounds) {
		t.Errorf("counter = %s, want %d: increments were lost, so the processes did not exclude each other", got, procs*rounds)
	}
}

// TestCleanRaceAcrossProcesses: processes repeatedly create, lock and
// unlock one lock file while Clean removes it whenever it is free. Acquire
// must notice a file removed between its open and its flock and start
// over; otherwise two processes hold two inodes of one name and increments
// are lost.
func TestCleanRaceAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(t.TempDir(), "counter")
	if err := os.WriteFile(counter, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	cleaner := newLocker(t, dir, nil)
	const procs, rounds = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, procs)
	for range procs {
		cmd := helper(t, "count", dir, "raced", counter, strconv.Itoa(rounds))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs <- err
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	removed := 0
	for done := false; !done; {
		select {
		case <-finished:
			done = true
		default:
		}
		n, err := cleaner.Clean(ctxT(t, 10*time.Second))
		if err != nil {
			t.Errorf("Clean: %v", err)
		}
		removed += n
	}
	close(errs)
	for err := range errs {
		t.Errorf("helper: %v", err)
	}
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(procs*rounds) {
		t.Errorf("counter = %s, want %d: increments were lost, so a removed lock file let two processes hold the lock", got, procs*rounds)
	}
	if removed == 0 {
		t.Errorf("Clean never removed the lock file, so the race was not exercised")
	}
	t.Logf("Clean removed the lock file %d times during %d locked increments", removed, procs*rounds)
}
