package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bsm "github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/lockkit/lockkit/redislock"
)

// lockkit's Lua scripts (redislock/scripts.go: acquireSrc, releaseSrc),
// which the floor runs with go-redis directly.
const (
	redisAcquireSrc = `
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, #ARGV[1]) == ARGV[1] then
    return {1, string.sub(v, #ARGV[1] + 1)}
  end
  local t = redis.call('TIME')
  local i = string.find(v, '|', 1, true)
  local info = ''
  if i then info = string.sub(v, i + 1) end
  return {0, info, redis.call('PTTL', KEYS[1]), t[1], t[2]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local fence = '0'
if KEYS[2] then
  local n = (tonumber(redis.call('GET', KEYS[2])) or 0) + 1
  if n < now then n = now end
  fence = string.format('%d', n)
  redis.call('SET', KEYS[2], fence)
end
local info = fence .. '|' .. string.format('%d', math.floor(now / 1000)) .. '|' .. ARGV[3]
redis.call('SET', KEYS[1], ARGV[1] .. info, 'NX', 'PX', ARGV[2])
return {1, info}
`
	redisReleaseSrc = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
`
)

var (
	redisAcquire = redis.NewScript(redisAcquireSrc)
	redisRelease = redis.NewScript(redisReleaseSrc)
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
		note: "go-redis running lockkit's acquire and release Lua scripts (EVALSHA); contended: the same scripts, waiters woken by the release's PUBLISH on one shared subscription",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			rel, _, err := fl.try(ctx, lk.Key(name(k)))
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

// try runs the acquire script once: a release, or the holder's remaining
// lease.
func (f *redisFloor) try(ctx context.Context, key string) (releaseFunc, time.Duration, error) {
	secret := rand.Text() + "|"
	res, err := redisAcquire.Run(ctx, f.c, []string{key}, secret, f.ttlMs, f.meta).Slice()
	if err != nil {
		return nil, 0, err
	}
	if len(res) < 2 {
		return nil, 0, fmt.Errorf("bad reply %v", res)
	}
	if ok, _ := res[0].(int64); ok != 1 {
		var pttl time.Duration
		if len(res) > 2 {
			ms, _ := res[2].(int64)
			pttl = time.Duration(ms) * time.Millisecond
		}
		return nil, pttl, nil
	}
	return func(ctx context.Context) error {
		n, err := redisRelease.Run(ctx, f.c, []string{key}, secret, key+":released").Int64()
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
		rel, pttl, err := f.try(ctx, key)
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
