package semaphore_test

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
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/memlock"
	"github.com/lockkit/lockkit/semaphore"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func memlockHeld(l *memlock.Locker) func(t *testing.T, names []string) int {
	return func(t *testing.T, names []string) int {
		n := 0
		for _, name := range names {
			if l.Held(name) {
				n++
			}
		}
		return n
	}
}

func TestMemlock(t *testing.T) {
	// One Locker is one lock space: every process shares it.
	l := memlock.New()
	locktest.RunSemaphore(t, locktest.SemaphoreConfig{
		Config: locktest.Config{
			NewLocker: func(*testing.T) lockkit.Locker { return l },
			KillHolder: func(t *testing.T, lk lockkit.Lock) {
				if !l.Lose(lk.Name(), errors.New("killed by the suite")) {
					t.Errorf("Lose(%q) found no holder", lk.Name())
				}
			},
			LossBound: time.Second,
			Tokens:    true,
			Leftovers: memlockHeld(l),
		},
		FailoverBound: 200 * time.Millisecond,
	})
	if infos, err := l.List(context.Background()); err != nil || len(infos) != 0 {
		t.Errorf("held after the suite: %+v, %v", infos, err)
	}
}

// plain hides every optional interface of a Locker.
type plain struct{ l lockkit.Locker }

func (p plain) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return p.l.Acquire(ctx, name)
}

func (p plain) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return p.l.TryAcquire(ctx, name)
}

// TestPlainLocker: the suite on a Locker that neither lists nor records
// data, as a user's own backend might be.
func TestPlainLocker(t *testing.T) {
	l := memlock.New()
	locktest.RunSemaphore(t, locktest.SemaphoreConfig{
		Config: locktest.Config{
			NewLocker: func(*testing.T) lockkit.Locker { return plain{l} },
			KillHolder: func(t *testing.T, lk lockkit.Lock) {
				if !l.Lose(lk.Name(), errors.New("killed by the suite")) {
					t.Errorf("Lose(%q) found no holder", lk.Name())
				}
			},
			LossBound: time.Second,
			Tokens:    true,
			Leftovers: memlockHeld(l),
		},
		Waits: []semaphore.Wait{semaphore.WaitOne},
	})
}

func TestNewConfig(t *testing.T) {
	l := memlock.New()
	for _, c := range []*semaphore.Config{
		{Wait: 7},
		{MinBackoff: -time.Second},
		{MaxBackoff: -time.Second},
		{MinBackoff: time.Second, MaxBackoff: time.Millisecond},
	} {
		if _, err := semaphore.New(l, c); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", c, err)
		}
	}
	if _, err := semaphore.New(nil, nil); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("New(nil) = %v, want ErrInvalid", err)
	}
	if _, err := semaphore.New(l, &semaphore.Config{MinBackoff: 5 * time.Second}); err != nil {
		t.Errorf("New with MinBackoff above the default MaxBackoff = %v; MaxBackoff follows it", err)
	}
}

func TestSlotNames(t *testing.T) {
	for _, c := range []struct {
		lock string
		name string
		slot int
		ok   bool
	}{
		{"payments#0", "payments", 0, true},
		{"payments#12", "payments", 12, true},
		{"a#b#3", "a#b", 3, true},
		{"payments", "", 0, false},
		{"payments#", "", 0, false},
		{"#3", "", 0, false},
		{"payments#03", "", 0, false},
		{"payments#-1", "", 0, false},
		{"payments#+1", "", 0, false},
		{"payments#1000", "", 0, false},
		{"payments#x", "", 0, false},
	} {
		name, slot, ok := semaphore.ParseSlotName(c.lock)
		if name != c.name || slot != c.slot || ok != c.ok {
			t.Errorf("ParseSlotName(%q) = %q, %d, %v; want %q, %d, %v", c.lock, name, slot, ok, c.name, c.slot, c.ok)
		}
		if ok && semaphore.SlotName(name, slot) != c.lock {
			t.Errorf("SlotName(%q, %d) = %q, want %q", name, slot, semaphore.SlotName(name, slot), c.lock)
		}
	}
	for _, c := range []struct {
		data string
		n    int
		ok   bool
	}{
		{"n=3", 3, true},
		{"n=3 alice (lockkit)", 3, true},
		{"n=0", 0, false},
		{"n=03", 0, false},
		{"n=", 0, false},
		{"n=3x", 0, false},
		{"alice", 0, false},
		{"", 0, false},
	} {
		n, ok := semaphore.PermitsOf(c.data)
		if n != c.n || ok != c.ok {
			t.Errorf("PermitsOf(%q) = %d, %v; want %d, %v", c.data, n, ok, c.n, c.ok)
		}
	}
}

