package locktest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/election"
)

// ElectionConfig describes a backend for [RunElection].
type ElectionConfig struct {
	// Config is the backend as [Run] takes it. NewLocker must return
	// Lockers whose locks carry fencing tokens; the checks of the
	// leader's identity need them to implement lockkit.Lister, and those
	// of its value lockkit.DataLocker (without, they campaign with empty
	// values). KillHolder, LossBound and Leftovers are used as by Run;
	// Tokens is not used.
	Config

	// FailoverBound is the documented bound on how soon a waiting
	// candidate leads after KillHolder ended the leader's lock. The
	// default is LossBound.
	FailoverBound time.Duration

	// PollInterval is the observers' Config.PollInterval. The default is
	// 20ms.
	PollInterval time.Duration

	// Pushed says the Locker pushes changes (it is a lockkit.Watcher that
	// pushes in this setup). The Observe check then polls only every 10s
	// and requires each change within PushBound of when it happened (a
	// change after KillHolder: within LossBound plus PushBound, since the
	// deposed leader announces its loss).
	Pushed bool

	// PushBound is how soon a pushed change must be observed. The
	// default is 1s.
	PushBound time.Duration

	// Crash, if its NewCrashingLocker is set, times how soon a waiting
	// candidate leads after the leader crashed.
	Crash
}

// RunElection runs the leader election checks of package election on a
// backend, as subtests of t: one leader at a time, terms that strictly
// increase, failover within FailoverBound after the leader's lock is
// killed, a deposed leader whose term-fenced writes are refused, Lead's
// function cancelled on loss, and observers that see every change in
// order.
func RunElection(t *testing.T, cfg ElectionConfig) {
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
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.PushBound == 0 {
		cfg.PushBound = time.Second
	}
	s := &electionSuite{suite: &suite{cfg: cfg.Config, prefix: "election." + randHex(6) + "."}, ecfg: cfg}
	checks := []check{
		{"Campaign", s.campaign},
		{"CampaignCancelled", s.campaignCancelled},
		{"TermsIncrease", s.termsIncrease},
		{"OneLeader", s.oneLeader},
		{"TermsUnderKills", s.termsUnderKills},
		{"Failover", s.failover},
		{"FailoverAfterCrash", s.failoverAfterCrash},
		{"DeposedLeaderFenced", s.deposedFenced},
		{"LeadCancelledOnLoss", s.leadCancelledOnLoss},
		{"Observe", s.observe},
		{"ObserveOrder", s.observeOrder},
	}
	s.runChecks(t, checks, "every leader resigned")
}

type electionSuite struct {
	*suite
	ecfg ElectionConfig
}

// candidate is one process taking part in elections: a Locker of its own
// and an Elector on it.
type candidate struct {
	locker lockkit.Locker
	e      *election.Elector
	value  string // "" when the Locker cannot carry values
}

func (s *electionSuite) candidate(t *testing.T, value string, cfg *election.Config) *candidate {
	t.Helper()
	l := s.cfg.NewLocker(t)
	if cfg == nil {
		cfg = &election.Config{}
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = s.ecfg.PollInterval
	}
	e, err := election.New(l, cfg)
	if err != nil {
		t.Fatalf("election.New: %v", err)
	}
	if _, ok := l.(lockkit.DataLocker); !ok {
		value = ""
	}
	return &candidate{locker: l, e: e, value: value}
}

func (c *candidate) canList() bool {
	_, ok := c.locker.(lockkit.Lister)
	return ok
}

func (s *electionSuite) mustCampaign(t *testing.T, c *candidate, name string) *election.Leadership {
	t.Helper()
	l, err := c.e.Campaign(ctxT(t, 30*time.Second), name, c.value)
	if err != nil {
		t.Fatalf("Campaign(%q) = %v", name, err)
	}
	if l.Name() != name || l.Value() != c.value || l.Err() != nil || l.Term() <= 0 {
		t.Fatalf("Campaign(%q): name %q, value %q, err %v, term %d; want the name, the value, nil and a positive term",
			name, l.Name(), l.Value(), l.Err(), l.Term())
	}
	return l
}

