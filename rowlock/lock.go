package rowlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/lockstate"
)

// releaseTimeout bounds a release whose caller's context had already
// ended: the lease is still given back rather than left to expire.
const releaseTimeout = 5 * time.Second

// Lock is one lease in the lock table. It implements [lockkit.Lock]: Name,
// Token (the fencing token), Done, Err and Release; and adds Owner,
// Expires and Renew.
//
// Done closes when the lease is released or lost: a renewal found it gone
// (expired, taken over, force-released), or it ran out locally before a
// renewal was confirmed. The local end is measured from before the
// statement that set the lease was sent, on this process's monotonic
// clock, so it comes no later than the database's.
//
// A Lock's methods are safe for concurrent use.
type Lock struct {
	state *lockstate.Handle
	l     *Locker
	owner string
	ttl   time.Duration

	mu      sync.Mutex
	expires time.Time
	expiry  *time.Timer

	// room is the waiting room this lock's acquisition kept (room.go),
	// set before the Lock is returned; its release gives it back.
	room *room

	// Automatic renewal runs from a timer, so a held lock costs no
	// goroutine between renewals.
	renewEvery   time.Duration // 0: no automatic renewal
	renewMu      sync.Mutex
	renewTimer   *time.Timer
	renewCtx     context.Context // made at the first renewal
	renewCancel  context.CancelFunc
	renewStopped bool
	renewing     sync.WaitGroup // a renewal in flight
}

var _ lockkit.Lock = (*Lock)(nil)

// Name returns the name the lease was taken on.
func (k *Lock) Name() string { return k.state.Name() }

// Token returns the lease's fencing token: strictly increasing per name
// across holders, also across deleted rows.
func (k *Lock) Token() int64 { return k.state.Token() }

// Done is closed when the lease is released or lost.
func (k *Lock) Done() <-chan struct{} { return k.state.Done() }

// Err is nil while the lease is held; then lockkit.ErrReleased, or an
// error wrapping lockkit.ErrLost with the cause.
func (k *Lock) Err() error { return k.state.Err() }

// Release ends the lease, matching owner and token, and checks that a row
// was ended; see [lockkit.Lock.Release]. A lease found gone reports the
// lock lost.
func (k *Lock) Release(ctx context.Context) error { return k.state.Release(ctx) }

func newLock(l *Locker, name, owner string, token int64, ttl time.Duration, expires time.Time, renew time.Duration) *Lock {
	k := &Lock{l: l, owner: owner, ttl: ttl, expires: expires}
	k.state = lockstate.New(name, token, k.unlock)
	k.expiry = time.AfterFunc(time.Until(expires), func() { k.state.MarkLost(errLeaseExpired) })
	if renew > 0 {
		k.renewEvery = renew
		k.renewMu.Lock()
		k.renewTimer = time.AfterFunc(renew, k.renewTick)
		k.renewMu.Unlock()
	}
	return k
}

// Owner returns the owner string the lease was taken with. Together with
// Name and Token it resumes the lease elsewhere: see Locker.Resume.
func (k *Lock) Owner() string { return k.owner }

// Expires returns when the lease ends unless renewed, as a time on this
// process's clock (with a monotonic reading): the lease's TTL counted from
// before the last acquire, resume or renew statement was sent. The
// database's own expiry, on its clock, is never earlier.
func (k *Lock) Expires() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.expires
}

func (k *Lock) setExpires(t time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expires = t
	k.expiry.Reset(time.Until(t))
}

// Renew extends the lease to the lock's TTL from now, on the database
// clock, if it is still live and still this lock's. When it is not (it
// expired, was taken over or force-released) the lock is marked lost and
// the error matches lockkit.ErrLost. A renewal that failed for another
// reason (a network error) leaves the lock held until its lease runs out.
// After Release, Renew returns lockkit.ErrReleased.
func (k *Lock) Renew(ctx context.Context) error {
	if err := k.Err(); err != nil {
		return err
	}
	err := k.renew(ctx)
	k.l.tel.Renewal(ctx, k.Name(), err)
	if errors.Is(err, errLeaseGone) {
		k.state.MarkLost(err)
		return k.Err()
	}
	if err != nil {
		return fmt.Errorf("rowlock: renew %q: %w", k.Name(), err)
	}
	return nil
}

