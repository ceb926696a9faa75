package locktest

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
	"github.com/lockkit/lockkit/semaphore"
)

// SemaphoreConfig describes a backend for [RunSemaphore].
type SemaphoreConfig struct {
	// Config is the backend as [Run] takes it: NewLocker, KillHolder,
	// LossBound, Tokens, Leftovers and LeakOptions are used as by Run.
	// The listing checks need the Lockers to implement lockkit.Lister,
	// and the checks of callers that disagree on the number of permits
	// lockkit.DataLocker; without, the suite says so and leaves them out.
	Config

	// Permits is the number of permits of the suite's semaphores. The
	// default is 3.
	Permits int

	// Waits are the waiting strategies the waiting checks run with. The
	// default is both, semaphore.WaitAll and semaphore.WaitOne.
	Waits []semaphore.Wait

	// FailoverBound is the documented bound on how soon a waiting
	// Acquire gets the permit of a holder whose lock KillHolder ended.
	// The default is LossBound.
	FailoverBound time.Duration

	// Crash, if its NewCrashingLocker is set, times how soon a waiter
	// gets a crashed holder's permit.
	Crash
}

// RunSemaphore runs the checks of package semaphore on a backend, as
// subtests of t: N permits and no more, distinct slots, tokens that
// strictly increase per slot, the shape of an acquire that its context
// ended, waiters that get a released permit, never more than N live
// holders while workers come and go and holders are killed, a killed or
// crashed holder's permit taken over within the bound, the listing of
// holders and free permits, and callers that disagree on N refused where
// the backend can tell.
func RunSemaphore(t *testing.T, cfg SemaphoreConfig) {
	t.Helper()
	if cfg.NewLocker == nil {
		t.Fatal("locktest: Config.NewLocker is required")
	}
	cfg.Crash.check(t)
	if cfg.LossBound == 0 {
		cfg.LossBound = 5 * time.Second
	}
	if cfg.FailoverBound == 0 {
		cfg.FailoverBound = cfg.LossBound
	}
	if cfg.Permits == 0 {
		cfg.Permits = 3
	}
	if cfg.Permits < 2 {
		t.Fatal("locktest: SemaphoreConfig.Permits must be at least 2")
	}
	if len(cfg.Waits) == 0 {
		cfg.Waits = []semaphore.Wait{semaphore.WaitAll, semaphore.WaitOne}
	}
	s := &semSuite{suite: &suite{cfg: cfg.Config, prefix: "sem." + randHex(6) + "."}, scfg: cfg, n: cfg.Permits}

	checks := []check{
		{"Permits", s.permits},
		{"BadInput", s.badInput},
		{"CancelledContext", s.cancelledContext},
		{"TokensPerSlot", s.tokensPerSlot},
		{"Status", s.status},
		{"Disagreement", s.disagreement},
		{"Locker", s.lockerAdapter},
	}
	for _, w := range cfg.Waits {
		checks = append(checks,
			check{"WaitTimeout/" + w.String(), func(t *testing.T) { s.waitTimeout(t, w) }},
			check{"CancelWaiter/" + w.String(), func(t *testing.T) { s.cancelWaiter(t, w) }},
			check{"WaiterAcquires/" + w.String(), func(t *testing.T) { s.waiterAcquires(t, w) }},
			check{"AtMostN/" + w.String(), func(t *testing.T) { s.atMostN(t, w) }},
			check{"KilledHolder/" + w.String(), func(t *testing.T) { s.killedHolder(t, w) }},
		)
	}
	checks = append(checks, check{"CrashedHolder", s.crashedHolder})
	s.runChecks(t, checks, "every permit was released")
}

type semSuite struct {
	*suite
	scfg SemaphoreConfig
	n    int
}

// semName returns a fresh semaphore name, and registers the names of its
// slots (up to n+2, which the disagreement checks use) for NoLeftovers.
func (s *semSuite) semName(t *testing.T) string {
	name := s.prefix + randHex(4)
	s.mu.Lock()
	for i := range s.n + 3 {
		s.names = append(s.names, semaphore.SlotName(name, i))
	}
	s.mu.Unlock()
	return name
}

