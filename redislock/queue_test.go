package redislock

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
)

// startWaiter runs Lock in a goroutine and returns once it is queued.
func startWaiter(t *testing.T, l *Locker, waiting <-chan string, n string) <-chan *Lock {
	t.Helper()
	got := make(chan *Lock, 1)
	go func() {
		lk, err := l.Lock(ctxT(t, 20*time.Second), n)
		if err != nil {
			t.Errorf("waiter: %v", err)
			close(got)
			return
		}
		got <- lk
	}()
	awaitWaiting(t, waiting)
	return got
}

// A release hands the lock to the waiter that has waited longest; the
// releaser, trying again at once, cannot take it back, and the next waiter
// gets it after that.
func TestReleaseHandsOffInOrder(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	cfg := func(owner string) *Config { return &Config{Prefix: prefix, Owner: owner, Fencing: true} }
	a := newLocker(t, integration.Redis(t), cfg("a"))
	b := newLocker(t, integration.Redis(t), cfg("b"))
	c := newLocker(t, integration.Redis(t), cfg("c"))
	n := name(t)
	held := mustLock(t, a, n)
	gotB := startWaiter(t, b, waitingHook(b), n)
	gotC := startWaiter(t, c, waitingHook(c), n)

	mustRelease(t, held)
	// The releaser comes straight back and finds the lock handed on.
	if he := wantHeld(t, a, n); he.Holder == nil || he.Holder.Owner != "b" {
		t.Errorf("right after the release the holder is %v, want b (the first waiter)", he.Holder)
	}
	lkB := <-gotB
	if lkB == nil {
		t.FailNow()
	}
	if lkB.Token() <= held.Token() {
		t.Errorf("handed-off token %d not above %d", lkB.Token(), held.Token())
	}
	select {
	case <-gotC:
		t.Fatal("the second waiter acquired while the first held the lock")
	case <-time.After(50 * time.Millisecond):
	}
	mustRelease(t, lkB)
	if he := wantHeld(t, b, n); he.Holder == nil || he.Holder.Owner != "c" {
		t.Errorf("after b's release the holder is %v, want c", he.Holder)
	}
	lkC := <-gotC
	if lkC == nil {
		t.FailNow()
	}
	// A handed-off lock is held under the grant's lease, and has its full
	// lease from its first renewal, at half of what the grant has left.
	if left, err := lkC.TTL(ctxT(t, 5*time.Second)); err != nil || left > maxGrant {
		t.Errorf("TTL of the handed-off lock = %v, %v; want at most the grant's %v", left, err, maxGrant)
	}
	renewed := time.Now().Add(maxGrant)
	for {
		left, err := lkC.TTL(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatalf("TTL of the handed-off lock: %v", err)
		}
		if left > DefaultTTL-5*time.Second {
			break
		}
		if time.Now().After(renewed) {
			t.Fatalf("TTL of the handed-off lock = %v %v after the grant's lease began, want about %v (renewed)", left, maxGrant, DefaultTTL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustRelease(t, lkC)
	for _, k := range []string{held.Key() + ":queue", held.Key() + ":alive"} {
		if n, err := admin.Exists(ctxT(t, 5*time.Second), k).Result(); err != nil || n != 0 {
			t.Errorf("%s left behind", k)
		}
	}
}

// A registered waiter that died (it never claims): the release hands it the
// lock with a short lease (the grant, maxGrant), and the live waiter gets
// the lock when that runs out.
func TestHandOffToDeadWaiter(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	// Leases of the default 30s, so that no late renewal loses the lock
	// while the waiters register or before the live waiter releases it;
	// the release grants the dead waiter maxGrant.
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	n := name(t)
	held := mustLock(t, a, n)
	ctx := ctxT(t, 10*time.Second)
	dead := a.newWaiter()
	res, err := waitScript.Run(ctx, admin, a.queueKeys(held.Key()), dead.secret, a.set.ttlMs, dead.rest, 10000).Slice()
	if err != nil || res[0] != int64(0) {
		t.Fatalf("registering the dead waiter: %v, %v", res, err)
	}
	gotB := startWaiter(t, b, waitingHook(b), n)
	released := time.Now() // the grant is made after this
	mustRelease(t, held)
	raw, err := admin.Get(ctx, held.Key()).Result()
	if err != nil || !strings.HasPrefix(raw, dead.secret) {
		t.Fatalf("after the release the key holds %q (%v), want it handed to the first waiter", raw, err)
	}
	select {
	case lk := <-gotB:
		if lk == nil {
			t.FailNow()
		}
		if d := time.Since(released); d < maxGrant {
			t.Errorf("the live waiter acquired %v after the release, before the dead waiter's %v grant ran out", d, maxGrant)
		}
		mustRelease(t, lk)
	case <-time.After(maxGrant + 8*time.Second):
		t.Fatal("the live waiter did not get the lock after the dead waiter's grant ran out")
	}
}

// A waiter that gives up just as a release handed it the lock passes the
// lock on to the next waiter at once.
func TestGivingUpPassesTheHandOffOn(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "a"})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "b"})
	n := name(t)
	held := mustLock(t, a, n)
	key := held.Key()
	ctx := ctxT(t, 10*time.Second)
	first := a.newWaiter()
	if _, err := waitScript.Run(ctx, admin, a.queueKeys(key), first.secret, a.set.ttlMs, first.rest, 10000).Slice(); err != nil {
		t.Fatal(err)
	}
	gotB := startWaiter(t, b, waitingHook(b), n)
	mustRelease(t, held) // handed to first
	k := a.nameKeys(key)
	a.abandon(ctx, &k, first.secret, first.member())
	raw, err := admin.Get(ctx, key).Result()
	if err != nil || strings.HasPrefix(raw, first.secret) || !strings.Contains(raw, `"owner":"b"`) {
		t.Fatalf("after the first waiter gave up the key holds %q (%v), want it handed to b", raw, err)
	}
	lk := <-gotB
	if lk == nil {
		t.FailNow()
	}
	mustRelease(t, lk)
}