// TestDataLabel: Config.Data follows "n=N" in the holder data, and
// listings show it.
func TestDataLabel(t *testing.T) {
	l := memlock.New()
	s, err := semaphore.New(l, &semaphore.Config{Data: "job 42"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 5*time.Second)
	p, err := s.TryAcquire(ctx, "payments", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(ctx)
	st, err := s.Status(ctx, "payments", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Holders) != 1 || st.Holders[0].Holder.Data != "n=3 job 42" || st.Holders[0].Permits != 3 || st.Free != 2 {
		t.Errorf("Status = %+v, want one holder with data %q", st, "n=3 job 42")
	}
}

// TestWaitAllFIFO: on a backend that serves a lock's waiters in order
// (memlock), WaitAll serves a semaphore's waiters in the order they came.
func TestWaitAllFIFO(t *testing.T) {
	l := memlock.New()
	c := &counting{l: l}
	s, err := semaphore.New(c, &semaphore.Config{Wait: semaphore.WaitAll})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	const n, waiters = 3, 6
	held := make([]*semaphore.Permit, n)
	for i := range n {
		p, err := s.TryAcquire(ctx, "q", n)
		if err != nil {
			t.Fatal(err)
		}
		held[i] = p
	}
	order := make(chan int, waiters)
	got := make(chan *semaphore.Permit, waiters)
	for w := range waiters {
		go func() {
			p, err := s.Acquire(ctx, "q", n)
			if err != nil {
				t.Error(err)
				return
			}
			order <- w
			got <- p
		}()
		// Each waiter is queued on every slot before the next starts.
		waitFor(t, fmt.Sprintf("waiter %d queued", w), func() bool { return c.waiting.Load() == int32((w+1)*n) })
		time.Sleep(5 * time.Millisecond) // from the count to the queue

	}
	// Release one permit at a time; each goes to the longest waiter,
	// which then holds it while the next is released.
	for i := range waiters {
		var p *semaphore.Permit
		if i < n {
			p = held[i]
		} else {
			p = <-got
		}
		if err := p.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if w := <-order; w != i {
			t.Errorf("release %d went to waiter %d, want %d", i, w, i)
		}
	}
	for range n {
		p := <-got
		if err := p.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if infos, _ := l.List(ctx); len(infos) != 0 {
		t.Errorf("still held: %+v", infos)
	}
}

// counting is a Locker that counts its Acquire calls under way.
type counting struct {
	l       lockkit.Locker
	waiting atomic.Int32
}

func (c *counting) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	return c.l.Acquire(ctx, name)
}

func (c *counting) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return c.l.TryAcquire(ctx, name)
}

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

// TestWaitAllNoLeakedGrant releases every permit at once, many times, so
// that waiters get several grants at once: each extra grant must be
// handed on, never kept.
func TestWaitAllNoLeakedGrant(t *testing.T) {
	l := memlock.New()
	s, err := semaphore.New(l, &semaphore.Config{Wait: semaphore.WaitAll})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, time.Minute)
	const n, workers, rounds = 4, 12, 40
	var (
		mu      sync.Mutex
		inside  int
		maxSeen int
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				p, err := s.Acquire(ctx, "burst", n)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				maxSeen = max(maxSeen, inside)
				if inside > n {
					t.Errorf("%d holders of %d permits", inside, n)
				}
				mu.Unlock()
				time.Sleep(50 * time.Microsecond)
				mu.Lock()
				inside--
				mu.Unlock()
				if err := p.Release(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if infos, _ := l.List(ctx); len(infos) != 0 {
		t.Errorf("still held after every permit was released, a grant leaked: %+v", infos)
	}
	t.Logf("at most %d of %d permits held at once", maxSeen, n)
}

// TestMismatchUndetectedWithoutData: on a Locker without holder data the
// disagreement goes unseen, as the documentation says.
func TestMismatchUndetectedWithoutData(t *testing.T) {
	l := memlock.New()
	s, err := semaphore.New(plain{l}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 5*time.Second)
	a, err := s.TryAcquire(ctx, "x", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(ctx)
	b, err := s.TryAcquire(ctx, "x", 4)
	if err != nil {
		t.Fatalf("TryAcquire of 4 beside a holder of 2 on a Locker without data = %v; it cannot tell", err)
	}
	defer b.Release(ctx)
	if _, err := s.Status(ctx, "x", 2); !errors.Is(err, lockkit.ErrUnsupported) || !strings.Contains(err.Error(), "Lister") {
		t.Errorf("Status without a Lister = %v, want ErrUnsupported", err)
	}
}

// TestStatusOf: a listing with other names, shared entries and slots
// beyond N.
func TestStatusOf(t *testing.T) {
	infos := []lockkit.LockInfo{
		{Name: "p#2", Held: true, Holder: lockkit.Holder{Data: "n=3"}},
		{Name: "p#0", Held: true, Mode: lockkit.Shared},
		{Name: "p#0", Held: true, Mode: lockkit.Shared},
		{Name: "p#1"},
		{Name: "p#3", Held: true},
		{Name: "q#1", Held: true},
		{Name: "p", Held: true},
	}
	st := semaphore.StatusOf("p", 3, infos)
	if st.Free != 1 || len(st.Holders) != 3 || st.Holders[0].Slot != 0 || st.Holders[2].Slot != 2 || st.Holders[2].Permits != 3 {
		t.Errorf("StatusOf = %+v", st)
	}
}

// bySlot is a Locker that counts its Acquire calls under way per lock
// name, and its TryAcquire calls.
type bySlot struct {
	l     lockkit.Locker
	mu    sync.Mutex
	on    map[string]int
	tries atomic.Int32
}

func (c *bySlot) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	c.mu.Lock()
	c.on[name]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.on[name]--
		c.mu.Unlock()
	}()
	return c.l.Acquire(ctx, name)
}

func (c *bySlot) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	c.tries.Add(1)
	return c.l.TryAcquire(ctx, name)
}

