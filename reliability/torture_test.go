package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

// The exclusion torture test: N helper processes, M iterations each, do a
// read-modify-write of a shared resource under one lock name, while the
// test kills the current holder's session (or lease, or lock file) at
// random. See TestTorture.

var tortureLong = flag.Bool("torture.long", false, "run the long torture test (also LOCKKIT_TORTURE=long)")

func longTorture() bool { return *tortureLong || os.Getenv("LOCKKIT_TORTURE") == "long" }

// tortureArgs is what a torture worker is told.
type tortureArgs struct {
	Worker     int           `json:"worker"`
	Iterations int           `json:"iterations"`
	Resource   string        `json:"resource"`
	HoldMax    time.Duration `json:"hold_max"`  // time inside the critical section, 0..HoldMax
	ThinkMax   time.Duration `json:"think_max"` // time between iterations, 0..ThinkMax
	Tokens     bool          `json:"tokens"`    // the backend hands out fencing tokens
	// RetryFor, when set, lets failed Acquires not use up iterations
	// until they have gone on that long in all: a failover that takes
	// seconds then leaves the workers iterations to write after it.
	RetryFor time.Duration `json:"retry_for"`
}

// wStats are a worker's counts, reported when it ends.
type wStats struct {
	Ops            int `json:"ops"`             // critical sections that wrote
	AcquireErrs    int `json:"acquire_errs"`    // Acquire calls that failed
	Aborted        int `json:"aborted"`         // critical sections left without writing: the lock was reported lost
	Fenced         int `json:"fenced"`          // accesses the resource refused for a stale token
	Overlaps       int `json:"overlaps"`        // entered while another worker was inside (see TestTorture)
	Violations     int `json:"violations"`      // a fenced resource accepted a write over another one
	LostUpdates    int `json:"lost_updates"`    // unfenced writes over another worker's write (all after a fault)
	LostIncrements int `json:"lost_increments"` // the increments those writes overwrote
	ReleaseLost    int `json:"release_lost"`    // Release reported the loss
	ReleaseOther   int `json:"release_other"`   // Release failed otherwise
}

func (a *wStats) add(b wStats) {
	a.Ops += b.Ops
	a.AcquireErrs += b.AcquireErrs
	a.Aborted += b.Aborted
	a.Fenced += b.Fenced
	a.Overlaps += b.Overlaps
	a.Violations += b.Violations
	a.LostUpdates += b.LostUpdates
	a.LostIncrements += b.LostIncrements
	a.ReleaseLost += b.ReleaseLost
	a.ReleaseOther += b.ReleaseOther
}

func insideKey(worker, seq int) string { return strconv.Itoa(worker) + "/" + strconv.Itoa(seq) }

