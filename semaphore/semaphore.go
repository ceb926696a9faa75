package semaphore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/backoff"
	"github.com/lockkit/lockkit/internal/invalid"
)

// Sep separates a semaphore's name from the number of a permit's slot in
// the name of the slot's lock: permit slot i of the semaphore "payments"
// is the lock "payments#i".
const Sep = "#"

// MaxPermits is the largest number of permits a semaphore may have.
const MaxPermits = 1000

// Defaults of [Config].
const (
	// DefaultMinBackoff and DefaultMaxBackoff bound the pause between
	// [WaitOne]'s tries of the slots its waiters do not wait on.
	DefaultMinBackoff = 20 * time.Millisecond
	DefaultMaxBackoff = time.Second
)

// Wait is how [Semaphore.Acquire] waits once every permit is held.
type Wait int

const (
	// WaitOne (the default) waits on one slot with one Acquire of the
	// Locker: the slot with the fewest waiters of this Semaphore, so
	// that its waiters spread evenly over the slots and a freed permit
	// is handed to one of them by the backend. It tries the slots none
	// of them waits on (which may be free with nobody waiting) at once
	// when this Semaphore released a permit of such a slot, and
	// otherwise again and again with a jittered pause that doubles from
	// Config.MinBackoff to Config.MaxBackoff; a permit freed elsewhere on
	// a slot nobody waits on is taken within MaxBackoff plus the tries.
	// While every slot has a waiter of this Semaphore, Acquire queues
	// without its first round of tries. It costs one backend wait per
	// waiting Acquire, like a mutex, and a cancelled one only when a try
	// wins. Waiters are served first come, first served per slot where
	// the backend can, not per semaphore.
	WaitOne Wait = iota

	// WaitAll waits on every slot of the semaphore at once, with one
	// Acquire of the Locker per slot, takes the first slot granted and
	// gives back any other grant that raced with it. Where the backend
	// queues the waiters of a lock first come, first served, the waiters
	// of a semaphore are served in about the order they came (see the
	// package documentation). The cost is N backend waits per waiting
	// Acquire, N-1 of them cancelled at each grant, which is cheap on
	// memlock, filelock, rowlock and redislock (a Locker has one waiter
	// per lock name on the server and queues the others in-process), and
	// costly on advisory and mysqllock, where each wait holds a database
	// session and a cancelled wait ends it. It was the default before
	// WaitOne spread its waiters; it admits fewer per second than WaitOne
	// on every backend (bench/RESULTS.md), and is for callers that want
	// the semaphore-wide order.
	WaitAll
)

// String returns "WaitAll" or "WaitOne".
func (w Wait) String() string {
	switch w {
	case WaitAll:
		return "WaitAll"
	case WaitOne:
		return "WaitOne"
	}
	return "Wait(" + strconv.Itoa(int(w)) + ")"
}

// Config configures a [Semaphore]. A nil *Config, like zero fields, means
// the defaults.
type Config struct {
	// Wait is how Acquire waits once every permit is held: [WaitOne]
	// (the default) or [WaitAll].
	Wait Wait

	// MinBackoff and MaxBackoff bound WaitOne's pause between the tries
	// of the slots none of its waiters waits on; each pause is drawn uniformly
	// from the upper half of the current bound. Defaults
	// [DefaultMinBackoff] and [DefaultMaxBackoff].
	MinBackoff, MaxBackoff time.Duration

	// Data is added to the holder data that a permit records where the
	// Locker is a lockkit.DataLocker: "n=N " + Data, so that listings
	// show it (a user, a job id). Optional.
	Data string
}

// Semaphore hands out permits over one Locker. It is safe for concurrent
// use: any number of goroutines may acquire permits of any names, each
// with its own number of permits. It keeps state per semaphore only
// while WaitOne waiters wait (how many on each slot). Share one Semaphore
// between the goroutines of a process that use a semaphore: its WaitOne
// waiters spread over the slots, those of separate Semaphores do not
// know of each other.
type Semaphore struct {
	locker lockkit.Locker
	data   lockkit.DataLocker // nil when the Locker has no per-acquire data
	lister lockkit.Lister     // nil when the Locker cannot list

	wait                   Wait
	minBackoff, maxBackoff time.Duration
	label                  string

	rr atomic.Uint64 // breaks WaitOne's ties between slots

	mu      sync.Mutex
	waiting map[waitKey]*queue // WaitOne's waiters, while there are any
}

