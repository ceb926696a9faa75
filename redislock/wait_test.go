package redislock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/redis/go-redis/v9"
)

// waitingHook returns a hook that reports each time a waiter blocks: the
// head of a name's local queue on the server, or another waiter in the
// local queue.
func waitingHook(l *Locker) <-chan string {
	c := make(chan string, 100)
	l.waitHook = func(name string) {
		select {
		case c <- name:
		default:
		}
	}
	l.queueHook = l.waitHook
	return c
}

// With a 30s lease and a 10s context, a waiter can only get the lock by
// being woken by the release message.
func TestWaiterWokenByRelease(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, TTL: 30 * time.Second})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, TTL: 30 * time.Second})
	waiting := waitingHook(b)
	n := name(t)
	held := mustLock(t, a, n)

	got := make(chan error, 1)
	go func() {
		lk, err := b.Lock(ctxT(t, 10*time.Second), n)
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	awaitWaiting(t, waiting)
	mustRelease(t, held)
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v (a 30s lease and a 10s wait: only the release message can wake it)", err)
	}
}

// An expired key publishes nothing: the waiter tries again when the
// holder's lease runs out, not at its own poll (b's TTL/3, 10s).
func TestWaiterRetriesAtLeaseEnd(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, TTL: 300 * time.Millisecond, NoAutoRenew: true})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	n := name(t)
	// Taken before the acquire is sent: the server's 300ms lease starts
	// after it, so no correct waiter gets the lock sooner than 300ms
	// after start, however slowly this goroutine runs.
	start := time.Now()
	held := mustLock(t, a, n) // never released: a crashed holder
	lk, err := b.Lock(ctxT(t, 20*time.Second), n)
	if err != nil {
		t.Fatalf("waiter: %v", err)
	}
	switch d := time.Since(start); {
	case d < 300*time.Millisecond:
		t.Errorf("waiter acquired %v after the holder's acquire was sent, before the 300ms lease ended", d)
	case d > 5*time.Second:
		t.Errorf("waiter acquired %v after the holder's acquire was sent, at its own 10s poll rather than the 300ms lease's end", d)
	}
	mustRelease(t, lk)
	if err := held.Release(ctxT(t, 5*time.Second)); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release of the expired lock = %v, want ErrLost", err)
	}
}

// The timed-out wait names the holder and matches both sentinels.
func TestWaitTimeoutNamesHolder(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "batch"})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	n := name(t)
	held := mustLock(t, a, n)
	defer mustRelease(t, held)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := b.Lock(ctx, n)
	var he *lockkit.HeldError
	if !errors.As(err, &he) || !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock = %v, want a HeldError matching ErrNotAcquired and DeadlineExceeded", err)
	}
	if he.Holder == nil || he.Holder.Owner != "batch" {
		t.Errorf("holder = %v, want batch", he.Holder)
	}
}

func awaitWaiting(t *testing.T, waiting <-chan string) {
	t.Helper()
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("no waiter blocked within 10s")
	}
}