// process is one process taking part: a Locker of its own and a Semaphore
// on it.
type process struct {
	locker lockkit.Locker
	sem    *semaphore.Semaphore
}

func (s *semSuite) process(t *testing.T, w semaphore.Wait) *process {
	t.Helper()
	l := s.cfg.NewLocker(t)
	sem, err := semaphore.New(l, &semaphore.Config{Wait: w, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("semaphore.New: %v", err)
	}
	return &process{locker: l, sem: sem}
}

// acquired is the end of an Acquire that acquireAsync started.
type acquired struct {
	pm  *semaphore.Permit
	err error
	at  time.Time // when it returned
}

// acquireAsync starts p's Acquire of a permit of name (a minute at most)
// and delivers its end on the channel.
func (s *semSuite) acquireAsync(t *testing.T, p *process, name string) <-chan acquired {
	res := make(chan acquired, 1)
	go func() {
		pm, err := p.sem.Acquire(ctxT(t, time.Minute), name, s.n)
		res <- acquired{pm, err, time.Now()}
	}()
	return res
}

func (p *process) canList() bool {
	_, ok := p.locker.(lockkit.Lister)
	return ok
}

func (p *process) hasData() bool {
	_, ok := p.locker.(lockkit.DataLocker)
	return ok
}

func (s *semSuite) mustTry(t *testing.T, p *process, name string, n int) *semaphore.Permit {
	t.Helper()
	pm, err := p.sem.TryAcquire(ctxT(t, 10*time.Second), name, n)
	if err != nil {
		t.Fatalf("TryAcquire(%q, %d) = %v, want a permit", name, n, err)
	}
	s.checkPermit(t, pm, name, n)
	return pm
}

func (s *semSuite) checkPermit(t *testing.T, pm *semaphore.Permit, name string, n int) {
	t.Helper()
	switch {
	case pm == nil:
		t.Fatalf("a nil permit and no error")
	case pm.Name() != name || pm.Permits() != n || pm.Slot() < 0 || pm.Slot() >= n:
		t.Fatalf("permit: name %q, permits %d, slot %d; want %q, %d and a slot below it", pm.Name(), pm.Permits(), pm.Slot(), name, n)
	case pm.Lock().Name() != semaphore.SlotName(name, pm.Slot()):
		t.Errorf("the permit's lock is %q, want the slot's %q", pm.Lock().Name(), semaphore.SlotName(name, pm.Slot()))
	case pm.Err() != nil:
		t.Errorf("Err() of a fresh permit = %v", pm.Err())
	case pm.Token() != pm.Lock().Token():
		t.Errorf("Token() = %d, the slot lock's is %d", pm.Token(), pm.Lock().Token())
	case s.cfg.Tokens && pm.Token() <= 0:
		t.Errorf("Token() = %d on a backend with tokens", pm.Token())
	case !s.cfg.Tokens && pm.Token() != 0:
		t.Errorf("Token() = %d on a backend without tokens", pm.Token())
	}
}

func mustReleasePermit(t *testing.T, pm *semaphore.Permit) {
	t.Helper()
	if err := pm.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Release(%q slot %d) = %v", pm.Name(), pm.Slot(), err)
	}
}

// wantAllHeld checks that a try fails with the *lockkit.HeldError of a
// semaphore whose permits are all held.
func wantAllHeld(t *testing.T, p *process, name string, n int) {
	t.Helper()
	pm, err := p.sem.TryAcquire(ctxT(t, 10*time.Second), name, n)
	var he *lockkit.HeldError
	switch {
	case err == nil:
		_ = pm.Release(context.Background())
		t.Fatalf("TryAcquire got slot %d while all %d permits were held", pm.Slot(), n)
	case !errors.As(err, &he) || !errors.Is(err, lockkit.ErrNotAcquired):
		t.Fatalf("TryAcquire while all permits are held = %v (%T), want a *lockkit.HeldError", err, err)
	case he.Name != name || he.Cause != nil:
		t.Errorf("HeldError.Name %q, Cause %v; want %q and nil", he.Name, he.Cause, name)
	}
}

