package redislock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/redis/go-redis/v9"
)

// waitCountingClient counts the wait scripts and SET commands a Locker sends,
// and the most wait scripts in flight at once.
type waitCountingClient struct {
	Client
	mu                  sync.Mutex
	inflight, maxFlight int
	waits, sets         int
}

func (c *waitCountingClient) script(sha string) func() {
	if sha != waitScript.Hash() {
		return func() {}
	}
	c.mu.Lock()
	c.waits++
	c.inflight++
	c.maxFlight = max(c.maxFlight, c.inflight)
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
	}
}

func (c *waitCountingClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	defer c.script(sha)()
	return c.Client.EvalSha(ctx, sha, keys, args...)
}

func (c *waitCountingClient) Eval(ctx context.Context, src string, keys []string, args ...any) *redis.Cmd {
	if src == waitSrc {
		defer c.script(waitScript.Hash())()
	}
	return c.Client.Eval(ctx, src, keys, args...)
}

func (c *waitCountingClient) Do(ctx context.Context, args ...any) *redis.Cmd {
	if s, _ := args[0].(string); strings.EqualFold(s, "set") {
		c.mu.Lock()
		c.sets++
		c.mu.Unlock()
	}
	return c.Client.Do(ctx, args...)
}

func (c *waitCountingClient) counts() (waits, sets, maxFlight int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waits, c.sets, c.maxFlight
}

// lockInOrder starts Lock calls on the lockers in the order given, each
// once it is known to wait (on the server or in its Locker's queue). Each
// one that acquires reports its index on order, holds the lock for hold
// and releases it.
func lockInOrder(t *testing.T, ctx context.Context, lockers []*Locker, hooks []<-chan string, n string, hold time.Duration) (chan int, *sync.WaitGroup) {
	t.Helper()
	order := make(chan int, len(lockers))
	var wg sync.WaitGroup
	for i, l := range lockers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk, err := l.Lock(ctx, n)
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			order <- i
			time.Sleep(hold)
			if err := lk.Release(ctx); err != nil {
				t.Errorf("waiter %d: release: %v", i, err)
			}
		}()
		awaitWaiting(t, hooks[i])
	}
	return order, &wg
}

// With several Lock calls of one Locker waiting on one name, only one of
// them (the head of the local queue) runs the wait script at a time and is
// registered in the Redis queue; the others wait in-process without a try
// of their own, and get the lock in the order they called Lock.
func TestLocalQueueOneOnTheServer(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	cc := &waitCountingClient{Client: integration.Redis(t)}
	b := newLocker(t, cc, &Config{Prefix: prefix})
	var blocks atomic.Int64
	hook := countingHook(b, &blocks)
	n := name(t)
	held := mustLock(t, a, n)
	ctx := ctxT(t, 20*time.Second)

	const waiters = 8
	lockers := make([]*Locker, waiters)
	hooks := make([]<-chan string, waiters)
	for i := range lockers {
		lockers[i], hooks[i] = b, hook
	}
	order, wg := lockInOrder(t, ctx, lockers, hooks, n, 2*time.Millisecond)
	if got := blocks.Load(); got != 1 {
		t.Errorf("%d waiters blocked on the server, want 1", got)
	}
	if q, err := admin.ZCard(ctx, b.queueKey(held.Key())).Result(); err != nil || q != 1 {
		t.Errorf("Redis queue length = %d, %v; want 1", q, err)
	}
	if waits, sets, _ := cc.counts(); waits != 1 || sets != 1 {
		t.Errorf("before the release: %d wait scripts and %d SETs, want 1 and 1 (the first caller's)", waits, sets)
	}
	mustRelease(t, held)
	wg.Wait()
	close(order)
	want := 0
	for i := range order {
		if i != want {
			t.Errorf("waiter %d acquired in place %d", i, want)
		}
		want++
	}
	waits, sets, maxFlight := cc.counts()
	if maxFlight != 1 {
		t.Errorf("%d wait scripts in flight at once, want 1", maxFlight)
	}
	// Per waiter at most a registration and a claim.
	if waits > 2*waiters || sets != 1 {
		t.Errorf("%d wait scripts and %d SETs for %d waiters, want at most %d and 1", waits, sets, waiters, 2*waiters)
	}
	// The channel lingers until Close.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b.hub.mu.Lock()
	if b.hub.cur != nil {
		t.Errorf("the hub still has a session after every waiter returned and Close")
	}
	b.hub.mu.Unlock()
	if n := b.turns.Queues(); n != 0 {
		t.Errorf("%d local queues left after every waiter returned", n)
	}
}

