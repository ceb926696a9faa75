package rowlock_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/rowlock"
)

func TestConformance(t *testing.T) {
	// Not in parallel: each check looks for leaked goroutines.
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) { conformance(t, setup(t, d)) })
	}
}

func conformance(t *testing.T, e *env) {
	{
		admin := e.locker(t, nil)
		locktest.Run(t, locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker {
				// A short renew interval, so that a lease ended from
				// outside is noticed well within LossBound.
				return e.locker(t, &rowlock.Config{TTL: 3 * time.Second, RenewInterval: 100 * time.Millisecond})
			},
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				ok, err := admin.ForceRelease(ctxT(t, 10*time.Second), l.Name())
				if err != nil || !ok {
					t.Fatalf("ForceRelease = %v, %v; want true", ok, err)
				}
			},
			LossBound:   2 * time.Second,
			Tokens:      true,
			Leftovers:   func(t *testing.T, names []string) int { return e.live(t, names) },
			LeakOptions: leakOptions,
		})
	}
}

func mustTry(t *testing.T, l *rowlock.Locker, name string, o *rowlock.Options) *rowlock.Lock {
	t.Helper()
	lk, err := l.TryLock(ctxT(t, 10*time.Second), name, o)
	if err != nil {
		t.Fatalf("TryLock(%q) = %v", name, err)
	}
	return lk
}

func wantHeld(t *testing.T, l *rowlock.Locker, name string) *lockkit.HeldError {
	t.Helper()
	lk, err := l.TryAcquire(ctxT(t, 10*time.Second), name)
	if err == nil {
		_ = lk.Release(context.Background())
		t.Fatalf("TryAcquire(%q) succeeded while held", name)
	}
	var he *lockkit.HeldError
	if !errors.As(err, &he) {
		t.Fatalf("TryAcquire(%q) = %v, want a *lockkit.HeldError", name, err)
	}
	return he
}

