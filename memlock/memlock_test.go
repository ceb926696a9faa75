package memlock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/memlock"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond, which reads state no channel announces (how many
// calls wait in a queue), for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// waitQueued waits until n Lock calls wait for name.
func waitQueued(t *testing.T, l *memlock.Locker, name string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d waiters on %q", n, name), func() bool { return l.Waiters(name) == n })
}

func mustTry(t *testing.T, l *memlock.Locker, name string) *memlock.Lock {
	t.Helper()
	lk, err := l.TryLock(ctxT(t, 5*time.Second), name)
	if err != nil {
		t.Fatalf("TryLock(%q) = %v", name, err)
	}
	return lk
}

// acquireAsync starts a Lock call and returns where its result arrives.
func acquireAsync(ctx context.Context, l *memlock.Locker, name string) (<-chan *memlock.Lock, <-chan error) {
	got, errc := make(chan *memlock.Lock, 1), make(chan error, 1)
	go func() {
		lk, err := l.Lock(ctx, name)
		if err != nil {
			errc <- err
			return
		}
		got <- lk
	}()
	return got, errc
}

func TestConformance(t *testing.T) {
	// The suite's two Lockers stand for two processes: they must share
	// a lock space, so both are the one Locker.
	l := memlock.New()
	locktest.Run(t, locktest.Config{
		NewLocker: func(*testing.T) lockkit.Locker { return l },
		KillHolder: func(t *testing.T, lk lockkit.Lock) {
			if !l.Lose(lk.Name(), errors.New("killed by the suite")) {
				t.Errorf("Lose(%q) found no holder", lk.Name())
			}
		},
		LossBound: time.Second,
		Tokens:    true,
		Leftovers: func(t *testing.T, names []string) int {
			n := 0
			for _, name := range names {
				if l.Held(name) {
					n++
				}
			}
			return n
		},
	})
	if n := l.Entries(); n != 0 {
		t.Errorf("the Locker keeps state for %d names after the suite, want 0", n)
	}
}

func TestLoseWakesWaiter(t *testing.T) {
	l := memlock.New()
	ctx := ctxT(t, 10*time.Second)
	a := mustTry(t, l, "job")
	got, errc := acquireAsync(ctx, l, "job")
	waitQueued(t, l, "job", 1)

	cause := errors.New("lease taken over")
	if !l.Lose("job", cause) {
		t.Fatal("Lose = false with a holder")
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("the lost holder's Done is open after Lose returned")
	}
	err := a.Err()
	var lost *lockkit.LostError
	if !errors.As(err, &lost) || !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, cause) {
		t.Fatalf("Err() after Lose = %v, want a *lockkit.LostError matching ErrLost and the cause", err)
	}
	if lost.Name != "job" {
		t.Errorf("LostError.Name = %q, want job", lost.Name)
	}

	var b *memlock.Lock
	select {
	case b = <-got:
	case err := <-errc:
		t.Fatalf("waiter: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the lock after Lose")
	}
	if b.Token() <= a.Token() {
		t.Errorf("the next holder's token %d is not above the lost one's %d", b.Token(), a.Token())
	}

	// The lost holder's Release reports the loss and leaves b alone.
	if err := a.Release(ctx); !errors.Is(err, cause) || !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release of the lost lock = %v, want the loss error", err)
	}
	if err := a.Release(ctx); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("second Release of the lost lock = %v, want the loss error", err)
	}
	if b.Err() != nil || !l.Held("job") {
		t.Fatalf("the new holder was disturbed by the lost one's Release: Err = %v, Held = %v", b.Err(), l.Held("job"))
	}
	if _, err := l.TryLock(ctx, "job"); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("TryLock while the new holder holds = %v, want ErrNotAcquired", err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if l.Held("job") {
		t.Error("Held after the last holder released")
	}
}

func TestLoseWithoutWaiterFreesName(t *testing.T) {
	l := memlock.New()
	ctx := ctxT(t, 5*time.Second)
	if l.Lose("job", nil) {
		t.Error("Lose of a free name = true")
	}
	a := mustTry(t, l, "job")
	if !l.Lose("job", nil) {
		t.Fatal("Lose = false with a holder")
	}
	if l.Held("job") {
		t.Error("Held after Lose with no waiter")
	}
	if err := a.Err(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Err() after Lose(nil cause) = %v, want ErrLost", err)
	}
	if l.Lose("job", nil) {
		t.Error("a second Lose found a holder")
	}
	b := mustTry(t, l, "job")
	if err := a.Release(ctx); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release of the lost lock = %v, want ErrLost", err)
	}
	if !l.Held("job") {
		t.Fatal("the lost lock's Release freed the next holder's name")
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := l.Entries(); n != 0 {
		t.Errorf("state kept for %d names, want 0", n)
	}
}

