package election_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/election"
	"github.com/lockkit/lockkit/filelock"
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/memlock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestMemlock(t *testing.T) {
	// One Locker is one lock space: every candidate shares it.
	l := memlock.New()
	locktest.RunElection(t, locktest.ElectionConfig{
		Config: locktest.Config{
			NewLocker: func(*testing.T) lockkit.Locker { return l },
			KillHolder: func(t *testing.T, lk lockkit.Lock) {
				if !l.Lose(lk.Name(), errors.New("killed by the suite")) {
					t.Errorf("Lose(%q) found no holder", lk.Name())
				}
			},
			LossBound: time.Second,
			Leftovers: func(t *testing.T, names []string) int {
				n := 0
				for _, name := range names {
					if l.Held(name) {
						n++
					}
				}
				return n
			},
		},
		// A waiting candidate blocks in memlock's Acquire, with
		// nothing polling: a missed wake-up waits for the suite's
		// 1-minute context, far past this bound.
		FailoverBound: time.Second,
		PollInterval:  5 * time.Millisecond,
		Pushed:        true, // memlock is a lockkit.Watcher
		// The observer polls every 10 s (pushedPoll), so a change seen
		// within 1 s was pushed. Each window also holds the
		// campaign or resignation that made the change.
		PushBound: time.Second,
	})
	if infos, err := l.List(context.Background()); err != nil || len(infos) != 0 {
		t.Errorf("held after the suite: %+v, %v", infos, err)
	}
}

// plain hides every optional interface of a Locker, and with noTokens its
// locks' tokens too.
type plain struct {
	l        lockkit.Locker
	noTokens bool
}

func (p plain) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := p.l.Acquire(ctx, name)
	if err != nil || !p.noTokens {
		return lk, err
	}
	return tokenless{lk}, nil
}

func (p plain) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := p.l.TryAcquire(ctx, name)
	if err != nil || !p.noTokens {
		return lk, err
	}
	return tokenless{lk}, nil
}

type tokenless struct{ lockkit.Lock }

func (tokenless) Token() int64 { return 0 }

