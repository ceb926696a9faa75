package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/semaphore"
)

// The semaphore scenario: 16 workers share a semaphore of 4 permits on one
// name, each looping Acquire, work (a sleep of semHold), Release, for a
// window. It reports throughput against the ideal (permits / hold),
// fairness, and how many permits were in use: exactly (the most holders
// at once, counted by the holders themselves between Acquire's return and
// the call to Release) and over time (a sampler every millisecond, and the
// backend's own listing, semaphore.Status, every 50 ms).

const (
	semPermits = 4
	semWorkers = 16
	semHold    = 2 * time.Millisecond
)

// semaphoreResult is one backend's row.
type semaphoreResult struct {
	Backend      string    `json:"backend"`
	Wait         string    `json:"wait"` // semaphore.Config.Wait
	Note         string    `json:"note"`
	Permits      int       `json:"permits"`
	Workers      int       `json:"workers"`
	HoldNs       int64     `json:"hold_ns"`
	Seconds      float64   `json:"seconds"`
	Acquisitions int       `json:"acquisitions"`
	PerSecond    float64   `json:"per_second"`
	Ideal        float64   `json:"ideal_per_second"` // permits / hold
	PerWorker    []int     `json:"per_worker"`
	Spread       float64   `json:"spread"`      // most / fewest acquisitions of one worker
	MaxInUse     int       `json:"max_in_use"`  // exact, from the holders' own count, warm-up included
	InUse        []float64 `json:"in_use_dist"` // share of samples with k permits in use, k = 0..len-1
	Samples      int       `json:"samples"`
	Series       []semTick `json:"series"`         // per 100 ms: mean and most in use
	ServerMax    int       `json:"server_max"`     // most holders semaphore.Status listed; -1: no listing
	ServerChecks int       `json:"server_samples"` // Status calls
	// The cost of passing a permit on, in the window: ReleaseMs is the
	// p50 of Release calls; HandoffMs the p50 and p99 of the time from a
	// holder's call to Release to the return of the next Acquire that got
	// the same slot, which includes that Release; Rehold the share of
	// those next holders that were the releasing worker itself.
	ReleaseMs    float64  `json:"release_p50_ms"`
	HandoffMs    float64  `json:"handoff_p50_ms"`
	HandoffP99Ms float64  `json:"handoff_p99_ms"`
	Rehold       float64  `json:"rehold_share"`
	Errors       []string `json:"errors,omitempty"`
	Skipped      string   `json:"skipped,omitempty"`
}

// semTick is one 100 ms step of the in-use series.
type semTick struct {
	AtMs int     `json:"at_ms"`
	Mean float64 `json:"mean"`
	Max  int     `json:"max"`
}

// runSemaphore measures every selected backend that the failover scenario
// knows.
func runSemaphore(ctx context.Context, e *env, c *config, stderr io.Writer) []*semaphoreResult {
	warm, window := time.Second, 5*time.Second
	if c.quick {
		warm, window = 200*time.Millisecond, 500*time.Millisecond
	}
	var out []*semaphoreResult
	for _, b := range backends {
		if _, ok := foBackends[b.name]; !ok || !slices.Contains(c.backends, b.name) || ctx.Err() != nil {
			continue
		}
		fmt.Fprintf(stderr, "bench: semaphore: %s ...\n", b.name)
		// -quick measures the default, WaitOne; WaitAll on a session
		// backend (GET_LOCK: about 2 acquisitions/s) may grant nothing in
		// the quick window.
		out = append(out, semaphoreBackend(ctx, e, b.name, semaphore.WaitOne, warm, window))
		if !c.quick {
			out = append(out, semaphoreBackend(ctx, e, b.name, semaphore.WaitAll, warm, window))
		}
	}
	return out
}

