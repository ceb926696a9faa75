//go:build linux

package filelock

import (
	"context"
	"errors"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// notifier wakes a waiting Acquire when the lock file it waits on is closed
// by someone, which is when a holder's lock goes away: lockkit releases by
// closing, and the kernel closes the files of a process that exits or is
// killed. It is an inotify instance watching the one inode the waiter has
// open, read through the runtime's poller so that a wait ends on an event,
// a deadline or the context, without a goroutine of its own.
//
// It is a shortcut, not the mechanism: waiters still retry on the polling
// schedule, which covers holders that unlock without closing, events the
// kernel queues a moment before it drops the lock (retried after
// wakeRetry), and systems where inotify
// is unavailable or its per-user limit (fs.inotify.max_user_instances) is
// reached — then newNotifier returns nil and waiting is polling alone.
//
// Closing an inotify instance can take milliseconds (the kernel waits for a
// grace period), so a Locker keeps idle notifiers for reuse (see
// Locker.getNotifier) and closes them in Close.
type notifier struct {
	f   *os.File
	ifd int
	wd  int // current watch, or -1
	buf [4096]byte
}

const notifyMask = unix.IN_CLOSE_WRITE | unix.IN_CLOSE_NOWRITE | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// newNotifier returns an unarmed notifier, or nil when inotify is not
// available.
func newNotifier() *notifier {
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(ifd), "inotify")
	if f.SetReadDeadline(time.Time{}) != nil { // not in the poller: no deadlines
		f.Close()
		return nil
	}
	return &notifier{f: f, ifd: ifd, wd: -1}
}

// arm points the notifier at the file open as fd (path is its name, for
// where /proc is not mounted), dropping the previous watch and any events
// still queued from it. It reports false when it cannot watch.
func (n *notifier) arm(fd int, path string) bool {
	if n.wd >= 0 {
		_, _ = unix.InotifyRmWatch(n.ifd, uint32(n.wd))
		n.wd = -1
	}
	for { // drain; spurious events would only cost a retry, but be tidy
		if k, err := unix.Read(n.ifd, n.buf[:]); k <= 0 || err != nil {
			break
		}
	}
	// /proc/self/fd/N names exactly the inode we have open, even if the
	// path has since been replaced.
	wd, err := unix.InotifyAddWatch(n.ifd, "/proc/self/fd/"+strconv.Itoa(fd), notifyMask)
	if err != nil {
		wd, err = unix.InotifyAddWatch(n.ifd, path, notifyMask|unix.IN_DONT_FOLLOW)
		if err != nil {
			return false
		}
	}
	n.wd = wd
	return true
}

// wait returns after an event (woken), after d, or when ctx ends (err).
func (n *notifier) wait(ctx context.Context, d time.Duration) (woken bool, err error) {
	if err := n.f.SetReadDeadline(time.Now().Add(d)); err != nil {
		return false, sleep(ctx, d)
	}
	stop := context.AfterFunc(ctx, func() { _ = n.f.SetReadDeadline(time.Unix(1, 0)) })
	_, rerr := n.f.Read(n.buf[:])
	stop()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if rerr != nil {
		if !errors.Is(rerr, os.ErrDeadlineExceeded) {
			// Broken notifier: sleep the interval instead.
			return false, sleep(ctx, d)
		}
		return false, nil
	}
	return true, nil
}

func (n *notifier) close() { n.f.Close() }
