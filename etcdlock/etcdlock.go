package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/telemetry"
	"github.com/lockkit/lockkit/keyhash"
)

// Locker acquires named locks held as keys in etcd, all attached to one
// lease of its own. It is safe for concurrent use. It does not own the
// client; call [Locker.Close] before closing the client.
type Locker struct {
	c   *clientv3.Client
	set settings
	tel *telemetry.Recorder
	seq atomic.Uint64 // makes every attempt's key unique under a lease

	mu       sync.Mutex
	sess     *session      // the current lease; nil before the first acquire or after a loss
	granting chan struct{} // non-nil while a Grant is in flight; closed when it ends
	closed   bool
	orphans  map[string]int64 // keys to delete: give-backs not confirmed (0: any revision)

	// watchHook, when set by a test, runs each time a waiter is about to
	// watch its predecessor's key.
	watchHook func(own, pred string)
}

var (
	_ lockkit.Locker = (*Locker)(nil)
	_ lockkit.Lister = (*Locker)(nil)
	_ lockkit.Lock   = (*Lock)(nil)
)

// New returns a Locker on client. cfg may be nil for the defaults. Bad
// settings return an error matching lockkit.ErrInvalid; New does no I/O: the
// lease is granted by the first acquire.
func New(client *clientv3.Client, cfg *Config) (*Locker, error) {
	if client == nil {
		return nil, invalid.Errorf("etcdlock: nil client")
	}
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	return &Locker{c: client, set: s, tel: telemetry.New(s.tel, telemetryBackend), orphans: map[string]int64{}}, nil
}

var telemetryBackend = telemetry.Backend{
	Name:     "etcdlock",
	DBSystem: "etcd",
	Reason: func(cause error, _ bool) telemetry.Reason {
		switch {
		case errors.Is(cause, ErrKeyDeleted), errors.Is(cause, ErrNotOwner):
			return telemetry.TakenOver
		case errors.Is(cause, ErrLeaseGone), errors.Is(cause, ErrLeaseExpired):
			return telemetry.LeaseExpired
		}
		// ErrClosed: Close ended the lock (other); a release not
		// confirmed: release_unconfirmed.
		return telemetry.Other
	},
}

// Close revokes the Locker's lease and stops its keepalive. Every lock
// still held is reported lost with [ErrClosed] and its key is gone with the
// lease; waiting Lock calls return ErrClosed; later acquires fail with
// ErrClosed. Release locks before closing to report them released instead.
// Close is idempotent; it returns the revoke's error, and the lease then
// ends on the server within its TTL.
func (l *Locker) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	s := l.sess
	l.sess = nil
	l.mu.Unlock()
	if s == nil {
		return nil
	}
	for _, lk := range s.end(ErrClosed) {
		<-lk.watchDone
	}
	<-s.exited
	ctx, cancel := context.WithTimeout(context.Background(), releaseGrace)
	defer cancel()
	if _, err := l.c.Revoke(ctx, s.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcdlock: revoke lease %x: %w", s.id, err)
	}
	return nil
}

// TTL returns the lease TTL the Locker asks for.
func (l *Locker) TTL() time.Duration { return l.set.ttl }

// Prefix returns the key prefix of the named lock: every attempt on the
// name, the holder's and the waiters', is a key under it,
// "<prefix><escaped name>/<lease>-<n>", where the name is escaped as a URL
// path segment (so it has no "/" and one name's keys are never under
// another's).
func (l *Locker) Prefix(name string) string {
	return l.set.prefix + url.PathEscape(name) + "/"
}

// session returns the Locker's live lease, granting one when there is none.
func (l *Locker) session(ctx context.Context) (*session, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, ErrClosed
		}
		if s := l.sess; s != nil && s.alive() {
			l.mu.Unlock()
			return s, nil
		}
		if ch := l.granting; ch != nil {
			l.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		l.granting = ch
		l.mu.Unlock()

		start := time.Now()
		resp, err := l.c.Grant(ctx, int64(l.set.ttl/time.Second))
		l.mu.Lock()
		l.granting = nil
		close(ch)
		if err != nil {
			l.mu.Unlock()
			return nil, fmt.Errorf("etcdlock: grant lease: %w", err)
		}
		if l.closed {
			l.mu.Unlock()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseGrace)
			_, _ = l.c.Revoke(rctx, resp.ID)
			cancel()
			return nil, ErrClosed
		}
		s := newSession(l, resp.ID, time.Duration(resp.TTL)*time.Second, start)
		l.sess = s
		l.mu.Unlock()
		return s, nil
	}
}

// forget drops s as the Locker's lease once it has ended.
func (l *Locker) forget(s *session) {
	l.mu.Lock()
	if l.sess == s {
		l.sess = nil
	}
	l.mu.Unlock()
}