// waiters returns the Acquire calls under way on each of the n slots of
// name.
func (c *bySlot) waiters(name string, n int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, n)
	for i := range out {
		out[i] = c.on[semaphore.SlotName(name, i)]
	}
	return out
}

func (c *bySlot) total(name string, n int) int {
	sum := 0
	for _, k := range c.waiters(name, n) {
		sum += k
	}
	return sum
}

// fillSem takes all n permits of name through s, by slot.
func fillSem(t *testing.T, ctx context.Context, s *semaphore.Semaphore, name string, n int) []*semaphore.Permit {
	t.Helper()
	held := make([]*semaphore.Permit, n)
	for range n {
		p, err := s.TryAcquire(ctx, name, n)
		if err != nil {
			t.Fatal(err)
		}
		held[p.Slot()] = p
	}
	return held
}

// TestWaitOneFillsTheEmptiestSlot: a WaitOne waiter waits on the slot with
// the fewest waiters of its Semaphore, so that after waiters leave some
// slots, newcomers go there rather than round-robin.
func TestWaitOneFillsTheEmptiestSlot(t *testing.T) {
	c := &bySlot{l: memlock.New(), on: map[string]int{}}
	s, err := semaphore.New(c, &semaphore.Config{Wait: semaphore.WaitOne, MinBackoff: time.Hour, MaxBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const name, n = "spread", 4
	held := fillSem(t, ctx, s, name, n)
	got := make(chan *semaphore.Permit, 2*n)
	start := func(k int) {
		go func() {
			p, err := s.Acquire(ctx, name, n)
			if err != nil {
				if ctx.Err() == nil {
					t.Error(err)
				}
				return
			}
			got <- p
		}()
		waitFor(t, fmt.Sprintf("%d waiters", k), func() bool { return c.total(name, n) == k })
	}
	for k := 1; k <= n; k++ {
		start(k)
	}
	if w := c.waiters(name, n); fmt.Sprint(w) != "[1 1 1 1]" {
		t.Fatalf("waiters per slot %v, want one on each", w)
	}
	// The waiters of slots 0 and 1 get their permits and leave.
	for _, slot := range []int{0, 1} {
		if err := held[slot].Release(ctx); err != nil {
			t.Fatal(err)
		}
		if p := <-got; p.Slot() != slot {
			t.Fatalf("the release of slot %d went to a waiter of slot %d", slot, p.Slot())
		} else {
			held[slot] = p
		}
	}
	start(n - 1)
	start(n)
	if w := c.waiters(name, n); fmt.Sprint(w) != "[1 1 1 1]" {
		t.Errorf("after two waiters left slots 0 and 1 and two came, waiters per slot %v, want one on each", w)
	}
	cancel()
	waitFor(t, "the waiters to end", func() bool { return c.total(name, n) == 0 })
	for _, p := range held {
		if err := p.Release(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

// TestWaitOneQueuesWhenCovered: while the Semaphore has a waiter on every
// slot, a new Acquire queues without a round of tries.
func TestWaitOneQueuesWhenCovered(t *testing.T) {
	c := &bySlot{l: memlock.New(), on: map[string]int{}}
	// WaitOne is the default; no retries while the test counts tries.
	s, err := semaphore.New(c, &semaphore.Config{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	const name, n = "covered", 2
	held := fillSem(t, ctx, s, name, n)
	var wg sync.WaitGroup
	for k := 1; k <= n+1; k++ {
		if k == n+1 {
			if tries := c.tries.Load(); tries == 0 {
				t.Fatal("no tries counted")
			}
		}
		before := c.tries.Load()
		wg.Go(func() {
			if _, err := s.Acquire(ctx, name, n); !errors.Is(err, context.Canceled) {
				t.Errorf("Acquire = %v, want the cancellation", err)
			}
		})
		waitFor(t, fmt.Sprintf("%d waiters", k), func() bool { return c.total(name, n) == k })
		switch tries := c.tries.Load() - before; {
		case k <= n && tries != int32(n):
			t.Errorf("waiter %d made %d tries, want a round of %d", k, tries, n)
		case k > n && tries != 0:
			t.Errorf("waiter %d, with a waiter on every slot, made %d tries, want none", k, tries)
		}
	}
	cancel()
	wg.Wait()
	for _, p := range held {
		if err := p.Release(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

// TestWaitOneNudge: a permit released on a slot that no waiter of the
// Semaphore waits on goes to a waiter of another slot at once, not at its
// next retry (an hour away here).
func TestWaitOneNudge(t *testing.T) {
	l := memlock.New()
	c := &bySlot{l: l, on: map[string]int{}}
	s, err := semaphore.New(c, &semaphore.Config{Wait: semaphore.WaitOne, MinBackoff: time.Hour, MaxBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	const name, n = "nudge", 2
	held := fillSem(t, ctx, s, name, n)
	type res struct {
		p   *semaphore.Permit
		err error
	}
	done := make(chan res, 1)
	go func() {
		p, err := s.Acquire(ctx, name, n)
		done <- res{p, err}
	}()
	waitFor(t, "the waiter", func() bool { return c.total(name, n) == 1 })
	other := 0
	if c.waiters(name, n)[0] == 1 {
		other = 1
	}
	if err := held[other].Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.p.Slot() != other {
			t.Errorf("the waiter got slot %d, want %d", r.p.Slot(), other)
		}
		if err := r.p.Release(ctx); err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the permit of slot %d, which nobody waited on, was not taken in 5 s", other)
	}
	if err := held[1-other].Release(ctx); err != nil {
		t.Error(err)
	}
	if infos, _ := l.List(ctx); len(infos) != 0 {
		t.Errorf("still held: %+v", infos)
	}
}
