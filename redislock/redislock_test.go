package redislock

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
	"github.com/redis/go-redis/v9"
)

func TestConformance(t *testing.T) {
	for _, v := range []struct {
		name     string
		fencing  bool
		noSetGet bool
	}{
		{"setget", false, false}, // SET NX PX GET pipeline
		{"script", false, true},  // the acquire script, as on Redis < 7
		{"fencing", true, false}, // the acquire script with a counter
	} {
		t.Run(v.name, func(t *testing.T) {
			admin := integration.Redis(t)
			prefix := testPrefix(t, admin)
			const renew = 100 * time.Millisecond
			cfg := &Config{Prefix: prefix, TTL: 2 * time.Second, RenewInterval: renew, Fencing: v.fencing}
			keyOf := newLocker(t, admin, cfg).Key
			locktest.Run(t, locktest.Config{
				// Each Locker gets its own client, as another process would.
				NewLocker: func(t *testing.T) lockkit.Locker {
					l := newLocker(t, integration.Redis(t), cfg)
					l.noSetGet.Store(v.noSetGet)
					return l
				},
				// Deleting the key is what a lost lease looks like to the
				// holder; it notices on its next renewal.
				KillHolder: func(t *testing.T, l lockkit.Lock) {
					if err := admin.Del(ctxT(t, 5*time.Second), l.(*Lock).Key()).Err(); err != nil {
						t.Fatalf("DEL: %v", err)
					}
				},
				LossBound: renew + time.Second,
				Tokens:    v.fencing,
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
			})
		})
	}
}

func TestBadInputBeforeIO(t *testing.T) {
	cc := &countingClient{Client: integration.Redis(t)}
	for _, tc := range []struct {
		what string
		cfg  Config
	}{
		{"negative TTL", Config{TTL: -time.Second}},
		{"sub-millisecond TTL", Config{TTL: time.Microsecond}},
		{"renew interval above TTL/2", Config{TTL: time.Second, RenewInterval: 600 * time.Millisecond}},
		{"renew interval equal to TTL", Config{TTL: time.Second, RenewInterval: time.Second}},
		{"negative renew interval", Config{RenewInterval: -time.Second}},
		{"long prefix", Config{Prefix: strings.Repeat("p", MaxPrefixLen+1)}},
		{"long owner", Config{Owner: strings.Repeat("o", MaxHolderLen+1)}},
		{"long data", Config{Data: strings.Repeat("d", MaxHolderLen+1)}},
		{"empty cluster hash tag in the prefix", Config{Prefix: "app{}:"}},
		{"negative WaitReplicas", Config{WaitReplicas: -1}},
	} {
		if _, err := New(cc, &tc.cfg); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("New with %s = %v, want ErrInvalid", tc.what, err)
		}
	}
	if _, err := New(nil, nil); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("New(nil client) = %v, want ErrInvalid", err)
	}
	// Valid edge cases.
	for _, cfg := range []*Config{nil, {}, {TTL: time.Second, RenewInterval: 500 * time.Millisecond}, {TTL: time.Second, RenewInterval: time.Hour, NoAutoRenew: true}} {
		if _, err := New(cc, cfg); err != nil {
			t.Errorf("New(%+v) = %v", cfg, err)
		}
	}

	l := newLocker(t, cc, nil)
	ctx := ctxT(t, 5*time.Second)
	for _, n := range []string{"", strings.Repeat("n", MaxNameLen+1)} {
		if _, err := l.TryAcquire(ctx, n); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("TryAcquire(%d bytes) = %v, want ErrInvalid", len(n), err)
		}
		if _, err := l.Acquire(ctx, n); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("Acquire(%d bytes) = %v, want ErrInvalid", len(n), err)
		}
	}
	if n := cc.calls(); n != 0 {
		t.Errorf("%d calls reached the server for bad input", n)
	}
	// A cancelled context is refused before I/O too.
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.TryAcquire(cctx, "x"); !errors.Is(err, context.Canceled) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("TryAcquire(cancelled) = %v", err)
	}
	if n := cc.calls(); n != 0 {
		t.Errorf("%d calls reached the server for a cancelled context", n)
	}
}

