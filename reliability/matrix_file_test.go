package reliability

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
)

// TestPitfall20_LockDirRemoved: the lock directory is removed ("rm -rf")
// while a lock is held. The holder is told within its CheckInterval (the
// flock it holds is on a file nobody else can open any more); a locker
// created afterwards recreates the directory and acquires; and the old
// locker, whose directory is gone, refuses to hand out a lock in it.
func TestPitfall20_LockDirRemoved(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "locks")
	s := spec{Kind: kindFile, Dir: dir, Check: 50 * time.Millisecond}
	old := openT(t, s)
	n := name(t)
	l := mustAcquire(t, old, n)

	removedAt := time.Now()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitDone(t, l, removedAt, s.lossBound())
	if err := l.Err(); !errors.Is(err, filelock.ErrFileRemoved) {
		t.Errorf("Err() = %v, want ErrFileRemoved", err)
	}
	releaseLost(t, l)

	// The old locker's directory is gone: no lock may be handed out in it.
	if l2, err := old.locker.TryAcquire(ctxT(t, 5*time.Second), n); err == nil {
		_ = l2.Release(ctxT(t, 5*time.Second))
		t.Fatal("TryAcquire in a removed directory returned a lock nobody else can see")
	} else if errors.Is(err, lockkit.ErrNotAcquired) || errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("TryAcquire in a removed directory = %v, want an I/O error", err)
	}

	fresh := openT(t, s) // New creates the directory again
	l3 := mustAcquire(t, fresh, n)
	releaseOK(t, l3)
}

// TestPitfall20_WaiterFollowsReplacedFile: a waiter that opened the lock
// file before it was removed must not keep polling the removed file. Here
// the old holder does not know (no CheckInterval) and keeps its descriptor.
// The new file is free: the waiter and a newcomer must share it — whichever
// takes it first, the other gets it when it is released — instead of the
// waiter waiting for the old holder.
func TestPitfall20_WaiterFollowsReplacedFile(t *testing.T) {
	t.Parallel()
	s := spec{Kind: kindFile, Dir: t.TempDir()}
	holder, waiter, newcomer := openT(t, s), openT(t, s), openT(t, s)
	n := name(t)
	h := mustAcquire(t, holder, n)
	w := goAcquire(t, waiter, n, 10*time.Second)
	time.Sleep(100 * time.Millisecond) // the waiter has opened the file and polls
	notYet(t, w, "while the holder held the lock")

	path, err := holder.fl.Path(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// The new file is free: the waiter (woken by the removal) or a
	// newcomer takes it first, and the other waits for that one only.
	nc := goAcquire(t, newcomer, n, 10*time.Second)
	select {
	case r := <-nc:
		if r.err != nil {
			t.Fatalf("newcomer: %v", r.err)
		}
		notYet(t, w, "while the newcomer held the new file")
		releaseOK(t, r.l)
		releasedAt := time.Now()
		select {
		case wr := <-w:
			if wr.err != nil {
				t.Fatalf("waiter: %v", wr.err)
			}
			t.Logf("waiter acquired the new file %v after the newcomer released it", wr.at.Sub(releasedAt))
			releaseOK(t, wr.l)
		case <-time.After(2 * time.Second):
			t.Errorf("filelock: a waiter that opened the lock file before it was removed keeps polling " +
				"the removed file, and waits for its old holder; it should move to the path's new file " +
				"(free for 2s now)")
		}
	case wr := <-w:
		if wr.err != nil {
			t.Fatalf("waiter: %v", wr.err)
		}
		t.Log("the waiter moved to the new file and took it first")
		time.Sleep(50 * time.Millisecond)
		notYet(t, nc, "while the waiter held the new file")
		releaseOK(t, wr.l)
		got(t, nc, 2*time.Second)
	case <-time.After(5 * time.Second):
		t.Fatal("neither the waiter nor a newcomer took the new, free lock file")
	}
	_ = h.Release(ctxT(t, 5*time.Second))
}

// TestPitfall21_LockDirReadOnly: the lock directory becomes read-only while
// a process (running as an unprivileged user, since root ignores
// permissions) holds a lock in it. The held lock is not disturbed and is
// released cleanly; a name whose file does not exist yet fails at once with
// a permission error (not a wait, not "held"); a name whose file exists is
// still locked, and still excludes other processes; a read-only lock file
// is locked through a read-only descriptor.
func TestPitfall21_LockDirReadOnly(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the helper as the unprivileged user nobody")
	}
	dir, err := os.MkdirTemp("", "lkro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	const nobody = 65534
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := spec{Kind: kindFile, Dir: dir, Check: 50 * time.Millisecond}
	c := startChild(t, "script", s, "", &childOptions{cred: &syscall.Credential{Uid: nobody, Gid: nobody}})
	c.do(command{Op: "acquire", Name: "kept"})
	c.next("held", 10*time.Second)
	c.do(command{Op: "acquire", Name: "existing"})
	c.next("held", 10*time.Second)
	c.do(command{Op: "release", Name: "existing"})
	if e := c.next("released", 10*time.Second); e.Err != "" {
		t.Fatalf("release: %s", e.Err)
	}

	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	c.do(command{Op: "acquire", Name: "new", Wait: 5 * time.Second})
	e := c.next("error", 10*time.Second)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("acquire in a read-only directory took %v; want an immediate error, not a wait", took)
	}
	if !strings.Contains(e.Err, "permission denied") || strings.Contains(e.Err, "not acquired") {
		t.Errorf("acquire of a new name in a read-only directory: %q, want a permission error", e.Err)
	}

	c.do(command{Op: "acquire", Name: "existing"})
	c.next("held", 10*time.Second)
	// Root's locker (as another process would) is excluded by it.
	root := openT(t, s)
	if l, err := root.locker.TryAcquire(ctxT(t, 5*time.Second), "existing"); err == nil {
		_ = l.Release(ctxT(t, 5*time.Second))
		t.Fatal("a second process took a lock held in a read-only directory")
	} else if !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("TryAcquire = %v, want ErrNotAcquired", err)
	}
	c.do(command{Op: "release", Name: "existing"})
	if e := c.next("released", 10*time.Second); e.Err != "" {
		t.Errorf("release in a read-only directory: %s", e.Err)
	}

	// A read-only lock file is locked through a read-only descriptor.
	if err := os.Chmod(filepath.Join(dir, "existing.lock"), 0o444); err != nil {
		t.Fatal(err)
	}
	c.do(command{Op: "acquire", Name: "existing"})
	c.next("held", 10*time.Second)
	c.do(command{Op: "release", Name: "existing"})
	c.next("released", 10*time.Second)

	// The lock held all along was never disturbed.
	c.do(command{Op: "release", Name: "kept"})
	if e := c.next("released", 10*time.Second); e.Err != "" {
		t.Errorf("the lock held while the directory became read-only: release = %s", e.Err)
	}
}
