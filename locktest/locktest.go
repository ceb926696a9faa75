// Package locktest is the conformance suite every lockkit backend passes, in
// the style of testing/fstest: one call to [Run] checks the whole
// [lockkit.Locker] and [lockkit.Lock] contract against a real backend.
//
// Users who write a backend of their own can run it too:
//
//	func TestConformance(t *testing.T) {
//		locktest.Run(t, locktest.Config{
//			NewLocker: func(t *testing.T) lockkit.Locker { return mybackend.New(...) },
//		})
//	}
//
// [RunElection] and [RunSemaphore] run the checks of packages election and
// semaphore on a backend, with the same Config inside theirs.
package locktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"go.uber.org/goleak"
)

// Config describes the backend under test.
type Config struct {
	// NewLocker returns a Locker on the backend under test. The suite
	// calls it more than once: two Lockers stand for two processes. It
	// registers its own cleanup with t. Required.
	NewLocker func(t *testing.T) lockkit.Locker

	// KillHolder ends the session or lease behind a held lock from outside
	// the Locker, the way a real fault does (pg_terminate_backend, KILL,
	// deleting the Redis key). With it the suite checks that Done closes
	// within LossBound and Err wraps ErrLost. Nil leaves that check out,
	// and the suite says so in the test log.
	KillHolder func(t *testing.T, l lockkit.Lock)

	// LossBound is the documented bound on how soon Done closes after
	// KillHolder. The default is 5s.
	LossBound time.Duration

	// Tokens says the backend issues fencing tokens; the suite then checks
	// they are non-zero and strictly increase across holders of a name.
	Tokens bool

	// Leftovers, if set, counts what is still held on the server for the
	// given names (locks, rows, keys). The suite checks it is 0 after
	// every lock it took was released.
	Leftovers func(t *testing.T, names []string) int

	// LeakOptions are passed to goleak, for goroutines a driver starts
	// lazily and keeps until its pool is closed.
	LeakOptions []goleak.Option
}

// Run runs every conformance check as a subtest of t.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	if cfg.NewLocker == nil {
		t.Fatal("locktest: Config.NewLocker is required")
	}
	if cfg.LossBound == 0 {
		cfg.LossBound = 5 * time.Second
	}
	s := &suite{cfg: cfg, prefix: "locktest." + randHex(6) + "."}

	checks := []check{
		{"TryWhileHeld", s.tryWhileHeld},
		{"TryAfterRelease", s.tryAfterRelease},
		{"NamesAreIndependent", s.namesAreIndependent},
		{"SameLockerExcludes", s.sameLockerExcludes},
		{"Exclusion", s.exclusion},
		{"ReleaseTwice", s.releaseTwice},
		{"DoneOnRelease", s.doneOnRelease},
		{"CancelWaiter", s.cancelWaiter},
		{"WaitTimeout", s.waitTimeout},
		{"WaiterAcquiresAfterRelease", s.waiterAcquires},
		{"CancelledContext", s.cancelledContext},
		{"EmptyName", s.emptyName},
		{"Do", s.do},
		{"DoPanics", s.doPanics},
		{"Tokens", s.tokens},
		{"LossDetection", s.lossDetection},
	}
	s.runChecks(t, checks, "every lock was released")
}

// check is one conformance check, run as a subtest.
type check struct {
	name string
	fn   func(t *testing.T)
}

// runChecks runs each check as a subtest that must leak no goroutine, then
// NoLeftovers: nothing still held on the server for the suite's names.
// what says what was given back before NoLeftovers runs.
func (s *suite) runChecks(t *testing.T, checks []check, what string) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			opts := append([]goleak.Option{goleak.IgnoreCurrent()}, s.cfg.LeakOptions...)
			// Registered first, so it runs last: after the cleanups of
			// the lockers and pools the check made.
			t.Cleanup(func() {
				if err := goleak.Find(opts...); err != nil {
					t.Errorf("goroutines leaked by this check: %v", err)
				}
			})
			c.fn(t)
		})
	}
	t.Run("NoLeftovers", func(t *testing.T) {
		if s.cfg.Leftovers == nil {
			t.Log("locktest: no Leftovers hook; server-side leftovers not checked")
			return
		}
		if n := s.cfg.Leftovers(t, s.usedNames()); n != 0 {
			t.Errorf("%d locks still held on the server for the suite's names after %s", n, what)
		}
	})
}

