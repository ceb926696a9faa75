package redislock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/telemetry"
	"github.com/redis/go-redis/v9"
)

// Client is the part of a go-redis client a [Locker] uses: commands,
// scripts, pipelines (for batched renewals) and a pub/sub connection for
// waiters. *redis.Client, *redis.ClusterClient,
// *redis.Ring and every redis.UniversalClient satisfy it.
type Client interface {
	redis.Scripter
	Do(ctx context.Context, args ...any) *redis.Cmd
	Pipeline() redis.Pipeliner
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
}

// Locker acquires named locks held as leases in Redis. It is safe for
// concurrent use. It does not own the client: closing the client is the
// caller's business, after every lock is released.
type Locker struct {
	c        Client
	set      settings
	hub      hub
	batch    batcher
	noSetGet atomic.Bool // the server rejected SET NX GET: use the script
	roleOK   atomic.Bool // ROLE said primary, or cannot be asked (see checkRole)
	turns    turnSet     // per name, the Lock calls waiting in-process
	tel      *telemetry.Recorder

	closeMu   sync.Mutex // orders abandoned.Add before Close's Wait
	closed    atomic.Bool
	abandoned sync.WaitGroup // give-backs of abandoned attempts still running

	// waitHook, when set by a test, runs each time the head of a name's
	// local queue is about to block waiting for a release, after a wait
	// script that did not get the lock.
	waitHook func(name string)
	// queueHook, when set by a test, runs each time a Lock call is about
	// to wait in-process behind another of the Locker's waiters.
	queueHook func(name string)
}

var (
	_ lockkit.Locker = (*Locker)(nil)
	_ lockkit.Lock   = (*Lock)(nil)
)

// New returns a Locker on client. cfg may be nil for the defaults. Bad
// settings return an error matching lockkit.ErrInvalid; New does no I/O.
func New(client Client, cfg *Config) (*Locker, error) {
	if client == nil {
		return nil, invalid.Errorf("redislock: nil client")
	}
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	if err := checkWaitClient(client, s); err != nil {
		return nil, err
	}
	l := &Locker{c: client, set: s, hub: hub{c: client, linger: waitLinger}, tel: telemetry.New(s.tel, telemetryBackend)}
	l.turns.New = func() *turnState { return &turnState{} }
	l.batch.l = l
	return l, nil
}

var telemetryBackend = telemetry.Backend{
	Name:     "redislock",
	DBSystem: "redis",
	Reason: func(cause error, _ bool) telemetry.Reason {
		switch {
		case errors.Is(cause, ErrLeaseExpired):
			return telemetry.LeaseExpired
		case errors.Is(cause, ErrNotOwner):
			return telemetry.TakenOver
		}
		return telemetry.Other
	},
}

// ErrClosed is returned by TryLock and Lock after Close.
var ErrClosed = errors.New("redislock: Locker is closed")

// Close makes later TryLock and Lock calls fail with [ErrClosed], closes
// the pub/sub connection that waits keep open for a while after they end
// (at once when nobody waits on it; else when the last waiter returns), and
// waits for the give-backs of attempts that their context abandoned while
// a lock statement was in flight (each bounded by 2 s; normally a round
// trip), so that closing the client, or exiting, right after Close leaves
// no lease behind until its TTL. Locks already held are not released: release
// them first. Close is idempotent and always returns nil.
func (l *Locker) Close() error {
	l.closeMu.Lock()
	l.closed.Store(true)
	l.closeMu.Unlock()
	l.hub.close()
	l.abandoned.Wait()
	return nil
}

// TTL returns the lease length locks are taken with.
func (l *Locker) TTL() time.Duration { return l.set.ttl }

// Key returns the Redis key that holds the named lock:
// "<prefix>{<name>}". With fencing, the token counter is that key followed
// by ":fence", and releases are published on the channel "<key>:released".
// The braces make the lock key and its counter a Redis Cluster hash tag, so
// that one script can touch both. A name that starts with "}" would make
// that tag empty (Redis Cluster would then hash each whole key, and a
// script touching two of them fail with CROSSSLOT), so its key is
// "<prefix>}{<name in hex>}" instead, which no other name's key can equal.
func (l *Locker) Key(name string) string {
	if strings.HasPrefix(name, "}") && !strings.Contains(l.set.prefix, "{") {
		return l.set.prefix + "}{" + hex.EncodeToString([]byte(name)) + "}"
	}
	return l.set.prefix + "{" + name + "}"
}