// waitKey names one semaphore: its name and number of permits.
type waitKey struct {
	name string
	n    int
}

// queue is this Semaphore's WaitOne waiters of one semaphore: how many
// wait on each slot, and a nudge for one of them when a permit of a slot
// nobody here waits on was released here.
type queue struct {
	on    []int
	total int
	nudge chan struct{} // buffered, 1
}

// New returns a Semaphore on locker. Status needs locker to implement
// lockkit.Lister; refusing a caller that disagrees on the number of
// permits needs it to implement lockkit.DataLocker (see the package
// documentation). Bad configuration is an error matching
// lockkit.ErrInvalid.
func New(locker lockkit.Locker, cfg *Config) (*Semaphore, error) {
	if locker == nil {
		return nil, invalid.Errorf("semaphore: nil Locker")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	s := &Semaphore{
		locker:     locker,
		wait:       c.Wait,
		minBackoff: c.MinBackoff,
		maxBackoff: c.MaxBackoff,
		label:      c.Data,
	}
	s.data, _ = locker.(lockkit.DataLocker)
	s.lister, _ = locker.(lockkit.Lister)
	if s.minBackoff == 0 {
		s.minBackoff = DefaultMinBackoff
	}
	if s.maxBackoff == 0 {
		s.maxBackoff = max(DefaultMaxBackoff, s.minBackoff)
	}
	switch {
	case s.wait != WaitAll && s.wait != WaitOne:
		return nil, invalid.Errorf("semaphore: unknown Wait %d", int(s.wait))
	case s.minBackoff < 0 || s.maxBackoff < 0:
		return nil, invalid.Errorf("semaphore: negative backoff %v, %v", s.minBackoff, s.maxBackoff)
	case s.maxBackoff < s.minBackoff:
		return nil, invalid.Errorf("semaphore: MaxBackoff %v is below MinBackoff %v", s.maxBackoff, s.minBackoff)
	}
	s.rr.Store(rand.Uint64()) // processes start their round-robin apart
	return s, nil
}

// SlotName returns the name of the lock behind permit slot of the
// semaphore name: name + [Sep] + slot in decimal.
func SlotName(name string, slot int) string { return name + Sep + strconv.Itoa(slot) }

// ParseSlotName splits the name of a slot's lock into the semaphore's name
// and the slot; ok is false when lockName is no slot name.
func ParseSlotName(lockName string) (name string, slot int, ok bool) {
	i := strings.LastIndex(lockName, Sep)
	if i <= 0 {
		return "", 0, false
	}
	digits := lockName[i+len(Sep):]
	if digits == "" || len(digits) > 1 && digits[0] == '0' {
		return "", 0, false
	}
	slot, err := strconv.Atoi(digits)
	if err != nil || slot < 0 || slot >= MaxPermits || strconv.Itoa(slot) != digits {
		return "", 0, false
	}
	return lockName[:i], slot, true
}

// check validates a semaphore name and number of permits.
func check(name string, n int) error {
	if name == "" {
		return invalid.Errorf("semaphore: empty name")
	}
	if n < 1 || n > MaxPermits {
		return invalid.Errorf("semaphore: %d permits for %q; a semaphore has 1 to %d", n, name, MaxPermits)
	}
	return nil
}

// view returns the Locker that takes the slots of a semaphore of n
// permits: one recording "n=N" as holder data where the Locker can.
func (s *Semaphore) view(n int) lockkit.Locker {
	if s.data == nil {
		return s.locker
	}
	return s.data.WithData(holderData(n, s.label))
}

// holderData is the holder data of a permit of a semaphore of n permits.
func holderData(n int, label string) string {
	d := "n=" + strconv.Itoa(n)
	if label != "" {
		d += " " + label
	}
	return d
}

// PermitsOf returns the number of permits that a permit's holder data
// records ("n=N", optionally followed by a space and more); ok is false
// for data no permit recorded.
func PermitsOf(data string) (n int, ok bool) {
	rest, found := strings.CutPrefix(data, "n=")
	if !found {
		return 0, false
	}
	digits, _, _ := strings.Cut(rest, " ")
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 || strconv.Itoa(n) != digits {
		return 0, false
	}
	return n, true
}

// MismatchError reports that the holder of a slot acquired it for another
// number of permits than the caller asked for: two callers disagree on
// the semaphore's size. It matches lockkit.ErrInvalid.
type MismatchError struct {
	Name    string          // the semaphore's name
	Permits int             // the number of permits this caller asked for
	Other   int             // the number the holder of Slot recorded
	Slot    int             // the slot where the holder was seen
	Holder  *lockkit.Holder // the holder, as the backend described it
}

// Error names the semaphore and both permit counts.
func (e *MismatchError) Error() string {
	by := ""
	if e.Holder != nil {
		by = " by " + e.Holder.String()
	}
	return fmt.Sprintf("semaphore: %q is used with %d permits (slot %d is held%s) and with %d here: every caller of a semaphore must give it the same number of permits",
		e.Name, e.Other, e.Slot, by, e.Permits)
}

// Is reports whether target is lockkit.ErrInvalid.
func (e *MismatchError) Is(target error) bool { return target == lockkit.ErrInvalid }

// mismatch returns a *MismatchError when h recorded another number of
// permits than n.
func mismatch(name string, n, slot int, h *lockkit.Holder) error {
	if h == nil {
		return nil
	}
	if other, ok := PermitsOf(h.Data); ok && other != n {
		return &MismatchError{Name: name, Permits: n, Other: other, Slot: slot, Holder: h}
	}
	return nil
}

// Acquire waits until it holds one of the n permits of the semaphore name,
// or ctx ends. It first tries every slot once, in an order that starts at
// a random slot, then waits as Config.Wait says; with WaitOne, while this
// Semaphore has a waiter on every slot, it queues without the tries.
//
// When ctx ends first, the error is a *lockkit.HeldError for name whose
// Cause is ctx.Err(), matching lockkit.ErrNotAcquired and the context
// error, and nothing is left held: a grant that raced with the end is
// given back. A caller that disagrees with a holder on n gets a
// *MismatchError (see the package documentation); n below 1 or above
// [MaxPermits] and an empty name give an error matching lockkit.ErrInvalid
// before any I/O.
func (s *Semaphore) Acquire(ctx context.Context, name string, n int) (*Permit, error) {
	return s.acquire(ctx, name, n, true)
}

// TryAcquire makes one attempt at each of the n slots of the semaphore
// name, in an order that starts at a random slot, and returns the first
// permit it gets. When every slot is held the error is a
// *lockkit.HeldError for name, naming one of the holders, which matches
// lockkit.ErrNotAcquired. Its other errors are those of Acquire.
func (s *Semaphore) TryAcquire(ctx context.Context, name string, n int) (*Permit, error) {
	return s.acquire(ctx, name, n, false)
}

func (s *Semaphore) acquire(ctx context.Context, name string, n int, wait bool) (*Permit, error) {
	if err := check(name, n); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, &lockkit.HeldError{Name: name, Cause: err}
	}
	view := s.view(n)
	if wait && n > 1 && s.wait == WaitOne && s.covered(name, n) {
		// Every slot has a waiter of this Semaphore: a permit that
		// frees up goes to one of them, and a round of tries would only
		// jump their queue or fail. Queue up behind them.
		return s.waitOne(ctx, view, name, n, nil)
	}
	lk, slot, holder, err := s.tryRound(ctx, view, name, n, -1)
	switch {
	case lk != nil:
		return s.grant(ctx, name, n, slot, lk)
	case err != nil:
		return nil, err
	case !wait:
		return nil, &lockkit.HeldError{Name: name, Holder: holder}
	case n == 1:
		return s.waitSlot(ctx, view, name, n, 0, holder)
	case s.wait == WaitOne:
		return s.waitOne(ctx, view, name, n, holder)
	default:
		return s.waitAll(ctx, view, name, n, holder)
	}
}

