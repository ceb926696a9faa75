// Package turns orders the waiters of one name in one Locker, first come
// first served. The first waiter holds the turn: it alone attempts the lock
// on the server and waits there; the others wait in-process until the turn
// passes to them, when the holder of the turn acquires, fails or gives up.
// A release then costs the server one attempt per Locker, not one per
// waiter, and a Locker's own callers are served in order.
//
// rowlock and redislock use it; each keeps state of its own per queue (S).
package turns

import (
	"slices"
	"sync"
)

// Set holds the queues of a Locker, one per name with waiters. The zero
// Set is ready to use.
type Set[S any] struct {
	// New, when set, makes the state of a new queue. Parts of the state
	// it sets and never changes afterwards may be read without the lock.
	New func() S

	mu sync.Mutex
	m  map[string]*Queue[S]
}

// Queue is one name's queue. It exists while the name has waiters.
type Queue[S any] struct {
	waiters []*Waiter // waiters[0] holds the turn
	// State is the user's per-queue state. Read and write it with the
	// Set locked ([Set.Do]), apart from what New set once.
	State S
}

// Waiter is one queued caller.
type Waiter struct{ turn chan struct{} }

// Turn is closed when the waiter holds the turn.
func (w *Waiter) Turn() <-chan struct{} { return w.turn }

// HasTurn reports whether the waiter holds the turn.
func (w *Waiter) HasTurn() bool {
	select {
	case <-w.turn:
		return true
	default:
		return false
	}
}

// Busy reports whether name has waiters.
func (s *Set[S]) Busy(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name] != nil
}

// Join appends a waiter to name's queue; the first one holds the turn at
// once. The caller must Leave.
func (s *Set[S]) Join(name string) (*Queue[S], *Waiter) {
	me := &Waiter{turn: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*Queue[S])
	}
	q := s.m[name]
	if q == nil {
		q = &Queue[S]{}
		if s.New != nil {
			q.State = s.New()
		}
		s.m[name] = q
	}
	q.waiters = append(q.waiters, me)
	if len(q.waiters) == 1 {
		close(me.turn)
	}
	return q, me
}

// Leave removes a waiter from its queue; when it held the turn, the next
// waiter gets it. It reports whether the waiter was the last one, in which
// case the queue is gone and its state is the caller's to clean up.
func (s *Set[S]) Leave(name string, q *Queue[S], me *Waiter) (last bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(q.waiters, me)
	if i < 0 {
		return false
	}
	q.waiters = slices.Delete(q.waiters, i, i+1)
	switch {
	case len(q.waiters) == 0:
		delete(s.m, name)
		return true
	case i == 0:
		close(q.waiters[0].turn)
	}
	return false
}

// Len returns how many waiters name has, the holder of the turn included.
func (s *Set[S]) Len(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.m[name]; q != nil {
		return len(q.waiters)
	}
	return 0
}

// Queues returns how many names have waiters.
func (s *Set[S]) Queues() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Do runs fn with the Set locked, to read or write queue state.
func (s *Set[S]) Do(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn()
}

// Lookup returns the state of name's queue, if name has waiters.
func (s *Set[S]) Lookup(name string) (state S, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.m[name]; q != nil {
		return q.State, true
	}
	return state, false
}

// Range calls fn with the state of every queue, with the Set locked.
func (s *Set[S]) Range(fn func(S)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.m {
		fn(q.State)
	}
}

// Drain discards a pending signal on ch, if any.
func Drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