func TestLoseUnderDo(t *testing.T) {
	l := memlock.New()
	cause := errors.New("session killed")
	started := make(chan struct{})
	go func() {
		<-started
		l.Lose("job", cause)
	}()
	err := lockkit.Do(ctxT(t, 5*time.Second), l, "job", func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		if c := context.Cause(ctx); !errors.Is(c, lockkit.ErrLost) || !errors.Is(c, cause) {
			t.Errorf("context.Cause(fn's ctx) = %v, want the loss error", c)
		}
		return ctx.Err()
	})
	if !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, cause) {
		t.Errorf("Do after Lose = %v, want an error matching ErrLost and the cause", err)
	}
	if l.Held("job") {
		t.Error("Held after Do returned")
	}
}

func TestFIFO(t *testing.T) {
	l := memlock.New()
	ctx := ctxT(t, 10*time.Second)
	holder := mustTry(t, l, "q")
	const n = 8
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk, err := l.Lock(ctx, "q")
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if err := lk.Release(ctx); err != nil {
				t.Errorf("waiter %d: Release: %v", i, err)
			}
		}()
		waitQueued(t, l, "q", i+1) // queue them in a known order
	}
	// A newcomer does not pass the queue.
	if _, err := l.TryLock(ctx, "q"); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("TryLock with a queue = %v, want ErrNotAcquired", err)
	}
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	want := []int{0, 1, 2, 3, 4, 5, 6, 7}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("waiters acquired in order %v, want %v", order, want)
	}
	if n := l.Entries(); n != 0 {
		t.Errorf("state kept for %d names, want 0", n)
	}
}

func TestReleaseHandsOverToHeadOnly(t *testing.T) {
	l := memlock.New()
	ctx := ctxT(t, 10*time.Second)
	holder := mustTry(t, l, "q")
	got1, errc1 := acquireAsync(ctx, l, "q")
	waitQueued(t, l, "q", 1)
	got2, errc2 := acquireAsync(ctx, l, "q")
	waitQueued(t, l, "q", 2)
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var first *memlock.Lock
	select {
	case first = <-got1:
	case err := <-errc1:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("the head waiter did not get the lock")
	}
	if first.Token() <= holder.Token() {
		t.Errorf("token %d not above the previous %d", first.Token(), holder.Token())
	}
	select {
	case lk := <-got2:
		t.Fatalf("the second waiter got lock %d while the first holds it", lk.Token())
	case err := <-errc2:
		t.Fatal(err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case lk := <-got2:
		_ = lk.Release(ctx)
	case err := <-errc2:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("the second waiter did not get the lock")
	}
}

func TestCancelledWaiterLeavesQueue(t *testing.T) {
	l := memlock.New()
	ctx := ctxT(t, 10*time.Second)
	holder := mustTry(t, l, "q")

	cctx, cancel := context.WithCancel(ctx)
	_, errc1 := acquireAsync(cctx, l, "q")
	waitQueued(t, l, "q", 1)
	got2, errc2 := acquireAsync(ctx, l, "q")
	waitQueued(t, l, "q", 2)
	cancel()

	var err error
	select {
	case err = <-errc1:
	case <-time.After(5 * time.Second):
		t.Fatal("the cancelled waiter did not return")
	}
	var he *lockkit.HeldError
	if !errors.As(err, &he) || !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Lock = %v, want a *lockkit.HeldError matching ErrNotAcquired and context.Canceled", err)
	}
	if he.Name != "q" || he.Holder == nil || he.Holder.Owner != "memlock" || he.Holder.Token != holder.Token() || he.Holder.Since.IsZero() {
		t.Errorf("HeldError = %+v (holder %+v), want name q and the holder's owner, token and time", he, he.Holder)
	}
	if n := l.Waiters("q"); n != 1 {
		t.Errorf("%d waiters after one was cancelled, want 1", n)
	}
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case lk := <-got2:
		_ = lk.Release(ctx)
	case err := <-errc2:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("the remaining waiter did not get the lock")
	}
	if n := l.Entries(); n != 0 {
		t.Errorf("state kept for %d names, want 0", n)
	}
}

func TestWaitTimeout(t *testing.T) {
	l := memlock.New()
	holder := mustTry(t, l, "q")
	defer holder.Release(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := l.Lock(ctx, "q")
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timed-out Lock = %v, want ErrNotAcquired and DeadlineExceeded", err)
	}
	if n := l.Waiters("q"); n != 0 {
		t.Errorf("%d waiters left after the timeout", n)
	}
}