// namedClient is a client on the test server whose connections carry
// CLIENT SETNAME cname.
func namedClient(t *testing.T, cname string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(integration.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opts.ClientName = cname
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// pubsubIDs lists the ids of the pub/sub connections of the clients named
// cname.
func pubsubIDs(t *testing.T, admin *redis.Client, cname string) []string {
	t.Helper()
	list, err := admin.ClientList(ctxT(t, 5*time.Second)).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name="+cname+" ") || strings.Contains(line, " sub=0 ") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
		ids = append(ids, id)
	}
	return ids
}

func pubsubClients(t *testing.T, admin *redis.Client, cname string) int {
	t.Helper()
	return len(pubsubIDs(t, admin, cname))
}

// Many waiters on several names share one pub/sub connection, subscribe
// each channel once, and leave nothing subscribed once the linger after
// they are done has passed.
func TestWaitersShareOneSubscription(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	cname := "lockkit-test-" + strings.ToLower(prefix[13:23])
	wc := namedClient(t, cname)

	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	b := newLocker(t, wc, &Config{Prefix: prefix})
	b.hub.linger = 300 * time.Millisecond
	waiting := waitingHook(b)
	const names, perName = 4, 5
	base := name(t)
	var held []*Lock
	for i := range names {
		held = append(held, mustLock(t, a, fmt.Sprint(base, i)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, names*perName)
	ctx := ctxT(t, 20*time.Second)
	for i := range names {
		for range perName {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lk, err := b.Lock(ctx, fmt.Sprint(base, i))
				if err == nil {
					err = lk.Release(ctx)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	for range names * perName {
		awaitWaiting(t, waiting)
	}
	if n := pubsubClients(t, admin, cname); n != 1 {
		t.Errorf("%d pub/sub connections for %d waiters, want 1", n, names*perName)
	}
	for _, lk := range held {
		ch := b.channel(lk.Key())
		subs, err := admin.PubSubNumSub(ctx, ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		if subs[ch] != 1 {
			t.Errorf("channel %q has %d subscribers, want 1", ch, subs[ch])
		}
		mustRelease(t, lk)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("waiter: %v", err)
	}
	// The channels linger, then go, and the connection with them.
	deadline := time.Now().Add(5 * time.Second)
	for pubsubClients(t, admin, cname) != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := pubsubClients(t, admin, cname); n != 0 {
		t.Errorf("%d pub/sub connections left 5s after every waiter returned (linger %v)", n, b.hub.linger)
	}
	b.hub.mu.Lock()
	if b.hub.cur != nil {
		t.Errorf("the hub still has a session after the linger")
	}
	b.hub.mu.Unlock()
}

// The pub/sub connection is cut under waiting Acquires (CLIENT KILL):
// go-redis reconnects and subscribes again, the hub wakes every waiter, and
// the next release still reaches them.
func TestWaitersSurvivePubSubKill(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	cname := "lockkit-test-" + strings.ToLower(prefix[13:23])
	wc := namedClient(t, cname)

	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, TTL: 30 * time.Second})
	b := newLocker(t, wc, &Config{Prefix: prefix, TTL: 30 * time.Second})
	waiting := waitingHook(b)
	n := name(t)
	held := mustLock(t, a, n)
	got := make(chan error, 1)
	go func() {
		lk, err := b.Lock(ctxT(t, 15*time.Second), n)
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	awaitWaiting(t, waiting)
	ctx := ctxT(t, 10*time.Second)
	// Only this test's connection: the server is shared.
	ids := pubsubIDs(t, admin, cname)
	if len(ids) != 1 {
		t.Fatalf("pub/sub connections of the waiting locker: %v, want 1", ids)
	}
	if killed, err := admin.ClientKillByFilter(ctx, "ID", ids[0]).Result(); err != nil || killed != 1 {
		t.Fatalf("CLIENT KILL ID %s = %d, %v", ids[0], killed, err)
	}
	// The waiter is woken by the broken read (and again after the
	// reconnect) and waits again.
	select {
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken after its pub/sub connection was killed")
	}
	reconnect := time.Now().Add(5 * time.Second)
	for pubsubClients(t, admin, cname) != 1 && time.Now().Before(reconnect) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := pubsubClients(t, admin, cname); n != 1 {
		t.Errorf("%d pub/sub connections 5s after the kill, want 1 (reconnected)", n)
	}
	mustRelease(t, held)
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}

	// The channel lingers on the new connection; cut that too while
	// nobody waits. The next waiter joins the lingering channel without
	// subscribing, and the release must still wake it.
	ids = pubsubIDs(t, admin, cname)
	if len(ids) != 1 {
		t.Fatalf("pub/sub connections of the idle locker: %v, want 1 (lingering)", ids)
	}
	if killed, err := admin.ClientKillByFilter(ctx, "ID", ids[0]).Result(); err != nil || killed != 1 {
		t.Fatalf("CLIENT KILL ID %s = %d, %v", ids[0], killed, err)
	}
	held = mustLock(t, a, n)
	go func() {
		lk, err := b.Lock(ctxT(t, 15*time.Second), n)
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	awaitWaiting(t, waiting)
	// Let the reconnect land, so that the release goes to the waiter's
	// subscription rather than into the gap (which its wake-up after the
	// reconnect would cover too, but then the test would not tell).
	deadline := time.Now().Add(5 * time.Second)
	for pubsubClients(t, admin, cname) != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	mustRelease(t, held)
	if err := <-got; err != nil {
		t.Fatalf("waiter on the lingering channel after a kill: %v (a 30s lease and a 15s wait: only a release message can wake it)", err)
	}
}

// dialGate refuses new connections while shut.
type dialGate struct {
	rt   integration.RoundTrips
	shut atomic.Bool
}

func (g *dialGate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.shut.Load() {
		return nil, errors.New("test: dialing refused")
	}
	return g.rt.Dial(ctx, network, addr)
}

// While the pub/sub connection is cut and cannot reconnect, a waiter does
// not sleep until the holder's lease runs out (30 s) or its own recheck
// (TTL/3, 10 s): it is woken by the broken read and tries every ~100 ms, on
// its command connection, so it takes the lock soon after the release that
// it could not hear.
func TestWaiterPollsWhilePubSubIsDown(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	cname := "lockkit-test-" + strings.ToLower(prefix[13:23])
	opts, err := redis.ParseURL(integration.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	var gate dialGate
	opts.ClientName, opts.Dialer = cname, gate.dial
	wc := redis.NewClient(opts)
	t.Cleanup(func() { _ = wc.Close() })

	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, TTL: 30 * time.Second})
	b := newLocker(t, wc, &Config{Prefix: prefix, TTL: 30 * time.Second})
	t.Cleanup(func() { _ = b.Close() })
	waiting := waitingHook(b)
	n := name(t)
	held := mustLock(t, a, n)
	got := make(chan error, 1)
	go func() {
		lk, err := b.Lock(ctxT(t, 8*time.Second), n)
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	awaitWaiting(t, waiting)
	ids := pubsubIDs(t, admin, cname)
	if len(ids) != 1 {
		t.Fatalf("pub/sub connections of the waiting locker: %v, want 1", ids)
	}
	gate.shut.Store(true)
	defer gate.shut.Store(false)
	ctx := ctxT(t, 5*time.Second)
	if killed, err := admin.ClientKillByFilter(ctx, "ID", ids[0]).Result(); err != nil || killed != 1 {
		t.Fatalf("CLIENT KILL ID %s = %d, %v", ids[0], killed, err)
	}
	awaitWaiting(t, waiting) // woken by the broken read, waiting again
	released := time.Now()
	mustRelease(t, held)
	if err := <-got; err != nil {
		t.Fatalf("waiter with its pub/sub connection down: %v", err)
	}
	if d := time.Since(released); d > 3*time.Second {
		t.Errorf("the waiter took the lock %v after the release, want well under 3s (it retries every ~100ms)", d)
	}
}

// A waiter that gives up leaves no subscription and no session behind
// once its Locker is closed; until then the channel lingers.
func TestCancelledWaiterLeavesNothing(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	n := name(t)
	held := mustLock(t, a, n)
	defer mustRelease(t, held)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := b.Lock(ctx, n)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock = %v, want DeadlineExceeded", err)
		}
	}
	ch := b.channel(held.Key())
	numSub := func() int64 {
		subs, err := admin.PubSubNumSub(ctxT(t, 5*time.Second), ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		return subs[ch]
	}
	// At most the one lingering subscription (none if every wait ended
	// before it subscribed, as it may on a loaded machine).
	if n := numSub(); n > 1 {
		t.Errorf("%d subscribers on %q right after the waits, want at most 1 (lingering)", n, ch)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Close closed the connection; the server drops its subscriptions
	// when it reads the close, a moment later.
	deadline := time.Now().Add(5 * time.Second)
	for numSub() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := numSub(); n != 0 {
		t.Errorf("%d subscribers left on %q 5s after Close", n, ch)
	}
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	if b.hub.cur != nil {
		t.Error("the hub still has a session")
	}
}

// Held locks cost timers, not goroutines. (The default 30s lease: renewals
// are one round trip per lock per interval, so 1000 locks renewed every
// second would measure this machine's Redis throughput, not the timers.)
func TestManyHeldLocksNoGoroutines(t *testing.T) {
	admin := integration.Redis(t)
	l := newLocker(t, integration.Redis(t), &Config{Prefix: testPrefix(t, admin)})
	before := runtime.NumGoroutine()
	var locks []*Lock
	for i := range 1000 {
		locks = append(locks, mustLock(t, l, fmt.Sprint(i)))
	}
	if grown := runtime.NumGoroutine() - before; grown > 100 {
		t.Errorf("%d goroutines more while 1000 locks are held", grown)
	}
	for _, lk := range locks {
		mustRelease(t, lk)
	}
}