// childTorture is one torture worker.
func childTorture(s spec, name, rawArgs string) int {
	var a tortureArgs
	if err := json.Unmarshal([]byte(rawArgs), &a); err != nil {
		fmt.Fprintf(os.Stderr, "torture: bad args: %v\n", err)
		return 2
	}
	var mu sync.Mutex
	out := func(e event) { e.Worker = a.Worker; emit(os.Stdout, &mu, e) }
	b, err := s.open()
	if err != nil {
		out(event{Event: "error", Err: err.Error()})
		return 1
	}
	defer b.Close()
	var st wStats
	var watchers sync.WaitGroup
	rnd := func(d time.Duration) time.Duration {
		if d <= 0 {
			return 0
		}
		return rand.N(d)
	}
	var failing time.Duration // time spent in failed Acquires (RetryFor)
	for seq := 1; seq <= a.Iterations; seq++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		l, err := b.locker.Acquire(ctx, name)
		cancel()
		if err != nil {
			st.AcquireErrs++
			out(event{Event: "acquire-error", Seq: seq, Err: err.Error()})
			time.Sleep(10 * time.Millisecond)
			if failing += time.Since(start); failing < a.RetryFor {
				seq-- // the iteration is tried again
			}
			continue
		}
		out(event{Event: "held", Seq: seq, Session: session(l), Token: l.Token()})
		watchers.Add(1)
		go func(seq int) {
			defer watchers.Done()
			<-l.Done()
			at := time.Now().UnixNano()
			if err := l.Err(); errors.Is(err, lockkit.ErrLost) {
				out(event{Event: "lost", Seq: seq, Err: err.Error(), At: at})
			}
		}(seq)

		me := insideKey(a.Worker, seq)
		var c0 int64
		entered := false
		err = updateResource(a.Resource, func(rs *resState) error {
			if a.Tokens && l.Token() < rs.Token {
				st.Fenced++
				return nil
			}
			for k, other := range rs.Inside {
				// The test decides from the event times whether a fault
				// or a loss report explains it.
				st.Overlaps++
				out(event{Event: "overlap", Seq: seq, Session: k, Token: other.Token})
			}
			if a.Tokens {
				rs.Token = l.Token()
			}
			if rs.Inside == nil {
				rs.Inside = map[string]insideRef{}
			}
			rs.Inside[me] = insideRef{Worker: a.Worker, Seq: seq, Session: session(l), Token: l.Token(), PID: os.Getpid(), At: time.Now().UnixNano()}
			c0 = rs.Counter
			entered = true
			return nil
		})
		if err != nil {
			out(event{Event: "error", Seq: seq, Err: err.Error()})
			return 1
		}
		if entered {
			time.Sleep(rnd(a.HoldMax))
			err = updateResource(a.Resource, func(rs *resState) error {
				delete(rs.Inside, me)
				switch {
				case a.Tokens && l.Token() < rs.Token:
					st.Fenced++
				case !a.Tokens && l.Err() != nil:
					st.Aborted++ // told in time: do not write
				default:
					// Writing c0+1 over a counter that moved since the read
					// loses exactly counter-c0 increments.
					st.LostIncrements += int(rs.Counter - c0)
					if rs.Counter != c0 {
						if a.Tokens {
							st.Violations++
							out(event{Event: "violation", Seq: seq, Err: fmt.Sprintf("fenced write over another write: read %d, now %d", c0, rs.Counter)})
						} else {
							st.LostUpdates++
						}
					}
					rs.Counter = c0 + 1
					rs.Writes++
					rs.Writer = os.Getpid()
					st.Ops++
				}
				return nil
			})
			if err != nil {
				out(event{Event: "error", Seq: seq, Err: err.Error()})
				return 1
			}
		}
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = l.Release(rctx)
		rcancel()
		switch {
		case err == nil:
		case errors.Is(err, lockkit.ErrLost):
			st.ReleaseLost++
		default:
			st.ReleaseOther++
			out(event{Event: "release-error", Seq: seq, Err: err.Error()})
		}
		time.Sleep(rnd(a.ThinkMax))
	}
	watchers.Wait()
	out(event{Event: "stats", Stats: &st})
	return 0
}

// tortureConfig sizes one torture run.
type tortureConfig struct {
	workers, iterations int
	holdMax, thinkMax   time.Duration
	faultMin, faultMax  time.Duration // pause between two faults
}

// tortureResult is what a run found.
type tortureResult struct {
	kind       string
	elapsed    time.Duration
	stats      wStats
	faults     int
	detected   int // faults whose victim reported the loss
	lat        []time.Duration
	explained  int // overlaps after a fault on, or a loss report of, the worker inside
	violations int // overlaps nothing explains, plus the workers' fenced violations
	unprovoked int // losses no fault explains (leases that ran out on their own)
	missed     []string
}

func (r tortureResult) String() string {
	p := func(q float64) time.Duration {
		if len(r.lat) == 0 {
			return 0
		}
		return r.lat[min(len(r.lat)-1, int(q*float64(len(r.lat))))]
	}
	return fmt.Sprintf("%-17s %6d ops in %6.1fs, faults %4d, detected %4d (p50 %v p90 %v p99 %v max %v), violations %d, "+
		"overlaps after a fault %d, lost updates (unfenced) %d, fenced %d, aborted %d, acquire errors %d, unprovoked losses %d",
		r.kind, r.stats.Ops, r.elapsed.Seconds(), r.faults, r.detected,
		p(0.5).Round(time.Microsecond), p(0.9).Round(time.Microsecond), p(0.99).Round(time.Microsecond), p(1).Round(time.Microsecond),
		r.violations, r.explained, r.stats.LostUpdates, r.stats.Fenced, r.stats.Aborted, r.stats.AcquireErrs, r.unprovoked)
}