func mustResign(t *testing.T, l *election.Leadership) {
	t.Helper()
	if err := l.Resign(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Resign(%q) = %v", l.Name(), err)
	}
}

// wantLeader checks that Leader reports l, from c's point of view.
func wantLeader(t *testing.T, c *candidate, l *election.Leadership) {
	t.Helper()
	if !c.canList() {
		return
	}
	ld, err := c.e.Leader(ctxT(t, 10*time.Second), l.Name())
	if err != nil {
		t.Fatalf("Leader(%q) = %v, want term %d", l.Name(), err, l.Term())
	}
	if ld.Name != l.Name() || ld.Term != l.Term() || ld.Value != l.Value() || ld.Holder.Token != l.Term() {
		t.Errorf("Leader(%q) = %+v, want term %d and value %q", l.Name(), ld, l.Term(), l.Value())
	}
	if d := time.Since(ld.Since); ld.Since.IsZero() || d < -5*time.Second || d > 5*time.Minute {
		t.Errorf("Leader(%q).Since = %v, not a time of the last minutes", l.Name(), ld.Since)
	}
}

func wantNoLeader(t *testing.T, c *candidate, name string) {
	t.Helper()
	if !c.canList() {
		return
	}
	ld, err := c.e.Leader(ctxT(t, 10*time.Second), name)
	if !errors.Is(err, election.ErrNoLeader) {
		t.Errorf("Leader(%q) = %+v, %v; want ErrNoLeader", name, ld, err)
	}
}

func (s *electionSuite) campaign(t *testing.T) {
	a, b := s.candidate(t, "10.0.0.1:8080", nil), s.candidate(t, "10.0.0.2:8080", nil)
	if !a.canList() {
		t.Log("locktest: the Locker is no lockkit.Lister; Leader is not checked")
	}
	if a.value == "" {
		t.Log("locktest: the Locker is no lockkit.DataLocker; candidates campaign without values")
	}
	name := s.name(t)
	wantNoLeader(t, b, name)
	la := s.mustCampaign(t, a, name)
	wantLeader(t, b, la)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if lb, err := b.e.Campaign(ctx, name, b.value); err == nil {
		_ = lb.Resign(context.Background())
		t.Fatal("a second Campaign won while the first leads")
	} else {
		wantCtxEnded(t, err, name, context.DeadlineExceeded, "Campaign while another leads")
	}
	if la.Err() != nil {
		t.Errorf("the leader's Err() = %v after a failed campaign elsewhere", la.Err())
	}

	mustResign(t, la)
	select {
	case <-la.Done():
	default:
		t.Error("Done() open after Resign")
	}
	if err := la.Err(); !errors.Is(err, lockkit.ErrReleased) {
		t.Errorf("Err() after Resign = %v, want ErrReleased", err)
	}
	if err := la.Resign(ctxT(t, 10*time.Second)); !errors.Is(err, lockkit.ErrReleased) {
		t.Errorf("second Resign = %v, want ErrReleased", err)
	}
	wantNoLeader(t, a, name)

	lb := s.mustCampaign(t, b, name)
	if lb.Term() <= la.Term() {
		t.Errorf("the next leader's term %d is not above %d", lb.Term(), la.Term())
	}
	wantLeader(t, a, lb)
	mustResign(t, lb)
}

func (s *electionSuite) campaignCancelled(t *testing.T) {
	a := s.candidate(t, "a", nil)
	name := s.name(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if l, err := a.e.Campaign(ctx, name, a.value); err == nil {
		_ = l.Resign(context.Background())
		t.Fatal("Campaign with a cancelled context won")
	} else {
		wantCtxEnded(t, err, name, context.Canceled, "Campaign with a cancelled context")
	}
	if _, err := a.e.Campaign(ctxT(t, 5*time.Second), "", a.value); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("Campaign(\"\") = %v, want ErrInvalid", err)
	}
	mustResign(t, s.mustCampaign(t, a, name))
}