func TestOneRoundTrip(t *testing.T) {
	admin := integration.Redis(t)
	for _, fencing := range []bool{false, true} {
		cc := &countingClient{Client: integration.Redis(t)}
		l := newLocker(t, cc, &Config{Prefix: testPrefix(t, admin), Fencing: fencing})
		n := name(t)
		mustRelease(t, mustLock(t, l, n)) // loads the scripts if the server lacked them
		cc.reset()
		lk := mustLock(t, l, n)
		if got := cc.calls(); got != 1 {
			t.Errorf("fencing %v: TryLock made %d round trips, want 1", fencing, got)
		}
		cc.reset()
		he := wantHeld(t, l, n)
		conflict := int64(1) // the script replies with the lease
		if !fencing {
			conflict = 2 // SET NX GET, then PTTL
		}
		if got := cc.calls(); got != conflict || he.Holder == nil || he.Holder.Expires.IsZero() {
			t.Errorf("fencing %v: a conflict made %d round trips (want %d), holder %v", fencing, got, conflict, he.Holder)
		}
		cc.reset()
		mustRelease(t, lk)
		if cc.calls() != 1 || cc.evalSha.Load() != 1 {
			t.Errorf("fencing %v: Release made %d EVALSHA, %d EVAL, %d other round trips; want one EVALSHA",
				fencing, cc.evalSha.Load(), cc.eval.Load(), cc.calls()-cc.evalSha.Load()-cc.eval.Load())
		}
	}
}

func TestHolderInfo(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, TTL: 10 * time.Second, Fencing: true, Owner: "alice", Data: "nightly report"})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Fencing: true})
	n := name(t)
	before := time.Now()
	held := mustLock(t, a, n)
	after := time.Now()
	defer mustRelease(t, held)

	he := wantHeld(t, b, n)
	h := he.Holder
	if h == nil {
		t.Fatal("HeldError.Holder is nil")
	}
	host, _ := os.Hostname()
	if h.Owner != "alice" || h.Data != "nightly report" || h.Host != host || h.PID != os.Getpid() {
		t.Errorf("holder = %+v, want alice, nightly report, %s, pid %d", h, host, os.Getpid())
	}
	if h.Token != held.Token() || h.Token == 0 {
		t.Errorf("holder token %d, lock token %d", h.Token, held.Token())
	}
	// Since is the holder's clock, in milliseconds.
	slack := 50 * time.Millisecond
	if h.Since.Before(before.Add(-slack)) || h.Since.After(time.Now().Add(slack)) {
		t.Errorf("Since = %v, want between %v and %v", h.Since, before, after)
	}
	if left := time.Until(h.Expires); left <= 8*time.Second || left > 10*time.Second+slack {
		t.Errorf("Expires in %v, want just under the 10s lease", left)
	}
	if !strings.Contains(he.Error(), "alice") {
		t.Errorf("error %q does not name the holder", he.Error())
	}
	// The holder's secret is not shown to a competitor.
	raw, err := admin.Get(ctxT(t, 5*time.Second), held.Key()).Result()
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSuffix(held.secret, "|")
	if !strings.HasPrefix(raw, held.secret) || strings.Contains(he.Error(), secret) || strings.Contains(h.Data+h.Owner, secret) {
		t.Errorf("the secret leaked into the conflict error, or the key %q lacks it", raw)
	}
}

func TestTTLAndRenew(t *testing.T) {
	admin := integration.Redis(t)
	l := newLocker(t, integration.Redis(t), &Config{Prefix: testPrefix(t, admin), TTL: 5 * time.Second, NoAutoRenew: true})
	lk := mustLock(t, l, name(t))
	ctx := ctxT(t, 10*time.Second)
	if err := admin.PExpire(ctx, lk.Key(), time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	left, err := lk.TTL(ctx)
	if err != nil || left > time.Second || left <= 0 {
		t.Fatalf("TTL = %v, %v; want at most 1s after PEXPIRE 1000", left, err)
	}
	if err := lk.Renew(ctx); err != nil {
		t.Fatalf("Renew = %v", err)
	}
	if left, err := lk.TTL(ctx); err != nil || left <= 4*time.Second {
		t.Fatalf("TTL after Renew = %v, %v; want about 5s", left, err)
	}
	mustRelease(t, lk)
	if err := lk.Renew(ctx); !errors.Is(err, lockkit.ErrReleased) {
		t.Errorf("Renew after Release = %v, want ErrReleased", err)
	}
	if _, err := lk.TTL(ctx); !errors.Is(err, lockkit.ErrReleased) {
		t.Errorf("TTL after Release = %v, want ErrReleased", err)
	}
}

func TestAutoRenewKeepsLease(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	// A lease of 1s renewed every 100ms: ten renewals must all fail in a
	// row to lose it, which only a stalled machine does.
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, TTL: time.Second, RenewInterval: 100 * time.Millisecond})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	n := name(t)
	lk := mustLock(t, a, n)
	time.Sleep(3 * time.Second) // three leases
	if err := lk.Err(); err != nil {
		t.Fatalf("Err after 3s of auto-renewal = %v", err)
	}
	wantHeld(t, b, n)
	mustRelease(t, lk)
	mustRelease(t, mustLock(t, b, n))
}

