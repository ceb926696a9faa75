package memlock

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/lockstate"
	"github.com/lockkit/lockkit/internal/telemetry"
	"github.com/lockkit/lockkit/keyhash"
)

// owner is the Owner in the lockkit.Holder of every memlock lock.
const owner = "memlock"

// Locker is an in-memory lock space. It implements lockkit.Locker,
// lockkit.Lister, lockkit.DataLocker and lockkit.Watcher, and is safe for
// concurrent use.
type Locker struct {
	mu    sync.Mutex
	names map[string]*entry // names held or waited for; free names are deleted
	last  int64             // the last fencing token issued

	watchers map[*watcher]struct{} // subscriptions of Changes

	tel *telemetry.Recorder
}

// entry is the state of one name: its holder and its waiters.
type entry struct {
	holder *Lock     // never nil while the entry exists
	queue  []*waiter // FIFO; waiters only while held
}

// waiter is one Lock call waiting for a name.
type waiter struct {
	granted chan struct{} // closed when the lock is handed to the waiter
	lk      *Lock         // the handed lock; set before granted closes
	data    string        // the holder data the lock is to carry
}

var (
	_ lockkit.Locker     = (*Locker)(nil)
	_ lockkit.Lister     = (*Locker)(nil)
	_ lockkit.DataLocker = (*Locker)(nil)
	_ lockkit.Lock       = (*Lock)(nil)
)

// Config configures a Locker made by [NewWithConfig]. A nil *Config means
// the defaults.
type Config struct {
	// Telemetry says where the Locker's metrics, spans and logs go; nil
	// means OpenTelemetry's global providers and no logs. memlock records
	// the same instruments as the server backends, with lockkit.backend
	// "memlock", so that a test can check the telemetry of code written
	// against lockkit.Locker; a loss made by [Locker.Lose] has the reason
	// "other".
	Telemetry *lockkit.Telemetry
}

// New returns a new, empty lock space, recording telemetry to
// OpenTelemetry's global providers.
func New() *Locker { return NewWithConfig(nil) }

// NewWithConfig returns a new, empty lock space configured by cfg, which
// may be nil.
func NewWithConfig(cfg *Config) *Locker {
	var t *lockkit.Telemetry
	if cfg != nil {
		t = cfg.Telemetry
	}
	return &Locker{tel: telemetry.New(t, telemetry.Backend{Name: "memlock"})}
}

// Acquire is [Locker.Lock] returning a lockkit.Lock. It implements
// lockkit.Locker.
func (l *Locker) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := l.Lock(ctx, name)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// TryAcquire is [Locker.TryLock] returning a lockkit.Lock. It implements
// lockkit.Locker.
func (l *Locker) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := l.TryLock(ctx, name)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// TryLock takes the named lock if it is free. When it is held the error is
// a *lockkit.HeldError naming the holder. When ctx has already ended it is
// a *lockkit.HeldError whose Cause is ctx.Err() (and whose Holder is nil if
// the name is free), and the lock is not taken.
func (l *Locker) TryLock(ctx context.Context, name string) (*Lock, error) {
	return l.tryLock(ctx, name, "")
}

func (l *Locker) tryLock(ctx context.Context, name, data string) (*Lock, error) {
	if err := keyhash.ValidateName(name); err != nil {
		return nil, err
	}
	ctx, op := l.tel.StartAcquire(ctx, name, false)
	lk, err := l.tryGrant(ctx, name, data)
	if hold := op.End(ctx, err); lk != nil {
		lk.h.Observe(hold)
	}
	return lk, err
}

// tryGrant grants name if it is free.
func (l *Locker) tryGrant(ctx context.Context, name, data string) (*Lock, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.names[name]
	if err := ctx.Err(); err != nil {
		return nil, heldError(name, e, err)
	}
	if e != nil {
		return nil, heldError(name, e, nil)
	}
	return l.grant(name, nil, data), nil
}

// Lock waits until the named lock is held, or ctx ends. Waiters of a name
// are served first come, first served. When ctx ends first, or had ended
// before the call, the error is a *lockkit.HeldError whose Cause is
// ctx.Err() (and whose Holder is nil if the name was free), and the call has
// left the queue. A call whose ctx ends just as the lock is handed to it
// returns the lock.
func (l *Locker) Lock(ctx context.Context, name string) (*Lock, error) {
	return l.lock(ctx, name, "")
}

func (l *Locker) lock(ctx context.Context, name, data string) (*Lock, error) {
	if err := keyhash.ValidateName(name); err != nil {
		return nil, err
	}
	ctx, op := l.tel.StartAcquire(ctx, name, true)
	lk, err := l.waitGrant(ctx, name, data)
	if hold := op.End(ctx, err); lk != nil {
		lk.h.Observe(hold)
	}
	return lk, err
}

