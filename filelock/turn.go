//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"runtime"
	"slices"
	"time"
)

// turnSpin is how long the acquire at the head of a queue watches for its
// turn, yielding the processor between looks, before it sleeps until it is
// woken. A turn that comes within it passes without a goroutine wake-up, and
// the new holder takes the lock on its own thread while the releaser
// carries on: measured with BenchmarkContended, 16 goroutines on one name
// take 72-83k locks/s with it and 58-60k/s without. It costs at most this
// much processor time per acquire that has to queue.
var turnSpin = 50 * time.Microsecond

// Turns order the acquires of one name within one Locker, first come first
// served, so that a holder that releases and at once acquires again, already
// running, cannot win the flock over goroutines of the same Locker that were
// waiting for it.
//
// An acquire takes a turn before it touches the lock file, and the turn
// goes with the Lock until it is released (or found lost). An exclusive turn
// excludes every other turn of the name; shared turns coexist. An acquire
// that finds the turn taken, or other acquires of the name already queued,
// queues behind them; a released turn is handed straight to the head of the
// queue (to the run of shared waiters at its head), whose goroutine then
// takes the flock itself, on a descriptor of its own. The head of the queue
// watches for its turn for a short while before it sleeps (turnSpin).
//
// Turns only order the attempts of one Locker: the flock is still what
// excludes, between Lockers and processes as between the Locks of one
// Locker, and a turn-holder whose flock is held elsewhere waits for it as
// before (inotify wake-up, polling).

// nameTurns is the turn state of one name (keyed by lock file) in a Locker.
// It exists while a turn is held or an acquire is queued.
type nameTurns struct {
	excl    bool // an exclusive turn is held
	shared  int  // shared turns held
	waiters []*turnWaiter
}

// turnWaiter is a queued acquire; ready is closed when it is handed the
// turn, and granted is set then (under Locker.turnMu). next is closed when
// it comes to the head of the queue.
type turnWaiter struct {
	mode    Mode
	ready   chan struct{}
	granted bool
	next    chan struct{}
	headed  bool
}

// head tells w that it heads the queue: it is next, and watches for its
// turn for a while (turnSpin) instead of sleeping. turnMu is held.
func (w *turnWaiter) head() {
	if !w.headed {
		w.headed = true
		close(w.next)
	}
}

func (q *nameTurns) free(mode Mode) bool {
	if mode == Shared {
		return !q.excl
	}
	return !q.excl && q.shared == 0
}

func (q *nameTurns) take(mode Mode) {
	if mode == Shared {
		q.shared++
	} else {
		q.excl = true
	}
}

// grant hands the turn to the head of the queue while it can have it.
func (q *nameTurns) grant() {
	for len(q.waiters) > 0 && q.free(q.waiters[0].mode) {
		w := q.waiters[0]
		q.waiters[0] = nil
		q.waiters = q.waiters[1:]
		q.take(w.mode)
		w.granted = true
		close(w.ready)
	}
	if len(q.waiters) == 0 {
		q.waiters = nil // let the backing array go
	} else if turnSpin > 0 {
		q.waiters[0].head()
	}
}

func (q *nameTurns) idle() bool { return !q.excl && q.shared == 0 && len(q.waiters) == 0 }

// takeTurn takes the turn of file in mode when it is free and nobody is
// queued for it (ok). Otherwise, when queue is set, it queues: the caller
// then waits with waitTurn; when it is not, it returns neither.
func (l *Locker) takeTurn(file string, mode Mode, queue bool) (w *turnWaiter, ok bool) {
	l.turnMu.Lock()
	defer l.turnMu.Unlock()
	q := l.turns[file]
	if q == nil {
		q = &nameTurns{}
		if l.turns == nil {
			l.turns = make(map[string]*nameTurns)
		}
		l.turns[file] = q
	}
	if len(q.waiters) == 0 && q.free(mode) {
		q.take(mode)
		return nil, true
	}
	if !queue {
		return nil, false // q is not idle: it stays
	}
	w = &turnWaiter{mode: mode, ready: make(chan struct{}), next: make(chan struct{})}
	q.waiters = append(q.waiters, w)
	if len(q.waiters) == 1 && turnSpin > 0 {
		w.head()
	}
	return w, false
}

// waitTurn waits until w is handed the turn of file, or ctx ends. When ctx
// ends first, w leaves the queue, or, if it was handed the turn meanwhile,
// hands it on, and waitTurn returns ctx.Err(): nothing is held then.
func (l *Locker) waitTurn(ctx context.Context, file string, w *turnWaiter) error {
	select {
	case <-w.ready:
		return nil
	case <-w.next:
		// Next in line: the turn may come any moment. Watch for it
		// for a while (see turnSpin).
		end := time.Now().Add(turnSpin)
		for {
			select {
			case <-w.ready:
				return nil
			case <-ctx.Done():
				l.leaveQueue(file, w)
				return ctx.Err()
			default:
			}
			if time.Now().After(end) {
				break
			}
			runtime.Gosched()
		}
		select {
		case <-w.ready:
			return nil
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
	l.leaveQueue(file, w)
	return ctx.Err()
}

// leaveQueue takes w out of file's queue, or, if it was handed the turn
// meanwhile, hands it on.
func (l *Locker) leaveQueue(file string, w *turnWaiter) {
	l.turnMu.Lock()
	q := l.turns[file]
	if w.granted {
		l.turnMu.Unlock()
		l.passTurn(file, w.mode)
		return
	}
	if i := slices.Index(q.waiters, w); i >= 0 {
		q.waiters = slices.Delete(q.waiters, i, i+1)
	}
	// The head may have been waiting behind w only (a shared waiter
	// behind an exclusive one, while shared turns are held).
	q.grant()
	if q.idle() {
		delete(l.turns, file)
	}
	l.turnMu.Unlock()
}

// passTurn gives back a turn of file taken in mode and hands it to the head
// of the queue.
func (l *Locker) passTurn(file string, mode Mode) {
	l.turnMu.Lock()
	defer l.turnMu.Unlock()
	q := l.turns[file]
	if mode == Shared {
		q.shared--
	} else {
		q.excl = false
	}
	q.grant()
	if q.idle() {
		delete(l.turns, file)
	}
}