func TestEndedContext(t *testing.T) {
	l := memlock.New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for what, fn := range map[string]func(context.Context, string) (*memlock.Lock, error){
		"Lock": l.Lock, "TryLock": l.TryLock,
	} {
		// A free name is not taken with an ended context.
		_, err := fn(ctx, "free")
		var he *lockkit.HeldError
		if !errors.As(err, &he) || !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s(free) with an ended ctx = %v, want a *lockkit.HeldError matching ErrNotAcquired and Canceled", what, err)
		} else if he.Holder != nil {
			t.Errorf("%s(free) with an ended ctx names holder %+v", what, he.Holder)
		}
		if l.Held("free") {
			t.Errorf("%s with an ended ctx left the name held", what)
		}
	}
	holder := mustTry(t, l, "held")
	_, err := l.Lock(ctx, "held")
	var he *lockkit.HeldError
	if !errors.As(err, &he) || !errors.Is(err, context.Canceled) || he.Holder == nil || he.Holder.Token != holder.Token() {
		t.Errorf("Lock(held) with an ended ctx = %v, want a *lockkit.HeldError naming the holder", err)
	}
	if n := l.Waiters("held"); n != 0 {
		t.Errorf("Lock with an ended ctx queued: %d waiters", n)
	}
	_ = holder.Release(context.Background())
}

func TestTryLockHeldError(t *testing.T) {
	l := memlock.New()
	ctx := ctxT(t, 5*time.Second)
	before := time.Now()
	a := mustTry(t, l, "report")
	defer a.Release(ctx)
	_, err := l.TryLock(ctx, "report")
	var he *lockkit.HeldError
	if !errors.As(err, &he) {
		t.Fatalf("TryLock while held = %v, want a *lockkit.HeldError", err)
	}
	if he.Name != "report" || he.Cause != nil || he.Holder == nil {
		t.Fatalf("HeldError = %+v", he)
	}
	h := he.Holder
	if h.Owner != "memlock" || h.Token != a.Token() || h.Since.Before(before) || h.Since.After(time.Now()) {
		t.Errorf("Holder = %+v, want owner memlock, token %d and the time it was taken", *h, a.Token())
	}
	if !strings.Contains(err.Error(), "memlock") {
		t.Errorf("error %q does not name the holder", err)
	}
	// The error is a copy: changing it does not change the Locker.
	h.Owner = "mallory"
	infos, _ := l.List(ctx, "report")
	if infos[0].Holder.Owner != "memlock" {
		t.Errorf("a HeldError's Holder aliases the Locker's state")
	}
}

func TestSameGoroutineNotReentrant(t *testing.T) {
	l := memlock.New()
	a := mustTry(t, l, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("re-entrant Lock = %v, want it to wait until its deadline", err)
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSeparateLockersAreSeparate(t *testing.T) {
	a, b := memlock.New(), memlock.New()
	la := mustTry(t, a, "x")
	lb := mustTry(t, b, "x")
	_ = la.Release(context.Background())
	_ = lb.Release(context.Background())
}

func TestTokensIncrease(t *testing.T) {
	l := memlock.New()
	ctx := ctxT(t, 5*time.Second)
	var last int64
	for i := range 10 {
		lk := mustTry(t, l, "t")
		if lk.Token() <= last {
			t.Fatalf("holder %d: token %d not above %d", i, lk.Token(), last)
		}
		last = lk.Token()
		if i%2 == 0 {
			l.Lose("t", nil)
		}
		_ = lk.Release(ctx)
	}
}

func TestList(t *testing.T) {
	l := memlock.New()
	ctx := ctxT(t, 5*time.Second)
	if infos, err := l.List(ctx); err != nil || len(infos) != 0 {
		t.Fatalf("List on an empty Locker = %v, %v", infos, err)
	}
	c := mustTry(t, l, "c")
	a := mustTry(t, l, "a")
	b := mustTry(t, l, "b")
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}

	infos, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Name != "a" || infos[1].Name != "c" {
		t.Fatalf("List() = %+v, want a and c in order", infos)
	}
	for i, lk := range []*memlock.Lock{a, c} {
		in := infos[i]
		if !in.Held || in.Mode != lockkit.Exclusive || in.Key != "" || in.Tool != "" ||
			in.Holder.Owner != "memlock" || in.Holder.Token != lk.Token() || in.Holder.Since.IsZero() {
			t.Errorf("List()[%d] = %+v", i, in)
		}
	}

	infos, err = l.List(ctx, "c", "b", "a", "c")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range infos {
		got = append(got, fmt.Sprintf("%s:%v:%d", in.Name, in.Held, in.Holder.Token))
	}
	want := []string{
		fmt.Sprintf("c:true:%d", c.Token()), "b:false:0",
		fmt.Sprintf("a:true:%d", a.Token()), fmt.Sprintf("c:true:%d", c.Token()),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List(c, b, a, c) = %v, want %v", got, want)
	}

	if _, err := l.List(ctx, "a", ""); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("List with an empty name = %v, want ErrInvalid", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.List(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("List with an ended ctx = %v, want context.Canceled", err)
	}

	l.Lose("a", nil)
	_ = a.Release(ctx)
	_ = c.Release(ctx)
	if infos, err := l.List(ctx); err != nil || len(infos) != 0 {
		t.Errorf("List after every release = %+v, %v", infos, err)
	}
}

func TestInvalidNames(t *testing.T) {
	l := memlock.New()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	bad := []string{"", "bad\xffutf8", "nul\x00byte", strings.Repeat("x", 1025)}
	for _, name := range bad {
		for what, fn := range map[string]func(context.Context, string) (lockkit.Lock, error){
			"Acquire": l.Acquire, "TryAcquire": l.TryAcquire,
		} {
			// Bad input is refused before the context is looked at.
			lk, err := fn(cancelled, name)
			if lk != nil || !errors.Is(err, lockkit.ErrInvalid) || errors.Is(err, lockkit.ErrNotAcquired) {
				t.Errorf("%s(%q) = %v, %v; want ErrInvalid only", what, name, lk, err)
			}
		}
		if _, err := l.Lock(context.Background(), name); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("Lock(%q) = %v, want ErrInvalid", name, err)
		}
		if _, err := l.TryLock(context.Background(), name); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("TryLock(%q) = %v, want ErrInvalid", name, err)
		}
	}
	long := strings.Repeat("x", 1024)
	lk := mustTry(t, l, long)
	_ = lk.Release(context.Background())
	if n := l.Entries(); n != 0 {
		t.Errorf("state kept for %d names, want 0", n)
	}
}

