//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"time"

	"golang.org/x/sys/unix"
)

// The wrappers retry on EINTR, which the Go runtime's signals can cause.

func openRetry(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func openatRetry(dirfd int, file string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, file, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

func fstat(fd int, st *unix.Stat_t) error {
	for {
		err := unix.Fstat(fd, st)
		if err != unix.EINTR {
			return err
		}
	}
}

func fstatat(dirfd int, file string, st *unix.Stat_t, flags int) error {
	for {
		err := unix.Fstatat(dirfd, file, st, flags)
		if err != unix.EINTR {
			return err
		}
	}
}

func pwriteFull(fd int, b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Pwrite(fd, b[done:], int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, unix.EIO
		}
		done += n
	}
	return done, nil
}

// sleep waits d or until ctx ends, and returns ctx.Err() if it did.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
