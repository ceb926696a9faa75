//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"time"

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
type turnSet = turns.Set[struct{}]

// turn is an acquire's place in its name's queue, and then its Lock's. The
// zero turn is none.
type turn struct {
	q *turns.Queue[struct{}]
	w *turns.Waiter
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
// the turn on.
func (l *Locker) passTurn(file string, t turn) {
	l.turns.Leave(file, t.q, t.w)
}