// fill takes all n permits of name, alternating between ps, and checks
// that they are the n distinct slots.
func (s *semSuite) fill(t *testing.T, name string, n int, ps ...*process) []*semaphore.Permit {
	t.Helper()
	held := make([]*semaphore.Permit, n)
	for i := range n {
		pm := s.mustTry(t, ps[i%len(ps)], name, n)
		if held[pm.Slot()] != nil {
			t.Fatalf("two permits on slot %d", pm.Slot())
		}
		held[pm.Slot()] = pm
	}
	return held
}

func releaseAll(t *testing.T, pms []*semaphore.Permit) {
	t.Helper()
	for _, pm := range pms {
		if pm != nil {
			mustReleasePermit(t, pm)
		}
	}
}

func (s *semSuite) permits(t *testing.T) {
	a, b := s.process(t, semaphore.WaitAll), s.process(t, semaphore.WaitAll)
	name := s.semName(t)
	held := s.fill(t, name, s.n, a, b)
	wantAllHeld(t, a, name, s.n)
	wantAllHeld(t, b, name, s.n)

	// A released permit is the one free slot.
	free := held[1]
	mustReleasePermit(t, free)
	select {
	case <-free.Done():
	default:
		t.Error("Done() open after Release")
	}
	if err := free.Err(); !errors.Is(err, lockkit.ErrReleased) {
		t.Errorf("Err() after Release = %v, want ErrReleased", err)
	}
	if err := free.Release(ctxT(t, 10*time.Second)); !errors.Is(err, lockkit.ErrReleased) {
		t.Errorf("second Release = %v, want ErrReleased", err)
	}
	again := s.mustTry(t, b, name, s.n)
	if again.Slot() != 1 {
		t.Errorf("the one free slot is 1, the try got %d", again.Slot())
	}
	held[1] = again
	// The stale permit's Release left the new holder alone.
	_ = free.Release(ctxT(t, 10*time.Second))
	wantAllHeld(t, a, name, s.n)
	for _, pm := range held {
		if pm.Err() != nil {
			t.Errorf("slot %d: Err() = %v while held", pm.Slot(), pm.Err())
		}
	}
	releaseAll(t, held)
	releaseAll(t, s.fill(t, name, s.n, b, a))
}

func (s *semSuite) badInput(t *testing.T) {
	p := s.process(t, semaphore.WaitAll)
	name := s.semName(t)
	ctx := ctxT(t, 10*time.Second)
	for _, c := range []struct {
		name string
		n    int
	}{{name, 0}, {name, -1}, {name, semaphore.MaxPermits + 1}, {"", 2}} {
		for what, fn := range map[string]func(context.Context, string, int) (*semaphore.Permit, error){
			"Acquire": p.sem.Acquire, "TryAcquire": p.sem.TryAcquire,
		} {
			if pm, err := fn(ctx, c.name, c.n); !errors.Is(err, lockkit.ErrInvalid) {
				if pm != nil {
					_ = pm.Release(ctx)
				}
				t.Errorf("%s(%q, %d) = %v, want ErrInvalid", what, c.name, c.n, err)
			}
		}
		if _, err := p.sem.Status(ctx, c.name, c.n); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("Status(%q, %d) = %v, want ErrInvalid", c.name, c.n, err)
		}
		if lk, err := p.sem.Locker(c.n).TryAcquire(ctx, c.name); !errors.Is(err, lockkit.ErrInvalid) {
			if lk != nil {
				_ = lk.Release(ctx)
			}
			t.Errorf("Locker(%d).TryAcquire(%q) = %v, want ErrInvalid", c.n, c.name, err)
		}
	}
	releaseAll(t, s.fill(t, name, s.n, p))
}