func (l *Locker) fenceKey(key string) string { return key + ":fence" }
func (l *Locker) channel(key string) string  { return key + ":released" }
func (l *Locker) queueKey(key string) string { return key + ":queue" }
func (l *Locker) aliveKey(key string) string { return key + ":alive" }

// queueKeys returns the keys the wait and release scripts use: the lock,
// the queue, the registrations and, with fencing, the counter.
func (l *Locker) queueKeys(key string) []string {
	keys := make([]string, 3, 4)
	keys[0], keys[1], keys[2] = key, l.queueKey(key), l.aliveKey(key)
	if l.set.fencing {
		keys = append(keys, l.fenceKey(key))
	}
	return keys
}

// nameKeys is what the scripts of one name's lock need, made once: by
// each acquire, or once for all the waiters of a Locker's local queue (see
// turnState), and kept by the Lock for its release. It is not modified
// after it is made.
type nameKeys struct {
	key     string   // the lock key
	channel string   // the release channel
	script  []string // the wait and release scripts' KEYS (queueKeys)
}

func (l *Locker) nameKeys(key string) nameKeys {
	return nameKeys{key: key, channel: l.channel(key), script: l.queueKeys(key)}
}

// maxGrant bounds how long a lock handed to a waiter by a release stays
// reserved for it: the stall when that waiter has died since it last
// renewed its registration.
const maxGrant = 2 * time.Second

// release runs the release script for the attempt or lock with secret on
// the name of k; a waiter that gives up passes its queue member to leave
// the queue in the same round trip.
func (l *Locker) release(ctx context.Context, k *nameKeys, secret, member string) (int64, error) {
	grant := min(l.set.ttl, maxGrant).Milliseconds()
	return slotMoving(ctx, func() *redis.Cmd {
		return releaseScript.Run(ctx, l.c, k.script, secret, k.channel, grant, member)
	}).Int64()
}

func checkName(name string) error {
	if name == "" {
		return invalid.Errorf("redislock: empty lock name")
	}
	if len(name) > MaxNameLen {
		return invalid.Errorf("redislock: lock name is %d bytes, more than %d", len(name), MaxNameLen)
	}
	return nil
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

// TryLock makes one attempt to take the named lock: one round trip when it
// succeeds. When the lock is held elsewhere the error is a
// *lockkit.HeldError naming the holder (owner, host, pid, since, the
// lease's end and its fencing token) and matching lockkit.ErrNotAcquired;
// without fencing, the lease's end costs a second round trip.
func (l *Locker) TryLock(ctx context.Context, name string) (*Lock, error) {
	return l.tryLock(ctx, name, l.set.meta)
}

// tryLock is TryLock with the holder JSON meta.
func (l *Locker) tryLock(ctx context.Context, name, meta string) (*Lock, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if l.closed.Load() {
		return nil, ErrClosed
	}
	ctx, op := l.tel.StartAcquire(ctx, name, false)
	lk, err := l.tryOnce(ctx, name, meta)
	if hold := op.End(ctx, err); lk != nil {
		lk.state.Observe(hold)
	}
	return lk, err
}

// tryOnce makes the one attempt of a TryLock.
func (l *Locker) tryOnce(ctx context.Context, name, meta string) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, notAcquired(name, err)
	}
	if err := l.roleErr(ctx, name); err != nil {
		return nil, err
	}
	lk, held, _, err := l.try(ctx, name, meta, true)
	if err != nil {
		return nil, err
	}
	if held != nil {
		return nil, held
	}
	return lk, nil
}

// Lock waits until the named lock is held, or ctx ends.
//
// The Lock calls of one Locker on one name queue in-process in FIFO order,
// and only the head of that queue waits on the server: a call that finds
// no other call of this Locker waiting on the name tries once (one round
// trip when the lock is free) and, when the lock is held, becomes the
// head; a call that finds others waiting queues behind them without
// trying. The head subscribes to the name's release channel and joins the
// name's wait queue in Redis, then waits for a release that hands it the
// lock (a release hands the lock to the longest waiter in Redis and wakes
// that waiter alone), for the holder's lease to run out (an expired key
// publishes nothing) or a grant to another waiter to run out unclaimed,
// or for ctx. When the head acquires, fails or gives up, the next call in
// the local queue becomes the head and joins the Redis queue at once. All
// of a Locker's waiters share one pub/sub connection. When ctx ends first
// the error is a *lockkit.HeldError matching both lockkit.ErrNotAcquired
// and ctx.Err(), and the call has left both queues. See the package
// documentation, Waiting.
func (l *Locker) Lock(ctx context.Context, name string) (*Lock, error) {
	return l.lock(ctx, name, l.set.meta)
}

