package redislock

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/redis/go-redis/v9"
)

// A private redis-server without persistence is killed with SIGKILL and
// started again on the same port while a lock is held: the key is gone, a
// second client acquires (with a larger fencing token, although the counter
// was lost too), and the first client's renew reports the loss. The restart
// also empties the script cache, so every call after it goes through the
// NOSCRIPT fallback.
func TestRestartWithoutPersistence(t *testing.T) {
	srv := startPrivateRedis(t)
	cfgA := &Config{TTL: 10 * time.Second, NoAutoRenew: true, Fencing: true, Owner: "a"}
	a := newLocker(t, srv.client(t), cfgA)
	auto := newLocker(t, srv.client(t), &Config{TTL: 10 * time.Second, RenewInterval: 100 * time.Millisecond, Fencing: true})
	b := newLocker(t, srv.client(t), &Config{Fencing: true, Owner: "b"})
	n := name(t)

	held := mustLock(t, a, n)
	autoHeld := mustLock(t, auto, n+".auto")
	wantHeld(t, b, n)

	srv.kill()
	srv.start()

	ctx := ctxT(t, 20*time.Second)
	other, err := b.TryLock(ctx, n)
	if err != nil {
		t.Fatalf("TryLock after the restart = %v, want acquired (the key was lost)", err)
	}
	if other.Token() <= held.Token() {
		t.Errorf("token after the restart %d, not above the lost holder's %d", other.Token(), held.Token())
	}
	err = held.Renew(ctx)
	if !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, ErrNotOwner) {
		t.Fatalf("Renew of the lost lock = %v, want ErrLost and ErrNotOwner", err)
	}
	waitDone(t, held, time.Second)
	if err := held.Release(ctx); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release of the lost lock = %v, want ErrLost", err)
	}
	// The lost holder's release did not touch the new holder's key.
	if he := wantHeld(t, a, n); he.Holder == nil || he.Holder.Owner != "b" {
		t.Errorf("holder after the stale release = %v, want b", he.Holder)
	}
	mustRelease(t, other)

	// The auto-renewed lock finds out on its own, within its renew interval
	// (plus go-redis's reconnect).
	waitDone(t, autoHeld, 5*time.Second)
	if err := autoHeld.Err(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("auto-renewed lock's Err = %v, want ErrLost", err)
	}
	if err := autoHeld.Release(ctx); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release = %v, want ErrLost", err)
	}
}

// SCRIPT FLUSH (on the private server: it would slow everyone else's first
// call on the shared one) makes EVALSHA answer NOSCRIPT; every operation
// still works, and the fallback EVAL caches the script again, so the next
// call is a single EVALSHA.
func TestNoScriptFallback(t *testing.T) {
	srv := startPrivateRedis(t)
	admin := srv.client(t)
	cc := &countingClient{Client: srv.client(t)}
	l := newLocker(t, cc, &Config{TTL: 5 * time.Second, NoAutoRenew: true, Fencing: true})
	w := newLocker(t, srv.client(t), nil)
	n := name(t)
	ctx := ctxT(t, 20*time.Second)

	flush := func() {
		t.Helper()
		if err := admin.ScriptFlush(ctx).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		cc.reset()
	}
	// want checks the script calls since the last check.
	want := func(what string, sha, eval int64) {
		t.Helper()
		if cc.evalSha.Load() != sha || cc.eval.Load() != eval {
			t.Errorf("%s: %d EVALSHA and %d EVAL, want %d and %d", what, cc.evalSha.Load(), cc.eval.Load(), sha, eval)
		}
		cc.reset()
	}

	flush()
	lk := mustLock(t, l, n)
	want("TryLock after SCRIPT FLUSH (NOSCRIPT, then EVAL)", 1, 1)
	wantHeld(t, w, n)
	for _, op := range []struct {
		what string
		fn   func() error
	}{
		{"Renew", func() error { return lk.Renew(ctx) }},
		{"TTL", func() error { _, err := lk.TTL(ctx); return err }},
	} {
		flush()
		if err := op.fn(); err != nil {
			t.Fatalf("%s after SCRIPT FLUSH = %v", op.what, err)
		}
		want(op.what+" after SCRIPT FLUSH", 1, 1)
		if err := op.fn(); err != nil {
			t.Fatalf("%s = %v", op.what, err)
		}
		want(op.what+" again (cached by the fallback)", 1, 0)
	}
	flush()
	mustRelease(t, lk)
	want("Release after SCRIPT FLUSH", 1, 1)
	lk = mustLock(t, l, n)
	want("TryLock after SCRIPT FLUSH", 1, 1)
	mustRelease(t, lk)
	want("Release again (cached by the fallback)", 1, 0)
	mustRelease(t, mustLock(t, l, n))
	want("TryLock+Release", 2, 0)
	// The server saw what the client counted: INFO commandstats.
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	mustRelease(t, mustLock(t, l, n))
	stats, err := admin.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_evalsha:calls=2,") || strings.Contains(stats, "cmdstat_eval:") {
		t.Errorf("commandstats after TryLock+Release:\n%s\nwant exactly 2 EVALSHA and no EVAL", stats)
	}
}