func (s *semSuite) cancelledContext(t *testing.T) {
	p := s.process(t, semaphore.WaitAll)
	name := s.semName(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for what, fn := range map[string]func(context.Context, string, int) (*semaphore.Permit, error){
		"Acquire": p.sem.Acquire, "TryAcquire": p.sem.TryAcquire,
	} {
		pm, err := fn(ctx, name, s.n)
		if err == nil {
			_ = pm.Release(context.Background())
		}
		wantCtxEnded(t, err, name, context.Canceled, what+" with a cancelled context")
	}
	releaseAll(t, s.fill(t, name, s.n, s.process(t, semaphore.WaitAll)))
}

func (s *semSuite) waitTimeout(t *testing.T, w semaphore.Wait) {
	a, b := s.process(t, w), s.process(t, w)
	name := s.semName(t)
	held := s.fill(t, name, s.n, a)
	defer releaseAll(t, held)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	pm, err := b.sem.Acquire(ctx, name, s.n)
	if err == nil {
		_ = pm.Release(context.Background())
	}
	wantCtxEnded(t, err, name, context.DeadlineExceeded, "Acquire with a timeout while all permits are held")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Acquire with a 200ms timeout returned after %v", d)
	}
}

func (s *semSuite) cancelWaiter(t *testing.T, w semaphore.Wait) {
	a, b := s.process(t, w), s.process(t, w)
	name := s.semName(t)
	held := s.fill(t, name, s.n, a)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		pm, err := b.sem.Acquire(ctx, name, s.n)
		if err == nil {
			_ = pm.Release(context.Background())
			err = errors.New("Acquire succeeded while every permit was held")
		}
		res <- err
	}()
	time.Sleep(150 * time.Millisecond) // let the waiter wait
	cancel()
	select {
	case err := <-res:
		wantCtxEnded(t, err, name, context.Canceled, "cancelled Acquire")
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire did not return within 10s of its context being cancelled")
	}
	releaseAll(t, held)
	// A grant to the cancelled waiter left behind would show here.
	releaseAll(t, s.fill(t, name, s.n, a, b))
}

func (s *semSuite) waiterAcquires(t *testing.T, w semaphore.Wait) {
	a, b := s.process(t, w), s.process(t, w)
	name := s.semName(t)
	held := s.fill(t, name, s.n, a, b)
	res := s.acquireAsync(t, b, name)
	time.Sleep(150 * time.Millisecond)
	select {
	case r := <-res:
		if r.pm != nil {
			_ = r.pm.Release(context.Background())
		}
		t.Fatalf("the waiter returned while every permit was held: %v", r.err)
	default:
	}
	slot := rand.IntN(s.n)
	start := time.Now()
	mustReleasePermit(t, held[slot])
	held[slot] = nil
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("waiter: %v", r.err)
		}
		t.Logf("the waiter got the permit %v after the release", r.at.Sub(start).Round(time.Millisecond))
		s.checkPermit(t, r.pm, name, s.n)
		if r.pm.Slot() != slot {
			t.Errorf("the waiter got slot %d, but only %d was free", r.pm.Slot(), slot)
		}
		held[slot] = r.pm
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter did not get the released permit within 20s")
	}
	wantAllHeld(t, a, name, s.n)
	releaseAll(t, held)
}