// lock is Lock with the holder JSON meta.
func (l *Locker) lock(ctx context.Context, name, meta string) (*Lock, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if l.closed.Load() {
		return nil, ErrClosed
	}
	ctx, op := l.tel.StartAcquire(ctx, name, true)
	lk, err := l.wait(ctx, name, meta)
	if hold := op.End(ctx, err); lk != nil {
		lk.state.Observe(hold)
	}
	return lk, err
}

// wait takes name, queueing behind this Locker's earlier waiters.
func (l *Locker) wait(ctx context.Context, name, meta string) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, notAcquired(name, err)
	}
	if err := l.roleErr(ctx, name); err != nil {
		return nil, err
	}
	var held *lockkit.HeldError
	// A call that finds the name's release channel still subscribed from
	// an earlier wait goes straight to the wait script, which takes a free
	// lock as the first try would: it saves that try's round trip when the
	// lock is held, as it is for a worker that loops on a contended name.
	if !l.turns.Busy(name) && !l.hub.subscribed(l.channel(l.Key(name))) {
		lk, h, _, err := l.try(ctx, name, meta, false)
		if err != nil || h == nil {
			return lk, err
		}
		held = h
	}
	q, me := l.turns.Join(name)
	defer l.turns.leave(name, q, me)
	if !me.HasTurn() {
		if l.queueHook != nil {
			l.queueHook(name)
		}
		select {
		case <-me.Turn():
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, l.turns.heldError(q, name, held, err)
	}
	return l.head(ctx, name, meta, q, held)
}

// head is the wait of the head of name's local queue. Its attempts
// register it in the name's wait queue in Redis, always under one secret,
// so that a release can hand the lock to it (see releaseSrc) and wake it
// alone. seen is the conflict of the caller's own first try, if it made
// one.
func (l *Locker) head(ctx context.Context, name, meta string, q *turnQueue, seen *lockkit.HeldError) (*Lock, error) {
	k := l.turns.keys(q, func() nameKeys { return l.nameKeys(l.Key(name)) })
	wt := newWaiter(meta)
	id := waiterID(wt.secret)
	w := l.turns.subscription(q)
	if w == nil {
		var err error
		w, err = l.hub.subscribe(ctx, k.channel, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, l.turns.heldError(q, name, seen, ctx.Err())
			}
			return nil, fmt.Errorf("redislock: subscribe to releases of %q: %w", name, err)
		}
		l.turns.setSubscription(q, w)
	} else {
		w.setID(id)
	}
	// Wake-ups and grants meant for an earlier head, or from before this
	// attempt, are seen by the attempt itself.
	w.reset()
	var score string // the score the last attempt reported
	for {
		sent := time.Now()
		lk, held, pttl, sc, err := l.tryWaiting(ctx, name, k, wt, score)
		if err != nil || held == nil {
			return lk, err
		}
		score = sc
		l.turns.setHolder(q, held.Holder)
		timer := time.NewTimer(w.retry(min(l.recheck(pttl), l.set.ttl/3)))
		if l.waitHook != nil {
			l.waitHook(name)
		}
		select {
		case <-w.wake:
			timer.Stop()
			g := w.takeGrant()
			deadline, ok := l.grantLease(g, score, sent)
			if !ok {
				continue // try again: the attempt claims a grant to this call
			}
			if ctx.Err() == nil {
				var token int64
				if l.set.fencing {
					token = g.fence
				}
				left := time.Until(deadline)
				return newLeasedLock(l, name, k, wt.secret, token, deadline, min(l.set.renewEvery, left/2)), nil
			}
			// ctx ended as the grant came: give the lock back below.
		case <-timer.C:
			continue
		case <-ctx.Done():
			timer.Stop()
		}
		// Leave the queue, and pass the lock on if a release has just
		// handed it to this call.
		l.abandon(ctx, k, wt.secret, wt.member())
		held.Cause = ctx.Err()
		return nil, held
	}
}

