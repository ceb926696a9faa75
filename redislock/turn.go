package redislock

import (
	"slices"
	"sync"

	"github.com/lockkit/lockkit"
)

// turns holds, per name, the FIFO queue of a Locker's Lock calls waiting
// for that name. Only the queue's head takes part in the server-side
// protocol (the wait script, the Redis wait queue, the release channel);
// the others wait in-process for their turn. The head passes the turn on
// when it acquires, fails or gives up, so a Locker has at most one
// registration per name in the Redis wait queue: the Redis queue orders
// processes, the local queue orders a process's callers.
type turns struct {
	mu sync.Mutex
	m  map[string]*turnQueue
}

// turnQueue is one name's queue; it exists while the name has waiters in
// this Locker.
type turnQueue struct {
	waiters []*turn // waiters[0] is the head
	// holder is the holder the head's last failed attempt saw, for the
	// errors of queued waiters whose context ends.
	holder *lockkit.Holder
	// sub is the subscription to the name's release channel, kept from
	// one head to the next (each head gives it its own id) and closed by
	// the last waiter to leave. nil until a head subscribed.
	sub *waiter
}

// turn is one waiting Lock call; ch is closed when it becomes the head.
type turn struct{ ch chan struct{} }

// busy reports whether name has waiters in this Locker. A new Lock call
// then queues behind them without an attempt of its own.
func (ts *turns) busy(name string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.m[name] != nil
}

// join appends a waiter to name's queue; the first becomes the head at once.
func (ts *turns) join(name string) (*turnQueue, *turn) {
	me := &turn{ch: make(chan struct{})}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = make(map[string]*turnQueue)
	}
	q := ts.m[name]
	if q == nil {
		q = &turnQueue{}
		ts.m[name] = q
	}
	q.waiters = append(q.waiters, me)
	if len(q.waiters) == 1 {
		close(me.ch)
	}
	return q, me
}

// leave removes a waiter from name's queue. When it was the head, the next
// waiter becomes the head. The last waiter to leave closes the queue's
// subscription.
func (ts *turns) leave(name string, q *turnQueue, me *turn) {
	ts.mu.Lock()
	i := slices.Index(q.waiters, me)
	if i < 0 {
		ts.mu.Unlock()
		return
	}
	q.waiters = slices.Delete(q.waiters, i, i+1)
	var sub *waiter
	switch {
	case len(q.waiters) == 0:
		delete(ts.m, name)
		sub, q.sub = q.sub, nil
	case i == 0:
		close(q.waiters[0].ch)
	}
	ts.mu.Unlock()
	if sub != nil {
		sub.close()
	}
}

// isHead reports whether me holds the turn.
func (me *turn) isHead() bool {
	select {
	case <-me.ch:
		return true
	default:
		return false
	}
}

func (ts *turns) subscription(q *turnQueue) *waiter {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return q.sub
}

func (ts *turns) setSubscription(q *turnQueue, w *waiter) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	q.sub = w
}

func (ts *turns) setHolder(q *turnQueue, h *lockkit.Holder) {
	if h == nil {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	q.holder = h
}

// heldError is the error of a waiter whose ctx ended before it acquired:
// the holder the queue's head last saw, else the one of the caller's own
// attempt (seen), else none.
func (ts *turns) heldError(q *turnQueue, name string, seen *lockkit.HeldError, cause error) error {
	ts.mu.Lock()
	h := q.holder
	ts.mu.Unlock()
	if h == nil && seen != nil {
		h = seen.Holder
	}
	if h == nil && seen == nil {
		return notAcquired(name, cause)
	}
	return &lockkit.HeldError{Name: name, Holder: h, Cause: cause}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