// atMostN runs workers on two processes that take a permit, stay a moment
// and give it back, while (with KillHolder) a killer ends the locks of
// holders now and then. The live holders (not killed) must never be more
// than N, nor two on one slot, and where the backend has tokens every
// holder of a slot must have a greater token than the slot's earlier
// holders, the killed ones included.
func (s *semSuite) atMostN(t *testing.T, w semaphore.Wait) {
	ps := []*process{s.process(t, w), s.process(t, w)}
	name := s.semName(t)
	n := s.n
	workers, rounds := 2*n+2, 8
	kills := 0
	if s.cfg.KillHolder != nil {
		kills = 4
	} else {
		t.Log("locktest: no KillHolder hook; holders are not killed")
	}
	type entry struct {
		pm       *semaphore.Permit
		killed   bool
		killDone chan struct{}
	}
	var (
		mu       sync.Mutex
		live     = map[*semaphore.Permit]*entry{}
		bySlot   = map[int]*entry{}
		last     = map[int]int64{}
		maxLive  int
		problems []string
		killed   int
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	problem := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ps[i%len(ps)]
			for range rounds {
				pm, err := p.sem.Acquire(ctx, name, n)
				if err != nil {
					mu.Lock()
					problem("worker %d: Acquire = %v", i, err)
					mu.Unlock()
					return
				}
				e := &entry{pm: pm, killDone: make(chan struct{})}
				mu.Lock()
				if other := bySlot[pm.Slot()]; other != nil {
					problem("two live holders of slot %d", pm.Slot())
				}
				live[pm], bySlot[pm.Slot()] = e, e
				if len(live) > n {
					problem("%d live holders of %d permits", len(live), n)
				}
				maxLive = max(maxLive, len(live))
				if s.cfg.Tokens {
					if tok := pm.Token(); tok <= last[pm.Slot()] {
						problem("slot %d: token %d after %d", pm.Slot(), tok, last[pm.Slot()])
					}
					last[pm.Slot()] = pm.Token()
				}
				mu.Unlock()

				time.Sleep(time.Duration(1000+rand.IntN(4000)) * time.Microsecond)

				mu.Lock()
				wasKilled := e.killed
				if !wasKilled {
					delete(live, pm)
					delete(bySlot, pm.Slot())
				}
				mu.Unlock()
				rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
				if wasKilled {
					<-e.killDone
					if _, ok := recvBy(pm.Done(), time.Now().Add(s.cfg.LossBound)); !ok {
						mu.Lock()
						problem("a killed permit's Done not closed within the loss bound %v", s.cfg.LossBound)
						mu.Unlock()
					}
					if err := pm.Release(rctx); !errors.Is(err, lockkit.ErrLost) {
						mu.Lock()
						problem("Release of a killed permit = %v, want ErrLost", err)
						mu.Unlock()
					}
				} else if err := pm.Release(rctx); err != nil {
					mu.Lock()
					problem("Release = %v", err)
					mu.Unlock()
				}
				rcancel()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if kills > 0 {
	killing:
		for killed < kills {
			select {
			case <-done:
				break killing
			case <-time.After(time.Duration(5+rand.IntN(15)) * time.Millisecond):
			}
			mu.Lock()
			var victim *entry
			for _, e := range live {
				victim = e
				break
			}
			if victim != nil {
				victim.killed = true
				delete(live, victim.pm)
				delete(bySlot, victim.pm.Slot())
				killed++
			}
			mu.Unlock()
			if victim != nil {
				// The worker does not release its permit before the
				// kill is done, so the kill hits its lock.
				s.cfg.KillHolder(t, victim.pm.Lock())
				close(victim.killDone)
			}
		}
	}
	<-done
	for _, msg := range problems {
		t.Error(msg)
	}
	t.Logf("%d workers, %d rounds each, %d holders killed: at most %d of %d permits held at once", workers, rounds, killed, maxLive, n)
}

// killedHolder: every permit held, a waiter waits, one holder's lock is
// killed; the waiter gets that permit within FailoverBound, and the killed
// holder learns of its loss within LossBound.
func (s *semSuite) killedHolder(t *testing.T, w semaphore.Wait) {
	if s.cfg.KillHolder == nil {
		t.Skip("locktest: no KillHolder hook; a killed holder's permit not checked")
	}
	a, b := s.process(t, w), s.process(t, w)
	name := s.semName(t)
	held := s.fill(t, name, s.n, a)
	res := s.acquireAsync(t, b, name)
	time.Sleep(150 * time.Millisecond) // let the waiter wait
	slot := rand.IntN(s.n)
	victim := held[slot]
	start := time.Now()
	s.cfg.KillHolder(t, victim.Lock())
	var got *semaphore.Permit
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("the waiter's Acquire = %v", r.err)
		}
		got = r.pm
		d := r.at.Sub(start)
		t.Logf("the waiter got the killed holder's permit %v after the kill", d.Round(time.Millisecond))
		if d > s.scfg.FailoverBound {
			t.Errorf("the waiter got the permit %v after the kill, above the documented bound %v", d, s.scfg.FailoverBound)
		}
		s.checkPermit(t, got, name, s.n)
		if got.Slot() != slot {
			t.Errorf("the waiter got slot %d, but only %d was freed", got.Slot(), slot)
		}
		if s.cfg.Tokens && got.Token() <= victim.Token() {
			t.Errorf("the new holder's token %d is not above the killed holder's %d", got.Token(), victim.Token())
		}
	case <-time.After(s.scfg.FailoverBound + 10*time.Second):
		t.Fatalf("the waiter did not get the permit %v after the kill (bound %v)", s.scfg.FailoverBound+10*time.Second, s.scfg.FailoverBound)
	}
	if _, ok := recvBy(victim.Done(), time.Now().Add(s.cfg.LossBound)); !ok {
		t.Errorf("the killed permit's Done not closed within the loss bound %v", s.cfg.LossBound)
	}
	if err := victim.Err(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("the killed permit's Err() = %v, want ErrLost", err)
	}
	if err := victim.Release(ctxT(t, 10*time.Second)); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release of the killed permit = %v, want ErrLost", err)
	}
	// Its Release left the new holder alone.
	wantAllHeld(t, a, name, s.n)
	if got.Err() != nil {
		t.Errorf("the new holder's Err() = %v", got.Err())
	}
	held[slot] = got
	releaseAll(t, held)
}