// semaphoreBackend measures one backend: the workers run for warm (pools
// fill, the first permits go round) and then for window, which is what
// counts.
func semaphoreBackend(ctx context.Context, e *env, name string, wait semaphore.Wait, warm, window time.Duration) *semaphoreResult {
	r := &semaphoreResult{Backend: name, Wait: wait.String(), Permits: semPermits, Workers: semWorkers, HoldNs: int64(semHold),
		Ideal: float64(semPermits) / semHold.Seconds(), ServerMax: -1}
	s, _, cleanup, err := foPrepare(ctx, e, name, "sem")
	if err != nil {
		r.Skipped = err.Error()
		return r
	}
	defer cleanup()
	// A connection per worker and per permit: on advisory and mysqllock
	// every wait and every held permit pins one (WaitAll's N waits per
	// worker would need 68, more than the shared server should give).
	s.Name, s.Conns = "bench-"+e.runID+"-semaphore", semWorkers+semPermits+2
	if foBackends[name].lease {
		s.TTL, s.Renew = foLockkitTTL, foLockkitTTL/3
	}
	l, closeFn, err := s.open(ctx)
	if err != nil {
		r.Skipped = err.Error()
		return r
	}
	defer closeFn()
	sem, err := semaphore.New(l, &semaphore.Config{Wait: wait})
	if err != nil {
		r.Skipped = err.Error()
		return r
	}
	r.Note = fmt.Sprintf("semaphore.New(%s Locker, {Wait: %s}): one Locker for the %d workers, a pool of %d connections, opened and used once before the clock starts", name, wait, semWorkers, s.Conns)
	// As in the contended scenario, the window measures the semaphore,
	// not the pool's connects and each connection's first statements (on
	// a loaded machine a fresh PostgreSQL pool of 22 took 0.4-0.7 s, the
	// whole of -quick's window): every connection takes a lock once, and
	// one permit is taken and given back.
	warmLocker(ctx, l, s.Conns, s.Name+"-warm")
	if p, err := sem.Acquire(ctx, s.Name, semPermits); err == nil {
		_ = p.Release(ctx)
	}

	var inUse, maxInUse atomic.Int64
	var errMu sync.Mutex
	addErr := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(r.Errors) < 10 {
			r.Errors = append(r.Errors, err.Error())
		}
	}
	wctx, cancel := context.WithTimeout(ctx, warm+window)
	defer cancel()
	per := make([]int, semWorkers)
	// Per slot: when its last holder called Release, and who that was.
	var slotMu sync.Mutex
	freed := make([]time.Time, semPermits)
	freedBy := make([]int, semPermits)
	var releases, handoffs samples
	rehold := 0
	var wg sync.WaitGroup
	start := time.Now().Add(warm) // the window's start; before it nothing counts
	var counting atomic.Bool
	defer time.AfterFunc(warm, func() { counting.Store(true) }).Stop()
	for w := range semWorkers {
		wg.Go(func() {
			for wctx.Err() == nil {
				p, err := sem.Acquire(wctx, s.Name, semPermits)
				if err != nil {
					// A wait the server ended at the window's deadline
					// (GET_LOCK's own timeout) may return a moment
					// before wctx notices.
					if wctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
						addErr(err)
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				got := time.Now()
				n := inUse.Add(1)
				if slot := p.Slot(); counting.Load() && slot < semPermits {
					slotMu.Lock()
					if !freed[slot].IsZero() {
						handoffs = append(handoffs, got.Sub(freed[slot]))
						if freedBy[slot] == w {
							rehold++
						}
					}
					slotMu.Unlock()
				}
				for m := maxInUse.Load(); n > m && !maxInUse.CompareAndSwap(m, n); m = maxInUse.Load() {
				}
				if counting.Load() {
					per[w]++
				}
				time.Sleep(semHold)
				inUse.Add(-1)
				rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
				t0 := time.Now()
				if slot := p.Slot(); slot < semPermits {
					slotMu.Lock()
					freed[slot], freedBy[slot] = t0, w
					slotMu.Unlock()
				}
				if err := p.Release(rctx); err != nil {
					addErr(err)
				}
				if counting.Load() {
					slotMu.Lock()
					releases = append(releases, time.Since(t0))
					slotMu.Unlock()
				}
				rcancel()
			}
		})
	}
	// The sampler: the holders' count every millisecond.
	dist := make([]int, semWorkers+1)
	var series []semTick
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var sum, cnt, most int
		next := start.Add(100 * time.Millisecond)
		for {
			select {
			case <-wctx.Done():
				return
			case now := <-tick.C:
				if !counting.Load() {
					continue
				}
				n := int(inUse.Load())
				dist[min(n, semWorkers)]++
				r.Samples++
				sum, cnt, most = sum+n, cnt+1, max(most, n)
				if now.After(next) {
					series = append(series, semTick{AtMs: int(now.Sub(start).Milliseconds()), Mean: float64(sum) / float64(cnt), Max: most})
					sum, cnt, most = 0, 0, 0
					next = next.Add(100 * time.Millisecond)
				}
			}
		}
	})
	// The backend's own view, where it lists.
	wg.Go(func() {
		for wctx.Err() == nil {
			st, err := sem.Status(wctx, s.Name, semPermits)
			switch {
			case errors.Is(err, lockkit.ErrUnsupported):
				return
			case err != nil:
				if wctx.Err() == nil {
					addErr(fmt.Errorf("status: %w", err))
				}
			case counting.Load():
				r.ServerChecks++
				r.ServerMax = max(r.ServerMax, len(st.Holders))
			}
			select {
			case <-wctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	r.PerWorker = per
	for _, n := range per {
		r.Acquisitions += n
	}
	r.PerSecond = float64(r.Acquisitions) / r.Seconds
	if lo := slices.Min(per); lo > 0 {
		r.Spread = float64(slices.Max(per)) / float64(lo)
	}
	r.MaxInUse = int(maxInUse.Load())
	last := 0
	for k, n := range dist {
		if n > 0 {
			last = k
		}
	}
	for _, n := range dist[:max(last, semPermits)+1] {
		r.InUse = append(r.InUse, float64(n)/float64(max(r.Samples, 1)))
	}
	r.Series = series
	if len(releases) > 0 {
		r.ReleaseMs = float64(releases.median()) / 1e6
	}
	if len(handoffs) > 0 {
		r.HandoffMs = float64(handoffs.median()) / 1e6
		r.HandoffP99Ms = float64(handoffs.p99()) / 1e6
		r.Rehold = float64(rehold) / float64(len(handoffs))
	}
	return r
}
