package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"

	"github.com/lockkit/lockkit/filelock"
)

// setupFiles measures filelock against the same system calls made directly
// and against gofrs/flock.
func setupFiles(ctx context.Context, e *env) (*backendSetup, error) {
	dir := filepath.Join(e.tmp, "locks")
	lk, err := filelock.New(dir, nil)
	if err != nil {
		return nil, err
	}
	fl, err := newFileFloor(dir)
	if err != nil {
		lk.Close()
		return nil, err
	}
	name := e.lockName

	lockkitV := &variant{
		name: "lockkit", role: roleLockkit, countFDs: true,
		note: "filelock.New(dir, nil): TryAcquire/Acquire + Release; one Locker for the 16 workers, whose acquires of a name take turns FIFO in-process (a Release hands the turn to the next, which then takes the flock — or, when both are exclusive, hands it the still-flocked descriptor, for up to 1 ms of such hand-overs in a row; the next in line watches for its turn for up to 50µs before sleeping); a turn's flock attempt that finds the lock held retries on an inotify event (a close of the lock file) and otherwise polls (500µs doubling to 50ms, jitter); TryAcquire fails at once while this Locker holds or queues for the name",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			l, err := lk.TryAcquire(ctx, name(k))
			if err != nil {
				return nil, err
			}
			return l.Release, nil
		},
		contended: sharedLockerWorkers(lk, name),
	}
	floorV := &variant{
		name: "floor", role: roleFloor, countFDs: true,
		note: "the syscalls filelock makes, made directly: openat(O_CREAT|O_NOFOLLOW), fstat, flock(LOCK_EX|LOCK_NB), fstatat, pwrite holder record; release: pwrite of one byte (clears the record), close (ends the flock): 7 system calls per lock. Contended: blocking flock(LOCK_EX), the kernel's wait",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			return fl.lock(name(k), false)
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) { return fl.lock(name(k), true) })
			}
			return ws, func() {}, nil
		},
	}
	gofrsV := &variant{
		name: "gofrs/flock", role: rolePeer, countFDs: true,
		note: "flock.New(path) per lock: TryLock/Unlock; contended: Lock (a blocking flock) per worker",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			f := flock.New(filepath.Join(dir, name(k)+".lock"))
			ok, err := f.TryLock()
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, errors.New("gofrs/flock: held")
			}
			return func(context.Context) error { return f.Unlock() }, nil
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			ws := make([]worker, n)
			for i := range ws {
				f := flock.New(filepath.Join(dir, name(k)+".lock"))
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) {
					if err := f.Lock(); err != nil {
						return nil, err
					}
					return func(context.Context) error { return f.Unlock() }, nil
				})
			}
			return ws, func() {}, nil
		},
	}
	ind, err := independentVariants(e, "files", nil)
	if err != nil {
		lk.Close()
		fl.close()
		return nil, err
	}
	return &backendSetup{
		variants: append([]*variant{lockkitV, floorV, gofrsV, singleFileVariant(floorV)}, ind...),
		notes:    []string{"lock files in a fresh directory under " + os.TempDir() + "; no network, so no round trips"},
		cleanup: func() {
			lk.Close()
			fl.close()
		},
	}, nil
}

// fileFloor makes filelock's system calls with nothing in between.
type fileFloor struct {
	dirfd  int
	prefix []byte
}

func newFileFloor(dir string) (*fileFloor, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	prefix := []byte(`{"pid":` + strconv.Itoa(os.Getpid()) + `,"host":"` + host + `","owner":"bench","app":"bench","since":"`)
	return &fileFloor{dirfd: fd, prefix: prefix}, nil
}

func (f *fileFloor) close() { unix.Close(f.dirfd) }

// lock takes the lock file of a plain name, as filelock does.
func (f *fileFloor) lock(name string, wait bool) (releaseFunc, error) {
	file := name + ".lock"
	const flags = unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	fd, err := unix.Openat(f.dirfd, file, unix.O_RDWR|unix.O_CREAT|flags, 0o644)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	how := unix.LOCK_EX | unix.LOCK_NB
	if wait {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(fd, how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("flock: %w", err)
	}
	var now unix.Stat_t
	if err := unix.Fstatat(f.dirfd, file, &now, unix.AT_SYMLINK_NOFOLLOW); err != nil || now.Ino != st.Ino {
		unix.Close(fd)
		return nil, fmt.Errorf("lock file replaced")
	}
	var buf [512]byte
	rec := append(buf[:0], f.prefix...)
	rec = time.Now().UTC().AppendFormat(rec, time.RFC3339Nano)
	rec = append(rec, `","name":"`...)
	rec = append(rec, name...)
	rec = append(rec, "\"}\n"...)
	if _, err := unix.Pwrite(fd, rec, 0); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return func(context.Context) error {
		_, err := unix.Pwrite(fd, []byte{' '}, 0) // clear the record
		if cerr := unix.Close(fd); err == nil {   // ends the flock
			err = cerr
		}
		return err
	}, nil
}
