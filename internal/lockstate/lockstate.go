// Package lockstate holds the state machine every lockkit lock handle
// shares: held, then released or lost, exactly once; a Done channel; an
// idempotent Release that runs the backend's unlock at most once.
//
// Backends embed *Handle in their lock type (or hold a Handle by value and
// Init it) and supply the unlock function.
//
// Because every release and every loss passes through it, the Handle also
// reports them to the lock's telemetry (see [Handle.Observe]): the held
// locks gauge, the hold time, and each loss with its reason.
package lockstate

import (
	"context"
	"errors"
	"sync"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/telemetry"
)

// UnlockFunc gives the lock back on the backend. lost reports that the
// handle was already marked lost, in which case the function only frees
// resources (closes a connection, stops a goroutine) and its error is
// ignored. A non-nil error means the release could not be confirmed; the
// function must then have destroyed whatever might still hold the lock (its
// connection), and the handle is marked lost with that error as the cause.
type UnlockFunc func(ctx context.Context, lost bool) error

// Handle implements the state part of lockkit.Lock: Name, Token, Done, Err
// and Release.
type Handle struct {
	name   string
	token  int64
	unlock UnlockFunc

	releaseMu sync.Mutex // serialises Release
	released  bool       // Release has run

	mu   sync.Mutex
	err  error // nil while held
	done chan struct{}
	hold telemetry.Hold // the acquire's telemetry; zero until Observe
}

// New returns a handle for a lock that is held now.
func New(name string, token int64, unlock UnlockFunc) *Handle {
	h := new(Handle)
	h.Init(name, token, unlock)
	return h
}

// Init makes h, a zero Handle that a backend's lock type holds by value,
// the handle of a lock that is held now, as New does, without an
// allocation of its own. Call it once, before the lock is handed out.
func (h *Handle) Init(name string, token int64, unlock UnlockFunc) {
	h.name, h.token, h.unlock, h.done = name, token, unlock, make(chan struct{})
}

// Observe attaches the telemetry of the acquire that made the handle, and
// records the lock as held. Backends call it once, with the Hold that the
// acquire's telemetry.Acquire.End returned, before handing the lock out. A
// lock lost before Observe (its session died at once) is recorded as
// acquired and lost.
func (h *Handle) Observe(hold telemetry.Hold) {
	hold.Begin()
	h.mu.Lock()
	err := h.err
	if err == nil {
		h.hold = hold
	}
	h.mu.Unlock()
	if err != nil {
		h.endedBefore(hold, err)
	}
}

// endedBefore reports the end of a lock that ended before Observe.
func (h *Handle) endedBefore(hold telemetry.Hold, err error) {
	var le *lockkit.LostError
	if errors.As(err, &le) {
		hold.End(h.name, telemetry.Lost, le.Cause, false)
		return
	}
	hold.End(h.name, telemetry.Released, nil, false)
}

// Name returns the lock's name.
func (h *Handle) Name() string { return h.name }

// Token returns the lock's fencing token, or 0.
func (h *Handle) Token() int64 { return h.token }

// Done is closed when the lock is released or lost, after the end has been
// reported to the lock's telemetry.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Err is nil while held, then lockkit.ErrReleased or a *lockkit.LostError.
func (h *Handle) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Held reports whether the lock is still held.
func (h *Handle) Held() bool { return h.Err() == nil }

// MarkLost records that the lock was lost because of cause and closes Done.
// It reports whether this call ended the lock; a lock already released or
// lost is left as it was. Backends call it from their loss detectors. It
// does not free resources: the owner still calls Release, which does.
func (h *Handle) MarkLost(cause error) bool {
	return h.lose(cause, false)
}

// lose ends the lock as lost; release says Release found the loss.
func (h *Handle) lose(cause error, release bool) bool {
	hold, ok := h.end(&lockkit.LostError{Name: h.name, Cause: cause})
	if ok {
		hold.End(h.name, telemetry.Lost, cause, release)
		close(h.done)
	}
	return ok
}

// end records err as the lock's end, once, and returns the telemetry to
// report it to. The caller reports the end, then closes Done, so that a
// reader woken by Done finds the end in the telemetry.
func (h *Handle) end(err error) (telemetry.Hold, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return telemetry.Hold{}, false
	}
	h.err = err
	return h.hold, true
}

// Release runs the backend's unlock once. See lockkit.Lock.Release for the
// contract.
func (h *Handle) Release(ctx context.Context) error {
	h.releaseMu.Lock()
	defer h.releaseMu.Unlock()
	if h.released {
		if err := h.Err(); errors.Is(err, lockkit.ErrLost) {
			return err
		}
		return lockkit.ErrReleased
	}
	h.released = true

	h.mu.Lock()
	lost, hold := h.err != nil, h.hold
	h.mu.Unlock()
	ctx, span := hold.StartRelease(ctx, h.name)
	err := h.release(ctx, lost)
	telemetry.EndRelease(span, err)
	return err
}

func (h *Handle) release(ctx context.Context, lost bool) error {
	err := h.unlock(ctx, lost)
	if lost {
		return h.Err()
	}
	if err != nil {
		h.lose(err, true)
		return h.Err()
	}
	hold, ok := h.end(lockkit.ErrReleased)
	if !ok {
		// Lost while the unlock ran: report the loss, not a release.
		return h.Err()
	}
	hold.End(h.name, telemetry.Released, nil, false)
	close(h.done)
	return nil
}
