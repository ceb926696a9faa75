// Package lockstate holds the state machine every lockkit lock handle
// shares: held, then released or lost, exactly once; a Done channel; an
// idempotent Release that runs the backend's unlock at most once.
//
// Backends embed *Handle in their lock type and supply the unlock function.
package lockstate

import (
	"context"
	"errors"
	"sync"

	"github.com/lockkit/lockkit"
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
}

// New returns a handle for a lock that is held now.
func New(name string, token int64, unlock UnlockFunc) *Handle {
	return &Handle{name: name, token: token, unlock: unlock, done: make(chan struct{})}
}

// Name returns the lock's name.
func (h *Handle) Name() string { return h.name }

// Token returns the lock's fencing token, or 0.
func (h *Handle) Token() int64 { return h.token }

// Done is closed when the lock is released or lost.
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
	return h.end(&lockkit.LostError{Name: h.name, Cause: cause})
}

func (h *Handle) end(err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return false
	}
	h.err = err
	close(h.done)
	return true
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

	lost := !h.Held()
	err := h.unlock(ctx, lost)
	if lost {
		return h.Err()
	}
	if err != nil {
		h.MarkLost(err)
		return h.Err()
	}
	if !h.end(lockkit.ErrReleased) {
		// Lost while the unlock ran: report the loss, not a release.
		return h.Err()
	}
	return nil
}