// A cancelled waiter leaves the queue.
func TestCancelledWaiterLeavesQueue(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	n := name(t)
	held := mustLock(t, a, n)
	ctx, cancel := context.WithCancel(context.Background())
	waiting := waitingHook(b)
	res := make(chan error, 1)
	go func() { _, err := b.Lock(ctx, n); res <- err }()
	awaitWaiting(t, waiting)
	if q, err := admin.ZCard(ctxT(t, 5*time.Second), b.queueKey(held.Key())).Result(); err != nil || q != 1 {
		t.Errorf("queue length while waiting = %d, %v; want 1", q, err)
	}
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("cancelled Lock = %v", err)
	}
	for _, k := range []string{b.queueKey(held.Key()), b.aliveKey(held.Key())} {
		if n, err := admin.Exists(ctxT(t, 5*time.Second), k).Result(); err != nil || n != 0 {
			t.Errorf("%s left behind after the only waiter gave up", k)
		}
	}
	mustRelease(t, held)
	// The release found no waiter and deleted the key.
	if n, err := admin.Exists(ctxT(t, 5*time.Second), held.Key()).Result(); err != nil || n != 0 {
		t.Errorf("key left after release with no waiters")
	}
}

// countingHook counts the times l's waiters block on the server, each
// after a wait script that did not get the lock, and reports each one, and
// each time a waiter blocks in l's local queue, on the returned channel.
func countingHook(l *Locker, n *atomic.Int64) <-chan string {
	c := make(chan string, 100)
	l.waitHook = func(name string) {
		n.Add(1)
		select {
		case c <- name:
		default:
		}
	}
	l.queueHook = func(name string) {
		select {
		case c <- name:
		default:
		}
	}
	return c
}