// tryRound tries the slots of name once each, except skip, starting at a
// random one, and returns the first lock it gets with its slot. When every
// slot tried is held it returns no error and the first holder it was told
// of (nil when the backend named none). It stops at a holder that
// recorded another n (a *MismatchError), at the end of ctx (a
// *lockkit.HeldError for name with the cause) and at bad input; other
// errors are returned when no slot was taken.
func (s *Semaphore) tryRound(ctx context.Context, view lockkit.Locker, name string, n, skip int) (lockkit.Lock, int, *lockkit.Holder, error) {
	return s.trySlots(ctx, view, name, n, func(slot int) bool { return slot != skip })
}

// trySlots is tryRound over the slots that want says to try.
func (s *Semaphore) trySlots(ctx context.Context, view lockkit.Locker, name string, n int, want func(slot int) bool) (lockkit.Lock, int, *lockkit.Holder, error) {
	var (
		holder   *lockkit.Holder
		firstErr error
	)
	start := rand.IntN(n)
	for k := range n {
		slot := (start + k) % n
		if !want(slot) {
			continue
		}
		lk, err := view.TryAcquire(ctx, SlotName(name, slot))
		if err == nil {
			return lk, slot, nil, nil
		}
		var he *lockkit.HeldError
		switch {
		case errors.As(err, &he) && he.Cause != nil:
			return nil, -1, nil, &lockkit.HeldError{Name: name, Holder: holder, Cause: he.Cause}
		case he != nil:
			if err := mismatch(name, n, slot, he.Holder); err != nil {
				return nil, -1, nil, err
			}
			if holder == nil {
				holder = he.Holder
			}
		case errors.Is(err, lockkit.ErrNotAcquired):
		case errors.Is(err, lockkit.ErrInvalid) || errors.Is(err, lockkit.ErrUnsupported):
			return nil, -1, nil, err
		case firstErr == nil:
			firstErr = err
		}
	}
	return nil, -1, holder, firstErr
}