// The lease runs out on the holder's clock: Done closes, and Renew and
// Release report the loss.
func TestRenewAndReleaseAfterExpiry(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, TTL: 100 * time.Millisecond, NoAutoRenew: true})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix})
	n := name(t)
	lk := mustLock(t, a, n)
	waitDone(t, lk, 2*time.Second)
	if err := lk.Err(); !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, ErrLeaseExpired) {
		t.Errorf("Err after the lease = %v, want ErrLost and ErrLeaseExpired", err)
	}
	ctx := ctxT(t, 10*time.Second)
	if err := lk.Renew(ctx); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Renew after expiry = %v, want ErrLost", err)
	}
	// The server expires the key no earlier than the holder gives up, but
	// its lease counts from the SET's execution and the holder's from the
	// send: wait for the key to go.
	var other *Lock
	for deadline := time.Now().Add(2 * time.Second); other == nil; time.Sleep(5 * time.Millisecond) {
		got, err := b.TryLock(ctx, n)
		switch {
		case err == nil:
			other = got
		case !errors.Is(err, lockkit.ErrNotAcquired):
			t.Fatalf("TryLock after expiry = %v", err)
		case time.Now().After(deadline):
			t.Fatalf("the 100ms key still held 2s after the holder's lease ended: %v", err)
		}
	}
	if err := lk.Release(ctx); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release after expiry = %v, want ErrLost", err)
	}
	// The stale release deleted nothing.
	wantHeld(t, a, n)
	mustRelease(t, other)
}

// The key expires on the server while the holder still believes its lease
// runs: Renew and Release each find out and report lost, and never touch
// the next holder's key.
func TestServerSideExpiry(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, TTL: 10 * time.Second, NoAutoRenew: true, Fencing: true})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Fencing: true})
	ctx := ctxT(t, 10*time.Second)

	t.Run("Renew", func(t *testing.T) {
		n := name(t)
		lk := mustLock(t, a, n)
		if err := admin.PExpire(ctx, lk.Key(), time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		other := mustLock(t, b, n)
		if other.Token() <= lk.Token() {
			t.Errorf("takeover token %d not above %d", other.Token(), lk.Token())
		}
		err := lk.Renew(ctx)
		if !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, ErrNotOwner) {
			t.Errorf("Renew after server-side expiry = %v, want ErrLost and ErrNotOwner", err)
		}
		waitDone(t, lk, time.Second)
		if err := lk.Release(ctx); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("Release = %v, want ErrLost", err)
		}
		if left, err := other.TTL(ctx); err != nil || left <= 0 {
			t.Errorf("the new holder's key: TTL %v, %v", left, err)
		}
		mustRelease(t, other)
	})
	t.Run("Release", func(t *testing.T) {
		n := name(t)
		lk := mustLock(t, a, n)
		if err := admin.PExpire(ctx, lk.Key(), time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		other := mustLock(t, b, n)
		err := lk.Release(ctx)
		if !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, ErrNotOwner) {
			t.Errorf("Release after server-side expiry = %v, want ErrLost and ErrNotOwner", err)
		}
		if !errors.Is(lk.Err(), lockkit.ErrLost) {
			t.Errorf("Err = %v, want ErrLost", lk.Err())
		}
		wantHeld(t, a, n)
		mustRelease(t, other)
	})
}

func TestRace1000(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	l := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Fencing: true})
	n := name(t)
	const racers = 1000
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		winners []*Lock
		held    int
		errs    []error
	)
	ctx := ctxT(t, 30*time.Second)
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			lk, err := l.TryLock(ctx, n)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, lk)
			case errors.Is(err, lockkit.ErrNotAcquired):
				held++
			default:
				errs = append(errs, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs[:min(len(errs), 5)] {
		t.Errorf("racer: %v", err)
	}
	if len(winners) != 1 || held != racers-1 {
		t.Errorf("%d winners and %d refused of %d racers, want exactly 1 winner", len(winners), held, racers)
	}
	for _, lk := range winners {
		mustRelease(t, lk)
	}
}

