package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/procstat"
)

// role says what a variant is in the comparison.
type role string

const (
	roleLockkit role = "lockkit"
	roleFloor   role = "floor" // the raw driver running lockkit's statements
	rolePeer    role = "peer"  // a library people use instead
)

// releaseFunc gives a lock back.
type releaseFunc func(ctx context.Context) error

// worker is one of the goroutines of the contended scenario: it waits for
// the one contended lock.
type worker interface {
	acquire(ctx context.Context) (releaseFunc, error)
}

// workerFunc adapts a function to worker.
type workerFunc func(ctx context.Context) (releaseFunc, error)

func (f workerFunc) acquire(ctx context.Context) (releaseFunc, error) { return f(ctx) }

// variant is one implementation under test on one backend: lockkit, the
// floor, or a peer. Every func field may be nil where the scenario does not
// apply to the variant.
type variant struct {
	name string
	role role
	net  *netCounter // nil: no network (files)
	note string      // how it is configured, for the report

	// try makes one attempt, without waiting, on the lock with index k
	// (distinct k, distinct lock) and returns its release.
	try func(ctx context.Context, k int) (releaseFunc, error)

	// contended returns n workers that wait for the lock with index k, and
	// a cleanup that frees what they use (connections, lockers).
	contended func(ctx context.Context, k, n int) ([]worker, func(), error)

	// multi takes the locks with the given indexes at once and returns the
	// release of all of them.
	multi func(ctx context.Context, ks []int) (releaseFunc, error)

	// hold takes the locks with the given indexes and keeps them until the
	// release: the background of the scale scenario. nil means try each.
	hold func(ctx context.Context, ks []int) (releaseFunc, error)

	// holdCap caps the scale scenario for this variant, with the reason.
	holdCap    int
	holdCapWhy string

	// countFDs reports this process's open file descriptors, for a backend
	// whose held locks cost descriptors rather than connections.
	countFDs bool

	// diagnostic marks a variant that only helps explain another's cost:
	// it runs the single-key and contended scenarios only.
	diagnostic bool

	// singleKey marks a variant that can lock one fixed lock only (k is
	// ignored): it runs the single-key and contended scenarios only.
	singleKey bool

	// procs, instead of contended, runs one contended slice in worker
	// processes of its own, adds their counts to r and returns their
	// flights (see perworker.go).
	procs func(ctx context.Context, k, n int, window time.Duration, r *contendedResult) int64

	// fullOnly leaves the variant out of -quick runs.
	fullOnly bool
}

// params sizes a run. Counts are upper bounds: every batch also stops at
// batchBudget (after minBatch ops), so that a backend whose operations
// take milliseconds (a lock table commits twice per lock) still fits the
// run's time.
type params struct {
	rounds, batch int           // single key: rounds (repeats) × batch ops per variant
	batchBudget   time.Duration // wall time cap of one batch
	distinct      int           // distinct keys: ops (one per key) per variant
	workers       int           // contended
	window        time.Duration // contended: total per variant, warm-up slice not counted
	slices        int           // contended: the window in this many interleaved slices (repeats)
	warmSlice     bool          // contended: a first, unrecorded slice of every variant
	headFactor    int           // contended: the headline variants (headlines in compare.go) run this many times as many slices
	multiN        int           // keys per multi-key op
	multiOps      int
	memOps        int
	memBudget     time.Duration
	heldN         int // connections held for this many locks
	scaleSteps    []int
	scaleOps      int
	scaleBudget   time.Duration // per step
}

// minBatch is the fewest ops of a batch, whatever its budget.
const minBatch = 5

var fullParams = params{
	rounds: 20, batch: 100, batchBudget: 125 * time.Millisecond,
	distinct: 10000,
	workers:  16, window: 1800 * time.Millisecond, slices: 12, warmSlice: true, headFactor: 8,
	multiN: 100, multiOps: 200,
	memOps: 500, memBudget: time.Second, heldN: 10,
	scaleSteps: []int{1, 10, 100, 1000, 10000}, scaleOps: 200, scaleBudget: 500 * time.Millisecond,
}