// TestNilInterfaces checks that failures return a nil lockkit.Lock, not a
// typed nil that compares non-nil.
func TestNilInterfaces(t *testing.T) {
	l := memlock.New()
	a := mustTry(t, l, "x")
	defer a.Release(context.Background())
	if lk, err := l.TryAcquire(context.Background(), "x"); lk != nil || err == nil {
		t.Errorf("TryAcquire while held = %v, %v; want a nil Lock and an error", lk, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if lk, err := l.Acquire(ctx, "x"); lk != nil || err == nil {
		t.Errorf("timed-out Acquire = %v, %v; want a nil Lock and an error", lk, err)
	}
}

// TestChurn races acquires, tries, cancellations, releases and losses on a
// few names, for the race detector, and checks that whoever enters a name's
// critical section finds no other holder there whose lock is not lost, and
// that nothing is left afterwards.
func TestChurn(t *testing.T) {
	l := memlock.New()
	names := []string{"a", "b", "c"}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		inside = map[string]map[*memlock.Lock]bool{}
	)
	for _, name := range names {
		inside[name] = map[*memlock.Lock]bool{}
	}
	ctx := ctxT(t, 30*time.Second)
	stop := make(chan struct{})
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 300 {
				name := names[r.IntN(len(names))]
				var (
					lk  *memlock.Lock
					err error
				)
				switch r.IntN(3) {
				case 0:
					lk, err = l.TryLock(ctx, name)
				case 1:
					lk, err = l.Lock(ctx, name)
				default:
					wctx, cancel := context.WithTimeout(ctx, time.Duration(r.IntN(200))*time.Microsecond)
					lk, err = l.Lock(wctx, name)
					cancel()
				}
				if err != nil {
					if !errors.Is(err, lockkit.ErrNotAcquired) {
						t.Errorf("acquire: %v", err)
					}
					continue
				}
				mu.Lock()
				for other := range inside[name] {
					// A lost holder may still run, and so may we
					// once lost; two holders not lost may not.
					if lk.Err() == nil && other.Err() == nil {
						t.Errorf("lock %d of %q acquired while lock %d holds it", lk.Token(), name, other.Token())
					}
				}
				inside[name][lk] = true
				mu.Unlock()
				time.Sleep(time.Duration(r.IntN(50)) * time.Microsecond)
				mu.Lock()
				delete(inside[name], lk)
				mu.Unlock()
				err = lk.Release(ctx)
				if err != nil && !errors.Is(err, lockkit.ErrLost) {
					t.Errorf("Release: %v", err)
				}
			}
		}()
	}
	var loser sync.WaitGroup
	loser.Add(1)
	go func() {
		defer loser.Done()
		r := rand.New(rand.NewPCG(99, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
				l.Lose(names[r.IntN(len(names))], errors.New("chaos"))
			}
		}
	}()
	wg.Wait()
	close(stop)
	loser.Wait()
	if n := l.Entries(); n != 0 {
		t.Errorf("state kept for %d names after the churn, want 0", n)
	}
}
