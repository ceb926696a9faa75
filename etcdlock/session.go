package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// session is one lease of a Locker and the locks held under it. It ends
// when the lease is lost (the server no longer knows it, or no keepalive
// succeeded within its TTL) or the Locker is closed; every lock held under
// it is then reported lost, and the Locker grants a new lease for the next
// acquire.
type session struct {
	l     *Locker
	id    clientv3.LeaseID
	ttl   time.Duration // as granted
	every time.Duration // renewal interval

	ctx    context.Context // cancelled when the session ends
	cancel context.CancelFunc
	exited chan struct{} // closed when the keepalive loop has returned
	done   chan struct{} // closed when the session ends

	mu    sync.Mutex
	ended bool
	cause error
	locks map[*Lock]struct{}
}

func newSession(l *Locker, id clientv3.LeaseID, ttl time.Duration, start time.Time) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{
		l: l, id: id, ttl: ttl, every: min(l.set.renewEvery, ttl/2),
		ctx: ctx, cancel: cancel,
		exited: make(chan struct{}), done: make(chan struct{}),
		locks: map[*Lock]struct{}{},
	}
	go s.keepalive(start.Add(ttl))
	return s
}

// alive reports whether the session has not ended.
func (s *session) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// add registers a lock held under the lease. It reports false when the
// session has already ended: the lock's key went with the lease.
func (s *session) add(lk *Lock) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.locks[lk] = struct{}{}
	return true
}

func (s *session) remove(lk *Lock) {
	s.mu.Lock()
	delete(s.locks, lk)
	s.mu.Unlock()
}

// end ends the session with cause: every lock held under it is reported
// lost, and its keepalive loop stops. It returns the locks it ended; a
// second call returns none.
func (s *session) end(cause error) []*Lock {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil
	}
	s.ended, s.cause = true, cause
	close(s.done)
	locks := make([]*Lock, 0, len(s.locks))
	for lk := range s.locks {
		locks = append(locks, lk)
	}
	clear(s.locks)
	s.mu.Unlock()
	s.cancel()
	s.l.forget(s)
	for _, lk := range locks {
		lk.lost(cause)
	}
	return locks
}

// err returns why the session ended.
func (s *session) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

// keepalive renews the lease every s.every until the session ends. Each
// renewal is one KeepAliveOnce, bounded by the lease's deadline on this
// host's clock: the send time of the last renewal the server confirmed
// plus the TTL it granted. The server counts the TTL from when it received
// that renewal, so the deadline is never later than the server's expiry
// (short of a difference in clock rates): when it passes without a
// confirmed renewal, the session ends, no later than the server can have
// let the lease and its keys go. An attempt is given up after s.every, and
// a failed renewal is retried every s.every/4.
func (s *session) keepalive(deadline time.Time) {
	defer close(s.exited)
	timer := time.NewTimer(s.every)
	defer timer.Stop()
	var lastErr error
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		// One attempt lasts at most one interval: a keepalive stalled on
		// a member that lost its leader is given up and sent again, which
		// the client may route to another member.
		kctx, cancel := context.WithDeadline(s.ctx, minTime(deadline, start.Add(s.every)))
		resp, err := s.l.c.KeepAliveOnce(kctx, s.id)
		cancel()
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			s.l.tel.Renewal(context.Background(), "", fmt.Errorf("etcdlock: keepalive of lease %x: %w", s.id, err))
		} else {
			s.l.tel.Renewal(context.Background(), "", nil)
		}
		switch {
		case err == nil:
			deadline = start.Add(time.Duration(resp.TTL) * time.Second)
			lastErr = nil
			s.l.deleteOrphans(s.ctx)
			timer.Reset(s.every)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.end(ErrLeaseGone)
			return
		default:
			lastErr = err
			left := time.Until(deadline)
			if left <= 0 {
				s.end(fmt.Errorf("%w (last keepalive: %w)", ErrLeaseExpired, lastErr))
				return
			}
			timer.Reset(min(max(s.every/4, 10*time.Millisecond), left))
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
