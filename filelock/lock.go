//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/lockstate"
	"github.com/lockkit/lockkit/internal/turns"
	"golang.org/x/sys/unix"
)

// Lock is a held file lock. It implements lockkit.Lock; Token is 0 unless
// the Locker has Config.Fencing, as flock has no fencing token of its own.
//
// The lock lives as long as its open file description: Release closes it,
// and so does the kernel when the process exits or is killed, which frees
// the lock at once. It cannot be taken away while the descriptor is open,
// but the lock file can be removed or replaced under it; [Lock.Check], and
// with Config.CheckInterval the periodic check and Release, report that as
// a loss (matching lockkit.ErrLost, with cause [ErrFileRemoved]).
type Lock struct {
	state    lockstate.Handle // by value: one allocation less per lock
	locker   *Locker
	file     string
	mode     Mode
	writable bool
	dev, ino uint64

	mu     sync.Mutex // guards fd and turn against a concurrent Check during Release
	fd     int        // -1 once closed
	turn   turn       // the lock's turn for the name in its Locker, until passed on (see turn.go)
	chain  time.Time  // when fd was first handed over (see parked); zero: never
	stop   chan struct{}
	wg     sync.WaitGroup
	closed bool
}

var _ lockkit.Lock = (*Lock)(nil)

// Name returns the name the lock was acquired under.
func (lk *Lock) Name() string { return lk.state.Name() }

// Token returns the lock's fencing token with Config.Fencing (exclusive
// locks only), else 0.
func (lk *Lock) Token() int64 { return lk.state.Token() }

// Done is closed when the lock is released or lost.
func (lk *Lock) Done() <-chan struct{} { return lk.state.Done() }

// Err is nil while the lock is held; then lockkit.ErrReleased, or an error
// wrapping lockkit.ErrLost with the cause.
func (lk *Lock) Err() error { return lk.state.Err() }

// Release clears the holder record and closes the lock file's descriptor,
// which ends the flock; see [lockkit.Lock.Release]. With
// Config.CheckInterval it first checks that the path still names the
// locked file, and reports a loss otherwise.
func (lk *Lock) Release(ctx context.Context) error { return lk.state.Release(ctx) }

// Mode returns the mode the lock is held in.
func (lk *Lock) Mode() Mode { return lk.mode }

// Path returns the lock file's path.
func (lk *Lock) Path() string { return filepath.Join(lk.locker.dir, lk.file) }

func (lk *Lock) start(name string, token int64) {
	lk.state.Init(name, token, lk.unlock)
	if iv := lk.locker.cfg.CheckInterval; iv > 0 {
		lk.stop = make(chan struct{})
		lk.wg.Add(1)
		go lk.watch(iv)
	}
}

// Check reports whether the lock file at the lock's path is still the file
// this lock holds. When it is not, the lock is marked lost (Done closes),
// the next acquire of the name queued in its Locker gets its turn, and
// Check returns the loss error, which matches lockkit.ErrLost. After
// Release, Check returns Err.
func (lk *Lock) Check() error {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.closed {
		return lk.Err()
	}
	if err := lk.check(); err != nil && lk.state.MarkLost(err) {
		// A lost lock no longer holds anyone of this Locker back: the
		// next acquire of the name takes the path's file (the flock
		// still decides, should the old file be the path's file).
		lk.passTurn()
	}
	return lk.Err()
}

// passTurn hands the lock's turn on, once. lk.mu is held.
func (lk *Lock) passTurn() {
	if lk.turn.w != nil {
		lk.locker.passTurn(lk.file, lk.turn)
		lk.turn = turn{}
	}
}

// check compares the path's file with the locked one. lk.mu is held, and
// the lock is not yet closed, so the Locker's directory is still open.
func (lk *Lock) check() error {
	var st unix.Stat_t
	err := fstatat(lk.locker.dirfd, lk.file, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == unix.ENOENT:
		return ErrFileRemoved
	case err != nil:
		return fmt.Errorf("filelock: stat %s: %w", lk.file, err)
	case uint64(st.Dev) != lk.dev || uint64(st.Ino) != lk.ino:
		return ErrFileRemoved
	}
	return nil
}

func (lk *Lock) watch(iv time.Duration) {
	defer lk.wg.Done()
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-lk.stop:
			return
		case <-lk.Done():
			return
		case <-t.C:
			_ = lk.Check()
		}
	}
}

// handOver parks the lock's descriptor, still flocked, for the next
// acquire of the name in this Locker and passes the turn to it, when that
// acquire is exclusive, the lock is exclusive, and the description was
// first handed over less than handOverMax ago (or never); it reports
// whether it did. The holder record is left for the next holder to
// overwrite. lk.mu is held.
func (lk *Lock) handOver() bool {
	if lk.mode != Exclusive || lk.turn.w == nil || handOverMax <= 0 {
		return false
	}
	l, q := lk.locker, lk.turn.q
	ok := false
	l.turns.Do(func() {
		if m, next := q.NextMode(); !next || m != turns.Exclusive || q.State.fd >= 0 {
			return
		}
		// The clock is read only for a hand-over: a Release with
		// nobody queued behind it does without.
		chain := lk.chain
		if chain.IsZero() {
			chain = time.Now()
		} else if time.Since(chain) >= handOverMax {
			return
		}
		q.State = parked{fd: lk.fd, writable: lk.writable, dev: lk.dev, ino: lk.ino, chain: chain}
		ok = true
	})
	if ok {
		handOvers.Add(1)
		lk.passTurn()
	}
	return ok
}

// handOvers counts hand-overs, for tests.
var handOvers atomic.Int64

// unlock is the lockstate.UnlockFunc: with Config.CheckInterval check the
// path, clear the holder record, close the descriptor (which ends the
// flock), hand the turn on.
//
// There is no flock(LOCK_UN) before the close: close(2) drops the lock
// before it returns (the kernel frees the file description on the way
// back to user space), so the next acquire of this Locker, handed the turn
// after it, finds the lock free. A waiter elsewhere, woken by inotify's
// close event, may be a moment early (the kernel queues the event just
// before it drops the lock); it retries shortly after (see wakeRetry).
func (lk *Lock) unlock(_ context.Context, lost bool) error {
	if lk.stop != nil {
		close(lk.stop)
		lk.wg.Wait()
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	var err error
	if !lost {
		if lk.locker.cfg.CheckInterval > 0 {
			err = lk.check()
		}
		if err == nil && lk.handOver() {
			lk.fd = -1
			lk.closed = true
			lk.locker.unref()
			return nil
		}
		if err == nil && lk.writable && lk.mode == Exclusive {
			// Clear the record so that nobody reads a holder that is
			// gone. Shared holders wrote none and leave the file to
			// the others.
			if terr := clearRecord(lk.fd); terr != nil {
				err = fmt.Errorf("filelock: clear holder record: %w", terr)
			}
		}
	}
	cerr := unix.Close(lk.fd)
	lk.fd = -1
	lk.closed = true
	// The next acquire of this Locker (if one is queued) can take the
	// lock now.
	lk.passTurn()
	if cerr != nil && err == nil && !lost {
		// close(2) on a local file does not fail in practice; if it
		// did, the kernel still released the descriptor.
		err = fmt.Errorf("filelock: close: %w", cerr)
	}
	lk.locker.unref()
	return err
}