// grant makes the permit of lk, the lock of slot. Where the Locker lists
// holders and records data, it first reads the holders of the n slots and
// of slot n (where a caller with more permits may sit), and gives lk back
// with a *MismatchError when one of them recorded another n. A listing
// that fails leaves the check out: it is a safeguard, not the lock.
func (s *Semaphore) grant(ctx context.Context, name string, n, slot int, lk lockkit.Lock) (*Permit, error) {
	p := &Permit{s: s, name: name, slot: slot, n: n, lock: lk}
	if s.lister == nil || s.data == nil {
		return p, nil
	}
	infos, err := s.lister.List(ctx, slotNames(name, n+1)...)
	if err != nil {
		return p, nil
	}
	for _, in := range infos {
		if !in.Held {
			continue
		}
		_, i, ok := ParseSlotName(in.Name)
		if !ok {
			continue
		}
		h := in.Holder
		if err := mismatch(name, n, i, &h); err != nil {
			giveBack(ctx, lk)
			return nil, err
		}
	}
	return p, nil
}

func slotNames(name string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = SlotName(name, i)
	}
	return names
}

// giveBack releases a lock nobody will hold: an extra grant, or one
// refused after the fact. The release is detached from ctx's cancellation
// and bounded by lockkit.ReleaseTimeout, so that an ended ctx still gives
// the lock back.
func giveBack(ctx context.Context, lk lockkit.Lock) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockkit.ReleaseTimeout)
	defer cancel()
	_ = lk.Release(rctx)
}

// ended is the error of a wait that ctx ended, for the semaphore name.
// cause is the slots' own report of it, for a backend whose server saw the
// deadline pass a moment before ctx did (GET_LOCK's timeout); ctx.Err()
// comes first.
func ended(ctx context.Context, name string, holder *lockkit.Holder, cause error) error {
	if err := ctx.Err(); err != nil {
		cause = err
	}
	return &lockkit.HeldError{Name: name, Holder: holder, Cause: cause}
}

// waitSlot waits on one slot only: the whole wait of a semaphore of one
// permit.
func (s *Semaphore) waitSlot(ctx context.Context, view lockkit.Locker, name string, n, slot int, holder *lockkit.Holder) (*Permit, error) {
	lk, err := view.Acquire(ctx, SlotName(name, slot))
	if err == nil {
		return s.grant(ctx, name, n, slot, lk)
	}
	if errors.Is(err, lockkit.ErrNotAcquired) {
		return nil, ended(ctx, name, holder, causeOf(err))
	}
	return nil, err
}

// causeOf is the Cause of err's *lockkit.HeldError, if it has one.
func causeOf(err error) error {
	var he *lockkit.HeldError
	if errors.As(err, &he) {
		return he.Cause
	}
	return nil
}

// slotResult is the end of one Acquire of a slot.
type slotResult struct {
	slot int
	lk   lockkit.Lock
	err  error
}

