//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockkit/lockkit/internal/turns"
)

// turnSpin is how long the acquire next in line watches for its turn,
// yielding the processor between looks, before it sleeps until it is woken
// (turns.Set.Spin). A turn that comes within it passes without a goroutine
// wake-up, and the new holder takes the lock on its own thread while the
// releaser carries on (bench/RESULTS.md has BenchmarkContended's figures
// with and without it). It costs at most this much processor time per
// acquire that has to queue. New reads it.
var turnSpin = 50 * time.Microsecond

// Turns order the acquires of one name within one Locker, first come first
// served, so that a holder that releases and at once acquires again, already
// running, cannot win the flock over goroutines of the same Locker that were
// waiting for it. They are a turns.Set keyed by lock file, in the mode of
// the lock.
//
// An acquire takes a turn before it touches the lock file, and the turn
// goes with the Lock until it is released (or found lost). An exclusive turn
// excludes every other turn of the name; shared turns coexist. An acquire
// that finds the turn taken, or other acquires of the name already queued,
// queues behind them; a released turn is handed straight to the head of the
// queue (to the run of shared waiters at its head), whose goroutine then
// takes the flock itself, on a descriptor of its own. The next in line
// watches for its turn for a short while before it sleeps (turnSpin).
//
// Turns only order the attempts of one Locker: the flock is still what
// excludes, between Lockers and processes as between the Locks of one
// Locker, and a turn-holder whose flock is held elsewhere waits for it as
// before (inotify wake-up, polling).
type turnSet = turns.Set[parked]

// newTurnSet returns the turns of a new Locker.
func newTurnSet() turnSet {
	return turnSet{Spin: turnSpin, New: func() parked { return parked{fd: -1} }}
}

// turn is an acquire's place in its name's queue, and then its Lock's. The
// zero turn is none.
type turn struct {
	q *turns.Queue[parked]
	w *turns.Waiter
}

// handOverMax bounds how long one open file description is handed from
// Lock to Lock of one Locker (see parked), from its first hand-over. After
// it, a Release closes the description for real, so that Lockers
// elsewhere can take the lock in between. Zero turns the hand-over off.
var handOverMax = time.Millisecond

// parked is a lock file descriptor, still flocked, that a Release of an
// exclusive Lock leaves in its name's queue for the next acquire, instead
// of closing it, when that acquire is exclusive and queued in the same
// Locker: the next holder then takes it over with the turn and writes its
// holder record, and the release and the acquire make one system call
// between them (the record) instead of seven. It is the queue's state, read
// and written with the turns locked. The lock never leaves this Locker
// while it is parked, so nobody else can hold it in between; a chain of
// hand-overs of one description lasts at most handOverMax.
type parked struct {
	fd       int // -1: none
	writable bool
	dev, ino uint64
	chain    time.Time // when the description was first handed over
}

// takeParked takes over the descriptor parked in t's queue, if any.
func (l *Locker) takeParked(t turn) (p parked, ok bool) {
	l.turns.Do(func() {
		if s := &t.q.State; s.fd >= 0 {
			p, ok = *s, true
			s.fd = -1
		}
	})
	return p, ok
}

// takeTurn takes the turn of file in mode. When the turn is free and nobody
// is queued for it, it does so at once; otherwise, when wait is set, it
// queues and waits for it, and when it is not, it fails. ok is false when
// nothing is held: err is then ctx.Err() (the turn, if it was handed to
// this acquire as ctx ended, has been handed on) or nil (!wait).
func (l *Locker) takeTurn(ctx context.Context, file string, mode Mode, wait bool) (t turn, ok bool, err error) {
	m := turns.Exclusive
	if mode == Shared {
		m = turns.Shared
	}
	if !wait {
		t.q, t.w, ok = l.turns.TryJoin(file, m)
		return t, ok, nil
	}
	t.q, t.w = l.turns.JoinMode(file, m)
	if err := t.w.Wait(ctx); err != nil {
		l.passTurn(file, t)
		return turn{}, false, err
	}
	return t, true, nil
}

// passTurn gives up t, a turn of file or a place in its queue, and hands
// the turn on. When nobody is left in the queue, a descriptor still parked
// in it (its taker gave up) is closed, which ends its flock.
func (l *Locker) passTurn(file string, t turn) {
	if l.turns.Leave(file, t.q, t.w) {
		if p := &t.q.State; p.fd >= 0 {
			unix.Close(p.fd)
			p.fd = -1
		}
	}
}