// key returns a key for one attempt on name under s's lease, never used
// before by any attempt in the cluster (lease ids are unique).
func (l *Locker) key(name string, s *session) string {
	return l.Prefix(name) + strconv.FormatInt(int64(s.id), 16) + "-" + strconv.FormatUint(l.seq.Add(1), 16)
}

// deleteKey deletes key if its create revision is rev (any revision when
// rev is 0), and reports whether it did.
func (l *Locker) deleteKey(ctx context.Context, key string, rev int64) (bool, error) {
	if rev == 0 {
		resp, err := l.c.Delete(ctx, key)
		return err == nil && resp.Deleted > 0, err
	}
	resp, err := l.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// deleteRetrying is deleteKey retried with a backoff while the cluster is
// briefly unable to answer (a killed member, an election) and ctx lasts.
// The compare on the create revision makes a retry safe: it can delete only
// this lock's key. After an attempt whose outcome is unknown, a key found
// gone counts as deleted, since the first attempt may have deleted it.
func (l *Locker) deleteRetrying(ctx context.Context, key string, rev int64) (bool, error) {
	var bo backoff
	uncertain := false
	for {
		ok, err := l.deleteKey(ctx, key, rev)
		if err == nil {
			return ok || uncertain, nil
		}
		uncertain = true
		if ctx.Err() != nil || !retryable(err) || !bo.sleep(ctx) {
			return false, err
		}
	}
}

// giveBack deletes the key of an attempt on name that will not hold the
// lock (its caller gave up, or the attempt's outcome is unknown), on a
// context of its own bounded by releaseGrace. When that fails the key is an
// orphan, deleted after the next keepalive or with the lease. The telemetry
// logs a failed give-back, and the give-back of a key whose put's outcome
// was unknown (rev 0) and which was found put.
func (l *Locker) giveBack(ctx context.Context, name, key string, rev int64) {
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseGrace)
	defer cancel()
	deleted, err := l.deleteRetrying(gctx, key, rev)
	if err != nil {
		l.addOrphan(key, rev)
	}
	if err != nil || (deleted && rev == 0) {
		l.tel.GaveBack(name, err)
	}
}

func (l *Locker) addOrphan(key string, rev int64) {
	l.mu.Lock()
	l.orphans[key] = rev
	l.mu.Unlock()
}

// deleteOrphans retries the give-backs and releases that were not
// confirmed. The keepalive loop runs it after each renewal.
func (l *Locker) deleteOrphans(ctx context.Context) {
	l.mu.Lock()
	if len(l.orphans) == 0 {
		l.mu.Unlock()
		return
	}
	todo := make(map[string]int64, len(l.orphans))
	for k, r := range l.orphans {
		todo[k] = r
	}
	l.mu.Unlock()
	for key, rev := range todo {
		dctx, cancel := context.WithTimeout(ctx, releaseGrace)
		_, err := l.deleteKey(dctx, key, rev)
		cancel()
		if err == nil {
			l.mu.Lock()
			if l.orphans[key] == rev {
				delete(l.orphans, key)
			}
			l.mu.Unlock()
		}
	}
}

// Acquire waits until the named lock is held, or ctx ends. It implements
// lockkit.Locker; see [Locker.Lock] for the typed form.
func (l *Locker) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := l.Lock(ctx, name)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// TryAcquire makes one attempt. It implements lockkit.Locker; see
// [Locker.TryLock] for the typed form.
func (l *Locker) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := l.TryLock(ctx, name)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// check refuses a bad name and a closed Locker, before an acquire starts
// (and is counted).
func (l *Locker) check(name string) error {
	if err := keyhash.ValidateName(name); err != nil {
		return err
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return nil
}

// TryLock takes the named lock if nobody holds it or waits for it, in one
// transaction: it puts the lock's key only if no key exists under the
// name's prefix, and otherwise reads the holder's key. When the lock is held
// the error is a *lockkit.HeldError naming the holder (owner, host, pid,
// since, token, and the lease's end, which costs a second round trip). A
// try leaves nothing behind when it fails. The first acquire of a Locker
// also grants its lease.
func (l *Locker) TryLock(ctx context.Context, name string) (*Lock, error) {
	if err := l.check(name); err != nil {
		return nil, err
	}
	ctx, op := l.tel.StartAcquire(ctx, name, false)
	lk, err := l.tryLock(ctx, name)
	if hold := op.End(ctx, err); lk != nil {
		lk.state.Observe(hold)
	}
	return lk, err
}

// tryLock makes the one attempt of a TryLock.
func (l *Locker) tryLock(ctx context.Context, name string) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, &lockkit.HeldError{Name: name, Cause: err}
	}
	pfx := l.Prefix(name)
	for range 3 { // again with a new lease when the lease was lost meanwhile
		s, err := l.session(ctx)
		if err != nil {
			return nil, l.failed(ctx, name, nil, err)
		}
		key := l.key(name, s)
		resp, err := l.c.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(pfx).WithPrefix(), "=", 0)).
			Then(clientv3.OpPut(key, l.set.value(time.Now()), clientv3.WithLease(s.id))).
			Else(clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)).
			Commit()
		if err != nil {
			l.giveBack(ctx, name, key, 0) // it may have been put
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				s.end(ErrLeaseGone)
				continue
			}
			return nil, l.failed(ctx, name, nil, err)
		}
		if !resp.Succeeded {
			he := &lockkit.HeldError{Name: name}
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				h := decodeHolder(kvs[0].Value, kvs[0].CreateRevision)
				l.expires(ctx, &h, clientv3.LeaseID(kvs[0].Lease))
				he.Holder = &h
			}
			return nil, he
		}
		rev := resp.Header.Revision
		if lk := newLock(s, name, key, rev, rev+1); lk != nil {
			return lk, nil
		}
	}
	return nil, fmt.Errorf("etcdlock: TryLock %q: the lease was lost at every attempt", name)
}