var quickParams = params{
	rounds: 5, batch: 12, batchBudget: 40 * time.Millisecond,
	distinct: 200,
	workers:  16, window: 300 * time.Millisecond, slices: 1,
	multiN: 100, multiOps: 6,
	memOps: 50, memBudget: 100 * time.Millisecond, heldN: 4,
	scaleSteps: []int{1, 10, 100}, scaleOps: 20, scaleBudget: 60 * time.Millisecond,
}

// maxErrors is how many failed operations abort a variant's scenario.
const maxErrors = 10

// opTimeout bounds one operation: nothing the harness does should wait
// longer, and a stuck server must not hang the run.
const opTimeout = 30 * time.Second

// keyBase gives every (variant, scenario) pair its own range of lock
// indexes, so that no two measurements ever touch the same lock.
func keyBase(vi int, scenario int) int { return vi*10_000_000 + scenario*1_000_000 }

// Scenario numbers, for keyBase.
const (
	scSingle = iota
	scDistinct
	scContended
	scMulti
	scMemory
	scScale
	scScaleHeld
)

// latencyResult is one variant's latency in one scenario.
type latencyResult struct {
	Variant    string  `json:"variant"`
	Role       role    `json:"role"`
	N          int     `json:"n"`
	MedianNs   int64   `json:"median_ns"`
	P99Ns      int64   `json:"p99_ns"`
	MeanNs     int64   `json:"mean_ns"`
	RoundTrips float64 `json:"round_trips_per_op"` // -1: no network
	DialsPerOp float64 `json:"dials_per_op"`
	Errors     int     `json:"errors"`
	Skipped    string  `json:"skipped,omitempty"`
	// RoundMedianNs is the median of each repeat (round), in round
	// order: the ratios' confidence intervals pair them round by round.
	RoundMedianNs []int64 `json:"round_median_ns"`

	s samples
}

// runLatency runs op for every variant in rounds (the repeats). Within a
// round the variants are interleaved operation by operation, in an order
// shuffled afresh each round: every variant gets batch operations, placed
// at random among the others', so that a drift or a mode change of the
// shared machine (this machine's loopback latency is bimodal, and stays in
// one mode for tens of milliseconds) lands on every variant alike. A round
// ends early once it has run budget × variants of wall time (and every
// variant at least minBatch ops); the shuffle keeps the variants' counts
// alike then too. A shuffled warm-up round is not recorded. Each round's
// median per variant is kept, for ratios with confidence intervals.
func runLatency(ctx context.Context, vs []*variant, rounds, batch int, budget time.Duration, op func(ctx context.Context, vi int, v *variant, i int) error) []*latencyResult {
	res := make([]*latencyResult, len(vs))
	flights := make([]int64, len(vs))
	dials := make([]int64, len(vs))
	next := make([]int, len(vs)) // op index per variant
	for vi, v := range vs {
		res[vi] = &latencyResult{Variant: v.name, Role: v.role, RoundTrips: -1}
	}
	runRound := func(n int, record bool) {
		order := make([]int, 0, n*len(vs))
		for vi := range vs {
			for range n {
				order = append(order, vi)
			}
		}
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		round := make([]samples, len(vs))
		done := make([]int, len(vs))
		rstart := time.Now()
		roundBudget := budget * time.Duration(len(vs))
		for _, vi := range order {
			v, r := vs[vi], res[vi]
			if r.Skipped != "" {
				continue
			}
			if done[vi] >= minBatch && time.Since(rstart) > roundBudget {
				continue
			}
			if ctx.Err() != nil {
				r.Skipped = "interrupted"
				continue
			}
			i := next[vi]
			next[vi]++
			// Traffic is counted per operation: variants may share a
			// counter (a floor and its diagnostics), and the ops of
			// one round are interleaved.
			var before snapshot
			if v.net != nil {
				before = v.net.snap()
			}
			octx, cancel := context.WithTimeout(ctx, opTimeout)
			start := time.Now()
			err := op(octx, vi, v, i)
			d := time.Since(start)
			cancel()
			done[vi]++
			if record && v.net != nil {
				after := v.net.snap()
				flights[vi] += after.Flights - before.Flights
				dials[vi] += after.Dials - before.Dials
			}
			if err != nil {
				r.Errors++
				if r.Errors >= maxErrors {
					r.Skipped = fmt.Sprintf("%d errors, last: %v", r.Errors, err)
				}
				continue
			}
			if record {
				round[vi] = append(round[vi], d)
			}
		}
		if !record {
			return
		}
		for vi, r := range res {
			if r.Skipped != "" {
				continue
			}
			r.s = append(r.s, round[vi]...)
			r.RoundMedianNs = append(r.RoundMedianNs, int64(round[vi].median()))
		}
	}
	runRound(max(2, batch/5), false)
	for range rounds {
		runRound(batch, true)
	}
	for vi, r := range res {
		r.N = len(r.s)
		r.MedianNs = int64(r.s.median())
		r.P99Ns = int64(r.s.p99())
		r.MeanNs = int64(r.s.mean())
		if vs[vi].net != nil && r.N > 0 {
			r.RoundTrips = float64(flights[vi]) / float64(r.N)
			r.DialsPerOp = float64(dials[vi]) / float64(r.N)
		}
	}
	return res
}

