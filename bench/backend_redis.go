package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"sync"
	"time"

	bsm "github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/lockkit/lockkit/redislock"
)

// What lockkit's redislock sends (redislock/redislock.go trySetGet and
// release): an uncontended acquire is one SET key value PX ttl NX GET; a
// release is the release script, which hands the lock to the longest
// waiter of the name's queue or else deletes the key and publishes the
// release. A waiting acquire tries SET NX GET once when no other call of
// its Locker waits for the name; otherwise, or when held, it queues
// in-process (FIFO) and only the head of that queue waits on the server,
// with the wait script and the release channel. The floor sends the same
// commands and redislock's own scripts (redislock.Scripts), so they cannot
// drift. (lockkit's fencing path uses a further script.)
var (
	redisRelease = redis.NewScript(redislock.Scripts().Release)
	redisWait    = redis.NewScript(redislock.Scripts().Wait)
)

// newRedis opens a go-redis client whose connections are counted by c.
func newRedis(url string, c *netCounter) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opts.Dialer = c.dial
	return redis.NewClient(opts), nil
}

func setupRedis(ctx context.Context, e *env) (*backendSetup, error) {
	if e.redisURL == "" {
		return nil, errors.New("no Redis: set LOCKKIT_TEST_REDIS or -redis")
	}
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*backendSetup, error) { cleanup(); return nil, err }
	name := e.lockName
	const ttl = 30 * time.Second

	lkNet := &netCounter{}
	lkc, err := newRedis(e.redisURL, lkNet)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { lkc.Close() })
	if err := lkc.Ping(ctx).Err(); err != nil {
		return fail(err)
	}
	lk, err := redislock.New(lkc, nil)
	if err != nil {
		return fail(err)
	}
	lockkitV := &variant{
		name: "lockkit", role: roleLockkit, net: lkNet,
		note:      "redislock.New(client, nil): 30 s lease renewed every 10 s, no fencing; TryAcquire/Acquire + Release; Acquire: one waiter per Locker and name runs the wait script (registered in the name's Redis queue, woken by its grant on pub/sub), the others queue in-process (FIFO); one Locker for the 16 workers",
		try:       lockkitTry(lk, name),
		contended: sharedLockerWorkers(lk, name),
	}

	flNet := &netCounter{}
	flc, err := newRedis(e.redisURL, flNet)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { flc.Close() })
	host, _ := os.Hostname()
	meta, _ := json.Marshal(map[string]any{"host": host, "pid": os.Getpid()})
	fl := &redisFloor{c: flc, ttlMs: ttl.Milliseconds(), meta: string(meta)}
	floorV := &variant{
		name: "floor", role: roleFloor, net: flNet,
		note: "go-redis sending lockkit's commands: SET NX PX GET, and the release script (EVALSHA); contended: as redislock since ca67dd4 — SET NX GET once when no other worker of the process waits, then an in-process FIFO queue whose head runs the wait script (EVALSHA: registers in the Redis queue, or claims the lock a release granted it) and sleeps until a message on the release channel or the holder's lease runs out; a head that gives up leaves the queue with the release script",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			rel, _, err := fl.try(ctx, lk.Key(name(k)), false)
			if err == nil && rel == nil {
				err = errors.New("held")
			}
			return rel, err
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			key := lk.Key(name(k))
			w, err := fl.subscribe(ctx, key+":released")
			if err != nil {
				return nil, nil, err
			}
			q := &redisTurns{turn: make(chan struct{}, 1)}
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) { return fl.lockQueued(ctx, w, q, key) })
			}
			return ws, w.close, nil
		},
	}
	retryV := &variant{
		name: "floor, every waiter retries SET NX GET (diagnostic)", role: roleFloor, net: flNet, diagnostic: true,
		note: "the floor's SET NX GET and release script without any wait queue (redislock's design before bafa79e, near bsm/redislock's): each waiter retries SET NX GET (+ PTTL) whenever a release is published on one shared subscription, or the lease runs out",
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			key := lk.Key(name(k))
			w, err := fl.subscribe(ctx, key+":released")
			if err != nil {
				return nil, nil, err
			}
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) { return fl.wait(ctx, w, key) })
			}
			return ws, w.close, nil
		},
	}

	bNet := &netCounter{}
	bc, err := newRedis(e.redisURL, bNet)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { bc.Close() })
	bl := bsm.New(bc)
	bsmLock := func(ctx context.Context, k int, opt *bsm.Options) (releaseFunc, error) {
		l, err := bl.Obtain(ctx, "bsm:"+name(k), ttl, opt)
		if err != nil {
			return nil, err
		}
		return l.Release, nil
	}
	bsmV := &variant{
		name: "bsm/redislock", role: rolePeer, net: bNet,
		note: "bsm/redislock v0.9.4 Obtain(key, 30 s, nil) + Release; contended: RetryStrategy LinearBackoff(100ms), as in its examples",
		try:  func(ctx context.Context, k int) (releaseFunc, error) { return bsmLock(ctx, k, nil) },
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) {
					return bsmLock(ctx, k, &bsm.Options{RetryStrategy: bsm.LinearBackoff(100 * time.Millisecond)})
				})
			}
			return ws, func() {}, nil
		},
	}

	rNet := &netCounter{}
	rc, err := newRedis(e.redisURL, rNet)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { rc.Close() })
	rs := redsync.New(redsyncgoredis.NewPool(rc))
	redsyncLock := func(ctx context.Context, m *redsync.Mutex, try bool) (releaseFunc, error) {
		var err error
		if try {
			err = m.TryLockContext(ctx)
		} else {
			err = m.LockContext(ctx)
		}
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			ok, err := m.UnlockContext(ctx)
			if err == nil && !ok {
				err = errors.New("redsync: unlock returned false")
			}
			return err
		}, nil
	}
	redsyncV := &variant{
		name: "redsync", role: rolePeer, net: rNet,
		note: "go-redsync/redsync/v4 with one go-redis pool: NewMutex(name) (8 s expiry), TryLockContext + UnlockContext; contended: LockContext with its defaults (32 tries, 50–250 ms random delay)",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			return redsyncLock(ctx, rs.NewMutex("redsync:"+name(k)), true)
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			ws := make([]worker, n)
			for i := range ws {
				m := rs.NewMutex("redsync:" + name(k))
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) { return redsyncLock(ctx, m, false) })
			}
			return ws, func() {}, nil
		},
	}
	retryQueued := singleFileVariant(retryV)
	retryQueued.name = "floor retrying SET NX GET, one waiter at a time per process (diagnostic)"
	retryQueued.note = "the retrying floor's workers behind a local queue: one of them retries on the server, the rest wait in-process for their turn (the previous report's diagnostic)"
	ind, err := independentVariants(e, "redis", &netCounter{})
	if err != nil {
		return fail(err)
	}
	return &backendSetup{
		variants: append([]*variant{lockkitV, floorV, bsmV, redsyncV, retryV, retryQueued}, ind...),
		notes:    []string{"one go-redis client (default pool) per variant; no multi-key path in any of them"},
		cleanup:  cleanup,
	}, nil
}