func (k *Lock) renew(ctx context.Context) error {
	sent := k.l.now()
	res, err := k.l.exec(ctx, k.l.q.renew, k.ttl.Microseconds(), k.Name(), k.owner, k.Token())
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return errLeaseGone
	}
	k.setExpires(sent.Add(k.ttl))
	return nil
}

// renewTick is one automatic renewal. It runs on a context of its own,
// never the acquire call's, cancelled when the lock is released.
func (k *Lock) renewTick() {
	k.renewMu.Lock()
	if k.renewStopped {
		k.renewMu.Unlock()
		return
	}
	if k.renewCtx == nil {
		k.renewCtx, k.renewCancel = context.WithCancel(context.Background())
	}
	ctx := k.renewCtx
	k.renewing.Add(1)
	k.renewMu.Unlock()
	defer k.renewing.Done()
	if !k.state.Held() {
		return
	}
	// A renewal confirmed after the lease ran out is of no use, and one
	// cut short earlier only costs a retry.
	rctx, cancel := context.WithTimeout(ctx, max(time.Until(k.Expires()), time.Millisecond))
	err := k.renew(rctx)
	cancel()
	if ctx.Err() == nil {
		k.l.tel.Renewal(ctx, k.Name(), err)
	}
	next := k.renewEvery
	switch {
	case err == nil:
	case errors.Is(err, errLeaseGone):
		k.state.MarkLost(err)
		return
	case ctx.Err() != nil:
		return
	default:
		// Try again soon; if the lease runs out first, the expiry timer
		// ends the lock.
		next = max(k.renewEvery/4, time.Millisecond)
	}
	k.renewMu.Lock()
	if !k.renewStopped && k.state.Held() {
		k.renewTimer.Reset(next)
	}
	k.renewMu.Unlock()
}

// stopRenewal stops automatic renewal and waits for a renewal in flight,
// which it cancels.
func (k *Lock) stopRenewal() {
	if k.renewEvery == 0 {
		return
	}
	k.renewMu.Lock()
	k.renewStopped = true
	k.renewTimer.Stop()
	if k.renewCancel != nil {
		k.renewCancel()
	}
	k.renewMu.Unlock()
	k.renewing.Wait()
}

// unlock is the lockstate.UnlockFunc: stop renewing, then end the lease
// with a statement that matches name, owner and token.
func (k *Lock) unlock(ctx context.Context, lost bool) error {
	k.stopRenewal()
	k.expiry.Stop()
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
	}
	r := k.room
	if r != nil && !r.claim() {
		r = nil // given back at the end of its linger
	}
	if lost {
		if r != nil {
			r.leave(true, false)
			r.finish()
		}
		// Lost by the local clock only (no renewal confirmed in time):
		// the lease may still be live on the server, so end it if it
		// still carries our token, rather than leave it to expire.
		if errors.Is(k.Err(), errLeaseExpired) {
			_, _ = k.l.endLease(ctx, k.l.q.release, k.Name(), k.owner, k.Token())
		}
		return nil
	}
	var n int64
	var err error
	if r != nil {
		n, err = r.release(ctx, k.owner, k.Token())
	} else {
		n, err = k.l.endLease(ctx, k.l.q.release, k.Name(), k.owner, k.Token())
	}
	if err != nil {
		// The lease may still be live; it ends when its TTL runs out.
		return fmt.Errorf("rowlock: release could not be confirmed: %w", err)
	}
	if n == 0 {
		return errLeaseGone
	}
	return nil
}