// TestPausedHolder is PITFALLS 16: a holder paused past its TTL (no
// renewals) is taken over with a larger token; its renew and release then
// affect nothing and report lost.
func TestPausedHolder(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		cfg := &rowlock.Config{TTL: 200 * time.Millisecond, RenewInterval: rowlock.NoRenew}
		a, b, c := e.locker(t, cfg), e.locker(t, cfg), e.locker(t, nil)
		name := e.name(t)
		first := mustTry(t, a, name, nil)
		time.Sleep(300 * time.Millisecond) // the pause
		second := mustTry(t, b, name, &rowlock.Options{TTL: 10 * time.Second})
		if second.Token() <= first.Token() {
			t.Errorf("takeover token %d not above the paused holder's %d", second.Token(), first.Token())
		}
		if err := first.Renew(ctxT(t, 5*time.Second)); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("paused holder's Renew = %v, want ErrLost", err)
		}
		if err := first.Release(ctxT(t, 5*time.Second)); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("paused holder's Release = %v, want ErrLost", err)
		}
		select {
		case <-first.Done():
		default:
			t.Error("paused holder's Done still open")
		}
		// The paused holder's release did not free the new holder's lease.
		he := wantHeld(t, c, name)
		if he.Holder == nil || he.Holder.Token != second.Token() {
			t.Errorf("holder after the stale release = %+v, want token %d", he.Holder, second.Token())
		}
		if err := second.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPausedHolderRelease: the paused holder releases (without renewing
// first) after the takeover: lost, and the new lease survives.
func TestPausedHolderRelease(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		cfg := &rowlock.Config{TTL: 200 * time.Millisecond, RenewInterval: rowlock.NoRenew}
		a, b := e.locker(t, cfg), e.locker(t, cfg)
		name := e.name(t)
		first := mustTry(t, a, name, nil)
		time.Sleep(300 * time.Millisecond)
		second := mustTry(t, b, name, &rowlock.Options{TTL: 10 * time.Second})
		if err := first.Release(ctxT(t, 5*time.Second)); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("stale Release = %v, want ErrLost", err)
		}
		wantHeld(t, a, name)
		if err := second.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestTokensMonotonic: tokens strictly increase per name across release,
// expiry, takeover, force-release and cleanup of the row.
func TestTokensMonotonic(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		cfg := &rowlock.Config{TTL: 10 * time.Second, RenewInterval: rowlock.NoRenew}
		a, b := e.locker(t, cfg), e.locker(t, cfg)
		name := e.name(t)
		var last int64
		next := func(how string, lk *rowlock.Lock) {
			t.Helper()
			if lk.Token() <= last {
				t.Errorf("after %s: token %d, not above %d", how, lk.Token(), last)
			}
			last = lk.Token()
		}
		ctx := ctxT(t, 30*time.Second)
		for i := range 3 {
			lk := mustTry(t, []*rowlock.Locker{a, b}[i%2], name, nil)
			next("release", lk)
			if err := lk.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		lk := mustTry(t, a, name, &rowlock.Options{TTL: 100 * time.Millisecond})
		next("release", lk)
		time.Sleep(150 * time.Millisecond) // expiry
		lk = mustTry(t, b, name, nil)
		next("expiry and takeover", lk)
		if ok, err := a.ForceRelease(ctx, name); err != nil || !ok {
			t.Fatalf("ForceRelease = %v, %v", ok, err)
		}
		lk = mustTry(t, a, name, nil)
		next("force-release", lk)
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := a.CleanupExpired(ctx, 0)
		if err != nil || n < 1 {
			t.Fatalf("CleanupExpired = %d, %v; want the row deleted", n, err)
		}
		lk = mustTry(t, b, name, nil)
		next("cleanup of the row", lk)
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRace64: 64 goroutines on four Lockers race for one name: never two
// holders at once, every goroutine gets its turn, and tokens increase in
// the order the holders held the lock.
func TestRace64(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		lockers := make([]*rowlock.Locker, 4)
		for i := range lockers {
			lockers[i] = e.locker(t, &rowlock.Config{TTL: 10 * time.Second, MaxPoll: 20 * time.Millisecond})
		}
		name := e.name(t)
		ctx := ctxT(t, 2*time.Minute)
		var (
			inside, overlap atomic.Int32
			mu              sync.Mutex
			tokens          []int64 // appended under the lock under test
			wg              sync.WaitGroup
			start           = make(chan struct{})
			errs            = make(chan error, 64)
		)
		for g := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				lk, err := lockers[g%len(lockers)].Acquire(ctx, name)
				if err != nil {
					errs <- err
					return
				}
				if inside.Add(1) != 1 {
					overlap.Add(1)
				}
				mu.Lock()
				tokens = append(tokens, lk.Token())
				mu.Unlock()
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				if err := lk.Release(ctx); err != nil {
					errs <- err
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := overlap.Load(); n != 0 {
			t.Errorf("%d times two goroutines held the lock at once", n)
		}
		if len(tokens) != 64 {
			t.Errorf("%d holders, want 64", len(tokens))
		}
		for i := 1; i < len(tokens); i++ {
			if tokens[i] <= tokens[i-1] {
				t.Errorf("holder %d got token %d after %d", i, tokens[i], tokens[i-1])
			}
		}
	})
}

// TestHeldError: the conflict error names the holder with what a user
// interface shows.
func TestHeldError(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		a := e.locker(t, &rowlock.Config{Host: "web-3", PID: 4121, TTL: time.Minute})
		b := e.locker(t, nil)
		name := e.name(t)
		before := time.Now()
		lk := mustTry(t, a, name, &rowlock.Options{Owner: "user:alice", Data: "Alice Example"})
		defer lk.Release(context.Background())
		he := wantHeld(t, b, name)
		h := he.Holder
		if he.Name != name || h == nil {
			t.Fatalf("HeldError = %+v", he)
		}
		if h.Owner != "user:alice" || h.Data != "Alice Example" || h.Host != "web-3" || h.PID != 4121 || h.Token != lk.Token() {
			t.Errorf("holder = %+v", h)
		}
		// The database's clock and ours agree within a few seconds here.
		if d := h.Since.Sub(before); d < -5*time.Second || d > 5*time.Second {
			t.Errorf("Since = %v, %v from our clock", h.Since, d)
		}
		if d := h.Expires.Sub(h.Since); d < time.Minute-time.Millisecond || d > time.Minute+time.Second {
			t.Errorf("Expires - Since = %v, want the 1m TTL", d)
		}
		msg := he.Error()
		for _, want := range []string{name, "user:alice", "Alice Example", "web-3", "4121"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
		if !errors.Is(he, lockkit.ErrNotAcquired) {
			t.Error("HeldError does not match ErrNotAcquired")
		}
	})
}

// TestResume is the edit lock across requests: acquire in one request,
// resume in another (another Locker, as another process would) with name,
// owner and token, renew, release.
func TestResume(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		req1 := e.locker(t, &rowlock.Config{TTL: 5 * time.Second, RenewInterval: rowlock.NoRenew})
		req2 := e.locker(t, &rowlock.Config{TTL: 5 * time.Second, RenewInterval: rowlock.NoRenew})
		other := e.locker(t, nil)
		ctx := ctxT(t, 30*time.Second)
		name := rowlock.RecordName("products", randHex(4))
		lk := mustTry(t, req1, name, &rowlock.Options{Owner: "user:alice", Data: "Alice"})
		owner, token := lk.Owner(), lk.Token()

		for _, bad := range []struct {
			owner string
			token int64
		}{{"user:bob", token}, {owner, token + 1}} {
			if _, err := req2.Resume(ctx, name, bad.owner, bad.token); !errors.Is(err, lockkit.ErrLost) {
				t.Errorf("Resume(%q, %d) = %v, want ErrLost", bad.owner, bad.token, err)
			}
		}
		r, err := req2.Resume(ctx, name, owner, token)
		if err != nil {
			t.Fatalf("Resume: %v", err)
		}
		if r.Token() != token || r.Owner() != owner || r.Name() != name {
			t.Errorf("resumed %q %q %d", r.Name(), r.Owner(), r.Token())
		}
		if left := time.Until(r.Expires()); left <= 0 || left > 5*time.Second {
			t.Errorf("resumed lease has %v left, want (0, 5s]", left)
		}
		if err := r.Renew(ctx); err != nil {
			t.Fatalf("Renew: %v", err)
		}
		wantHeld(t, other, name)
		if err := r.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if _, err := req2.Resume(ctx, name, owner, token); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("Resume after release = %v, want ErrLost", err)
		}
		// The first request's handle learns of the loss when it acts.
		if err := lk.Renew(ctx); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("first handle's Renew after release elsewhere = %v, want ErrLost", err)
		}
		mustTry(t, other, name, nil).Release(ctx)
	})
}