// redisFloor runs lockkit's scripts with go-redis.
type redisFloor struct {
	c     *redis.Client
	ttlMs int64
	meta  string
}

// try sends lockkit's acquire command once; a nil release means held, with
// the holder's remaining lease when wantTTL (a second command, as lockkit's
// waiters get it).
func (f *redisFloor) try(ctx context.Context, key string, wantTTL bool) (releaseFunc, time.Duration, error) {
	secret := rand.Text() + "|"
	rest := "|" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "|" + f.meta
	_, err := f.c.Do(ctx, "set", key, secret+"0"+rest, "px", f.ttlMs, "nx", "get").Text()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, err
	}
	if err == nil { // the holder's value: held
		var pttl time.Duration
		if wantTTL {
			ms, _ := f.c.Do(ctx, "pttl", key).Int64()
			pttl = time.Duration(max(ms, 0)) * time.Millisecond
		}
		return nil, pttl, nil
	}
	return f.releaser(key, secret), 0, nil
}

// releaser runs lockkit's release script for the lock with secret (grant
// lease 2 s: min(TTL, maxGrant), as redislock).
func (f *redisFloor) releaser(key, secret string) releaseFunc {
	return func(ctx context.Context) error {
		n, err := f.release(ctx, key, secret, "")
		if err == nil && n != 1 {
			err = errors.New("release: not the owner")
		}
		return err
	}
}