// waitGrant grants name when it is free, queueing first come, first served.
func (l *Locker) waitGrant(ctx context.Context, name, data string) (*Lock, error) {
	l.mu.Lock()
	e := l.names[name]
	if err := ctx.Err(); err != nil {
		he := heldError(name, e, err)
		l.mu.Unlock()
		return nil, he
	}
	if e == nil {
		lk := l.grant(name, nil, data)
		l.mu.Unlock()
		return lk, nil
	}
	w := &waiter{granted: make(chan struct{}), data: data}
	e.queue = append(e.queue, w)
	l.mu.Unlock()

	select {
	case <-w.granted:
		return w.lk, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.lk != nil {
		// Handed over before the cancellation was seen: the lock is
		// this call's, as if the grant had won the race.
		return w.lk, nil
	}
	e = l.names[name] // the same entry: it has a waiter, so it stayed
	e.queue = slices.DeleteFunc(e.queue, func(x *waiter) bool { return x == w })
	return nil, heldError(name, e, ctx.Err())
}

// heldError is the conflict error for name; e is its entry, or nil when the
// name is free (only when ctx had ended before the call). l.mu is held.
func heldError(name string, e *entry, cause error) *lockkit.HeldError {
	err := &lockkit.HeldError{Name: name, Cause: cause}
	if e != nil {
		h := e.holder.holder
		err.Holder = &h
	}
	return err
}

// grant makes a new holder of name, the first one or the given waiter,
// carrying data. l.mu is held, and the name is free.
func (l *Locker) grant(name string, w *waiter, data string) *Lock {
	l.last++
	lk := &Lock{l: l, holder: lockkit.Holder{Owner: owner, Since: time.Now(), Token: l.last, Data: data}}
	lk.h = lockstate.New(name, l.last, lk.unlock)
	if w != nil {
		w.lk = lk
		close(w.granted)
	}
	if l.names == nil {
		l.names = make(map[string]*entry)
	}
	e := l.names[name]
	if e == nil {
		e = &entry{}
		l.names[name] = e
	}
	e.holder = lk
	l.changed(name)
	return lk
}

// free ends lk's hold on its name, if it is still the holder, and hands the
// name to the next waiter. l.mu is held.
func (l *Locker) free(lk *Lock) {
	name := lk.h.Name()
	e := l.names[name]
	if e == nil || e.holder != lk {
		return
	}
	if len(e.queue) == 0 {
		delete(l.names, name)
		l.changed(name)
		return
	}
	w := e.queue[0]
	e.queue = slices.Delete(e.queue, 0, 1)
	l.grant(name, w, w.data)
}

// Lose makes the current holder of name lose its lock, the way a killed
// session or a lease taken over does: the holder's Done closes, its Err
// becomes a *lockkit.LostError wrapping lockkit.ErrLost and cause, and the
// name passes at once to the next waiter, if any, or is free. The lost
// holder's Release then returns the loss error. Lose reports whether name
// had a holder.
func (l *Locker) Lose(name string, cause error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.names[name]
	if e == nil {
		return false
	}
	lk := e.holder
	lk.h.MarkLost(cause)
	l.free(lk)
	return true
}

// Held reports whether name is held.
func (l *Locker) Held(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.names[name] != nil
}

// List implements lockkit.Lister. Without names it returns the locks held
// now, ordered by name; with names, an entry for each name in the order
// given, with Held false for a free name. Key and Tool are empty, Mode is
// always lockkit.Exclusive. A bad name returns an error matching
// lockkit.ErrInvalid, and an ended ctx returns ctx.Err().
func (l *Locker) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	for _, name := range names {
		if err := keyhash.ValidateName(name); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(names) == 0 {
		for name := range l.names {
			names = append(names, name)
		}
		slices.Sort(names)
	}
	out := make([]lockkit.LockInfo, 0, len(names))
	for _, name := range names {
		info := lockkit.LockInfo{Name: name, Mode: lockkit.Exclusive}
		if e := l.names[name]; e != nil {
			info.Held = true
			info.Holder = e.holder.holder
		}
		out = append(out, info)
	}
	return out, nil
}

// Lock is a held memlock lock. It implements lockkit.Lock; its methods are
// safe for concurrent use.
type Lock struct {
	h      *lockstate.Handle
	l      *Locker
	holder lockkit.Holder
}

// Name returns the name the lock was taken under.
func (lk *Lock) Name() string { return lk.h.Name() }

// Token returns the lock's fencing token: non-zero, and strictly increasing
// per name across holders.
func (lk *Lock) Token() int64 { return lk.h.Token() }

// Done is closed when the lock is released or lost.
func (lk *Lock) Done() <-chan struct{} { return lk.h.Done() }

// Err is nil while the lock is held; then lockkit.ErrReleased, or the
// *lockkit.LostError of [Locker.Lose].
func (lk *Lock) Err() error { return lk.h.Err() }

// Release gives the lock up, handing it to the next waiter, and returns
// nil. A second Release returns an error matching lockkit.ErrReleased, and
// the Release of a lost lock its loss error; neither touches a later
// holder. ctx is not used: an in-memory release cannot block.
func (lk *Lock) Release(ctx context.Context) error { return lk.h.Release(ctx) }

// unlock is the lockstate.UnlockFunc. A lost lock no longer holds its name
// (Lose passed it on), so free does nothing then.
func (lk *Lock) unlock(context.Context, bool) error {
	lk.l.mu.Lock()
	defer lk.l.mu.Unlock()
	lk.l.free(lk)
	return nil
}