// TestTorture runs the exclusion torture test against every backend: a
// short run in CI, a long one with -torture.long or LOCKKIT_TORTURE=long.
//
// Each worker is a process of its own that loops: Acquire, enter the
// critical section (the resource notes who is inside), read the counter,
// work for a moment, write counter+1, leave, Release. Meanwhile the test
// picks the worker inside and kills its lock from outside — the session,
// the lease, or the lock file — and notes that in the resource.
//
// A violation is a worker entering while another one is inside whose lock
// nobody killed, or, where the backend has fencing tokens, a write the
// fenced resource accepted over another one. It must never happen. A worker
// entering while a killed holder is still inside is the window every lock
// has between losing a lock and its holder knowing it; the holders without
// fencing tokens abort their write when told in time, and the rest shows as
// "lost updates (unfenced)" — why a resource that can check fencing tokens
// should.
func TestTorture(t *testing.T) {
	t.Parallel()
	cfg := tortureConfig{workers: 3, iterations: 20, holdMax: 8 * time.Millisecond, thinkMax: 2 * time.Millisecond,
		faultMin: 20 * time.Millisecond, faultMax: 100 * time.Millisecond}
	if longTorture() {
		cfg = tortureConfig{workers: 8, iterations: 1000, holdMax: 3 * time.Millisecond, thinkMax: 2 * time.Millisecond,
			faultMin: 30 * time.Millisecond, faultMax: 300 * time.Millisecond}
	}
	var mu sync.Mutex
	var results []tortureResult
	for _, v := range tortureVariants(longTorture()) {
		t.Run(v.label(), func(t *testing.T) {
			if !longTorture() {
				t.Parallel() // the long run goes one backend at a time, for cleaner latencies
			}
			s := envSpec(t, v.kind)
			s.Fencing = !v.unfenced
			switch v.kind {
			case kindMySQL:
				s.Probe, s.ProbeTO = 50*time.Millisecond, 500*time.Millisecond
			case kindRedis:
				s.TTL, s.Renew = 400*time.Millisecond, 50*time.Millisecond
			case kindFile:
				s.Check = 20 * time.Millisecond
			case kindRowPG, kindRowMySQL:
				s.TTL, s.Renew = 1*time.Second, 50*time.Millisecond
			}
			if !s.tokens() && !v.unfenced {
				t.Fatalf("%s hands out no fencing tokens with Fencing set", v.kind)
			}
			r := torture(t, s, cfg)
			r.kind = v.label()
			t.Log(r.String())
			for _, m := range r.missed {
				t.Log("missed: " + m)
			}
			if r.violations != 0 {
				t.Errorf("%d exclusion violations", r.violations)
			}
			if s.tokens() && r.stats.LostUpdates != 0 {
				t.Errorf("%d lost updates with fencing tokens", r.stats.LostUpdates)
			}
			if len(r.missed) != 0 {
				t.Errorf("%d faults the victim never reported as a loss", len(r.missed))
			}
			if r.faults == 0 {
				t.Error("no fault was injected: the run proves nothing")
			}
			if r.stats.Ops == 0 {
				t.Error("no operation completed")
			}
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		})
	}
	t.Cleanup(func() {
		slices.SortFunc(results, func(a, b tortureResult) int { return strings.Compare(a.kind, b.kind) })
		mode := "short"
		if longTorture() {
			mode = "long"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "torture (%s): %d workers x %d iterations per backend\n", mode, cfg.workers, cfg.iterations)
		for _, r := range results {
			b.WriteString(r.String() + "\n")
		}
		t.Log("\n" + b.String())
		if out := os.Getenv("LOCKKIT_TORTURE_OUT"); out != "" {
			_ = os.WriteFile(out, []byte(b.String()), 0o644)
		}
	})
}

// tortureVariant is one row of the torture run: a backend, with its
// fencing tokens on (every backend has them: the lock table and etcd
// always, the others with Config.Fencing) or, as a control, off.
type tortureVariant struct {
	kind     string
	unfenced bool
}

func (v tortureVariant) label() string {
	if v.unfenced {
		return v.kind + "-unfenced"
	}
	return v.kind
}

// tortureVariants lists the rows of a run: every backend fenced by its
// tokens and, in the long run, the backends whose tokens are opt-in
// without them, a control that shows the lost updates fencing prevents.
func tortureVariants(long bool) []tortureVariant {
	var vs []tortureVariant
	for _, k := range []string{kindPostgres, kindMySQL, kindRedis, kindFile, kindRowPG, kindRowMySQL} {
		vs = append(vs, tortureVariant{kind: k})
	}
	if long {
		for _, k := range []string{kindPostgres, kindMySQL, kindRedis, kindFile} {
			vs = append(vs, tortureVariant{kind: k, unfenced: true})
		}
	}
	return vs
}