func (f *redisFloor) release(ctx context.Context, key, secret, member string) (int64, error) {
	keys := []string{key, key + ":queue", key + ":alive"}
	return redisRelease.Run(ctx, f.c, keys, secret, key+":released", 2000, member).Int64()
}

// redisTurns is the in-process queue of one name's waiting workers: turn
// holds the head; blocked senders on a channel are served in FIFO order.
type redisTurns struct {
	turn    chan struct{}
	mu      sync.Mutex
	waiting int
}

// lockQueued is redislock's Lock: one SET NX GET when no worker of this
// process waits for the name; then a place in the local queue, and as its
// head, the wait script until the lock is this worker's.
func (f *redisFloor) lockQueued(ctx context.Context, w *redisWake, q *redisTurns, key string) (releaseFunc, error) {
	q.mu.Lock()
	busy := q.waiting > 0
	q.waiting++
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.waiting--
		q.mu.Unlock()
	}()
	if !busy {
		rel, _, err := f.try(ctx, key, false)
		if err != nil || rel != nil {
			return rel, err
		}
	}
	select {
	case q.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-q.turn }()
	secret := rand.Text() + "|"
	rest := "|" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "|" + f.meta
	keys := []string{key, key + ":queue", key + ":alive"}
	for {
		gen := w.current()
		res, err := redisWait.Run(ctx, f.c, keys, secret, f.ttlMs, rest, f.ttlMs).Slice()
		if err != nil {
			f.abandon(ctx, key, secret, secret+rest)
			return nil, err
		}
		if ok, _ := res[0].(int64); ok == 1 {
			return f.releaser(key, secret), nil
		}
		var pttl int64
		if len(res) > 2 {
			pttl, _ = res[2].(int64)
		}
		t := time.NewTimer(min(time.Duration(max(pttl, 0))*time.Millisecond+time.Millisecond, 10*time.Second)) // redislock: min(recheck, TTL/3)
		select {
		case <-gen:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			f.abandon(ctx, key, secret, secret+rest)
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

// abandon leaves the Redis queue, and passes the lock on should a release
// have granted it to this waiter meanwhile: the release script with the
// waiter's member, as redislock's abandon.
func (f *redisFloor) abandon(ctx context.Context, key, secret, member string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, _ = f.release(rctx, key, secret, member)
}

// wait tries until the lock is free, sleeping between tries until a
// release is published (or the holder's lease would have run out).
func (f *redisFloor) wait(ctx context.Context, w *redisWake, key string) (releaseFunc, error) {
	for {
		gen := w.current()
		rel, pttl, err := f.try(ctx, key, true)
		if err != nil || rel != nil {
			return rel, err
		}
		t := time.NewTimer(pttl + time.Millisecond)
		select {
		case <-gen:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

// redisWake broadcasts release messages of one channel to local waiters:
// each message closes the current generation's channel.
type redisWake struct {
	ps   *redis.PubSub
	mu   sync.Mutex
	gen  chan struct{}
	done chan struct{}
}

func (f *redisFloor) subscribe(ctx context.Context, channel string) (*redisWake, error) {
	ps := f.c.Subscribe(ctx, channel)
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		ps.Close()
		return nil, err
	}
	w := &redisWake{ps: ps, gen: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for range ps.Channel() {
			w.mu.Lock()
			close(w.gen)
			w.gen = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	return w, nil
}

func (w *redisWake) current() chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

func (w *redisWake) close() {
	w.ps.Close()
	<-w.done
}