type suite struct {
	cfg    Config
	prefix string

	mu    sync.Mutex
	names []string
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// name returns a fresh lock name for one check.
func (s *suite) name(t *testing.T) string {
	n := s.prefix + randHex(4)
	s.mu.Lock()
	s.names = append(s.names, n)
	s.mu.Unlock()
	return n
}

func (s *suite) usedNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

// recvBy waits for a value from c until deadline, and reports whether one
// came. When the time is up it looks at c once more before it gives up:
// select picks at random among ready cases, so a timer that is ready as
// the select starts (a deadline already past when a slow test goroutine
// gets there) or together with c must not fail a check that c met.
func recvBy[T any](c <-chan T, deadline time.Time) (T, bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case v := <-c:
		return v, true
	case <-timer.C:
	}
	select {
	case v := <-c:
		return v, true
	default:
		var zero T
		return zero, false
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustTry(t *testing.T, l lockkit.Locker, name string) lockkit.Lock {
	t.Helper()
	lk, err := l.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatalf("TryAcquire(%q) = %v, want held", name, err)
	}
	if lk == nil {
		t.Fatalf("TryAcquire(%q) returned a nil lock and no error", name)
	}
	if lk.Name() != name {
		t.Errorf("Name() = %q, want %q", lk.Name(), name)
	}
	if err := lk.Err(); err != nil {
		t.Errorf("Err() of a fresh lock = %v, want nil", err)
	}
	return lk
}

func mustRelease(t *testing.T, lk lockkit.Lock) {
	t.Helper()
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Release(%q) = %v", lk.Name(), err)
	}
}

func wantNotAcquired(t *testing.T, err error, lk lockkit.Lock, what string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded while the lock was held elsewhere", what)
		if lk != nil {
			_ = lk.Release(context.Background())
		}
		return
	}
	if !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("%s = %v, want an error matching ErrNotAcquired", what, err)
	}
}

func (s *suite) tryWhileHeld(t *testing.T) {
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	name := s.name(t)
	held := mustTry(t, a, name)
	defer mustRelease(t, held)

	lk, err := b.TryAcquire(ctxT(t, 10*time.Second), name)
	wantNotAcquired(t, err, lk, "TryAcquire from a second locker")
	var he *lockkit.HeldError
	if err != nil && !errors.As(err, &he) {
		t.Errorf("conflict error %T is not a *lockkit.HeldError", err)
	}
	if he != nil && he.Name != name {
		t.Errorf("HeldError.Name = %q, want %q", he.Name, name)
	}
	if lk != nil && err != nil {
		t.Errorf("TryAcquire returned both a lock and an error")
	}
	if held.Err() != nil {
		t.Errorf("holder's Err() = %v after a failed try elsewhere", held.Err())
	}
}

func (s *suite) tryAfterRelease(t *testing.T) {
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	name := s.name(t)
	mustRelease(t, mustTry(t, a, name))
	mustRelease(t, mustTry(t, b, name))
	mustRelease(t, mustTry(t, a, name))
}

func (s *suite) namesAreIndependent(t *testing.T) {
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	l1 := mustTry(t, a, s.name(t))
	l2 := mustTry(t, b, s.name(t))
	mustRelease(t, l1)
	mustRelease(t, l2)
}

func (s *suite) sameLockerExcludes(t *testing.T) {
	a := s.cfg.NewLocker(t)
	name := s.name(t)
	held := mustTry(t, a, name)
	lk, err := a.TryAcquire(ctxT(t, 10*time.Second), name)
	wantNotAcquired(t, err, lk, "a second TryAcquire on the same locker (no silent re-entry)")
	mustRelease(t, held)
	mustRelease(t, mustTry(t, a, name))
}