// grantLease reports whether grant g lets the waiter hold the lock without
// a further round trip, and until when on this process's clock; false (or
// g nil) means the waiter must claim it with the wait script. score and
// sent are the score that the waiter's last attempt reported and when that
// attempt was sent.
//
// A grant removes the registration it hands the lock to, and a later
// attempt registers the waiter again under a higher score (waitSrc), so a
// grant that carries the score of the last attempt was made after that
// attempt ran: its lease, g.lease from when it was made, ends no earlier
// than sent + g.lease on this process's clock. A grant to an earlier
// registration, whose message arrives late (the process was paused, the
// connection stalled), carries an older score and is claimed instead,
// where the wait script finds out whether it still holds. So is a grant
// with less than half its lease left: the claim gives it a whole TTL. The
// caller renews at half of what is left (or RenewInterval, if sooner).
//
// Not with NoAutoRenew (the grant's lease is not TTL) nor WaitReplicas
// (the grant was not waited for: the claim's WAIT covers it).
func (l *Locker) grantLease(g *grant, score string, sent time.Time) (deadline time.Time, ok bool) {
	if g == nil || g.score == "" || g.score != score || l.set.renewEvery == 0 || l.set.waitN > 0 {
		return time.Time{}, false
	}
	deadline = sent.Add(g.lease)
	if left := time.Until(deadline); left <= 0 || left < g.lease/2 {
		return time.Time{}, false
	}
	return deadline, true
}

// queuedWaiter is one Lock call's identity in the wait queue.
type queuedWaiter struct {
	secret string // "<secret>|"
	rest   string // "|<since-ms>|<json>"
}

func (l *Locker) newWaiter() queuedWaiter { return newWaiter(l.set.meta) }

func newWaiter(meta string) queuedWaiter {
	return queuedWaiter{
		secret: rand.Text() + "|",
		rest:   "|" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "|" + meta,
	}
}

func (w queuedWaiter) member() string { return w.secret + w.rest }

// tryWaiting is a queued waiter's attempt (waitSrc): it takes the lock if
// it is free or was handed to this waiter, and otherwise registers the
// waiter or renews its registration.
//
// prev is the score the waiter's previous attempt reported ("" for the
// first); score is this attempt's, when it did not take the lock.
func (l *Locker) tryWaiting(ctx context.Context, name string, k *nameKeys, w queuedWaiter, prev string) (lk *Lock, held *lockkit.HeldError, pttl time.Duration, score string, err error) {
	start := time.Now()
	cmd, acks := l.runScript(ctx, waitScript, k.script, w.secret, l.set.ttlMs, w.rest, l.set.ttlMs, prev)
	res, err := cmd.Slice()
	var (
		ok   bool
		info string
	)
	if err == nil {
		ok, info, pttl, err = parseScriptReply(res)
	}
	if err == nil && !ok && len(res) > 3 {
		score, _ = res[3].(string)
	}
	if err == nil && ok {
		err = l.notReplicated(acks)
	}
	if err != nil {
		l.abandon(ctx, k, w.secret, w.member())
		if ctx.Err() != nil {
			return nil, nil, 0, "", notAcquired(name, ctx.Err())
		}
		return nil, nil, 0, "", fmt.Errorf("redislock: acquire %q: %w", name, l.readOnly(err))
	}
	if !ok {
		return nil, &lockkit.HeldError{Name: name, Holder: parseHolder(info, pttl, time.Now())}, pttl, score, nil
	}
	var token int64
	if l.set.fencing {
		token, _, _ = splitInfo(info)
	}
	return newLock(l, name, k, w.secret, token, start), nil, 0, "", nil
}

// recheck is how long a waiter waits at most before trying again without a
// release message: until the holder's lease runs out, or a whole TTL when
// the key has no expiry (it was not set by lockkit).
func (l *Locker) recheck(pttl time.Duration) time.Duration {
	switch {
	case pttl == -1:
		return l.set.ttl
	case pttl < 0:
		return 0
	}
	return pttl + time.Millisecond
}

// roleErr runs checkRole and words its error for an acquire of name.
func (l *Locker) roleErr(ctx context.Context, name string) error {
	err := l.checkRole(ctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return notAcquired(name, ctx.Err())
	}
	return fmt.Errorf("redislock: acquire %q: %w", name, err)
}

// notAcquired is the error of an attempt that ended by ctx before the
// holder was known.
func notAcquired(name string, cause error) error {
	return &lockkit.HeldError{Name: name, Cause: cause}
}

