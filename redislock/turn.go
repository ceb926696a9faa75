package redislock

import (
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/turns"
)

// turnSet holds, per name, the FIFO queue of a Locker's Lock calls waiting
// for that name (package turns). Only the holder of the turn takes part in
// the server-side protocol (the wait script, the Redis wait queue, the
// release channel); the others wait in-process. The turn passes on when its
// holder acquires, fails or gives up, so a Locker has at most one
// registration per name in the Redis wait queue: the Redis queue orders
// processes, the local queue orders a process's callers.
type turnSet struct {
	turns.Set[*turnState]
}

// turnState is the state of one name's queue, read and written with the
// set locked.
type turnState struct {
	// holder is the holder the last failed attempt saw, for the errors of
	// queued waiters whose context ends.
	holder *lockkit.Holder
	// keys is the name's keys, made by the first holder of the turn for
	// all (see nameKeys); nil until then.
	keys *nameKeys
	// sub is the subscription to the name's release channel, kept from
	// one holder of the turn to the next (each gives it its own id) and
	// closed by the last waiter to leave. nil until one subscribed.
	sub *waiter
}

type turnQueue = turns.Queue[*turnState]

// leave removes a waiter from name's queue; the last one to leave closes
// the queue's subscription.
func (ts *turnSet) leave(name string, q *turnQueue, me *turns.Waiter) {
	if !ts.Leave(name, q, me) {
		return
	}
	var sub *waiter
	ts.Do(func() { sub, q.State.sub = q.State.sub, nil })
	if sub != nil {
		sub.close()
	}
}

// keys returns the name's keys, made with mk by the first caller.
func (ts *turnSet) keys(q *turnQueue, mk func() nameKeys) (k *nameKeys) {
	ts.Do(func() {
		if q.State.keys == nil {
			nk := mk()
			q.State.keys = &nk
		}
		k = q.State.keys
	})
	return k
}

func (ts *turnSet) subscription(q *turnQueue) (w *waiter) {
	ts.Do(func() { w = q.State.sub })
	return w
}

func (ts *turnSet) setSubscription(q *turnQueue, w *waiter) {
	ts.Do(func() { q.State.sub = w })
}

func (ts *turnSet) setHolder(q *turnQueue, h *lockkit.Holder) {
	if h != nil {
		ts.Do(func() { q.State.holder = h })
	}
}

// heldError is the error of a waiter whose ctx ended before it acquired:
// the holder the queue last saw, else the one of the caller's own attempt
// (seen), else none.
func (ts *turnSet) heldError(q *turnQueue, name string, seen *lockkit.HeldError, cause error) error {
	var h *lockkit.Holder
	ts.Do(func() { h = q.State.holder })
	if h == nil && seen != nil {
		h = seen.Holder
	}
	if h == nil && seen == nil {
		return notAcquired(name, cause)
	}
	return &lockkit.HeldError{Name: name, Holder: h, Cause: cause}
}
