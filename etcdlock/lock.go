package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	pause "github.com/lockkit/lockkit/internal/backoff"
	"github.com/lockkit/lockkit/internal/lockstate"
)

// Causes of a loss, wrapped in the *lockkit.LostError that Lock.Err returns.
var (
	// ErrKeyDeleted means the lock's key was deleted while the lock was
	// held: its lease was revoked or expired on the server, or someone
	// deleted the key.
	ErrKeyDeleted = errors.New("etcdlock: the lock's key was deleted")

	// ErrLeaseExpired means no keepalive of the Locker's lease succeeded
	// within its TTL, so the server may have let the lease and its keys
	// go (the cluster was unreachable, had no leader, or the process was
	// paused).
	ErrLeaseExpired = errors.New("etcdlock: lease expired without a successful keepalive")

	// ErrLeaseGone means the server answered that it does not know the
	// Locker's lease: it was revoked, or it expired on the server.
	ErrLeaseGone = errors.New("etcdlock: the server no longer knows the lease (revoked or expired)")

	// ErrNotOwner means a release found the key no longer holds this lock.
	ErrNotOwner = errors.New("etcdlock: the key no longer holds this lock")

	// ErrClosed is returned by acquires after [Locker.Close], and is the
	// cause of the loss of every lock still held when Close ran.
	ErrClosed = errors.New("etcdlock: Locker is closed")
)

// Lock is a held etcd lock. It implements lockkit.Lock; its methods are safe
// for concurrent use.
//
// The lock is the key [Lock.Key], attached to the Locker's lease. While it
// is held, a watch on that key (one per held lock, multiplexed by the client
// on one gRPC stream) reports its deletion, and the Locker's keepalive
// reports the loss of the lease: Done closes and Err wraps lockkit.ErrLost
// with [ErrKeyDeleted], [ErrLeaseGone] or [ErrLeaseExpired].
type Lock struct {
	state *lockstate.Handle
	l     *Locker
	s     *session
	key   string
	rev   int64 // the key's create revision: the fencing token

	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// Name returns the name the lock was acquired under.
func (lk *Lock) Name() string { return lk.state.Name() }

// Token returns the lock's fencing token: the create revision of its key,
// strictly increasing per name across holders and unique in the cluster.
func (lk *Lock) Token() int64 { return lk.state.Token() }

// Done is closed when the lock is released or lost.
func (lk *Lock) Done() <-chan struct{} { return lk.state.Done() }

// Err is nil while the lock is held; then lockkit.ErrReleased, or an error
// wrapping lockkit.ErrLost with the cause.
func (lk *Lock) Err() error { return lk.state.Err() }

// Release deletes the lock's key if it still has this lock's create
// revision, so that neither a retried nor a late release can delete a
// successor's key; see [lockkit.Lock.Release]. A key that no longer holds
// this lock reports the lock lost ([ErrNotOwner]). While ctx lasts
// (releaseGrace when it had already ended), a release that meets a killed
// member or an election is retried; one the server still did not confirm
// reports the lock lost, is retried by the Locker after its next
// keepalive, and its key goes with the lease at the latest.
func (lk *Lock) Release(ctx context.Context) error { return lk.state.Release(ctx) }

// Key returns the etcd key that holds the lock.
func (lk *Lock) Key() string { return lk.key }

// Lease returns the lease the lock's key is attached to: the Locker's
// lease, shared by every lock it holds at the time. Keys put with this
// lease go when the lock's lease goes.
func (lk *Lock) Lease() clientv3.LeaseID { return lk.s.id }

// IsOwner returns a comparison that holds in an etcd transaction only while
// this lock's key exists with this lock's create revision. Put it in the If
// of a Txn that writes under the lock, and the write is refused once the
// lock is lost: fencing inside etcd without a token check.
func (lk *Lock) IsOwner() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(lk.key), "=", lk.rev)
}

// newLock makes the handle of a key that holds the lock since revision rev
// and watches it from revision from. It returns nil when the session has
// already ended (the key went with the lease).
func newLock(s *session, name, key string, rev, from int64) *Lock {
	lk := &Lock{l: s.l, s: s, key: key, rev: rev, watchDone: make(chan struct{})}
	lk.state = lockstate.New(name, rev, lk.unlock)
	ctx, cancel := context.WithCancel(context.Background())
	lk.stopWatch = cancel
	if !s.add(lk) {
		cancel()
		return nil
	}
	go lk.watch(ctx, from)
	return lk
}

// lost reports the lock lost and stops its watch.
func (lk *Lock) lost(cause error) {
	lk.state.MarkLost(cause)
	lk.stopWatch()
}

// watch reports the lock lost when its key is deleted or recreated. When
// the watch breaks (no leader on the member, a compacted revision, a
// closed connection) it reads the key, and watches again from after that
// read while the key is still this lock's. While the cluster cannot be
// read, the lease's deadline bounds the wait: the session ends the lock.
func (lk *Lock) watch(ctx context.Context, from int64) {
	defer close(lk.watchDone)
	defer lk.s.remove(lk)
	var bo backoff
	for ctx.Err() == nil {
		deleted, next := lk.watchOnce(ctx, from)
		if deleted {
			lk.lost(ErrKeyDeleted)
			return
		}
		from = next
		if ctx.Err() != nil {
			return
		}
		resp, err := lk.l.c.Get(ctx, lk.key)
		if err != nil {
			if !bo.sleep(ctx) {
				return
			}
			continue
		}
		bo.reset()
		if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != lk.rev {
			lk.lost(ErrKeyDeleted)
			return
		}
		from = resp.Header.Revision + 1
	}
}

// watchOnce watches the key from revision from until it is deleted or
// recreated (deleted true), or the watch breaks; next is the revision to
// watch from again.
func (lk *Lock) watchOnce(ctx context.Context, from int64) (deleted bool, next int64) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel() // ends the watch on the server when it broke on our side
	for wr := range lk.l.c.Watch(wctx, lk.key, clientv3.WithRev(from)) {
		if wr.Err() != nil || wr.Canceled {
			break
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE || ev.Kv.CreateRevision != lk.rev {
				return true, from
			}
		}
		from = wr.Header.Revision + 1
	}
	return false, from
}

// releaseGrace bounds a release or a give-back whose caller's context had
// already ended.
const releaseGrace = 2 * time.Second

// unlock is the lockstate.UnlockFunc: it stops the watch and deletes the key
// if it still has this lock's create revision.
func (lk *Lock) unlock(ctx context.Context, lost bool) error {
	lk.stopWatch()
	<-lk.watchDone
	lk.s.remove(lk)
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), releaseGrace)
		defer cancel()
	}
	// Also for a lost lock: a loss declared on this host's clock may leave
	// the key in place for a moment, and deleting it frees the name.
	ok, err := lk.l.deleteRetrying(ctx, lk.key, lk.rev)
	switch {
	case err != nil:
		lk.l.addOrphan(lk.key, lk.rev)
		if lost {
			return nil
		}
		return fmt.Errorf("etcdlock: release of %q not confirmed (retried after the next keepalive; the key goes with the lease at the latest): %w", lk.Name(), err)
	case lost:
		return nil
	case !ok:
		return ErrNotOwner
	}
	return nil
}

// backoff sleeps between retries: 20 ms doubling to 500 ms.
type backoff struct{ d time.Duration }

func (b *backoff) reset() { b.d = 0 }

// sleep waits for the next retry; false when ctx ended first.
func (b *backoff) sleep(ctx context.Context) bool {
	b.d = min(max(2*b.d, 20*time.Millisecond), 500*time.Millisecond)
	return pause.Sleep(ctx, b.d)
}