// crashedHolder: a process holding a permit crashes while a waiter waits;
// the waiter gets the permit within CrashFailoverBound.
func (s *semSuite) crashedHolder(t *testing.T) {
	if s.scfg.NewCrashingLocker == nil {
		t.Skip("locktest: no NewCrashingLocker hook; a crashed holder's permit not checked")
	}
	l, crash := s.scfg.NewCrashingLocker(t)
	// Only the Locker's own acquires: a view of it (WithData) could take
	// locks the crash does not know of.
	cs, err := semaphore.New(struct{ lockkit.Locker }{l}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.process(t, semaphore.WaitAll), s.process(t, semaphore.WaitAll)
	name := s.semName(t)
	held := make([]*semaphore.Permit, 0, s.n)
	for range s.n - 1 {
		held = append(held, s.mustTry(t, a, name, s.n))
	}
	crashed, err := cs.TryAcquire(ctxT(t, 10*time.Second), name, s.n)
	if err != nil {
		t.Fatalf("TryAcquire on the crashing Locker = %v", err)
	}
	defer func() { _ = crashed.Release(ctxT(t, 10*time.Second)) }()
	res := s.acquireAsync(t, b, name)
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	crash()
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("the waiter's Acquire = %v", r.err)
		}
		d := r.at.Sub(start)
		t.Logf("the waiter got the crashed holder's permit %v after the crash", d.Round(time.Millisecond))
		if d > s.scfg.CrashFailoverBound {
			t.Errorf("the waiter got the permit %v after the crash, above the documented bound %v", d, s.scfg.CrashFailoverBound)
		}
		if r.pm.Slot() != crashed.Slot() {
			t.Errorf("the waiter got slot %d, the crashed holder had %d", r.pm.Slot(), crashed.Slot())
		}
		if s.cfg.Tokens && r.pm.Token() <= crashed.Token() {
			t.Errorf("the new holder's token %d is not above the crashed holder's %d", r.pm.Token(), crashed.Token())
		}
		held = append(held, r.pm)
	case <-time.After(s.scfg.CrashFailoverBound + 10*time.Second):
		t.Fatalf("the waiter did not get the permit %v after the crash (bound %v)", s.scfg.CrashFailoverBound+10*time.Second, s.scfg.CrashFailoverBound)
	}
	releaseAll(t, held)
}

// tokensPerSlot holds all permits but one and takes the last one again and
// again from two processes: always the same slot, with a greater token
// each time.
func (s *semSuite) tokensPerSlot(t *testing.T) {
	a, b := s.process(t, semaphore.WaitAll), s.process(t, semaphore.WaitAll)
	name := s.semName(t)
	held := make([]*semaphore.Permit, 0, s.n)
	for range s.n - 1 {
		held = append(held, s.mustTry(t, a, name, s.n))
	}
	var (
		last int64
		slot = -1
	)
	for i := range 6 {
		p := a
		if i%2 == 1 {
			p = b
		}
		pm := s.mustTry(t, p, name, s.n)
		if slot >= 0 && pm.Slot() != slot {
			t.Errorf("the one free slot was %d, the try got %d", slot, pm.Slot())
		}
		slot = pm.Slot()
		if s.cfg.Tokens {
			if pm.Token() <= last {
				t.Errorf("holder %d of slot %d got token %d, not above the previous %d", i, slot, pm.Token(), last)
			}
			last = pm.Token()
		}
		mustReleasePermit(t, pm)
	}
	if !s.cfg.Tokens {
		t.Log("locktest: backend issues no fencing tokens; checked that Token() is 0")
	}
	releaseAll(t, held)
}