func (s *electionSuite) termsIncrease(t *testing.T) {
	cs := []*candidate{s.candidate(t, "a", nil), s.candidate(t, "b", nil)}
	name := s.name(t)
	var last int64
	for i := range 6 {
		l := s.mustCampaign(t, cs[i%2], name)
		if l.Term() <= last {
			t.Errorf("leadership %d got term %d, not above the previous %d", i, l.Term(), last)
		}
		last = l.Term()
		mustResign(t, l)
	}
}

// oneLeader runs candidates on two Lockers through Lead, each leading for a
// moment and returning, and checks that no two are in office at once and
// that each term is above every earlier one.
func (s *electionSuite) oneLeader(t *testing.T) {
	cs := []*candidate{
		s.candidate(t, "a", &election.Config{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}),
		s.candidate(t, "b", &election.Config{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}),
	}
	name := s.name(t)
	const workers, terms = 6, 30
	var (
		mu      sync.Mutex
		inside  int
		last    int64
		count   int
		overlap int
		stale   int
		errs    []error
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cs[w%len(cs)]
			err := election.Lead(ctx, c.e, name, c.value, func(ctx context.Context, term int64) error {
				mu.Lock()
				inside++
				if inside != 1 {
					overlap++
				}
				if term <= last {
					stale++
				}
				last = term
				count++
				if count >= terms {
					cancel()
				}
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				mu.Lock()
				inside--
				mu.Unlock()
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Errorf("Lead = %v, want context.Canceled", err)
	}
	if overlap != 0 {
		t.Errorf("%d times two leaders were in office at once", overlap)
	}
	if stale != 0 {
		t.Errorf("%d leaderships got a term not above the previous leader's", stale)
	}
	if count < terms {
		t.Errorf("%d leaderships, want %d", count, terms)
	}
}

// termsUnderKills has candidates lead until their leadership is killed,
// round after round, and checks that every leader takes office with a term
// above every earlier one, even where the deposed leader has not noticed
// its loss yet, and that each deposed leader's function is cancelled.
func (s *electionSuite) termsUnderKills(t *testing.T) {
	s.needKill(t)
	cfg := &election.Config{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	cs := []*candidate{s.candidate(t, "a", cfg), s.candidate(t, "b", cfg)}
	name := s.name(t)
	const workers, rounds = 4, 5
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		mu      sync.Mutex
		last    int64
		stale   []string
		entered = make(chan *election.Leadership, workers*rounds*2)
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cs[w%len(cs)]
			errs <- election.Lead(ctx, c.e, name, c.value, func(ctx context.Context, term int64) error {
				mu.Lock()
				if term <= last {
					stale = append(stale, fmt.Sprintf("term %d took office after term %d", term, last))
				}
				last = max(last, term)
				mu.Unlock()
				entered <- election.LeadershipFrom(ctx)
				<-ctx.Done() // in office until killed (or the end)
				return nil
			})
		}()
	}
	for i := range rounds {
		select {
		case l := <-entered:
			s.cfg.KillHolder(t, l.Lock())
		case <-time.After(s.ecfg.FailoverBound + 10*time.Second):
			t.Fatalf("round %d: no leader took office", i)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Lead = %v, want context.Canceled", err)
		}
	}
	for _, msg := range stale {
		t.Error(msg)
	}
}

func (s *electionSuite) needKill(t *testing.T) {
	if s.cfg.KillHolder == nil {
		t.Skip("locktest: no KillHolder hook; failover not checked")
	}
}

// failover kills the leader's lock while another candidate campaigns, and
// times how soon that candidate leads and how soon the deposed leader
// learns it.
func (s *electionSuite) failover(t *testing.T) {
	s.needKill(t)
	a, b := s.candidate(t, "a", nil), s.candidate(t, "b", nil)
	name := s.name(t)
	la := s.mustCampaign(t, a, name)
	type result struct {
		l   *election.Leadership
		err error
		at  time.Time
	}
	res := make(chan result, 1)
	go func() {
		l, err := b.e.Campaign(ctxT(t, time.Minute), name, b.value)
		res <- result{l, err, time.Now()}
	}()
	time.Sleep(100 * time.Millisecond) // let b wait
	deposed := make(chan time.Time, 1)
	go func() {
		<-la.Done()
		deposed <- time.Now()
	}()
	start := time.Now()
	s.cfg.KillHolder(t, la.Lock())
	var lb *election.Leadership
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("the waiting candidate's Campaign = %v", r.err)
		}
		lb = r.l
		d := r.at.Sub(start)
		t.Logf("failover: the waiting candidate led %v after the leader's lock was killed", d.Round(time.Millisecond))
		if d > s.ecfg.FailoverBound {
			t.Errorf("failover took %v, above the documented bound %v", d, s.ecfg.FailoverBound)
		}
	case <-time.After(s.ecfg.FailoverBound + 5*time.Second):
		t.Fatalf("no new leader %v after the leader's lock was killed (bound %v)", s.ecfg.FailoverBound+5*time.Second, s.ecfg.FailoverBound)
	}
	// The wait for the new leader may have used up the loss bound (a
	// FailoverBound above LossBound): recvBy still looks at Done.
	if _, ok := recvBy(la.Done(), start.Add(s.cfg.LossBound)); ok {
		t.Logf("the deposed leader's Done closed %v after the kill", (<-deposed).Sub(start).Round(time.Millisecond))
	} else {
		t.Errorf("the deposed leader's Done not closed within the loss bound %v", s.cfg.LossBound)
	}
	if err := la.Err(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("the deposed leader's Err() = %v, want ErrLost", err)
	}
	if lb.Term() <= la.Term() {
		t.Errorf("the new leader's term %d is not above the deposed leader's %d", lb.Term(), la.Term())
	}
	wantLeader(t, a, lb)
	if err := la.Resign(ctxT(t, 10*time.Second)); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Resign of a lost leadership = %v, want ErrLost", err)
	}
	wantLeader(t, a, lb) // the deposed leader's Resign left the new one alone
	mustResign(t, lb)
}