// expires fills h.Expires from the holder's lease, if the server answers.
func (l *Locker) expires(ctx context.Context, h *lockkit.Holder, lease clientv3.LeaseID) {
	if lease == 0 {
		return
	}
	resp, err := l.c.TimeToLive(ctx, lease)
	if err == nil && resp.TTL >= 0 {
		h.Expires = time.Now().Add(time.Duration(resp.TTL) * time.Second)
	}
}

// failed is the error of an acquire that ends with err: a *lockkit.HeldError
// with the context's error when ctx has ended, else err.
func (l *Locker) failed(ctx context.Context, name string, holder *lockkit.Holder, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return &lockkit.HeldError{Name: name, Holder: holder, Cause: cerr}
	}
	if errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("etcdlock: acquire %q: %w", name, err)
}

// retryable reports whether err is the cluster being briefly unable to
// answer (no leader, a leader change, a request timed out on the server,
// an unreachable member), which a waiting acquire rides out.
func retryable(err error) bool {
	var code codes.Code
	if ee, ok := err.(rpctypes.EtcdError); ok {
		code = ee.Code()
	} else {
		code = status.Code(err)
	}
	return code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Aborted
}

// Lock waits until the named lock is held, or ctx ends.
//
// It puts a key of its own under the name's prefix, attached to the
// Locker's lease, and reads the oldest key there in the same transaction:
// when that is its own key, the lock is held (one round trip). Otherwise
// the keys form a queue in create-revision order, and the call watches only
// the key created just before its own (its predecessor): when that key is
// deleted, one transaction takes the lock if no older key is left, or finds
// the new predecessor. A release therefore wakes exactly one waiter, and
// waiters are served first come, first served.
//
// While it waits, a leader election or an unreachable member is ridden
// out (the transaction is retried with a backoff up to 500 ms); if the
// Locker's lease is lost meanwhile (its key went with it), the call queues
// again, last, under a new lease. When ctx ends the call deletes its key
// and returns a *lockkit.HeldError with ctx.Err() as its Cause and the last
// holder it saw.
func (l *Locker) Lock(ctx context.Context, name string) (*Lock, error) {
	if err := l.check(name); err != nil {
		return nil, err
	}
	ctx, op := l.tel.StartAcquire(ctx, name, true)
	lk, err := l.lock(ctx, name)
	if hold := op.End(ctx, err); lk != nil {
		lk.state.Observe(hold)
	}
	return lk, err
}

// lock is Lock after its checks.
func (l *Locker) lock(ctx context.Context, name string) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, &lockkit.HeldError{Name: name, Cause: err}
	}
	pfx := l.Prefix(name)
	var holder *lockkit.Holder
	var bo backoff
	for {
		s, err := l.session(ctx)
		if err != nil {
			if retryable(err) && bo.sleep(ctx) {
				continue
			}
			return nil, l.failed(ctx, name, holder, err)
		}
		key := l.key(name, s)
		resp, err := l.c.Txn(ctx).
			Then(clientv3.OpPut(key, l.set.value(time.Now()), clientv3.WithLease(s.id)),
				clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)).
			Commit()
		if err != nil {
			l.giveBack(ctx, name, key, 0) // it may have been put
			switch {
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				s.end(ErrLeaseGone)
				continue
			case ctx.Err() == nil && retryable(err) && bo.sleep(ctx):
				continue
			}
			return nil, l.failed(ctx, name, holder, err)
		}
		bo.reset()
		rev := resp.Header.Revision
		first := resp.Responses[1].GetResponseRange().Kvs
		if len(first) == 0 {
			continue // the lease ended at once: the key went with it
		}
		if first[0].CreateRevision == rev {
			if lk := newLock(s, name, key, rev, rev+1); lk != nil {
				return lk, nil
			}
			continue // the lease ended: the key went with it
		}
		h := decodeHolder(first[0].Value, first[0].CreateRevision)
		holder = &h
		lk, err := l.wait(ctx, s, name, pfx, key, rev, &holder)
		if errors.Is(err, errRequeue) {
			continue
		}
		return lk, err
	}
}