func (s *semSuite) status(t *testing.T) {
	a, b := s.process(t, semaphore.WaitAll), s.process(t, semaphore.WaitAll)
	name := s.semName(t)
	if !a.canList() {
		t.Log("locktest: the Locker is no lockkit.Lister; checking that Status says so")
		if _, err := a.sem.Status(ctxT(t, 10*time.Second), name, s.n); !errors.Is(err, lockkit.ErrUnsupported) {
			t.Errorf("Status without a Lister = %v, want ErrUnsupported", err)
		}
		return
	}
	want := func(held ...*semaphore.Permit) {
		t.Helper()
		st, err := b.sem.Status(ctxT(t, 10*time.Second), name, s.n)
		if err != nil {
			t.Fatalf("Status = %v", err)
		}
		if st.Name != name || st.Permits != s.n || st.Free != s.n-len(held) || len(st.Holders) != len(held) {
			t.Fatalf("Status = %+v; want %d holders and %d free of %d", st, len(held), s.n-len(held), s.n)
		}
		for i, h := range st.Holders {
			pm := held[i]
			switch {
			case h.Slot != pm.Slot():
				t.Errorf("holder %d: slot %d, want %d", i, h.Slot, pm.Slot())
			case a.hasData() && h.Permits != s.n:
				t.Errorf("slot %d: the holder recorded %d permits, want %d", h.Slot, h.Permits, s.n)
			case !a.hasData() && h.Permits != 0:
				t.Errorf("slot %d: %d permits recorded on a Locker without holder data", h.Slot, h.Permits)
			case s.cfg.Tokens && h.Holder.Token != pm.Token():
				t.Errorf("slot %d: listed token %d, the permit's %d", h.Slot, h.Holder.Token, pm.Token())
			}
		}
	}
	want()
	var held []*semaphore.Permit
	for range s.n - 1 {
		held = append(held, s.mustTry(t, a, name, s.n))
	}
	sortPermits(held)
	want(held...)
	mustReleasePermit(t, held[0])
	want(held[1:]...)
	releaseAll(t, held[1:])
	want()
}

func sortPermits(pms []*semaphore.Permit) {
	for i := 1; i < len(pms); i++ {
		for j := i; j > 0 && pms[j].Slot() < pms[j-1].Slot(); j-- {
			pms[j], pms[j-1] = pms[j-1], pms[j]
		}
	}
}

// wantMismatch checks the error of a caller of n permits that met a
// holder of other.
func wantMismatch(t *testing.T, err error, name string, n, other int, what string) {
	t.Helper()
	var mm *semaphore.MismatchError
	switch {
	case err == nil:
		t.Errorf("%s succeeded", what)
	case !errors.As(err, &mm) || !errors.Is(err, lockkit.ErrInvalid):
		t.Errorf("%s = %v (%T), want a *semaphore.MismatchError matching ErrInvalid", what, err, err)
	case mm.Name != name || mm.Permits != n || mm.Other != other:
		t.Errorf("%s: MismatchError %+v, want name %q, permits %d, other %d", what, mm, name, n, other)
	case !strings.Contains(err.Error(), fmt.Sprintf("with %d permits", other)) || !strings.Contains(err.Error(), fmt.Sprintf("with %d here", n)):
		t.Errorf("%s: %q does not name both numbers", what, err)
	}
}

