package redislock

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
)

// TestElection runs the election suite with fencing tokens. Deleting the
// leader's key is the fault: a waiting candidate has no release message to
// wake it, so it takes over at its next attempt, within TTL/3; the deposed
// leader learns at its next renewal.
func TestElection(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	const ttl, renew = 2 * time.Second, 100 * time.Millisecond
	cfg := &Config{Prefix: prefix, TTL: ttl, RenewInterval: renew, Fencing: true}
	keyOf := newLocker(t, admin, cfg).Key
	locktest.RunElection(t, locktest.ElectionConfig{
		Config: locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker {
				return newLocker(t, integration.Redis(t), cfg)
			},
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				if err := admin.Del(ctxT(t, 5*time.Second), l.(*Lock).Key()).Err(); err != nil {
					t.Fatalf("DEL: %v", err)
				}
			},
			LossBound: renew + time.Second,
			Leftovers: func(t *testing.T, names []string) int {
				keys := make([]string, len(names))
				for i, n := range names {
					keys[i] = keyOf(n)
				}
				n, err := admin.Exists(ctxT(t, 5*time.Second), keys...).Result()
				if err != nil {
					t.Fatalf("EXISTS: %v", err)
				}
				return int(n)
			},
		},
		FailoverBound: ttl/3 + 500*time.Millisecond,
		// A crashed leader's lease runs out within its TTL; a waiter
		// tries again every TTL/3.
		Crash: crash(prefix),
	})
}

func TestWithData(t *testing.T) {
	admin := integration.Redis(t)
	cfg := &Config{Prefix: testPrefix(t, admin), Owner: "svc", Data: "default"}
	l := newLocker(t, admin, cfg)
	ctx := ctxT(t, 10*time.Second)
	name := "leader"

	held := func() *lockkit.Holder {
		t.Helper()
		_, err := l.TryLock(ctx, name)
		var he *lockkit.HeldError
		if !errors.As(err, &he) || he.Holder == nil {
			t.Fatalf("TryLock while held = %v, want a HeldError with the holder", err)
		}
		return he.Holder
	}
	lk, err := l.WithData("10.0.0.1:8080").TryAcquire(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if h := held(); h.Data != "10.0.0.1:8080" || h.Owner != "svc" {
		t.Errorf("holder %+v, want the view's data and the Locker's owner", h)
	}
	// A waiter of a view claims the lock with its own data.
	got := make(chan error, 1)
	var next lockkit.Lock
	go func() {
		var err error
		next, err = l.WithData("10.0.0.2:8080").Acquire(ctx, name)
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if h := held(); h.Data != "10.0.0.2:8080" {
		t.Errorf("holder %+v after the hand-over, want the waiter's data", h)
	}
	_ = next.Release(ctx)
	for _, v := range []lockkit.Locker{l.WithData(""), l} {
		lk, err := v.TryAcquire(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if h := held(); h.Data != "default" {
			t.Errorf("holder %+v, want Config.Data", h)
		}
		_ = lk.Release(ctx)
	}
	cc := &countingClient{Client: admin}
	v := newLocker(t, cc, cfg).WithData(strings.Repeat("d", MaxHolderLen+1))
	for what, fn := range map[string]func(context.Context, string) (lockkit.Lock, error){"Acquire": v.Acquire, "TryAcquire": v.TryAcquire} {
		if _, err := fn(ctx, name); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("%s with long data = %v, want ErrInvalid", what, err)
		}
	}
	if n := cc.evalSha.Load() + cc.eval.Load() + cc.pipelines.Load() + cc.do.Load(); n != 0 {
		t.Errorf("%d commands sent for bad data", n)
	}
}

// crash is the election and semaphore suites' crash hook: a Locker with a
// 1 s lease on a client of its own, whose crash closes the client (no
// release, no renewals). The lease runs out within its TTL; a waiter
// tries again every TTL/3.
func crash(prefix string) locktest.Crash {
	return locktest.Crash{
		NewCrashingLocker: func(t *testing.T) (lockkit.Locker, func()) {
			c := integration.Redis(t)
			l := newLocker(t, c, &Config{Prefix: prefix, TTL: time.Second, Fencing: true})
			return l, func() { _ = c.Close() }
		},
		CrashFailoverBound: time.Second + time.Second/3 + time.Second, // TTL + TTL/3, plus slack
	}
}
