//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Clean removes the lock files in the directory that nobody holds, and
// returns how many it removed. lockkit itself never removes lock files;
// Clean is for directories where many one-off names pile up.
//
// Each file is removed only while Clean holds its lock: Clean opens it,
// takes a non-blocking exclusive flock, checks that the path still names
// the file it locked, removes it, and only then closes it. A lockkit
// process that opened the file before the removal and locks it afterwards
// notices that the path no longer names its file and starts over on the new
// one, so two holders never hold the same name.
//
// Clean is safe only where every process that locks in the directory
// rechecks the path after locking, as lockkit does. util-linux flock(1) and
// most hand-written flock code do not: a process of theirs can lock a
// removed file while another locks its replacement. Do not run Clean on a
// directory such tools share.
//
// Only regular files whose names end in ".lock" are considered. Clean stops
// when ctx ends.
func (l *Locker) Clean(ctx context.Context) (int, error) {
	if err := l.ref(); err != nil {
		return 0, err
	}
	defer l.unref()
	names, err := l.readDir()
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if !strings.HasSuffix(name, Suffix) || strings.HasPrefix(name, ".") {
			continue
		}
		ok, err := l.cleanOne(name)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed++
		}
	}
	return removed, errors.Join(errs...)
}

func (l *Locker) cleanOne(file string) (bool, error) {
	fd, err := openatRetry(l.dirfd, file, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		if err == unix.ENOENT || err == unix.ELOOP || err == unix.EMLINK {
			return false, nil // gone, or not ours to touch
		}
		return false, fmt.Errorf("filelock: clean %s: %w", file, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return false, fmt.Errorf("filelock: clean %s: %w", file, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return false, nil
	}
	if err := flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if err == unix.EWOULDBLOCK {
			return false, nil // held
		}
		return false, fmt.Errorf("filelock: clean %s: %w", file, err)
	}
	if same, err := l.sameFile(file, &st); err != nil || !same {
		return false, err
	}
	if err := unix.Unlinkat(l.dirfd, file, 0); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, fmt.Errorf("filelock: clean %s: %w", file, err)
	}
	return true, nil // the deferred close drops the lock, after the unlink
}