// tryRelease is the op of the uncontended scenarios: try lock k, release.
func tryRelease(ctx context.Context, v *variant, k int) error {
	rel, err := v.try(ctx, k)
	if err != nil {
		return err
	}
	return rel(ctx)
}

// contendedResult is one variant's result in the contended scenario.
type contendedResult struct {
	Variant      string  `json:"variant"`
	Role         role    `json:"role"`
	Workers      int     `json:"workers"`
	WindowNs     int64   `json:"window_ns"`
	Acquisitions int     `json:"acquisitions"`
	Throughput   float64 `json:"throughput_per_s"`
	PerWorker    []int   `json:"per_worker"`
	// PerSlice is the acquisitions of each slice. A slice with none
	// (EmptySlices) means the lock stayed held across it (a lease
	// leaked by a cancelled attempt, for one), so the throughput is not a
	// measure of handoffs.
	PerSlice []int `json:"per_slice"`
	// PerSliceMaxHandoffNs is each slice's longest handoff: a slice in
	// which the machine stopped the process (or the server) for a while
	// shows it, so that a slice's conditions can be checked against the
	// others'.
	PerSliceMaxHandoffNs []int64 `json:"per_slice_max_handoff_ns"`
	EmptySlices          int     `json:"empty_slices"`
	Spread               float64 `json:"spread"`  // max/min acquisitions per worker; 0 when some worker starved
	Starved              int     `json:"starved"` // workers with no acquisition
	HandoffP50Ns         int64   `json:"handoff_median_ns"`
	HandoffP99Ns         int64   `json:"handoff_p99_ns"`
	HandoffMean          int64   `json:"handoff_mean_ns"`
	Handoffs             int     `json:"handoffs"`
	// Handoffs to another worker only (the releaser re-winning excluded).
	OtherP50Ns int64   `json:"handoff_other_median_ns"`
	OtherP99Ns int64   `json:"handoff_other_p99_ns"`
	OtherShare float64 `json:"handoff_other_share"` // share of handoffs that went to another worker
	// Wait is how long one acquire call took, call to return: the bound
	// a waiter is served within.
	WaitP50Ns  int64   `json:"wait_median_ns"`
	WaitP99Ns  int64   `json:"wait_p99_ns"`
	WaitMaxNs  int64   `json:"wait_max_ns"`
	RoundTrips float64 `json:"round_trips_per_acquisition"` // all workers' flights, per acquisition; -1: no network
	// CPUPerAcqNs is this process's user and system CPU over the slices'
	// windows (from the workers' start to the deadline), per acquisition:
	// the client's whole cost of a handoff, its pub/sub readers and
	// timers included. 0 for a variant of worker processes, whose CPU is
	// not this process's.
	CPUPerAcqNs int64  `json:"cpu_per_acquisition_ns,omitempty"`
	cpuNs       int64  // the sum over the slices so far
	Errors      int    `json:"errors"`
	LastError   string `json:"last_error,omitempty"`
	Skipped     string `json:"skipped,omitempty"`

	// PerSliceWarmNs is, for a variant of worker processes, how long each
	// slice's warm-up took: from the processes' start until every one of
	// them had acquired once (procSlice), before the window opened.
	PerSliceWarmNs []int64 `json:"per_slice_warm_ns,omitempty"`

	handoffs, others, waits samples
}

