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
	"github.com/redis/go-redis/v9"
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
				return lister(newLocker(t, integration.Redis(t), cfg), admin)
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
		NewCrashingLocker: func(t *testing.T) (lockkit.Locker, func()) {
			c := integration.Redis(t)
			l := newLocker(t, c, &Config{Prefix: prefix, TTL: time.Second, Fencing: true})
			return lister(l, admin), func() { _ = c.Close() }
		},
		CrashFailoverBound: time.Second + time.Second/3 + time.Second, // TTL + TTL/3, plus slack
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

// lister returns l as a lockkit.Lister: itself once redislock implements
// it, else with a List that reads each name's key.
func lister(l *Locker, c *redis.Client) lockkit.Locker {
	if _, ok := any(l).(lockkit.Lister); ok {
		return l
	}
	return listing{l, c}
}

type listing struct {
	*Locker
	c *redis.Client
}

func (l listing) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	var out []lockkit.LockInfo
	for _, name := range names {
		if err := checkName(name); err != nil {
			return nil, err
		}
		info := lockkit.LockInfo{Name: name, Mode: lockkit.Exclusive, Key: l.Key(name)}
		v, err := l.c.Get(ctx, info.Key).Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, err
		default:
			_, rest, _ := strings.Cut(v, "|") // drop the secret
			info.Held, info.Holder = true, *parseHolder(rest, 0, time.Now())
		}
		out = append(out, info)
	}
	return out, nil
}