// failoverAfterCrash crashes the leader while another candidate
// campaigns, and times how soon that candidate leads.
func (s *electionSuite) failoverAfterCrash(t *testing.T) {
	if s.ecfg.NewCrashingLocker == nil {
		t.Skip("locktest: no NewCrashingLocker hook; failover after a crash not checked")
	}
	l, crash := s.ecfg.NewCrashingLocker(t)
	e, err := election.New(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &candidate{locker: l, e: e}
	b := s.candidate(t, "b", nil)
	name := s.name(t)
	la := s.mustCampaign(t, a, name)
	defer func() { _ = la.Resign(ctxT(t, 10*time.Second)) }()
	type result struct {
		l   *election.Leadership
		err error
		at  time.Time
	}
	res := make(chan result, 1)
	go func() {
		l, err := b.e.Campaign(ctxT(t, time.Minute), name, b.value)
		res <- result{l, err, time.Now()}
	}()
	time.Sleep(100 * time.Millisecond) // let b wait
	start := time.Now()
	crash()
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Logf("the crash took %v", d.Round(time.Millisecond))
	}
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("the waiting candidate's Campaign = %v", r.err)
		}
		d := r.at.Sub(start)
		t.Logf("failover: the waiting candidate led %v after the leader crashed", d.Round(time.Millisecond))
		if d > s.ecfg.CrashFailoverBound {
			t.Errorf("failover after a crash took %v, above the documented bound %v", d, s.ecfg.CrashFailoverBound)
		}
		if r.l.Term() <= la.Term() {
			t.Errorf("the new leader's term %d is not above the crashed leader's %d", r.l.Term(), la.Term())
		}
		mustResign(t, r.l)
	case <-time.After(s.ecfg.CrashFailoverBound + 10*time.Second):
		t.Fatalf("no new leader %v after the leader crashed (bound %v)", s.ecfg.CrashFailoverBound+10*time.Second, s.ecfg.CrashFailoverBound)
	}
}

// fencedStore is a resource that fences writes by term: it refuses a term
// lower than the highest it has accepted.
type fencedStore struct {
	mu       sync.Mutex
	highest  int64
	accepted []int64
}

func (f *fencedStore) write(term int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if term < f.highest {
		return false
	}
	f.highest = term
	f.accepted = append(f.accepted, term)
	return true
}

