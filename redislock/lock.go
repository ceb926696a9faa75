package redislock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lockkit/lockkit/internal/lockstate"
)

// Causes of a loss, wrapped in the *lockkit.LostError that Lock.Err returns.
var (
	// ErrNotOwner means the lock key no longer holds this lock's secret:
	// the lease expired and the key was deleted or taken by another holder,
	// the key was deleted by hand, or the server lost it (a restart without
	// persistence, a failover to a replica that had not received it).
	ErrNotOwner = errors.New("redislock: the key no longer holds this lock")

	// ErrLeaseExpired means the lease ran out on the holder's clock: no
	// renewal succeeded within TTL of the last one that did (the server was
	// unreachable, or automatic renewal is off and Renew was not called).
	ErrLeaseExpired = errors.New("redislock: lease expired without a successful renewal")
)

// Lock is a held Redis lock. It implements lockkit.Lock; its methods are safe
// for concurrent use. A Lock must be released: until then its lease is
// renewed.
//
// While held, the lease is renewed every Config.RenewInterval from a timer
// (no goroutine waits per held lock), on a context of its own, never the
// acquire call's; a lock that Lock took from a release's grant is first
// renewed at half of what the grant's short lease has left, if that is
// sooner (see the package documentation, Waiting). Done closes and Err wraps lockkit.ErrLost when a renewal
// finds the key no longer holds this lock ([ErrNotOwner]), or when TTL has
// passed since the start of the last renewal that succeeded
// ([ErrLeaseExpired]): from then on the server may have let the key expire,
// so the lock is reported lost no later than the lease can have ended.
// Release stops the renewal and waits for one in flight.
type Lock struct {
	state  *lockstate.Handle
	l      *Locker
	k      nameKeys
	secret string // "<secret>|"

	mu       sync.Mutex
	deadline time.Time   // the lease ends no earlier than this, on our clock
	expiry   *time.Timer // fires at deadline: the lease may be over; with automatic renewal, made by the first tick
	renewal  *time.Timer // automatic renewal; nil with NoAutoRenew
	stopped  bool
	inflight chan struct{} // closed when the queued or running auto-renewal ends
	lastErr  error         // the last renewal error
}

// newLock returns the lock an acquire sent at start took: its lease is the
// Locker's TTL from start.
func newLock(l *Locker, name string, k *nameKeys, secret string, token int64, start time.Time) *Lock {
	return newLeasedLock(l, name, k, secret, token, start.Add(l.set.ttl), l.set.renewEvery)
}

// newLeasedLock returns a lock whose lease ends no earlier than deadline,
// on this process's clock, and whose first automatic renewal (if on) goes
// after firstRenewal; the later ones every RenewInterval.
func newLeasedLock(l *Locker, name string, k *nameKeys, secret string, token int64, deadline time.Time, firstRenewal time.Duration) *Lock {
	lk := &Lock{l: l, k: *k, secret: secret, deadline: deadline}
	lk.state = lockstate.New(name, token, lk.unlock)
	lk.mu.Lock()
	if l.set.renewEvery > 0 {
		// The first renewal is due before the deadline, so the expiry
		// timer waits for it (tick): most locks are released before, and
		// never pay for a second timer.
		lk.renewal = time.AfterFunc(firstRenewal, lk.tick)
	} else {
		lk.expiry = time.AfterFunc(time.Until(lk.deadline), lk.expire)
	}
	lk.mu.Unlock()
	return lk
}

// Name returns the name the lock was acquired under.
func (lk *Lock) Name() string { return lk.state.Name() }

// Token returns the lock's fencing token (0 when the Locker's Config
// turns fencing off): strictly increasing per name across holders.
func (lk *Lock) Token() int64 { return lk.state.Token() }

// Done is closed when the lock is released or lost.
func (lk *Lock) Done() <-chan struct{} { return lk.state.Done() }

// Err is nil while the lock is held; then lockkit.ErrReleased, or an error
// wrapping lockkit.ErrLost with the cause.
func (lk *Lock) Err() error { return lk.state.Err() }

// Release deletes the key if it still holds this lock (a compare-and-delete)
// and stops the renewal; see [lockkit.Lock.Release]. A key that no longer
// holds this lock reports the lock lost.
func (lk *Lock) Release(ctx context.Context) error { return lk.state.Release(ctx) }

// Key returns the Redis key that holds the lock.
func (lk *Lock) Key() string { return lk.k.key }

// Renew resets the lease to the Locker's TTL. It returns nil when the
// server confirmed it. When the key no longer holds this lock the lock is
// marked lost and Renew returns its loss error (matching lockkit.ErrLost).
// Any other error (a network error, ctx, [ErrNotReplicated]) leaves the
// lock held until its lease runs out on the holder's clock. A released lock returns
// lockkit.ErrReleased.
func (lk *Lock) Renew(ctx context.Context) error {
	if err := lk.Err(); err != nil {
		return err
	}
	return lk.renew(ctx)
}

func (lk *Lock) renew(ctx context.Context) error {
	start := time.Now()
	cmd, acks := lk.l.runScript(ctx, renewScript, []string{lk.k.key}, lk.secret, lk.l.set.ttlMs)
	n, err := cmd.Int64()
	if err == nil && n == 1 {
		err = lk.l.notReplicated(acks)
	}
	return lk.renewed(start, n, err)
}