// With several waiters in two processes (two Lockers on their own
// clients), one waiter per Locker waits on the server and the others in
// its local queue. Each release wakes the waiter it hands the lock to and
// nobody else: the only wait script that runs, apart from the claim, is
// the registration of the next waiter of the granted waiter's Locker. The
// lock goes round in the order the waiters queued (the Lockers alternate).
func TestReleaseWakesOnlyTheGranted(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	cfg := &Config{Prefix: prefix, TTL: 30 * time.Second}
	a := newLocker(t, integration.Redis(t), cfg)
	lockers := []*Locker{newLocker(t, integration.Redis(t), cfg), newLocker(t, integration.Redis(t), cfg)}
	var blocks atomic.Int64
	hooks := []<-chan string{countingHook(lockers[0], &blocks), countingHook(lockers[1], &blocks)}
	n := name(t)
	held := mustLock(t, a, n)

	const waiters = 5
	var got []<-chan *Lock
	for i := range waiters {
		got = append(got, startWaiter(t, lockers[i%2], hooks[i%2], n))
	}
	if b := blocks.Load(); b != 2 {
		t.Fatalf("%d blocks on the server before any release, want 2 (one per Locker)", b)
	}
	if q, err := admin.ZCard(ctxT(t, 5*time.Second), lockers[0].queueKey(held.Key())).Result(); err != nil || q != 2 {
		t.Errorf("Redis queue length = %d, %v; want 2 (one per Locker)", q, err)
	}
	for i := range waiters {
		before := blocks.Load()
		mustRelease(t, held)
		select {
		case held = <-got[i]:
			if held == nil {
				t.FailNow()
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("waiter %d (next in line) did not get the lock", i)
		}
		// Give a wrongly woken waiter time to run its script and block again.
		time.Sleep(150 * time.Millisecond)
		want := int64(0)
		if i+2 < waiters {
			want = 1 // the next waiter of the same Locker registers
		}
		if woken := blocks.Load() - before; woken != want {
			t.Errorf("release %d: %d waiters ran the wait script and blocked, want %d", i, woken, want)
		}
		for j := i + 1; j < waiters; j++ {
			select {
			case <-got[j]:
				t.Fatalf("waiter %d acquired while waiter %d holds the lock", j, i)
			default:
			}
		}
	}
	mustRelease(t, held)
}

// A grant to a waiter that never claims it (its process died) wakes the
// others when its short lease runs out, not at their own recheck (TTL/3
// here, 10 s, longer than the wait allowed).
func TestUnclaimedGrantWakesTheOthers(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	cfg := &Config{Prefix: prefix, TTL: 30 * time.Second}
	a := newLocker(t, integration.Redis(t), cfg)
	b := newLocker(t, integration.Redis(t), cfg)
	n := name(t)
	held := mustLock(t, a, n)
	ctx := ctxT(t, 10*time.Second)
	dead := a.newWaiter()
	res, err := waitScript.Run(ctx, admin, a.queueKeys(held.Key()), dead.secret, a.set.ttlMs, dead.rest, 10000).Slice()
	if err != nil || res[0] != int64(0) {
		t.Fatalf("registering the dead waiter: %v, %v", res, err)
	}
	var blocks atomic.Int64
	waiting := countingHook(b, &blocks)
	got := make(chan error, 1)
	go func() {
		lk, err := b.Lock(ctxT(t, 6*time.Second), n)
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	awaitWaiting(t, waiting)
	start := time.Now()
	mustRelease(t, held)
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v (only the end of the dead waiter's grant can wake it in time)", err)
	}
	if d := time.Since(start); d < maxGrant-100*time.Millisecond {
		t.Errorf("waiter acquired %v after the release, before the %v grant ran out", d, maxGrant)
	}
	if b := blocks.Load(); b != 1 {
		t.Errorf("the waiter blocked %d times, want 1 (woken once, when the grant ran out)", b)
	}
}

func TestParseGrant(t *testing.T) {
	for _, c := range []struct {
		in string
		g  grant
		ok bool
	}{
		{"granted abc 2000 1733364612345678 17", grant{id: "abc", lease: 2 * time.Second, score: "1733364612345678", fence: 17}, true},
		{"granted abc 2000 1733364612345678 0", grant{id: "abc", lease: 2 * time.Second, score: "1733364612345678"}, true},
		{"granted abc 2000", grant{id: "abc", lease: 2 * time.Second}, true}, // an earlier version's release
		{"granted abc 0", grant{id: "abc"}, true},
		{"released", grant{}, false},
		{"granted", grant{}, false},
		{"granted abc", grant{}, false},
		{"granted abc x", grant{}, false},
		{"granted abc -1", grant{}, false},
		{"granted abc 2000 17", grant{}, false},
		{"granted abc 2000 1733364612345678 x", grant{}, false},
		{"granted abc 2000  17", grant{}, false},
	} {
		g, ok := parseGrant(c.in)
		if g != c.g || ok != c.ok {
			t.Errorf("parseGrant(%q) = %+v, %v; want %+v, %v", c.in, g, ok, c.g, c.ok)
		}
	}
}