// disagreement: callers of one name with other numbers of permits are
// refused, both ways, where the Locker records holder data.
func (s *semSuite) disagreement(t *testing.T) {
	a, b := s.process(t, semaphore.WaitAll), s.process(t, semaphore.WaitOne)
	name := s.semName(t)
	if !a.hasData() {
		t.Log("locktest: the Locker is no lockkit.DataLocker, so callers that disagree on the number of permits cannot be told apart; not checked")
		return
	}
	ctx := ctxT(t, 30*time.Second)
	bigger := s.n + 2

	// A caller of more permits meets a holder of fewer: in its tries or in
	// the listing after it got a slot.
	one := s.mustTry(t, a, name, s.n)
	for what, fn := range map[string]func(context.Context, string, int) (*semaphore.Permit, error){
		"TryAcquire": b.sem.TryAcquire, "Acquire": b.sem.Acquire,
	} {
		pm, err := fn(ctx, name, bigger)
		if err == nil {
			_ = pm.Release(ctx)
		}
		wantMismatch(t, err, name, bigger, s.n, what+" of more permits beside a holder of fewer")
	}
	// The refused callers hold nothing: all other slots are free.
	rest := make([]*semaphore.Permit, 0, s.n-1)
	for range s.n - 1 {
		rest = append(rest, s.mustTry(t, b, name, s.n))
	}
	wantAllHeld(t, a, name, s.n)

	// A caller of fewer permits meets holders of more in every slot it
	// tries.
	fewer := s.n - 1
	for what, fn := range map[string]func(context.Context, string, int) (*semaphore.Permit, error){
		"TryAcquire": b.sem.TryAcquire, "Acquire": a.sem.Acquire,
	} {
		pm, err := fn(ctx, name, fewer)
		if err == nil {
			_ = pm.Release(ctx)
		}
		wantMismatch(t, err, name, fewer, s.n, what+" of fewer permits while holders of more hold its slots")
	}
	mustReleasePermit(t, one)
	releaseAll(t, rest)

	// A caller of fewer permits refused after the fact: a holder of more
	// sits in slot `fewer`, which the caller lists beyond its own slots.
	var big []*semaphore.Permit
	var over *semaphore.Permit
	for range s.n {
		pm := s.mustTry(t, a, name, s.n)
		if pm.Slot() == fewer {
			over = pm
		} else {
			big = append(big, pm)
		}
	}
	releaseAll(t, big)
	pm, err := b.sem.TryAcquire(ctx, name, fewer)
	if err == nil {
		_ = pm.Release(ctx)
	}
	wantMismatch(t, err, name, fewer, s.n, "TryAcquire of fewer permits while a holder of more sits just above its slots")
	mustReleasePermit(t, over)
	// And nothing was left held by the refusals.
	releaseAll(t, s.fill(t, name, s.n, a, b))
}

// lockerAdapter runs lockkit.Do and TryDo under permits through
// Semaphore.Locker.
func (s *semSuite) lockerAdapter(t *testing.T) {
	a, b := s.process(t, semaphore.WaitAll), s.process(t, semaphore.WaitAll)
	name := s.semName(t)
	ran := false
	err := lockkit.Do(ctxT(t, 10*time.Second), a.sem.Locker(s.n), name, func(ctx context.Context) error {
		ran = true
		lk, err := b.sem.Locker(s.n).TryAcquire(ctx, name)
		if err != nil {
			return fmt.Errorf("a second permit: %w", err)
		}
		pm, ok := lk.(*semaphore.Permit)
		if !ok || pm.Name() != name {
			t.Errorf("Locker(%d).TryAcquire returned %T named %q, want a *semaphore.Permit of %q", s.n, lk, lk.Name(), name)
		}
		return lk.Release(ctx)
	})
	if err != nil || !ran {
		t.Fatalf("Do = %v, ran = %v", err, ran)
	}
	held := s.fill(t, name, s.n, b)
	err = lockkit.TryDo(ctxT(t, 10*time.Second), a.sem.Locker(s.n), name, func(context.Context) error {
		t.Error("TryDo ran fn while every permit was held")
		return nil
	})
	if !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("TryDo while every permit is held = %v, want ErrNotAcquired", err)
	}
	releaseAll(t, held)
}