// TestExpiryClosesDone: without renewal, Done closes when the lease runs
// out, before anyone takes it over.
func TestExpiryClosesDone(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		l := e.locker(t, &rowlock.Config{TTL: 100 * time.Millisecond, RenewInterval: rowlock.NoRenew})
		lk := mustTry(t, l, e.name(t), nil)
		select {
		case <-lk.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done not closed after the lease ran out")
		}
		if !errors.Is(lk.Err(), lockkit.ErrLost) {
			t.Errorf("Err = %v, want ErrLost", lk.Err())
		}
		if err := lk.Release(ctxT(t, 5*time.Second)); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("Release = %v, want ErrLost", err)
		}
	})
}

// TestAutoRenew: a lease held past its first term stays held while it
// renews itself, and others cannot take it. The lease is 2 s, renewed
// every 500 ms: a 400 ms one renewed every 100 ms (as before) is lost for
// real when a starved CI machine runs a renewal 300 ms late.
func TestAutoRenew(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		const ttl = 2 * time.Second
		a := e.locker(t, &rowlock.Config{TTL: ttl, RenewInterval: 500 * time.Millisecond})
		b := e.locker(t, nil)
		name := e.name(t)
		lk := mustTry(t, a, name, nil)
		// Half a lease past the first term's end on this clock (the
		// database's is never earlier): unrenewed, the lease is gone.
		first := lk.Expires()
		time.Sleep(time.Until(first.Add(ttl / 2)))
		if err := lk.Err(); err != nil {
			t.Fatalf("renewing lock: %v", err)
		}
		if !lk.Expires().After(first) {
			t.Errorf("Expires %v, not after the first term's %v: not renewed", lk.Expires(), first)
		}
		wantHeld(t, b, name)
		if err := lk.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestListForceCleanup(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		a := e.locker(t, &rowlock.Config{TTL: 10 * time.Second, RenewInterval: 50 * time.Millisecond, Data: "job"})
		admin := e.locker(t, nil)
		ctx := ctxT(t, 30*time.Second)
		n1, n2 := e.name(t)+".1", e.name(t)+".2"
		l1, l2 := mustTry(t, a, n1, nil), mustTry(t, a, n2, nil)
		list, err := admin.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]lockkit.LockInfo{}
		for _, h := range list {
			seen[h.Name] = h
		}
		for _, lk := range []*rowlock.Lock{l1, l2} {
			h, ok := seen[lk.Name()]
			if !ok {
				t.Fatalf("List lacks %q: %+v", lk.Name(), list)
			}
			if !h.Held || h.Holder.Token != lk.Token() || h.Holder.Owner != a.Owner() || h.Holder.Data != "job" {
				t.Errorf("List entry %+v", h)
			}
		}
		ok, err := admin.ForceRelease(ctx, n1)
		if err != nil || !ok {
			t.Fatalf("ForceRelease = %v, %v", ok, err)
		}
		select {
		case <-l1.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("force-released holder's Done not closed")
		}
		if !errors.Is(l1.Err(), lockkit.ErrLost) {
			t.Errorf("force-released holder's Err = %v", l1.Err())
		}
		if ok, err := admin.ForceRelease(ctx, n1); err != nil || ok {
			t.Errorf("second ForceRelease = %v, %v; want false", ok, err)
		}
		list, _ = admin.List(ctx)
		for _, h := range list {
			if h.Name == n1 {
				t.Errorf("List still shows the force-released %q", n1)
			}
		}
		// Cleanup removes the expired row and never a live lease.
		if _, err := admin.CleanupExpired(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if e.rows(t, n1) != 0 || e.rows(t, n2) != 1 {
			t.Errorf("after cleanup: rows %d for the released name, %d for the live one", e.rows(t, n1), e.rows(t, n2))
		}
		if err := l2.Err(); err != nil {
			t.Errorf("live lease after cleanup: %v", err)
		}
		_ = l1.Release(ctx)
		if err := l2.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func (e *env) rows(t *testing.T, name string) int {
	t.Helper()
	var n int
	if err := e.db.QueryRow("SELECT count(*) FROM lockkit_locks WHERE name = "+e.ph(1), name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWaitWokenByRelease: a waiter on another Locker (so no in-process
// wake-up) acquires soon after the release, long before the holder's lease
// would have run out.
func TestWaitWokenByRelease(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		a := e.locker(t, &rowlock.Config{TTL: time.Minute})
		b := e.locker(t, &rowlock.Config{TTL: time.Minute})
		name := e.name(t)
		held := mustTry(t, a, name, nil)
		got := make(chan error, 1)
		go func() {
			lk, err := b.Acquire(ctxT(t, 50*time.Second), name)
			if err == nil {
				err = lk.Release(context.Background())
			}
			got <- err
		}()
		time.Sleep(200 * time.Millisecond)
		released := time.Now()
		if err := held.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("waiter acquired %v after the release", time.Since(released).Round(time.Microsecond))
		case <-time.After(20 * time.Second):
			t.Fatal("waiter not woken within 20s of the release (the lease had 1m left)")
		}
	})
}