// renewed applies the reply of a renewal sent at start: the lease's
// deadline moves, or the lock is lost, or the error is returned.
func (lk *Lock) renewed(start time.Time, n int64, err error) error {
	if err != nil {
		err = fmt.Errorf("redislock: renew %q: %w", lk.Name(), err)
		lk.l.tel.Renewal(context.Background(), lk.Name(), err)
		return err
	}
	if n != 1 {
		lk.l.tel.Renewal(context.Background(), lk.Name(), ErrNotOwner)
		lk.state.MarkLost(ErrNotOwner)
		return lk.Err()
	}
	lk.l.tel.Renewal(context.Background(), lk.Name(), nil)
	lk.mu.Lock()
	if d := start.Add(lk.l.set.ttl); d.After(lk.deadline) {
		lk.deadline = d
	}
	lk.lastErr = nil
	lk.mu.Unlock()
	return nil
}

// TTL returns how long the lease has left on the server. When the key no
// longer holds this lock the lock is marked lost and TTL returns its loss
// error.
func (lk *Lock) TTL(ctx context.Context) (time.Duration, error) {
	if err := lk.Err(); err != nil {
		return 0, err
	}
	ms, err := ttlScript.Run(ctx, lk.l.c, []string{lk.k.key}, lk.secret).Int64()
	if err != nil {
		return 0, fmt.Errorf("redislock: TTL of %q: %w", lk.Name(), err)
	}
	switch {
	case ms == -3:
		lk.state.MarkLost(ErrNotOwner)
		return 0, lk.Err()
	case ms < 0:
		return 0, fmt.Errorf("redislock: TTL of %q: the key has no expiry (PTTL %d)", lk.Name(), ms)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// expire runs on the expiry timer at the lease's deadline on the holder's
// clock. If no renewal has moved the deadline, the server may have let the
// key expire by now, so the lock is reported lost, whether or not a renewal
// is still waiting for its reply (go-redis bounds network waits by its
// ReadTimeout, not by the context, unless ContextTimeoutEnabled is set).
func (lk *Lock) expire() {
	lk.mu.Lock()
	if lk.stopped {
		lk.mu.Unlock()
		return
	}
	if left := time.Until(lk.deadline); left > 0 {
		lk.expiry.Reset(left)
		lk.mu.Unlock()
		return
	}
	cause := lk.lastErr
	lk.mu.Unlock()
	lk.state.MarkLost(joinCause(ErrLeaseExpired, cause))
}

// tick runs on the renewal timer: it queues the lock for the Locker's next
// batch of renewals (see batcher).
func (lk *Lock) tick() {
	lk.mu.Lock()
	if lk.stopped || !lk.state.Held() {
		lk.mu.Unlock()
		return
	}
	if lk.expiry == nil {
		lk.expiry = time.AfterFunc(time.Until(lk.deadline), lk.expire)
	}
	lk.inflight = make(chan struct{})
	lk.l.batch.add(lk)
	lk.mu.Unlock()
}

// autoRenewed ends an automatic renewal with its result and schedules the
// next one, sooner after a failure.
func (lk *Lock) autoRenewed(err error) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.inflight != nil {
		close(lk.inflight)
		lk.inflight = nil
	}
	if lk.stopped || !lk.state.Held() {
		return
	}
	next := lk.l.set.renewEvery
	if err != nil {
		// Retry sooner, but not in a busy loop. The expiry timer ends the
		// lock if no retry succeeds in time.
		lk.lastErr = err
		next = max(next/4, 10*time.Millisecond)
	}
	lk.renewal.Reset(next)
}

func joinCause(err, cause error) error {
	if cause == nil {
		return err
	}
	return fmt.Errorf("%w (last renewal: %w)", err, cause)
}

// stop ends the timers and waits for a renewal in flight (one already sent
// in a batch; a queued one is taken out of the queue).
func (lk *Lock) stop() {
	lk.mu.Lock()
	lk.stopped = true
	if lk.expiry != nil {
		lk.expiry.Stop()
	}
	if lk.renewal != nil {
		lk.renewal.Stop()
	}
	done := lk.inflight
	lk.mu.Unlock()
	if done != nil && !lk.l.batch.remove(lk) {
		<-done
	}
}

// releaseGrace bounds a release whose caller's context was already done.
const releaseGrace = 2 * time.Second

// unlock is the lockstate.UnlockFunc: it stops the renewal and deletes the
// key if it still holds this lock, publishing the release to waiters.
func (lk *Lock) unlock(ctx context.Context, lost bool) error {
	lk.stop()
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), releaseGrace)
		defer cancel()
	}
	// Also for a lost lock: when the loss was declared on our clock the
	// key may still be ours for a moment, and deleting it frees the name.
	n, err := lk.l.release(ctx, &lk.k, lk.secret, "")
	switch {
	case lost:
		return nil
	case err != nil:
		return fmt.Errorf("redislock: release of %q not confirmed (the key expires with its lease): %w", lk.Name(), err)
	case n != 1:
		return ErrNotOwner
	}
	return nil
}