// try makes one acquire attempt. It returns the lock, or the conflict with
// the holder's remaining lease, or an error. An error after the command may
// have run leaves nothing held: the attempt's own key is deleted with a
// compare-and-delete.
//
// Without fencing the attempt is one SET NX GET, whose conflict reply
// names the holder but not its lease; withTTL asks the lease in a second
// round trip (TryLock reports it; Lock's waiting attempts get it anyway).
func (l *Locker) try(ctx context.Context, name, meta string, withTTL bool) (*Lock, *lockkit.HeldError, time.Duration, error) {
	key := l.Key(name)
	secret := rand.Text() + "|"
	start := time.Now()
	rest := "|" + strconv.FormatInt(start.UnixMilli(), 10) + "|" + meta
	var (
		ok   bool
		info string
		pttl time.Duration
		err  error
	)
	if l.set.fencing || l.noSetGet.Load() {
		ok, info, pttl, err = l.tryScript(ctx, key, secret, rest)
	} else {
		ok, info, pttl, err = l.trySetGet(ctx, key, secret, rest, withTTL)
		if err != nil && isSyntaxError(err) {
			// Redis before 7.0: SET cannot combine NX and GET, and the
			// command failed without setting anything.
			l.noSetGet.Store(true)
			ok, info, pttl, err = l.tryScript(ctx, key, secret, rest)
		}
	}
	if err != nil {
		// Also an acquire that too few replicas acknowledged: it is given
		// back, so that no holder has a lock a failover could lose.
		// The command may have run and taken the lock (a reply lost, a
		// context cancelled after the send): give back what is ours.
		k := l.nameKeys(key)
		l.abandon(ctx, &k, secret, "")
		if ctx.Err() != nil {
			return nil, nil, 0, notAcquired(name, ctx.Err())
		}
		return nil, nil, 0, fmt.Errorf("redislock: acquire %q: %w", name, l.readOnly(err))
	}
	if !ok {
		return nil, &lockkit.HeldError{Name: name, Holder: parseHolder(info, pttl, time.Now())}, pttl, nil
	}
	var token int64
	if l.set.fencing {
		token, _, _ = splitInfo(info)
	}
	k := l.nameKeys(key) // made only for a lock: a conflict needs none
	return newLock(l, name, &k, secret, token, start), nil, 0, nil
}

// trySetGet sends SET key value NX PX ttl GET: one round trip. SET
// replies nil when it set the key, else the holder's value. A value that
// starts with this attempt's secret is this attempt's own, set by a first
// try whose reply was lost before go-redis retried. With withTTL a conflict
// also asks the holder's remaining lease (PTTL); if that fails, the lease
// is reported unknown (0): the conflict itself stands.
func (l *Locker) trySetGet(ctx context.Context, key, secret, rest string, withTTL bool) (ok bool, info string, pttl time.Duration, err error) {
	args := []any{"set", key, secret + "0" + rest, "px", l.set.ttlMs, "nx", "get"}
	var (
		cmd  *redis.Cmd
		acks int
	)
	if l.set.waitN == 0 {
		cmd = l.c.Do(ctx, args...)
	} else {
		cmd, acks = l.withWait(ctx, key, func(p redis.Pipeliner) *redis.Cmd { return p.Do(ctx, args...) })
	}
	old, err := cmd.Text()
	switch {
	case errors.Is(err, redis.Nil):
		return true, "0" + rest, 0, l.notReplicated(acks)
	case err != nil:
		return false, "", 0, err
	case strings.HasPrefix(old, secret):
		return true, old[len(secret):], 0, l.notReplicated(acks)
	}
	info, _ = valueInfo(old)
	if withTTL {
		if ms, err := l.c.Do(ctx, "pttl", key).Int64(); err == nil {
			pttl = pttlDuration(ms)
		}
	}
	return false, info, pttl, nil
}

// tryScript runs the acquire script: the fencing path, and the fallback for
// servers without SET NX GET.
func (l *Locker) tryScript(ctx context.Context, key, secret, rest string) (ok bool, info string, pttl time.Duration, err error) {
	keys := []string{key}
	if l.set.fencing {
		keys = append(keys, l.fenceKey(key))
	}
	cmd, acks := l.runScript(ctx, acquireScript, keys, secret, l.set.ttlMs, rest)
	res, err := cmd.Slice()
	if err != nil {
		return false, "", 0, err
	}
	ok, info, pttl, err = parseScriptReply(res)
	if err == nil && ok {
		err = l.notReplicated(acks)
	}
	return ok, info, pttl, err
}