// exclusion runs many workers on two lockers that increment a counter with a
// deliberately non-atomic read-sleep-write under the lock, and counts how
// many hold the lock at once.
func (s *suite) exclusion(t *testing.T) {
	lockers := []lockkit.Locker{s.cfg.NewLocker(t), s.cfg.NewLocker(t)}
	name := s.name(t)
	const workers, rounds = 8, 10
	var (
		counter int // guarded by the lock under test, not by Go
		inside  atomic.Int32
		overlap atomic.Int32
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	ctx := ctxT(t, 2*time.Minute)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := lockers[w%len(lockers)]
			for range rounds {
				lk, err := l.Acquire(ctx, name)
				if err != nil {
					errs <- err
					return
				}
				if inside.Add(1) != 1 {
					overlap.Add(1)
				}
				v := counter
				time.Sleep(200 * time.Microsecond)
				counter = v + 1
				inside.Add(-1)
				if err := lk.Release(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("worker: %v", err)
	}
	if n := overlap.Load(); n != 0 {
		t.Errorf("%d times two holders were inside the critical section at once", n)
	}
	if counter != workers*rounds {
		t.Errorf("counter = %d, want %d: increments were lost, so the lock did not exclude", counter, workers*rounds)
	}
}

func (s *suite) releaseTwice(t *testing.T) {
	a := s.cfg.NewLocker(t)
	name := s.name(t)
	lk := mustTry(t, a, name)
	mustRelease(t, lk)
	err := lk.Release(ctxT(t, 10*time.Second))
	if !errors.Is(err, lockkit.ErrReleased) {
		t.Errorf("second Release = %v, want ErrReleased", err)
	}
	// The second release must not have released anyone else's lock.
	b := s.cfg.NewLocker(t)
	other := mustTry(t, b, name)
	_ = lk.Release(ctxT(t, 10*time.Second))
	probe, err := a.TryAcquire(ctxT(t, 10*time.Second), name)
	wantNotAcquired(t, err, probe, "TryAcquire after a stale handle's third Release")
	mustRelease(t, other)
}

func (s *suite) doneOnRelease(t *testing.T) {
	a := s.cfg.NewLocker(t)
	lk := mustTry(t, a, s.name(t))
	select {
	case <-lk.Done():
		t.Fatal("Done() closed while the lock is held")
	default:
	}
	mustRelease(t, lk)
	select {
	case <-lk.Done():
	default:
		t.Fatal("Done() still open after Release returned")
	}
	if err := lk.Err(); !errors.Is(err, lockkit.ErrReleased) {
		t.Errorf("Err() after Release = %v, want ErrReleased", err)
	}
}

func (s *suite) cancelWaiter(t *testing.T) {
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	name := s.name(t)
	held := mustTry(t, a, name)

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		lk, err := b.Acquire(ctx, name)
		if err == nil {
			_ = lk.Release(context.Background())
			err = errors.New("Acquire succeeded while the lock was held")
		}
		res <- err
	}()
	time.Sleep(150 * time.Millisecond) // let the waiter start waiting
	cancel()
	select {
	case err := <-res:
		wantCtxEnded(t, err, name, context.Canceled, "cancelled Acquire")
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire did not return within 5s of its context being cancelled")
	}
	mustRelease(t, held)
	// A late grant to the cancelled waiter would show up here.
	mustRelease(t, mustTry(t, a, name))
}

func (s *suite) waitTimeout(t *testing.T) {
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	name := s.name(t)
	held := mustTry(t, a, name)
	defer mustRelease(t, held)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	lk, err := b.Acquire(ctx, name)
	wantNotAcquired(t, err, lk, "Acquire with a timeout")
	wantCtxEnded(t, err, name, context.DeadlineExceeded, "timed-out Acquire")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Acquire with a 200ms timeout returned after %v", d)
	}
}

func (s *suite) waiterAcquires(t *testing.T) {
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	name := s.name(t)
	held := mustTry(t, a, name)
	got := make(chan lockkit.Lock, 1)
	errc := make(chan error, 1)
	go func() {
		lk, err := b.Acquire(ctxT(t, 30*time.Second), name)
		if err != nil {
			errc <- err
			return
		}
		got <- lk
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case lk := <-got:
		_ = lk.Release(context.Background())
		t.Fatal("waiter acquired while the lock was held")
	default:
	}
	mustRelease(t, held)
	select {
	case lk := <-got:
		mustRelease(t, lk)
	case err := <-errc:
		t.Fatalf("waiter: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("waiter did not acquire within 20s of the release")
	}
}

func (s *suite) cancelledContext(t *testing.T) {
	a := s.cfg.NewLocker(t)
	name := s.name(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for what, fn := range map[string]func(context.Context, string) (lockkit.Lock, error){
		"Acquire": a.Acquire, "TryAcquire": a.TryAcquire,
	} {
		lk, err := fn(ctx, name)
		if err == nil {
			_ = lk.Release(context.Background())
			t.Errorf("%s with a cancelled context succeeded", what)
			continue
		}
		wantCtxEnded(t, err, name, context.Canceled, what+" with a cancelled context")
	}
	mustRelease(t, mustTry(t, s.cfg.NewLocker(t), name))
}

// wantCtxEnded checks the one shape of an acquire that its context ended:
// a *lockkit.HeldError for name that matches ErrNotAcquired and cause.
func wantCtxEnded(t *testing.T, err error, name string, cause error, what string) {
	t.Helper()
	var he *lockkit.HeldError
	switch {
	case err == nil:
		t.Errorf("%s succeeded", what)
	case !errors.As(err, &he):
		t.Errorf("%s = %v (%T), want a *lockkit.HeldError", what, err, err)
	case he.Name != name:
		t.Errorf("%s: HeldError.Name = %q, want %q", what, he.Name, name)
	case !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, cause):
		t.Errorf("%s = %v, want it to match ErrNotAcquired and %v", what, err, cause)
	}
}

func (s *suite) emptyName(t *testing.T) {
	a := s.cfg.NewLocker(t)
	for what, fn := range map[string]func(context.Context, string) (lockkit.Lock, error){
		"Acquire": a.Acquire, "TryAcquire": a.TryAcquire,
	} {
		lk, err := fn(ctxT(t, 5*time.Second), "")
		if err == nil {
			_ = lk.Release(context.Background())
			t.Errorf("%s(\"\") succeeded", what)
			continue
		}
		if !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("%s(\"\") = %v, want ErrInvalid", what, err)
		}
	}
}