// errRequeue tells Lock that its key is gone (its lease ended, or it was
// deleted by hand) and it must queue again.
var errRequeue = errors.New("etcdlock: requeue")

// wait waits until key, created at revision rev, is the oldest under pfx,
// watching its predecessor. It takes the lock by rewriting the key's value
// with the time it became the holder (the key keeps its create revision,
// the token).
func (l *Locker) wait(ctx context.Context, s *session, name, pfx, key string, rev int64, holder **lockkit.Holder) (*Lock, error) {
	var bo backoff
	for {
		resp, err := l.c.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev),
				// every key under the name is as young as ours or younger
				clientv3.Compare(clientv3.CreateRevision(pfx).WithPrefix(), ">", rev-1)).
			Then(clientv3.OpPut(key, l.set.value(time.Now()), clientv3.WithLease(s.id))).
			Else(clientv3.OpGet(key),
				clientv3.OpGet(pfx, append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(rev-1))...),
				clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)).
			Commit()
		if err != nil {
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				s.end(ErrLeaseGone)
				return nil, errRequeue
			}
			if ctx.Err() == nil && retryable(err) && bo.sleep(ctx) {
				continue
			}
			l.giveBack(ctx, name, key, rev)
			return nil, l.failed(ctx, name, *holder, err)
		}
		bo.reset()
		if resp.Succeeded {
			if lk := newLock(s, name, key, rev, resp.Header.Revision+1); lk != nil {
				return lk, nil
			}
			return nil, errRequeue
		}
		if own := resp.Responses[0].GetResponseRange().Kvs; len(own) == 0 || own[0].CreateRevision != rev {
			return nil, errRequeue
		}
		if first := resp.Responses[2].GetResponseRange().Kvs; len(first) > 0 {
			h := decodeHolder(first[0].Value, first[0].CreateRevision)
			*holder = &h
		}
		pred := resp.Responses[1].GetResponseRange().Kvs
		if len(pred) == 0 {
			continue // the predecessor went between the compare and the read
		}
		if l.watchHook != nil {
			l.watchHook(key, string(pred[0].Key))
		}
		switch err := l.waitDelete(ctx, s, key, rev, string(pred[0].Key), resp.Header.Revision+1); {
		case err == nil:
		case errors.Is(err, errRequeue):
			return nil, errRequeue
		default:
			l.giveBack(ctx, name, key, rev)
			return nil, l.failed(ctx, name, *holder, err)
		}
	}
}

// waitDelete waits until pred is deleted after revision from (nil), the
// watch breaks (nil: the caller looks again), the waiter's own key (created
// at revision rev) is deleted or its session ends (errRequeue), or ctx ends
// (its error). The own key is watched too, so that a waiter whose lease is
// revoked, or whose key is deleted, queues again at once rather than at
// the next keepalive.
//
// Both watches start at the server's current revision, not at from: etcd
// serves a watch whose start revision is already past from its "unsynced"
// group, which it catches up only every 100 ms, and under contention every
// other waiter's write moves the revision on between the caller's read
// and the watch, so a release reached the next waiter 0 to 100 ms late.
// Once both watches are created, a read covers the revisions from from to
// their start, unless nothing was written in between.
func (l *Locker) waitDelete(ctx context.Context, s *session, own string, rev int64, pred string, from int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	predCh := l.c.Watch(wctx, pred, clientv3.WithCreatedNotify())
	ownCh := l.c.Watch(wctx, own, clientv3.WithCreatedNotify())
	created, moved := 0, false
	for {
		var wr clientv3.WatchResponse
		var ok, isOwn bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return errRequeue
		case wr, ok = <-predCh:
		case wr, ok = <-ownCh:
			isOwn = true
		}
		if !ok || wr.Err() != nil || wr.Canceled {
			// Look again, but not in a busy loop while the member has
			// no leader.
			t := time.NewTimer(20 * time.Millisecond)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
			return nil
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				if isOwn {
					return errRequeue
				}
				return nil
			}
		}
		if !wr.Created {
			continue
		}
		created++
		moved = moved || wr.Header.Revision >= from
		if created < 2 || !moved {
			continue
		}
		// A read-only transaction (no raft write): what happened to
		// both keys between the caller's read and the watches' start.
		resp, err := l.c.Txn(ctx).Then(clientv3.OpGet(pred, clientv3.WithCountOnly()), clientv3.OpGet(own)).Commit()
		if err != nil {
			return nil // the caller looks again, with its backoff
		}
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != rev {
			return errRequeue
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return nil
		}
	}
}