// The attempt's reply is lost after the server took the lock: the attempt
// gives its key back instead of leaving it held until the lease ends.
func TestAmbiguousAcquireLeavesNothing(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	for _, fencing := range []bool{false, true} {
		flaky := newLocker(t, &lostReplyClient{Client: integration.Redis(t)}, &Config{Prefix: prefix, Fencing: fencing})
		good := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Fencing: fencing})
		n := name(t)
		lk, err := flaky.TryLock(ctxT(t, 10*time.Second), n)
		if err == nil {
			t.Fatalf("TryLock through a lost reply succeeded: %v", lk.Name())
		}
		if !errors.Is(err, errReplyLost) {
			t.Errorf("TryLock = %v, want the transport error", err)
		}
		if n, err := admin.Exists(ctxT(t, 5*time.Second), good.Key(n)).Result(); err != nil || n != 0 {
			t.Errorf("fencing %v: EXISTS after the abandoned attempt = %d, %v; want 0", fencing, n, err)
		}
		mustRelease(t, mustLock(t, good, n))
	}
}

// A retried acquire command (go-redis retries after a network error) that
// finds its own earlier attempt's key reports it as acquired.
func TestAcquireIsIdempotent(t *testing.T) {
	admin := integration.Redis(t)
	for _, fencing := range []bool{false, true} {
		l := newLocker(t, admin, &Config{Prefix: testPrefix(t, admin), Fencing: fencing})
		key := l.Key(name(t))
		ctx := ctxT(t, 10*time.Second)
		try := func(ctx context.Context, key, secret, rest string) (bool, string, time.Duration, error) {
			return l.trySetGet(ctx, key, secret, rest, true)
		}
		if fencing {
			try = l.tryScript
		}
		ok1, info1, _, err1 := try(ctx, key, "SECRET|", "|1|{}")
		ok2, info2, _, err2 := try(ctx, key, "SECRET|", "|1|{}")
		if err1 != nil || err2 != nil || !ok1 || !ok2 || info1 != info2 {
			t.Errorf("fencing %v: first (%v, %q, %v), retried (%v, %q, %v): want both acquired with the same token",
				fencing, ok1, info1, err1, ok2, info2, err2)
		}
		ok3, info3, pttl, err3 := try(ctx, key, "OTHER|", "|1|{}")
		if err3 != nil || ok3 || info3 != info1 || pttl <= 0 {
			t.Errorf("fencing %v: another secret: (%v, %q, %v, %v); want refused with the holder's %q", fencing, ok3, info3, pttl, err3, info1)
		}
	}
}

func TestNamesAnyBytes(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Fencing: true})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Fencing: true})
	names := []string{"a", "a}:fence", "a:fence", "x\x00y", "}", "{", "ünï", strings.Repeat("z", MaxNameLen), "a b*?[]"}
	var locks []*Lock
	for _, n := range names {
		lk := mustLock(t, a, n)
		if !strings.HasPrefix(lk.Key(), prefix) {
			t.Errorf("key %q lacks the prefix %q", lk.Key(), prefix)
		}
		locks = append(locks, lk)
	}
	// Every name is its own lock, held now, and no key stands for two.
	for _, n := range names {
		wantHeld(t, b, n)
	}
	for _, lk := range locks {
		mustRelease(t, lk)
	}
	for _, n := range names {
		mustRelease(t, mustLock(t, b, n))
	}
	// Only fence counters are left.
	for _, k := range countKeys(t, admin, prefix) {
		if !strings.HasSuffix(k, "}:fence") {
			t.Errorf("key %q left after every lock was released", k)
		}
	}
}

func TestPrefixesAreSeparate(t *testing.T) {
	admin := integration.Redis(t)
	a := newLocker(t, admin, &Config{Prefix: testPrefix(t, admin)})
	b := newLocker(t, admin, &Config{Prefix: testPrefix(t, admin)})
	n := name(t)
	l1 := mustLock(t, a, n)
	l2 := mustLock(t, b, n)
	mustRelease(t, l1)
	mustRelease(t, l2)
}

func TestDefaultPrefix(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	l := newLocker(t, c, nil)
	if got := l.Key("jobs"); got != "lockkit:{jobs}" {
		t.Errorf("Key = %q", got)
	}
	if l.TTL() != DefaultTTL {
		t.Errorf("TTL = %v", l.TTL())
	}
	// Sub-millisecond parts round up, never down to a shorter lease.
	l = newLocker(t, c, &Config{TTL: 1500 * time.Microsecond, NoAutoRenew: true})
	if l.TTL() != 2*time.Millisecond || l.set.ttlMs != 2 {
		t.Errorf("TTL 1.5ms became %v (%d ms)", l.TTL(), l.set.ttlMs)
	}
}