// waitAll is WaitAll: an Acquire on every slot at once. It returns once
// every one of them has returned, so that a grant that raced with the
// first one is given back before the caller goes on: the extra grant
// passes to the next waiter of that slot.
func (s *Semaphore) waitAll(ctx context.Context, view lockkit.Locker, name string, n int, holder *lockkit.Holder) (*Permit, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan slotResult, n)
	start := rand.IntN(n)
	for k := range n {
		slot := (start + k) % n
		go func() {
			lk, err := view.Acquire(wctx, SlotName(name, slot))
			results <- slotResult{slot, lk, err}
		}()
	}
	var (
		won    *slotResult
		failed error
		cause  error // a slot's report of how its wait ended
	)
	for range n {
		r := <-results
		switch {
		case r.err == nil && won == nil && failed == nil:
			won = &r
			cancel()
		case r.err == nil:
			giveBack(ctx, r.lk)
		case errors.Is(r.err, lockkit.ErrNotAcquired):
			// This slot's wait ended with wctx.
			if cause == nil {
				cause = causeOf(r.err)
			}
		case won == nil && failed == nil:
			failed = r.err
			cancel()
		}
	}
	switch {
	case won != nil:
		return s.grant(ctx, name, n, won.slot, won.lk)
	case failed != nil:
		return nil, failed
	}
	return nil, ended(ctx, name, holder, cause)
}

// join queues a WaitOne waiter of the semaphore (name, n) on the slot
// with the fewest waiters of this Semaphore (ties go round-robin), and
// returns the slot and the queue.
func (s *Semaphore) join(name string, n int) (int, *queue) {
	k := waitKey{name, n}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.waiting[k]
	if q == nil {
		q = &queue{on: make([]int, n), nudge: make(chan struct{}, 1)}
		if s.waiting == nil {
			s.waiting = make(map[waitKey]*queue)
		}
		s.waiting[k] = q
	}
	start := int(s.rr.Add(1) % uint64(n))
	slot := start
	for d := range n {
		if i := (start + d) % n; q.on[i] < q.on[slot] {
			slot = i
		}
	}
	q.on[slot]++
	q.total++
	return slot, q
}

// leave takes a waiter off slot of the semaphore (name, n).
func (s *Semaphore) leave(name string, n, slot int, q *queue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q.on[slot]--
	if q.total--; q.total == 0 {
		delete(s.waiting, waitKey{name, n})
	}
}

// covered reports whether this Semaphore has a WaitOne waiter on every
// slot of the semaphore (name, n).
func (s *Semaphore) covered(name string, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.waiting[waitKey{name, n}]
	return q != nil && !slices.Contains(q.on, 0)
}

// unwaited reports whether nobody of this Semaphore waits on slot of q.
func (s *Semaphore) unwaited(q *queue, slot int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return q.on[slot] == 0
}

// released is told that this Semaphore's permit of slot of the semaphore
// (name, n) was given back. When waiters of this Semaphore wait on other
// slots but none on slot, nothing hands the permit to them: one of them
// is nudged to try it now, rather than at its next retry.
func (s *Semaphore) released(name string, n, slot int) {
	s.mu.Lock()
	q := s.waiting[waitKey{name, n}]
	free := q != nil && q.on[slot] == 0
	s.mu.Unlock()
	if free {
		select {
		case q.nudge <- struct{}{}:
		default:
		}
	}
}