// The server stops answering (SIGSTOP: renewals hang rather than fail):
// the holder reports the lock lost once TTL has passed since the last
// confirmed renewal, not later, and a renewal hung in flight does not delay
// that. Also when the server stops before the lock's first renewal: a lock
// with automatic renewal makes its expiry timer at that renewal's tick.
func TestLeaseEndsWhileServerHangs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		renew  time.Duration
		before time.Duration // held this long before the server stops
	}{
		// Err is checked after 250ms: only a stall of about 750ms before
		// that loses a 1s lease renewed every 100ms.
		{"after renewals", time.Second, 100 * time.Millisecond, 250 * time.Millisecond},
		{"before the first renewal", 600 * time.Millisecond, 200 * time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ttl := tc.ttl
			srv := startPrivateRedis(t)
			l := newLocker(t, srv.client(t), &Config{TTL: ttl, RenewInterval: tc.renew})
			lk := mustLock(t, l, name(t))
			time.Sleep(tc.before)
			if err := lk.Err(); err != nil {
				t.Fatalf("Err before the pause = %v", err)
			}
			stopped := time.Now()
			srv.pause()
			defer srv.resume()
			waitDone(t, lk, 2*ttl)
			// The last renewal (or the acquire) was confirmed at most one
			// interval (plus a round trip) before the pause, so the loss
			// comes between TTL-interval and TTL after it, on the holder's
			// clock. (Slack for timer latency on a loaded machine.)
			if d := time.Since(stopped); d > ttl+500*time.Millisecond {
				t.Errorf("Done closed %v after the server stopped answering; the lease is %v", d, ttl)
			}
			err := lk.Err()
			if !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, ErrLeaseExpired) {
				t.Errorf("Err = %v, want ErrLost and ErrLeaseExpired", err)
			}
			srv.resume()
			if err := lk.Release(ctxT(t, 10*time.Second)); !errors.Is(err, lockkit.ErrLost) {
				t.Errorf("Release = %v, want ErrLost", err)
			}
		})
	}
}

// Dropping the holder's connections does not lose a Redis lock: the lease
// lives in the key, not in a session, and the next renewal reconnects.
func TestConnectionLossKeepsLease(t *testing.T) {
	srv := startPrivateRedis(t)
	admin := srv.client(t)
	c := redis.NewClient(&redis.Options{Addr: srv.addr(), ClientName: "holder"})
	t.Cleanup(func() { _ = c.Close() })
	l := newLocker(t, c, &Config{TTL: 1500 * time.Millisecond, RenewInterval: 100 * time.Millisecond})
	other := newLocker(t, admin, nil)
	n := name(t)
	lk := mustLock(t, l, n)
	ctx := ctxT(t, 10*time.Second)
	for range 3 {
		if err := admin.Do(ctx, "client", "kill", "user", "default", "skipme", "yes").Err(); err != nil {
			t.Fatalf("CLIENT KILL: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := lk.Err(); err != nil {
		t.Fatalf("Err after the holder's connections were killed = %v, want still held", err)
	}
	wantHeld(t, other, n)
	mustRelease(t, lk)
}

// Automatic renewals of many locks share round trips (pipelines), and keep
// working through a SCRIPT FLUSH, which makes every pipelined EVALSHA answer
// NOSCRIPT once.
func TestBatchedRenewals(t *testing.T) {
	srv := startPrivateRedis(t)
	admin := srv.client(t)
	cc := &countingClient{Client: srv.client(t)}
	const locks, ttl, every = 200, 1500 * time.Millisecond, 100 * time.Millisecond
	l := newLocker(t, cc, &Config{TTL: ttl, RenewInterval: every})
	var held []*Lock
	for i := range locks {
		held = append(held, mustLock(t, l, fmt.Sprint(name(t), i)))
	}
	cc.reset()
	ctx := ctxT(t, 10*time.Second)
	for range 4 {
		time.Sleep(3 * every)
		if err := admin.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	trips := cc.pipelines.Load() + cc.evalSha.Load() + cc.eval.Load()
	// 1.2s at one renewal per lock per 100ms: about 2400 renewals.
	t.Logf("%d round trips for %d locks renewed every %v over %v", trips, locks, every, 12*every)
	// Unbatched would be about 2400; a loaded machine spreads the timers
	// over more batches, so the bound is half of that.
	if trips > locks*12/2 {
		t.Errorf("%d round trips: renewals were not batched", trips)
	}
	if cc.eval.Load() == 0 {
		t.Errorf("no EVAL after SCRIPT FLUSH: the NOSCRIPT fallback did not run")
	}
	for _, lk := range held {
		if err := lk.Err(); err != nil {
			t.Fatalf("lock lost while renewals were batched: %v", err)
		}
		left, err := lk.TTL(ctx)
		if err != nil || left < ttl/2 {
			t.Fatalf("TTL = %v, %v: not renewed", left, err)
		}
	}
	for _, lk := range held {
		mustRelease(t, lk)
	}
}
