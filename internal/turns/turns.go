// Package turns orders the waiters of one name in one Locker, first come
// first served. The first waiter holds the turn: it alone attempts the lock
// on the server and waits there; the others wait in-process until the turn
// passes to them, when the holder of the turn leaves the queue (it
// acquired, failed or gave up, or, where the turn goes with the lock, it
// released). A release then costs the server one attempt per Locker, not
// one per waiter, and a Locker's own callers are served in order.
//
// A waiter joins in a [Mode]: [Exclusive] (what [Set.Join] does) or
// [Shared]. A run of shared waiters at the head of the queue hold the turn
// together; an exclusive turn is held alone. The order stays first come
// first served across modes: a shared waiter behind an exclusive one waits
// for it, even while other shared waiters hold the turn.
//
// rowlock and redislock use it with exclusive turns, each with state of its
// own per queue (S); filelock uses both modes, keeps the turn for as long as
// a Lock is held, and has the next in line watch for its turn ([Set.Spin]).
package turns

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Mode is how a waiter holds the turn.
type Mode uint8

const (
	// Exclusive: the waiter holds the turn alone.
	Exclusive Mode = iota
	// Shared: the waiter holds the turn together with the other shared
	// waiters of the run at the head of the queue.
	Shared
)

// Set holds the queues of a Locker, one per name with waiters. The zero
// Set is ready to use; set its fields before first use.
type Set[S any] struct {
	// New, when set, makes the state of a new queue. Parts of the state
	// it sets and never changes afterwards may be read without the lock.
	New func() S

	// Spin, when positive, is how long [Waiter.Wait] watches for the
	// turn, yielding the processor between looks, once the waiter is next
	// in line (the first one without the turn), before it sleeps until it
	// is woken. A turn that comes within it passes without a goroutine
	// wake-up. It costs up to Spin of processor time per waiter that
	// comes next in line. Zero: Wait just sleeps.
	Spin time.Duration

	mu sync.Mutex
	m  map[string]*Queue[S]
}

// Queue is one name's queue. It exists while the name has waiters.
type Queue[S any] struct {
	waiters []*Waiter // in order of arrival; waiters[:held] hold the turn
	held    int
	// State is the user's per-queue state. Read and write it with the
	// Set locked ([Set.Do]), apart from what New set once.
	State S

	// first and slot spare the queue's first waiter, and its waiters
	// while there is one, allocations of their own: an uncontended
	// name's queue is one allocation.
	first Waiter
	slot  [1]*Waiter
}

// Waiter is one queued caller.
type Waiter struct {
	mode Mode
	spin time.Duration
	turn chan struct{} // closed when the waiter holds the turn
	next chan struct{} // closed when it is next in line; nil unless spin > 0
}

// closed is the Turn of a waiter that holds the turn from the start, and
// the next of one that is next in line from the start.
var closed = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

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