// waitOne is WaitOne: an Acquire on the slot with the fewest waiters of
// this Semaphore, and tries of the slots that none of them waits on:
// with growing pauses, and at once when a permit of such a slot is
// released here. A try that wins cancels the Acquire and gives back what
// it may have got in the meantime.
func (s *Semaphore) waitOne(ctx context.Context, view lockkit.Locker, name string, n int, holder *lockkit.Holder) (*Permit, error) {
	slot, q := s.join(name, n)
	defer s.leave(name, n, slot, q)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waited := make(chan slotResult, 1)
	go func() {
		lk, err := view.Acquire(wctx, SlotName(name, slot))
		waited <- slotResult{slot, lk, err}
	}()
	// stop cancels the Acquire, waits for it and gives back a grant that
	// raced with the cancellation.
	stop := func() {
		cancel()
		if r := <-waited; r.err == nil {
			giveBack(ctx, r.lk)
		}
	}
	pause := s.minBackoff
	timer := time.NewTimer(backoff.Jitter(pause))
	defer timer.Stop()
	for {
		retry := false
		select {
		case r := <-waited:
			switch {
			case r.err == nil:
				return s.grant(ctx, name, n, r.slot, r.lk)
			case errors.Is(r.err, lockkit.ErrNotAcquired):
				return nil, ended(ctx, name, holder, causeOf(r.err))
			default:
				return nil, r.err
			}
		case <-q.nudge:
			retry = true
		case <-timer.C:
			retry = true
			pause = min(2*pause, s.maxBackoff)
			timer.Reset(backoff.Jitter(pause))
		}
		if !retry {
			continue
		}
		// Slots that waiters of this Semaphore wait on are handed to
		// them when freed; the others may be free with nobody waiting.
		lk, got, h, err := s.trySlots(ctx, view, name, n, func(i int) bool { return i != slot && s.unwaited(q, i) })
		var mm *MismatchError
		switch {
		case lk != nil:
			stop()
			return s.grant(ctx, name, n, got, lk)
		case errors.As(err, &mm):
			stop()
			return nil, err
		case holder == nil:
			holder = h
		}
		// Other errors: the wait goes on, and reports what lasts.
	}
}

// Locker returns the permits of the semaphores of n permits as a
// lockkit.Locker: its Acquire and TryAcquire take a permit of the
// semaphore they are given the name of, as [Semaphore.Acquire] and
// [Semaphore.TryAcquire] do, and return the *Permit as a lockkit.Lock. So
// lockkit.Do runs a function under a permit:
//
//	err := lockkit.Do(ctx, s.Locker(3), "payments", func(ctx context.Context) error { ... })
//
// With a bad n, every acquire fails with an error matching
// lockkit.ErrInvalid.
func (s *Semaphore) Locker(n int) lockkit.Locker { return permitLocker{s, n} }

type permitLocker struct {
	s *Semaphore
	n int
}

func (l permitLocker) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	p, err := l.s.Acquire(ctx, name, l.n)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (l permitLocker) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	p, err := l.s.TryAcquire(ctx, name, l.n)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Permit is one held permit of a semaphore: the lock of one of its slots.
// It implements lockkit.Lock, and its methods are safe for concurrent use.
type Permit struct {
	s    *Semaphore
	name string
	slot int
	n    int
	lock lockkit.Lock
}

var _ lockkit.Lock = (*Permit)(nil)

// Name returns the semaphore's name. The slot's lock has the name
// SlotName(Name(), Slot()).
func (p *Permit) Name() string { return p.name }

// Slot returns the permit's slot, from 0 to Permits()-1.
func (p *Permit) Slot() int { return p.slot }

// Permits returns the number of permits the semaphore was acquired with.
func (p *Permit) Permits() int { return p.n }

// Token returns the slot lock's fencing token: strictly increasing across
// the holders of the slot, and 0 where the backend has no tokens. Tokens
// of different slots are not ordered; a resource that fences writes by
// permit keeps the highest token per slot.
func (p *Permit) Token() int64 { return p.lock.Token() }

// Done is closed when the permit is no longer held: released, or lost. A
// holder that crashed frees its permit the way its slot lock ends: at once
// where the server ends the session (advisory, mysqllock) or the kernel
// the flock (filelock), when the lease runs out on rowlock and redislock.
func (p *Permit) Done() <-chan struct{} { return p.lock.Done() }

// Err is nil while the permit is held. Afterwards it is the slot lock's:
// an error matching lockkit.ErrReleased, or its *lockkit.LostError
// (naming the slot's lock) matching lockkit.ErrLost.
func (p *Permit) Err() error { return p.lock.Err() }

// Release gives the permit back, with the contract of
// [lockkit.Lock.Release]: nil when the backend confirmed it, the loss error
// when the permit had been lost, an error matching lockkit.ErrReleased the
// second time.
func (p *Permit) Release(ctx context.Context) error {
	err := p.lock.Release(ctx)
	if err == nil {
		p.s.released(p.name, p.n, p.slot)
	}
	return err
}

// Lock returns the slot's lock, for the backend's extras (a lease's
// expiry, a connection id). Release the permit rather than the lock.
func (p *Permit) Lock() lockkit.Lock { return p.lock }