func TestNoTerms(t *testing.T) {
	m := memlock.New()
	e, err := election.New(plain{m, true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second is refused without taking the lock
		l, err := e.Campaign(ctxT(t, 5*time.Second), "scheduler", "")
		if l != nil || !errors.Is(err, lockkit.ErrUnsupported) || !strings.Contains(err.Error(), "Fencing") {
			t.Fatalf("Campaign %d on a Locker without tokens = %v, %v; want ErrUnsupported naming the fix", i, l, err)
		}
		if m.Held("scheduler") {
			t.Fatal("the refused Campaign left its lock held")
		}
	}
	err = election.Lead(ctxT(t, 5*time.Second), e, "scheduler", "", func(context.Context, int64) error {
		t.Error("Lead ran fn without a term")
		return nil
	})
	if !errors.Is(err, lockkit.ErrUnsupported) {
		t.Errorf("Lead on a Locker without tokens = %v, want ErrUnsupported at once", err)
	}
}

// TestFileLockNoTerms: a backend without tokens, refused with a message
// that names the fix.
func TestFileLockNoTerms(t *testing.T) {
	fl, err := filelock.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	e, err := election.New(fl, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Campaign(ctxT(t, 5*time.Second), "scheduler", "")
	if !errors.Is(err, lockkit.ErrUnsupported) || !strings.Contains(err.Error(), "*filelock.Locker") {
		t.Fatalf("Campaign on filelock = %v, want ErrUnsupported naming the Locker", err)
	}
	t.Log(err)
	lk, err := fl.TryAcquire(ctxT(t, 5*time.Second), "scheduler")
	if err != nil {
		t.Fatalf("the refused Campaign left the lock held: %v", err)
	}
	_ = lk.Release(context.Background())
}

func TestWithoutListerOrData(t *testing.T) {
	m := memlock.New()
	e, err := election.New(plain{l: m}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 5*time.Second)
	if _, err := e.Campaign(ctx, "scheduler", "10.0.0.1:8080"); !errors.Is(err, lockkit.ErrUnsupported) || !strings.Contains(err.Error(), "Config") {
		t.Errorf("Campaign with a value on a Locker without per-acquire data = %v, want ErrUnsupported naming the fix", err)
	}
	if m.Held("scheduler") {
		t.Error("the refused Campaign took the lock")
	}
	l, err := e.Campaign(ctx, "scheduler", "")
	if err != nil {
		t.Fatalf("Campaign without a value = %v; it needs neither a Lister nor a DataLocker", err)
	}
	defer l.Resign(ctx)
	if _, err := e.Leader(ctx, "scheduler"); !errors.Is(err, lockkit.ErrUnsupported) || !strings.Contains(err.Error(), "Lister") {
		t.Errorf("Leader without a Lister = %v, want ErrUnsupported", err)
	}
	n := 0
	for _, err := range e.Observe(ctx, "scheduler") {
		n++
		if !errors.Is(err, lockkit.ErrUnsupported) {
			t.Errorf("Observe without a Lister yielded %v, want ErrUnsupported", err)
		}
	}
	if n != 1 {
		t.Errorf("Observe without a Lister yielded %d times, want once", n)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []*election.Config{
		{PollInterval: -1},
		{MinBackoff: -1},
		{MinBackoff: time.Second, MaxBackoff: time.Millisecond},
	} {
		if _, err := election.New(memlock.New(), c); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", c, err)
		}
	}
	if _, err := election.New(nil, nil); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("New(nil) = %v, want ErrInvalid", err)
	}
}

// TestLeaderNotAnElection: a name held by a plain lock without a token is
// not an election's.
func TestLeaderNotAnElection(t *testing.T) {
	e, err := election.New(fakeLister{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Leader(ctxT(t, time.Second), "x"); !errors.Is(err, lockkit.ErrUnsupported) {
		t.Errorf("Leader of a lock without a token = %v, want ErrUnsupported", err)
	}
}

type fakeLister struct{ lockkit.Locker }

func (fakeLister) List(_ context.Context, names ...string) ([]lockkit.LockInfo, error) {
	return []lockkit.LockInfo{{Name: names[0], Held: true, Holder: lockkit.Holder{Owner: "someone"}}}, nil
}

func TestLeadRetriesFailedCampaigns(t *testing.T) {
	boom := errors.New("database down")
	var calls int
	f := &flaky{Locker: memlock.New(), fail: func() error {
		calls++
		if calls <= 3 {
			return boom
		}
		return nil
	}}
	var reported []error
	e, err := election.New(f, &election.Config{
		MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
		OnError: func(name string, term int64, err error) {
			if name != "x" || term != 0 {
				t.Errorf("OnError(%q, %d, %v)", name, term, err)
			}
			reported = append(reported, err)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = election.Lead(ctx, e, "x", "", func(ctx context.Context, term int64) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Lead = %v, want context.Canceled", err)
	}
	if len(reported) != 3 || !errors.Is(reported[0], boom) {
		t.Errorf("OnError got %v, want the 3 failed campaigns", reported)
	}
}

type flaky struct {
	lockkit.Locker
	fail  func() error
	after func() // called after a successful acquire
}

func (f *flaky) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	lk, err := f.Locker.Acquire(ctx, name)
	if err == nil && f.after != nil {
		f.after()
	}
	return lk, err
}

// TestLeadWonAsCtxEnded: a campaign that wins just as ctx ends leaves
// nothing held.
func TestLeadWonAsCtxEnded(t *testing.T) {
	m := memlock.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := election.New(&flaky{Locker: m, fail: func() error { return nil }, after: cancel}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = election.Lead(ctx, e, "x", "", func(context.Context, int64) error {
		t.Error("fn ran after ctx ended")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Lead = %v, want context.Canceled", err)
	}
	if m.Held("x") {
		t.Error("the leadership won as ctx ended is still held")
	}
}

// brokenPush is a memlock whose pushes break: each subscription's channel
// is closed after its first wake-up, the way a dropped LISTEN connection
// or pub/sub connection ends a subscription.
type brokenPush struct {
	*memlock.Locker
	mu   sync.Mutex
	subs int
}

func (b *brokenPush) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	b.mu.Lock()
	b.subs++
	b.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	in, err := b.Locker.Changes(ctx, names...)
	if err != nil {
		cancel()
		return nil, err
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		defer cancel()
		if _, ok := <-in; ok {
			out <- struct{}{}
		}
		cancel()
		for range in {
		}
	}()
	return out, nil
}

// TestObserveResubscribes: an observer whose push breaks after every
// change subscribes again and still sees each change at once, well within
// its 10 s poll.
func TestObserveResubscribes(t *testing.T) {
	b := &brokenPush{Locker: memlock.New()}
	e, err := election.New(b, &election.Config{PollInterval: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := make(chan election.Leader, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ld, err := range e.Observe(ctx, "s") {
			if err != nil {
				t.Error(err)
				return
			}
			seen <- ld
		}
	}()
	next := func(want int64) {
		t.Helper()
		select {
		case ld := <-seen:
			if ld.Term != want {
				t.Fatalf("Observe yielded term %d, want %d", ld.Term, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("no change within 2s, waiting for term %d", want)
		}
	}
	next(0)
	for range 3 {
		l, err := e.Campaign(ctx, "s", "v")
		if err != nil {
			t.Fatal(err)
		}
		next(l.Term())
		if err := l.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		next(0)
	}
	cancel()
	<-done
	b.mu.Lock()
	defer b.mu.Unlock()
	// Changes in quick succession share a wake-up, so there are fewer
	// subscriptions than changes; without any after the first, the
	// changes after the first break would have waited for the poll.
	if b.subs < 2 {
		t.Errorf("%d subscriptions, want the observer to subscribe again", b.subs)
	}
}