// Wait waits until the waiter holds the turn, and returns nil, or until ctx
// ends, and returns ctx.Err(). Either way the waiter stays in the queue
// until it Leaves; after an error it may have been handed the turn
// meanwhile, and Leave hands it on. With [Set.Spin] set, the waiter watches
// for the turn for that long once it is next in line, before it sleeps.
func (w *Waiter) Wait(ctx context.Context) error {
	if w.spin > 0 {
		select {
		case <-w.turn:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-w.next:
		}
		for end := time.Now().Add(w.spin); ; {
			select {
			case <-w.turn:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			if time.Now().After(end) {
				break
			}
			runtime.Gosched()
		}
	}
	select {
	case <-w.turn:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// free reports whether a waiter in mode joining q now would hold the turn
// at once: nobody is queued without it, and the holders, if any, and the
// newcomer are all shared.
func (q *Queue[S]) free(mode Mode) bool {
	if q.held < len(q.waiters) {
		return false
	}
	return q.held == 0 || (mode == Shared && q.waiters[0].mode == Shared)
}

// grant hands the turn to the waiters at the head of the queue that may
// hold it and do not yet: the first one, and the shared ones that follow a
// shared one. The next in line is told so.
func (q *Queue[S]) grant() {
	for q.held < len(q.waiters) {
		w := q.waiters[q.held]
		if q.held > 0 && (w.mode != Shared || q.waiters[0].mode != Shared) {
			if w.next != nil {
				select {
				case <-w.next:
				default:
					close(w.next)
				}
			}
			return
		}
		q.held++
		close(w.turn)
	}
}

// NextMode returns the mode of the first waiter of q that does not hold
// the turn: the one a Leave of the turn's only holder hands it to. ok is
// false when every waiter holds the turn. Call it with the Set locked
// ([Set.Do]).
func (q *Queue[S]) NextMode() (mode Mode, ok bool) {
	if q.held >= len(q.waiters) {
		return 0, false
	}
	return q.waiters[q.held].mode, true
}

// Busy reports whether name has waiters.
func (s *Set[S]) Busy(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name] != nil
}

// Join appends an exclusive waiter to name's queue; it holds the turn at
// once when it is the first. The caller must Leave.
func (s *Set[S]) Join(name string) (*Queue[S], *Waiter) {
	return s.JoinMode(name, Exclusive)
}

// JoinMode appends a waiter in mode to name's queue. It holds the turn at
// once when the queue is empty, or when it is shared and every waiter
// already queued is a shared holder of the turn; otherwise it waits for its
// turn ([Waiter.Turn], [Waiter.Wait]). The caller must Leave.
func (s *Set[S]) JoinMode(name string, mode Mode) (*Queue[S], *Waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue(name)
	return q, s.join(q, mode)
}

// TryJoin is JoinMode when the waiter would hold the turn at once;
// otherwise it does not join, and returns false. It never jumps the queue.
func (s *Set[S]) TryJoin(name string, mode Mode) (*Queue[S], *Waiter, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.m[name]; q != nil && !q.free(mode) {
		return nil, nil, false
	}
	q := s.queue(name)
	return q, s.join(q, mode), true
}

// queue returns name's queue, making it when there is none. s.mu is held.
func (s *Set[S]) queue(name string) *Queue[S] {
	q := s.m[name]
	if q == nil {
		if s.m == nil {
			s.m = make(map[string]*Queue[S])
		}
		q = &Queue[S]{}
		q.waiters = q.slot[:0]
		if s.New != nil {
			q.State = s.New()
		}
		s.m[name] = q
	}
	return q
}

// join appends a waiter in mode to q. s.mu is held.
func (s *Set[S]) join(q *Queue[S], mode Mode) *Waiter {
	w := &q.first // unused while its turn is nil; never reused
	if w.turn != nil {
		w = new(Waiter)
	}
	w.mode = mode
	if q.free(mode) {
		w.turn = closed
		q.waiters = append(q.waiters, w)
		q.held++
		return w
	}
	w.turn = make(chan struct{})
	if s.Spin > 0 {
		w.spin = s.Spin
		if q.held == len(q.waiters) {
			w.next = closed // next in line already
		} else {
			w.next = make(chan struct{})
		}
	}
	q.waiters = append(q.waiters, w)
	return w
}

// Leave removes a waiter from its queue; when it held the turn, the turn
// passes on to whoever may now hold it (the next waiter, or the run of
// shared waiters at the new head of the queue). A waiter that leaves from
// further back may let the shared waiters behind it join a shared turn.
// Leave reports whether the waiter was the last one, in which case the
// queue is gone and its state is the caller's to clean up. Leaving twice
// does nothing.
func (s *Set[S]) Leave(name string, q *Queue[S], me *Waiter) (last bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(q.waiters, me)
	if i < 0 {
		return false
	}
	q.waiters = slices.Delete(q.waiters, i, i+1)
	if i < q.held {
		q.held--
	}
	if len(q.waiters) == 0 {
		q.waiters = nil // let the backing array go
		delete(s.m, name)
		return true
	}
	q.grant()
	return false
}

// Len returns how many waiters name has, the holders of the turn included.
func (s *Set[S]) Len(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.m[name]; q != nil {
		return len(q.waiters)
	}
	return 0
}

// Waiting returns how many waiters of name wait for the turn, the holders
// of the turn not included.
func (s *Set[S]) Waiting(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.m[name]; q != nil {
		return len(q.waiters) - q.held
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