func (s *suite) do(t *testing.T) {
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	name := s.name(t)
	ran := false
	err := lockkit.Do(ctxT(t, 10*time.Second), a, name, func(ctx context.Context) error {
		ran = true
		lk, err := b.TryAcquire(ctx, name)
		wantNotAcquired(t, err, lk, "TryAcquire inside Do")
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("Do = %v, ran = %v", err, ran)
	}
	mustRelease(t, mustTry(t, b, name))

	boom := errors.New("boom")
	if err := lockkit.Do(ctxT(t, 10*time.Second), a, name, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Do = %v, want fn's error", err)
	}
	mustRelease(t, mustTry(t, b, name))

	held := mustTry(t, b, name)
	err = lockkit.TryDo(ctxT(t, 10*time.Second), a, name, func(context.Context) error {
		t.Error("TryDo ran fn while the lock was held elsewhere")
		return nil
	})
	if !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("TryDo while held = %v, want ErrNotAcquired", err)
	}
	mustRelease(t, held)
}

func (s *suite) doPanics(t *testing.T) {
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	name := s.name(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Do swallowed fn's panic")
			}
		}()
		_ = lockkit.Do(ctxT(t, 10*time.Second), a, name, func(context.Context) error { panic("boom") })
	}()
	mustRelease(t, mustTry(t, b, name))
}

func (s *suite) tokens(t *testing.T) {
	if !s.cfg.Tokens {
		t.Log("locktest: backend issues no fencing tokens; checking Token() is 0")
		lk := mustTry(t, s.cfg.NewLocker(t), s.name(t))
		if lk.Token() != 0 {
			t.Errorf("Token() = %d on a backend without tokens, want 0", lk.Token())
		}
		mustRelease(t, lk)
		return
	}
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	name := s.name(t)
	var last int64
	for i := range 6 {
		l := a
		if i%2 == 1 {
			l = b
		}
		lk := mustTry(t, l, name)
		if tok := lk.Token(); tok <= last {
			t.Errorf("holder %d got token %d, not above the previous %d", i, tok, last)
		} else {
			last = tok
		}
		mustRelease(t, lk)
	}
}

func (s *suite) lossDetection(t *testing.T) {
	if s.cfg.KillHolder == nil {
		t.Log("locktest: no KillHolder hook; loss detection not checked by the suite")
		return
	}
	a, b := s.cfg.NewLocker(t), s.cfg.NewLocker(t)
	name := s.name(t)
	lk := mustTry(t, a, name)
	start := time.Now()
	s.cfg.KillHolder(t, lk)
	if _, ok := recvBy(lk.Done(), time.Now().Add(s.cfg.LossBound)); !ok {
		t.Fatalf("Done not closed within the documented bound %v after the holder was killed", s.cfg.LossBound)
	}
	t.Logf("Done closed %v after the holder was killed", time.Since(start).Round(time.Millisecond))
	if err := lk.Err(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Err() after the holder was killed = %v, want ErrLost", err)
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release of a lost lock = %v, want ErrLost", err)
	}
	mustRelease(t, mustTry(t, b, name))
}