// parseScriptReply decodes the reply of the acquire and wait scripts.
func parseScriptReply(res []any) (ok bool, info string, pttl time.Duration, err error) {
	if len(res) < 2 {
		return false, "", 0, errBadReply
	}
	flag, _ := res[0].(int64)
	info, isStr := res[1].(string)
	if !isStr {
		return false, "", 0, errBadReply
	}
	if flag == 1 {
		return true, info, 0, nil
	}
	if len(res) < 3 {
		return false, "", 0, errBadReply
	}
	ms, _ := res[2].(int64)
	return false, info, pttlDuration(ms), nil
}

// pttlDuration converts a PTTL reply: milliseconds, or -1 (no expiry) and
// -2 (no key) kept as they are.
func pttlDuration(ms int64) time.Duration {
	if ms < 0 {
		return time.Duration(ms)
	}
	return time.Duration(ms) * time.Millisecond
}

func isSyntaxError(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.Contains(strings.ToLower(rerr.Error()), "syntax error")
}

// abandon gives back whatever an attempt or a waiter may hold: the key, if
// it holds the secret (passing the lock on to the next waiter), and the
// waiter's place in the queue. It runs on a context detached from a
// cancelled caller and bounded by abandonTimeout; if it fails, the key
// expires with its lease and the registration with its own.
//
// A caller whose ctx has ended waits for it at most abandonGrace, so that
// a stalled server cannot hold an Acquire past its deadline: the release
// goes on in the background, still bounded by abandonTimeout; Close waits
// for it.
func (l *Locker) abandon(ctx context.Context, k *nameKeys, secret, member string) {
	done := make(chan struct{})
	l.closeMu.Lock()
	if l.closed.Load() {
		// Close is waiting or done: give back here, where it cannot miss it.
		l.closeMu.Unlock()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
		defer cancel()
		l.gaveBack(k.key)(l.release(rctx, k, secret, member))
		return
	}
	l.abandoned.Add(1)
	l.closeMu.Unlock()
	go func() {
		defer l.abandoned.Done()
		defer close(done)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
		defer cancel()
		l.gaveBack(k.key)(l.release(rctx, k, secret, member))
	}()
	if ctx.Err() == nil {
		<-done
		return
	}
	t := time.NewTimer(abandonGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// gaveBack returns the function that logs the result of an abandoned
// attempt's release of key: a lease it held (n is 1) given back, or the
// release failed and a lease it may hold is left to expire.
func (l *Locker) gaveBack(key string) func(n int64, err error) {
	return func(n int64, err error) {
		if n == 1 || err != nil {
			l.tel.GaveBack(l.nameOf(key), err)
		}
	}
}

const (
	// abandonTimeout bounds the release of an abandoned attempt.
	abandonTimeout = 2 * time.Second
	// abandonGrace is how long a caller whose ctx has ended waits for it.
	abandonGrace = 100 * time.Millisecond
)

var errBadReply = errors.New("unexpected reply from the acquire script")

// splitInfo splits "<fence>|<since-ms>|<json>".
func splitInfo(info string) (fence int64, sinceMs int64, meta string) {
	parts := strings.SplitN(info, "|", 3)
	if len(parts) != 3 {
		return 0, 0, ""
	}
	fence, _ = strconv.ParseInt(parts[0], 10, 64)
	sinceMs, _ = strconv.ParseInt(parts[1], 10, 64)
	return fence, sinceMs, parts[2]
}

// parseHolder builds the holder of a conflict. Since is the holder's clock
// at the acquire; Expires is the caller's clock plus the lease the server
// reported left, so a skew between the clocks does not shift it.
func parseHolder(info string, pttl time.Duration, localNow time.Time) *lockkit.Holder {
	fence, sinceMs, meta := splitInfo(info)
	h := &lockkit.Holder{Token: fence}
	var hj holderJSON
	if meta != "" && json.Unmarshal([]byte(meta), &hj) == nil {
		h.Owner, h.Host, h.PID, h.Data = hj.Owner, hj.Host, hj.PID, hj.Data
	}
	if sinceMs > 0 {
		h.Since = time.UnixMilli(sinceMs)
	}
	if pttl > 0 {
		h.Expires = localNow.Add(pttl)
	}
	return h
}
