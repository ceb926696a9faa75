//go:build linux

package filelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/changes"
)

var _ lockkit.Watcher = (*Locker)(nil)

// watchMask is what changes a lock: a holder writes its record (modify),
// a lock file's last writable descriptor closes (an unlock, or the kernel
// closing a dead holder's files), a file is created, removed or renamed.
// Readers such as List open lock files read-only, so their closes
// (IN_CLOSE_NOWRITE) wake nobody.
const watchMask = unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB | unix.IN_CREATE |
	unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// Changes implements lockkit.Watcher with an inotify instance on the lock
// directory: an exclusive holder writing its record, a holder's descriptor
// closing (a release, or the kernel closing the files of a process that
// died), and lock files created or removed wake the channel, for the
// named locks' files (no names: every file). Shared holders write no
// record, so a shared acquire is seen at its holder's close only, or by
// the caller's poll. An acquire that failed also closes a writable
// descriptor, which wakes the channel for nothing. The directory itself
// removed or renamed closes the channel. Where inotify is not available
// (its per-user limit reached) Changes returns an error matching
// lockkit.ErrUnsupported.
func (l *Locker) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	var want map[string]bool // lock file names; nil: every file
	if len(names) > 0 {
		want = make(map[string]bool, len(names))
		for _, n := range names {
			if err := checkName(n); err != nil {
				return nil, err
			}
			want[fileName(n)] = true
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := l.ref(); err != nil {
		return nil, err
	}
	defer l.unref()
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("filelock: inotify: %v: %w", err, lockkit.ErrUnsupported)
	}
	f := os.NewFile(uintptr(ifd), "inotify")
	if _, err := unix.InotifyAddWatch(ifd, "/proc/self/fd/"+strconv.Itoa(l.dirfd), watchMask|unix.IN_ONLYDIR); err != nil {
		if _, err = unix.InotifyAddWatch(ifd, l.dir, watchMask|unix.IN_ONLYDIR); err != nil {
			f.Close()
			return nil, fmt.Errorf("filelock: watch %s: %w", l.dir, err)
		}
	}
	buf := make([]byte, 64*1024)
	recv := func(ctx context.Context) (bool, error) {
		stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
		n, err := f.Read(buf)
		stop()
		if err != nil {
			return false, err
		}
		wake := false
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			switch {
			case ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0:
				return true, errDirGone
			case want == nil || want[cString(nameBytes)]:
				wake = true
			}
		}
		return wake, nil
	}
	return changes.Feed(ctx, recv, func() { f.Close() }), nil
}

var errDirGone = errors.New("filelock: the lock directory was removed or renamed")

// Announce implements lockkit.Watcher. It does nothing: inotify sees an
// exclusive holder's acquire (its record) and every release by itself.
func (l *Locker) Announce(ctx context.Context, name string) error { return checkName(name) }