func torture(t *testing.T, s spec, cfg tortureConfig) tortureResult {
	admin := openT(t, s)
	n := name(t)
	admin.forget(t, n)
	res := t.TempDir()
	if err := os.Chmod(res, 0o777); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	children := make([]*child, cfg.workers)
	for i := range children {
		children[i] = startChild(t, "torture", s, n, &childOptions{args: tortureArgs{
			Worker: i + 1, Iterations: cfg.iterations, Resource: res,
			HoldMax: cfg.holdMax, ThinkMax: cfg.thinkMax, Tokens: s.tokens(),
		}})
	}

	// Collect every worker's events until it exits.
	var mu sync.Mutex
	var events []event
	var wg sync.WaitGroup
	for _, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range c.events {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
		}()
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()

	// Inject faults until the workers are done.
	type fault struct {
		key string
		at  time.Time
	}
	var faults []fault
	faultedAt := map[string]time.Time{}
	timeout := time.After(10 * time.Minute)
loop:
	for {
		select {
		case <-allDone:
			break loop
		case <-timeout:
			t.Fatal("torture run did not end within 10 minutes")
		case <-time.After(cfg.faultMin + rand.N(cfg.faultMax-cfg.faultMin+1)):
		}
		// Wait (briefly) for a moment when exactly one worker is inside:
		// every fault is then attributed to exactly one holder.
		for try := 0; try < 200; try++ {
			st, err := readResource(res)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Inside) == 1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		err := updateResource(res, func(st *resState) error {
			if len(st.Inside) != 1 {
				return nil
			}
			for k, in := range st.Inside {
				if faultedAt[k] != (time.Time{}) {
					return nil
				}
				now := time.Now() // the fault starts here: the victim may hear of it before killSession returns
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := admin.killSession(ctx, in.Session)
				cancel()
				if err != nil {
					t.Logf("fault on %s (session %s) did not take: %v", k, in.Session, err)
					return nil
				}
				faultedAt[k] = now
				faults = append(faults, fault{k, now})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	r := tortureResult{kind: s.Kind, elapsed: time.Since(start), faults: len(faults)}

	lost := map[string]event{}
	heldAt := map[string]int64{}
	heldTok := map[string]int64{}
	var overlaps []event
	for _, e := range events {
		switch e.Event {
		case "stats":
			r.stats.add(*e.Stats)
		case "held":
			heldAt[insideKey(e.Worker, e.Seq)] = e.At
			heldTok[insideKey(e.Worker, e.Seq)] = e.Token
		case "lost":
			lost[insideKey(e.Worker, e.Seq)] = e
		case "overlap":
			overlaps = append(overlaps, e)
		case "violation", "error", "release-error":
			t.Logf("worker %d seq %d: %s: %s", e.Worker, e.Seq, e.Event, e.Err)
		}
	}
	r.violations = r.stats.Violations
	// An overlap — worker B entered while A was inside — is explained when
	// A's lock was killed by the test, or A was told it lost the lock,
	// before B acquired. Anything else is two holders.
	for _, o := range overlaps {
		other := o.Session
		bHeld := heldAt[insideKey(o.Worker, o.Seq)]
		if f, ok := faultedAt[other]; ok && f.UnixNano() <= bHeld {
			r.explained++
			continue
		}
		if l, ok := lost[other]; ok && l.At <= bHeld {
			r.explained++
			continue
		}
		r.violations++
		t.Logf("violation: worker %d seq %d (token %d) acquired at %v while %s (token %d) was inside, not faulted and not told",
			o.Worker, o.Seq, heldTok[insideKey(o.Worker, o.Seq)], time.Unix(0, bHeld).Format("15:04:05.000000"), other, o.Token)
	}
	for _, f := range faults {
		e, ok := lost[f.key]
		if !ok {
			r.missed = append(r.missed, f.key)
			continue
		}
		r.detected++
		r.lat = append(r.lat, time.Unix(0, e.At).Sub(f.at))
	}
	for k := range lost {
		if _, ok := faultedAt[k]; !ok {
			r.unprovoked++
		}
	}
	slices.Sort(r.lat)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, c := range children {
			if c.stderr.String() != "" {
				t.Logf("worker stderr: %s", c.stderr.String())
			}
		}
	})
	st, err := readResource(res)
	if err != nil {
		t.Fatal(err)
	}
	// Every accepted write stored the counter it read plus one: the counter
	// counts the writes, less the increments lost updates overwrote.
	if want := st.Writes - int64(r.stats.LostIncrements); st.Counter != want {
		t.Errorf("counter %d, want writes %d less the %d increments lost updates overwrote", st.Counter, st.Writes, r.stats.LostIncrements)
	}
	if int64(r.stats.Ops) != st.Writes {
		t.Errorf("workers counted %d writes, the resource %d", r.stats.Ops, st.Writes)
	}
	admin.eventuallyFree(t, n, s.ttl()+2*time.Second)
	return r
}

// TestTortureDetectsViolations is the torture test's control: a "lock"
// that excludes nothing must show violations, so that zero violations
// elsewhere means something.
func TestTortureDetectsViolations(t *testing.T) {
	t.Parallel()
	// Long enough (about a second a worker) that the workers overlap in
	// time however slowly the machine starts them.
	r := torture(t, spec{Kind: kindNone}, tortureConfig{workers: 3, iterations: 60, holdMax: 30 * time.Millisecond,
		faultMin: time.Hour, faultMax: time.Hour})
	t.Log(r.String())
	if r.violations == 0 {
		t.Error("a lock that excludes nothing showed no violations: the torture test cannot see them")
	}
}
