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
// release, redislock/scripts.go releaseSrc): an uncontended acquire is one
// SET key value PX ttl NX GET; a release is the release script, which hands
// the lock to the longest waiter of the name's queue or else deletes the key
// and publishes the release. The floor sends exactly these. (lockkit's
// fencing path and its queued waiters use further scripts; see the notes.)
const redisReleaseSrc = `local fenceKey = KEYS[4]

local function nextFence()
  if not fenceKey then return '0' end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local n = (tonumber(redis.call('GET', fenceKey)) or 0) + 1
  if n < now then n = now end
  local f = string.format('%d', n)
  redis.call('SET', fenceKey, f)
  return f
end

if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  redis.call('ZREM', KEYS[3], ARGV[4])
end
local v = redis.call('GET', KEYS[1])
if not (v and string.sub(v, 1, #ARGV[1]) == ARGV[1]) then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
    redis.call('ZREM', KEYS[2], m)
    redis.call('ZREM', KEYS[3], m)
  end
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if head then
    redis.call('ZREM', KEYS[2], head)
    redis.call('ZREM', KEYS[3], head)
    local i = string.find(head, '|', 1, true)
    redis.call('SET', KEYS[1], string.sub(head, 1, i) .. nextFence() .. string.sub(head, i + 1), 'PX', ARGV[3])
    redis.call('PUBLISH', ARGV[2], 'granted ' .. redis.sha1hex(string.sub(head, 1, i)) .. ' ' .. ARGV[3])
    return 1
  end
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'released')
return 1
`

var redisRelease = redis.NewScript(redisReleaseSrc)

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
		note: "redislock.New(client, nil): 30 s lease renewed every 10 s, no fencing; TryAcquire/Acquire (pub/sub wake-up) + Release",
		try:  lockkitTry(lk, name),
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = lockkitWorker(lk, name(k))
			}
			return ws, func() {}, nil
		},
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
		note: "go-redis sending lockkit's commands: SET NX PX GET, and the release script (EVALSHA); contended: no wait queue — a waiter retries SET NX GET (+ PTTL) whenever a release is published on one shared subscription, or the lease runs out",
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
	return &backendSetup{
		variants: []*variant{lockkitV, floorV, bsmV, redsyncV, singleFileVariant(floorV)},
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
	return func(ctx context.Context) error {
		keys := []string{key, key + ":queue", key + ":alive"}
		n, err := redisRelease.Run(ctx, f.c, keys, secret, key+":released", 2000, "").Int64()
		if err == nil && n != 1 {
			err = errors.New("release: not the owner")
		}
		return err
	}, 0, nil
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