func (f *fencedStore) seen() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.highest
}

// deposedFenced is client-go's split brain: the leader's lock is killed,
// and it goes on working past the loss, as a leader does whose callback is
// slow to stop, while its successor works. Its writes fenced by its term
// are refused once the successor has written.
func (s *electionSuite) deposedFenced(t *testing.T) {
	s.needKill(t)
	a, b := s.candidate(t, "a", nil), s.candidate(t, "b", nil)
	name := s.name(t)
	store := &fencedStore{}
	la := s.mustCampaign(t, a, name)
	if !store.write(la.Term()) {
		t.Fatal("the first leader's write was refused")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bTerm := make(chan int64, 1)
	bErr := make(chan error, 1)
	go func() {
		bErr <- election.Lead(ctx, b.e, name, b.value, func(ctx context.Context, term int64) error {
			bTerm <- term
			for ctx.Err() == nil {
				store.write(term)
				time.Sleep(5 * time.Millisecond)
			}
			return nil
		})
	}()
	time.Sleep(100 * time.Millisecond) // let b wait
	s.cfg.KillHolder(t, la.Lock())

	// The deposed leader writes on, ignoring its loss, until a write is
	// refused or it gives up.
	var (
		refused  bool
		deadline = time.Now().Add(s.ecfg.FailoverBound + 5*time.Second)
	)
	for time.Now().Before(deadline) {
		if !store.write(la.Term()) {
			refused = true
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	var tb int64
	select {
	case tb = <-bTerm:
	default:
		t.Fatal("the successor never led")
	}
	if !refused {
		t.Fatalf("the deposed leader's writes with term %d were all accepted, the successor's term is %d", la.Term(), tb)
	}
	if tb <= la.Term() || store.seen() != tb {
		t.Errorf("successor's term %d, store's highest %d, deposed leader's term %d", tb, store.seen(), la.Term())
	}
	// Nothing the deposed leader sends is accepted any more.
	for range 10 {
		if store.write(la.Term()) {
			t.Fatal("a write of the deposed leader was accepted after the successor's")
		}
	}
	cancel()
	if err := <-bErr; !errors.Is(err, context.Canceled) {
		t.Errorf("the successor's Lead = %v, want context.Canceled", err)
	}
	store.mu.Lock()
	for i := 1; i < len(store.accepted); i++ {
		if store.accepted[i] < store.accepted[i-1] {
			t.Errorf("the store accepted term %d after term %d", store.accepted[i], store.accepted[i-1])
		}
	}
	store.mu.Unlock()
	if _, ok := recvBy(la.Done(), time.Now().Add(s.cfg.LossBound)); !ok {
		t.Errorf("the deposed leader's Done not closed within the loss bound %v", s.cfg.LossBound)
	}
	_ = la.Resign(ctxT(t, 10*time.Second))
	wantNoLeader(t, a, name)
}

// leadCancelledOnLoss checks that Lead cancels fn's context, with the loss
// as its cause, when the leadership is lost, reports it, and leads again
// with a greater term.
func (s *electionSuite) leadCancelledOnLoss(t *testing.T) {
	s.needKill(t)
	var (
		mu       sync.Mutex
		reported []error
	)
	a := s.candidate(t, "a", &election.Config{
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		OnError: func(name string, term int64, err error) {
			mu.Lock()
			reported = append(reported, fmt.Errorf("term %d: %w", term, err))
			mu.Unlock()
		},
	})
	name := s.name(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *election.Leadership, 2)
	// fn's contexts, so that the check below waits on the context itself,
	// not on a goroutine that relays its end and may run late.
	fnCtxs := make(chan context.Context, 2)
	done := make(chan error, 1)
	go func() {
		done <- election.Lead(ctx, a.e, name, a.value, func(ctx context.Context, term int64) error {
			l := election.LeadershipFrom(ctx)
			if l == nil || l.Term() != term || l.Name() != name {
				t.Errorf("LeadershipFrom(fn's ctx) = %v, want the leadership of term %d", l, term)
			}
			fnCtxs <- ctx
			started <- l
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	var first *election.Leadership
	select {
	case first = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("Lead never led")
	}
	if first == nil {
		t.FailNow()
	}
	fnCtx := <-fnCtxs
	start := time.Now()
	s.cfg.KillHolder(t, first.Lock())
	if _, ok := recvBy(fnCtx.Done(), time.Now().Add(s.cfg.LossBound)); !ok {
		t.Fatalf("fn's context not cancelled within the loss bound %v", s.cfg.LossBound)
	}
	t.Logf("fn's context cancelled %v after the kill", time.Since(start).Round(time.Millisecond))
	if cause := context.Cause(fnCtx); !errors.Is(cause, lockkit.ErrLost) {
		t.Errorf("context.Cause of fn's context = %v, want the loss (ErrLost)", cause)
	}
	select {
	case second := <-started:
		if second == nil || second.Term() <= first.Term() {
			t.Errorf("Lead's second leadership %v is not above the first's term %d", second, first.Term())
		}
	case <-time.After(s.ecfg.FailoverBound + 5*time.Second):
		t.Fatal("Lead did not lead again after the loss")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Lead = %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) == 0 || !errors.Is(reported[0], lockkit.ErrLost) {
		t.Errorf("OnError got %v, want the loss of the first term first", reported)
	}
	wantNoLeader(t, a, name)
}

// pushedPoll is the observers' poll interval when the backend pushes:
// long, so that a change seen within PushBound was pushed.
const pushedPoll = 10 * time.Second

// observe has an observer follow a sequence of leaders and vacancies, each
// lasting several poll intervals, and checks it sees each of them, in
// order. On a backend that pushes, the observer polls every 10s and must
// see each change within PushBound.
func (s *electionSuite) observe(t *testing.T) {
	var ocfg *election.Config
	hold := max(10*s.ecfg.PollInterval, 200*time.Millisecond)
	within := hold + 10*time.Second
	if s.ecfg.Pushed {
		ocfg = &election.Config{PollInterval: pushedPoll}
		hold = 200 * time.Millisecond
		within = s.ecfg.PushBound
	}
	a, b, o := s.candidate(t, "a", nil), s.candidate(t, "b", nil), s.candidate(t, "o", ocfg)
	if !o.canList() {
		t.Skip("locktest: the Locker is no lockkit.Lister; Observe not checked")
	}
	name := s.name(t)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := make(chan election.Leader, 100)
	errc := make(chan error, 100)
	obsDone := make(chan struct{})
	go func() {
		defer close(obsDone)
		for ld, err := range o.e.Observe(ctx, name) {
			if err != nil {
				errc <- err
				continue
			}
			seen <- ld
		}
	}()
	// since is when the change awaited next was made.
	since := time.Now()
	next := func(what string, bound time.Duration) election.Leader {
		t.Helper()
		got := func(ld election.Leader) election.Leader {
			if s.ecfg.Pushed {
				t.Logf("observed %s %v after the change", what, time.Since(since).Round(time.Millisecond))
			}
			return ld
		}
		select {
		case ld := <-seen:
			return got(ld)
		case err := <-errc:
			t.Fatalf("Observe yielded an error waiting for %s: %v", what, err)
		case <-time.After(bound - time.Since(since)):
			// The bound may have passed before this select
			// started (mustResign and the hand-over come after
			// since), when select picks at random: look again.
			select {
			case ld := <-seen:
				return got(ld)
			case err := <-errc:
				t.Fatalf("Observe yielded an error waiting for %s: %v", what, err)
			default:
				t.Fatalf("Observe yielded nothing for %s within %v", what, bound)
			}
		}
		return election.Leader{}
	}
	want := func(what string, l *election.Leadership) {
		t.Helper()
		ld := next(what, within)
		switch {
		case l == nil && ld.Term != 0:
			t.Fatalf("Observe yielded %+v, want %s", ld, what)
		case l != nil && (ld.Term != l.Term() || ld.Value != l.Value() || ld.Name != name):
			t.Fatalf("Observe yielded %+v, want %s (term %d, value %q)", ld, what, l.Term(), l.Value())
		}
	}

	want("the vacancy at the start", nil)
	since = time.Now()
	la := s.mustCampaign(t, a, name)
	want("the first leader", la)
	time.Sleep(hold)
	since = time.Now()
	mustResign(t, la)
	want("the vacancy after a resignation", nil)
	time.Sleep(hold)
	since = time.Now()
	lb := s.mustCampaign(t, b, name)
	want("the second leader", lb)
	time.Sleep(hold)
	// A hand-over without a vacancy: a waits while b leads.
	got := make(chan *election.Leadership, 1)
	go func() {
		l, err := a.e.Campaign(ctx, name, a.value)
		if err != nil {
			t.Errorf("Campaign: %v", err)
		}
		got <- l
	}()
	time.Sleep(hold)
	since = time.Now()
	mustResign(t, lb)
	la2 := <-got
	if la2 == nil {
		t.FailNow()
	}
	ld := next("the third leader", within)
	if ld.Term == 0 { // the hand-over may show a vacancy
		ld = next("the third leader after the vacancy", within)
	}
	if ld.Term != la2.Term() || ld.Value != la2.Value() {
		t.Fatalf("Observe yielded %+v, want the third leader (term %d, value %q)", ld, la2.Term(), la2.Value())
	}
	time.Sleep(hold)
	since = time.Now()
	if s.cfg.KillHolder != nil {
		s.cfg.KillHolder(t, la2.Lock())
		ld := next("the vacancy after the leader's lock was killed", within+s.cfg.LossBound)
		if ld.Term != 0 {
			t.Fatalf("Observe yielded %+v, want the vacancy after the leader's lock was killed", ld)
		}
		<-la2.Done()
		_ = la2.Resign(ctxT(t, 10*time.Second))
	} else {
		mustResign(t, la2)
		want("the last vacancy", nil)
	}
	cancel()
	<-obsDone
	select {
	case ld := <-seen:
		t.Errorf("Observe yielded %+v after the last change", ld)
	default:
	}
}

// observeOrder has observers follow leaderships in quick succession, most
// of them shorter than a poll: each observer's terms must strictly
// increase, whatever it missed, and each must end with the vacancy after
// the last resignation.
func (s *electionSuite) observeOrder(t *testing.T) {
	cfg := &election.Config{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	a, b := s.candidate(t, "a", cfg), s.candidate(t, "b", cfg)
	if !a.canList() {
		t.Skip("locktest: the Locker is no lockkit.Lister; Observe not checked")
	}
	name := s.name(t)
	const observers, terms = 3, 20
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		yielded = make([][]int64, observers)
		errs    = make([]error, observers)
		started = make(chan struct{}, observers)
	)
	for i := range observers {
		o := s.candidate(t, "o", nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for ld, err := range o.e.Observe(ctx, name) {
				if first {
					started <- struct{}{}
					first = false
				}
				mu.Lock()
				if err != nil {
					errs[i] = err
				} else {
					yielded[i] = append(yielded[i], ld.Term)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	for range observers {
		<-started
	}
	var last int64
	for i := range terms {
		l := s.mustCampaign(t, []*candidate{a, b}[i%2], name)
		last = l.Term()
		time.Sleep(time.Duration(rand.IntN(3 * int(s.ecfg.PollInterval))))
		mustResign(t, l)
	}
	// Each observer ends with the vacancy, within a poll or so.
	vacant := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, ts := range yielded {
			if n := len(ts); n == 0 || ts[n-1] != 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10*s.ecfg.PollInterval + 10*time.Second); !vacant() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	for i, ts := range yielded {
		if errs[i] != nil {
			t.Errorf("observer %d: %v", i, errs[i])
		}
		var high int64
		for _, term := range ts {
			if term != 0 && term <= high {
				t.Errorf("observer %d yielded term %d after term %d: %v", i, term, high, ts)
			}
			if term > last {
				t.Errorf("observer %d yielded term %d, above the last leader's %d", i, term, last)
			}
			high = max(high, term)
		}
		if n := len(ts); n == 0 || ts[n-1] != 0 {
			t.Errorf("observer %d ended with %v, want the vacancy last", i, ts)
		}
	}
}