// The local queue does not let one process's waiters starve another's:
// when a Locker's head acquires, its next waiter joins the Redis queue
// behind the waiters of other processes that were already there.
func TestLocalQueueCrossProcessFairness(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	cfg := &Config{Prefix: prefix}
	a := newLocker(t, integration.Redis(t), cfg)
	b := newLocker(t, integration.Redis(t), cfg)
	c := newLocker(t, integration.Redis(t), cfg)
	hb, hc := waitingHook(b), waitingHook(c)
	n := name(t)
	held := mustLock(t, a, n)
	ctx := ctxT(t, 20*time.Second)
	// b0, b1, b2 queue on b, then c0 on c, then b3.
	order, wg := lockInOrder(t, ctx, []*Locker{b, b, b, c, b}, []<-chan string{hb, hb, hb, hc, hb}, n, 5*time.Millisecond)
	mustRelease(t, held)
	wg.Wait()
	close(order)
	var got []int
	for i := range order {
		got = append(got, i)
	}
	// b's waiters enter the Redis queue one at a time, so c0 (queued there
	// while b0 waited) comes second.
	if fmt.Sprint(got) != "[0 3 1 2 4]" {
		t.Errorf("acquisition order %v, want [0 3 1 2 4] (b0, c0, b1, b2, b3)", got)
	}
}

// A head whose context ends leaves the Redis queue and passes the turn:
// the next waiter registers and gets the lock. A queued waiter whose
// context ends reports the holder the head saw.
func TestLocalQueueCancelledHeadPassesTurn(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "a"})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	var blocks atomic.Int64
	hook := countingHook(b, &blocks)
	n := name(t)
	held := mustLock(t, a, n)

	headCtx, cancelHead := context.WithCancel(ctxT(t, 20*time.Second))
	defer cancelHead()
	queuedCtx, cancelQueued := context.WithCancel(ctxT(t, 20*time.Second))
	defer cancelQueued()
	lock := func(ctx context.Context) <-chan error {
		res := make(chan error, 1)
		go func() {
			lk, err := b.Lock(ctx, n)
			if err == nil {
				err = lk.Release(context.Background())
			}
			res <- err
		}()
		awaitWaiting(t, hook)
		return res
	}
	headRes := lock(headCtx)
	queuedRes := lock(queuedCtx)
	nextRes := lock(ctxT(t, 20*time.Second))

	// The queued waiter gives up: it never ran a script of its own.
	cancelQueued()
	err := <-queuedRes
	var he *lockkit.HeldError
	if !errors.As(err, &he) || !errors.Is(err, context.Canceled) || he.Holder == nil || he.Holder.Owner != "a" {
		t.Errorf("queued waiter cancelled: %v, want a HeldError naming a, matching context.Canceled", err)
	}
	if got := blocks.Load(); got != 1 {
		t.Errorf("%d blocks on the server, want 1 (the head's)", got)
	}

	// The head gives up: the next waiter becomes the head and registers.
	start := time.Now()
	cancelHead()
	if err := <-headRes; !errors.Is(err, context.Canceled) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("cancelled head: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the cancelled head returned after %v", d)
	}
	awaitWaiting(t, hook)
	if got := blocks.Load(); got != 2 {
		t.Errorf("%d blocks on the server, want 2 (the head's, then the next waiter's)", got)
	}
	if q, err := admin.ZCard(ctxT(t, 5*time.Second), b.queueKey(held.Key())).Result(); err != nil || q != 1 {
		t.Errorf("Redis queue length = %d, %v; want 1 (the new head only)", q, err)
	}
	mustRelease(t, held)
	select {
	case err := <-nextRes:
		if err != nil {
			t.Errorf("next waiter: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the next waiter did not get the lock after the release")
	}
}