// runContended lets n workers of each variant compete for one lock. The
// window is cut into slices (the repeats) that run variant after variant,
// in an order shuffled afresh each slice (sliceOrder), so that load from
// other processes on the shared machine hits every variant alike; each
// slice sets the variant up afresh
// (its pool, warmed before the slice starts) and tears it down, so that
// only one variant's connections are open at a time.
//
// Sizes come from p: p.workers workers, p.slices slices of
// p.window/p.slices each, a warm-up slice first if p.warmSlice. The
// variants headline reports true for (lockkit and the variant it is
// judged against in a headline ratio) run p.headFactor times as many, the
// ones past p.slices among themselves: their ratio pairs all of them,
// every other ratio the first p.slices.
func runContended(ctx context.Context, vs []*variant, keyOf func(*variant) int, p params, headline func(*variant) bool) []*contendedResult {
	n := p.workers
	rs := make([]*contendedResult, len(vs))
	flights := make([]int64, len(vs))
	for i, v := range vs {
		rs[i] = &contendedResult{Variant: v.name, Role: v.role, Workers: n, RoundTrips: -1, PerWorker: make([]int, n)}
	}
	slice := p.window / time.Duration(p.slices)
	first := 0
	if p.warmSlice {
		first = -1
	}
	for sl := first; sl < p.slices*max(1, p.headFactor); sl++ {
		for _, vi := range sliceOrder(vs, headline) {
			if ctx.Err() != nil || rs[vi].Skipped != "" || (sl >= p.slices && !headline(vs[vi])) {
				continue
			}
			// A lock of its own per slice: waiters a slice cancelled,
			// and sessions it discarded, can still be queued for its
			// lock on the server when the next slice starts.
			k := keyOf(vs[vi]) + sl + 1
			r := rs[vi]
			if sl < 0 {
				// The warm-up slice, counted nowhere: a variant's
				// first slice was its slowest more often than not (38
				// variants of two quiet runs: 0.5-1.7 % below the rest
				// in the median, 3-6 % in the mean; 18 % in the median
				// at load 10-12).
				r = &contendedResult{PerWorker: make([]int, n)}
			}
			var f int64
			if vs[vi].procs != nil {
				f = vs[vi].procs(ctx, k, n, slice, r)
			} else {
				f = contendedSlice(ctx, vs[vi], k, n, slice, r)
			}
			if sl < 0 {
				rs[vi].Skipped = r.Skipped
			} else {
				flights[vi] += f
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for vi, r := range rs {
		if r.Skipped != "" {
			continue
		}
		for _, c := range r.PerWorker {
			r.Acquisitions += c
			if c == 0 {
				r.Starved++
			}
		}
		r.Throughput = float64(r.Acquisitions) / time.Duration(r.WindowNs).Seconds()
		if mn := slicesMin(r.PerWorker); mn > 0 {
			r.Spread = float64(slicesMax(r.PerWorker)) / float64(mn)
		}
		if vs[vi].net != nil && r.Acquisitions > 0 {
			r.RoundTrips = float64(flights[vi]) / float64(r.Acquisitions)
		}
		if r.cpuNs > 0 && r.Acquisitions > 0 {
			r.CPUPerAcqNs = r.cpuNs / int64(r.Acquisitions)
		}
		if len(r.handoffs) > 0 {
			r.OtherShare = float64(len(r.others)) / float64(len(r.handoffs))
		}
		r.HandoffP50Ns = int64(r.handoffs.median())
		r.HandoffP99Ns = int64(r.handoffs.p99())
		r.HandoffMean = int64(r.handoffs.mean())
		r.Handoffs = len(r.handoffs)
		r.OtherP50Ns = int64(r.others.median())
		r.OtherP99Ns = int64(r.others.p99())
		r.WaitP50Ns = int64(r.waits.median())
		r.WaitP99Ns = int64(r.waits.p99())
		r.WaitMaxNs = int64(r.waits.quantile(1))
	}
	return rs
}

// sliceOrder is the order of one contended slice: the variants shuffled,
// with the headline ones moved together at a random place among the rest
// (in their shuffled order), so that the two sides of a headline ratio run
// back to back, under the same load, in either order.
func sliceOrder(vs []*variant, headline func(*variant) bool) []int {
	var heads, rest []int
	for _, vi := range rand.Perm(len(vs)) {
		if headline(vs[vi]) {
			heads = append(heads, vi)
		} else {
			rest = append(rest, vi)
		}
	}
	at := rand.IntN(len(rest) + 1)
	return slices.Concat(rest[:at], heads, rest[at:])
}

// contendedSlice runs one slice of the contended scenario for one variant
// and adds its counts to r; it returns the flights of the slice.
//
// Each holder stamps the time just before it calls release; the next
// holder, as soon as its acquire returns, reads that stamp: the handoff
// latency, release to next holder. Only the previous holder can have
// written the stamp, as the lock is exclusive. Acquisitions after the
// slice are released at once and not counted; a worker still waiting when
// the slice ends is cancelled through its context (implementations that
// cannot be cancelled drain: each gets the lock once more and gives it
// back).
func contendedSlice(ctx context.Context, v *variant, k, n int, window time.Duration, r *contendedResult) int64 {
	ws, cleanup, err := v.contended(ctx, k, n)
	if err != nil {
		r.Skipped = "setup: " + err.Error()
		return 0
	}
	defer cleanup()
	base := time.Now()
	mono := func() int64 { return int64(time.Since(base)) }
	var (
		lastRel  atomic.Int64 // ns since base; 0: nobody released yet
		lastWho  atomic.Int64 // the worker that released last
		counts   = make([]int, n)
		handoffs = make([]samples, n)
		others   = make([]samples, n)
		waits    = make([]samples, n)
		errs     atomic.Int64
		lastErr  atomic.Value
		wg       sync.WaitGroup
		start    = make(chan struct{})
		deadline int64
	)
	lastWho.Store(-1)
	var before snapshot
	if v.net != nil {
		before = v.net.snap()
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The workers carry the variant's name as a profiler label, so that
	// a -cpuprofile of a run splits by variant (pprof -tagfocus
	// variant=NAME); goroutines they start inherit it.
	labels := pprof.Labels("variant", v.name)
	for i, w := range ws {
		wg.Add(1)
		go pprof.Do(wctx, labels, func(context.Context) {
			defer wg.Done()
			<-start
			for mono() < deadline {
				called := mono()
				rel, err := w.acquire(wctx)
				if err != nil {
					// A wait the server ended at the deadline (GET_LOCK's
					// own timeout) may return a moment before wctx notices.
					if wctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
						return
					}
					errs.Add(1)
					lastErr.Store(err.Error())
					if errs.Load() > 1000 {
						return
					}
					time.Sleep(time.Millisecond)
					continue
				}
				now := mono()
				if now < deadline {
					counts[i]++
					waits[i] = append(waits[i], time.Duration(now-called))
					if lr := lastRel.Load(); lr > 0 {
						handoffs[i] = append(handoffs[i], time.Duration(now-lr))
						if lastWho.Load() != int64(i) {
							others[i] = append(others[i], time.Duration(now-lr))
						}
					}
				}
				lastWho.Store(int64(i))
				lastRel.Store(mono())
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
				if err := rel(rctx); err != nil {
					errs.Add(1)
					lastErr.Store("release: " + err.Error())
				}
				rcancel()
			}
		})
	}
	deadline = mono() + int64(window)
	var (
		after      snapshot
		cpu0, cpu1 time.Duration
	)
	fired := make(chan struct{})
	timer := time.AfterFunc(window, func() {
		defer close(fired)
		cpu1 = procstat.SelfCPU()
		if v.net != nil {
			after = v.net.snap() // before the cancellations' traffic
		}
		cancel()
	})
	cpu0 = procstat.SelfCPU()
	close(start)
	wg.Wait()
	if timer.Stop() { // every worker gave up early
		cpu1 = procstat.SelfCPU()
		if v.net != nil {
			after = v.net.snap()
		}
	} else {
		<-fired
	}
	r.cpuNs += int64(cpu1 - cpu0)
	r.WindowNs += int64(window)
	sliceTotal := 0
	for _, c := range counts {
		sliceTotal += c
	}
	r.PerSlice = append(r.PerSlice, sliceTotal)
	if sliceTotal == 0 {
		r.EmptySlices++
	}
	var longest time.Duration
	for i := range n {
		for _, d := range handoffs[i] {
			longest = max(longest, d)
		}
		r.PerWorker[i] += counts[i]
		r.handoffs = append(r.handoffs, handoffs[i]...)
		r.others = append(r.others, others[i]...)
		r.waits = append(r.waits, waits[i]...)
	}
	r.PerSliceMaxHandoffNs = append(r.PerSliceMaxHandoffNs, int64(longest))
	r.Errors += int(errs.Load())
	if s, ok := lastErr.Load().(string); ok {
		r.LastError = s
	}
	if v.net == nil {
		return 0
	}
	return after.Flights - before.Flights
}

func slicesMin(s []int) int {
	m := s[0]
	for _, v := range s {
		m = min(m, v)
	}
	return m
}

func slicesMax(s []int) int {
	m := s[0]
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// memoryResult is one variant's memory cost.
type memoryResult struct {
	Variant     string  `json:"variant"`
	Role        role    `json:"role"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	CPUPerOpNs  int64   `json:"cpu_per_op_ns"` // user+system CPU of this process per op
	GoPerOp     float64 `json:"goroutines_created_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	Held        int     `json:"held"`                   // locks held for the connection count
	ConnsHeld   int64   `json:"conns_held"`             // connections open while Held locks are held
	ConnsIdle   int64   `json:"conns_idle"`             // connections open before (pool idle)
	FDsHeld     int     `json:"fds_held,omitempty"`     // extra descriptors while held (files)
	Goroutines  int     `json:"goroutines_per_lock100"` // extra goroutines per 100 held locks
	Skipped     string  `json:"skipped,omitempty"`
}

// runMemory measures allocations of an uncontended try+release (whole
// process: background goroutines a lock starts count too), then holds
// heldN locks and counts the connections, descriptors and goroutines they
// keep.
func runMemory(ctx context.Context, vi int, v *variant, ops int, budget time.Duration, heldN int) *memoryResult {
	r := &memoryResult{Variant: v.name, Role: v.role, Held: heldN}
	k := keyBase(vi, scMemory)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for i := range 5 { // warm
		if err := tryRelease(ctx, v, k+i%2); err != nil {
			r.Skipped = err.Error()
			return r
		}
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	cpu0 := procstat.SelfCPU()
	g0 := procstat.GoroutinesCreated()
	mstart := time.Now()
	done := 0
	for i := range ops {
		if i >= minBatch && time.Since(mstart) > budget {
			break
		}
		if err := tryRelease(ctx, v, k+i%2); err != nil {
			r.Skipped = err.Error()
			return r
		}
		done++
	}
	cpu1 := procstat.SelfCPU()
	g1 := procstat.GoroutinesCreated()
	runtime.ReadMemStats(&m1)
	ops = done
	r.CPUPerOpNs = int64(cpu1-cpu0) / int64(max(ops, 1))
	r.GoPerOp = float64(g1-g0) / float64(max(ops, 1))
	r.AllocsPerOp = float64(m1.Mallocs-m0.Mallocs) / float64(ops)
	r.BytesPerOp = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(ops)

	if v.singleKey {
		heldN = 1
		r.Held = 1
	}
	if v.net != nil {
		r.ConnsIdle = v.net.open.Load()
	}
	fd0 := countFDs()
	ng0 := runtime.NumGoroutine()
	var rels []releaseFunc
	defer func() {
		for _, rel := range rels {
			_ = rel(context.WithoutCancel(ctx))
		}
	}()
	for i := range heldN {
		rel, err := v.try(ctx, k+100+i)
		if err != nil {
			r.Skipped = fmt.Sprintf("holding lock %d of %d: %v", i+1, heldN, err)
			return r
		}
		rels = append(rels, rel)
	}
	time.Sleep(20 * time.Millisecond) // let watcher goroutines start
	if v.net != nil {
		r.ConnsHeld = v.net.open.Load()
	}
	if v.countFDs {
		r.FDsHeld = countFDs() - fd0
	}
	r.Goroutines = max(0, runtime.NumGoroutine()-ng0) * 100 / max(heldN, 1)
	return r
}

// scalePoint is the acquire latency with some locks held.
type scalePoint struct {
	Held     int   `json:"held"`
	MedianNs int64 `json:"median_ns"`
	P99Ns    int64 `json:"p99_ns"`
	// RoundTrips is every flight of the variant during the step, per
	// operation: background traffic of the held locks (lease renewals,
	// probes) shows as more than the operation's own.
	RoundTrips float64 `json:"round_trips_per_op"`
	// Conns is the variant's open connections while Held locks are held
	// (-1: no network).
	Conns int64 `json:"conns"`
}

// scaleResult is one variant's latency curve.
type scaleResult struct {
	Variant string       `json:"variant"`
	Role    role         `json:"role"`
	Points  []scalePoint `json:"points"`
	Note    string       `json:"note,omitempty"`
	Skipped string       `json:"skipped,omitempty"`
}

// runScale holds more and more locks and measures an uncontended
// try+release of a fresh lock at each step.
func runScale(ctx context.Context, vi int, v *variant, steps []int, ops int, budget time.Duration, logf func(string, ...any)) *scaleResult {
	r := &scaleResult{Variant: v.name, Role: v.role}
	heldBase := keyBase(vi, scScaleHeld)
	opBase := keyBase(vi, scScale)
	var rels []releaseFunc
	defer func() {
		// Released in parallel, like the hold: not measured.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		releaseParallel(rctx, rels)
		logf("    %s: released", v.name)
	}()
	held := 0
	opIdx := 0
	for _, step := range steps {
		if v.holdCap > 0 && step > v.holdCap {
			r.Note = fmt.Sprintf("capped at %d held: %s", v.holdCap, v.holdCapWhy)
			break
		}
		if step > held {
			ks := make([]int, 0, step-held)
			for i := held; i < step; i++ {
				ks = append(ks, heldBase+i)
			}
			hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			if v.hold != nil {
				rel, err := v.hold(hctx, ks)
				if err != nil {
					cancel()
					r.Skipped = fmt.Sprintf("holding %d locks: %v", step, err)
					return r
				}
				rels = append(rels, rel)
			} else {
				got, err := holdParallel(hctx, v, ks)
				rels = append(rels, got...)
				if err != nil {
					cancel()
					r.Skipped = fmt.Sprintf("holding %d locks: %v", step, err)
					return r
				}
			}
			cancel()
			logf("    %s: holding %d", v.name, step)
			held = step
		}
		var s samples
		var before snapshot
		if v.net != nil {
			before = v.net.snap()
		}
		sstart := time.Now()
		for j := range ops {
			if j >= minBatch && time.Since(sstart) > budget {
				break
			}
			octx, cancel := context.WithTimeout(ctx, opTimeout)
			start := time.Now()
			err := tryRelease(octx, v, opBase+opIdx)
			d := time.Since(start)
			cancel()
			opIdx++
			if err != nil {
				r.Skipped = fmt.Sprintf("with %d held: %v", held, err)
				return r
			}
			s = append(s, d)
		}
		pt := scalePoint{Held: held, MedianNs: int64(s.median()), P99Ns: int64(s.p99()), RoundTrips: -1, Conns: -1}
		if v.net != nil {
			pt.RoundTrips = float64(v.net.snap().Flights-before.Flights) / float64(len(s))
			pt.Conns = v.net.open.Load()
		}
		r.Points = append(r.Points, pt)
	}
	return r
}

// errSkip marks a variant or backend that cannot run here.
var errSkip = errors.New("skipped")

// errOptional marks a backend's setup error that skips the backend
// without making the run fail (failures): its server is missing and
// nobody asked for it.
var errOptional = errors.New("not available")

// lockkitWorker waits for one named lock through a lockkit.Locker.
func lockkitWorker(l lockkit.Locker, name string) worker {
	return workerFunc(func(ctx context.Context) (releaseFunc, error) {
		lk, err := l.Acquire(ctx, name)
		if err != nil {
			return nil, err
		}
		return lk.Release, nil
	})
}

// sharedLockerWorkers is the contended scenario of a lockkit variant whose
// workers share one Locker, l.
func sharedLockerWorkers(l lockkit.Locker, name func(int) string) func(ctx context.Context, k, n int) ([]worker, func(), error) {
	return func(ctx context.Context, k, n int) ([]worker, func(), error) {
		ws := make([]worker, n)
		for i := range ws {
			ws[i] = lockkitWorker(l, name(k))
		}
		return ws, func() {}, nil
	}
}

// lockkitTry is a variant's try through a lockkit.Locker.
func lockkitTry(l lockkit.Locker, name func(int) string) func(ctx context.Context, k int) (releaseFunc, error) {
	return func(ctx context.Context, k int) (releaseFunc, error) {
		lk, err := l.TryAcquire(ctx, name(k))
		if err != nil {
			return nil, err
		}
		return lk.Release, nil
	}
}

// holdParallel takes the locks ks with a few goroutines: the hold phase of
// the scale scenario is not measured, only made shorter.
func holdParallel(ctx context.Context, v *variant, ks []int) ([]releaseFunc, error) {
	const par = 8
	var (
		mu    sync.Mutex
		rels  []releaseFunc
		first error
		wg    sync.WaitGroup
		next  atomic.Int64
	)
	for range min(par, len(ks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ks) || ctx.Err() != nil {
					return
				}
				rel, err := v.try(ctx, ks[i])
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				rels = append(rels, rel)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return rels, first
}

// releaseParallel releases every lock with a few goroutines.
func releaseParallel(ctx context.Context, rels []releaseFunc) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(8, len(rels)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(rels) {
					return
				}
				_ = rels[i](ctx)
			}
		})
	}
	wg.Wait()
}

// singleFile puts a local queue in front of workers: only one of them at a
// time waits for the lock on the server; the others wait for their turn in
// this process. A diagnostic: it shows what waking one waiter per release,
// instead of every waiter, would do.
func singleFile(ws []worker) []worker {
	turn := make(chan struct{}, 1)
	out := make([]worker, len(ws))
	for i, w := range ws {
		out[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) {
			select {
			case turn <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			defer func() { <-turn }()
			return w.acquire(ctx)
		})
	}
	return out
}

// singleFileVariant is v's floor with singleFile waiters, for the contended
// scenario only.
func singleFileVariant(v *variant) *variant {
	return &variant{
		name: v.name + ", one waiter at a time per process (diagnostic)", role: roleFloor, net: v.net, diagnostic: true,
		note: "the floor's contended workers behind a local queue: one of them waits on the server, the rest wait in-process for their turn, so a release wakes one waiter instead of all",
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			ws, cleanup, err := v.contended(ctx, k, n)
			if err != nil {
				return nil, nil, err
			}
			return singleFile(ws), cleanup, nil
		},
	}
}
