package mysqllock

import (
	"context"
	"database/sql"
	"fmt"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/internal/procstat"
)

type cpuVariant struct {
	name string
	wait bool
	op   func(ctx, rctx context.Context)
}

// BenchmarkMySQLCPU measures the client CPU (getrusage: user+system of
// this process) and allocations of an uncontended acquire and release
// through lockkit and through its floor, in the harness's way: the
// acquire's context can be cancelled, the release's has a deadline. "try"
// is TryAcquire (GET_LOCK(name, 0)), "wait" is Acquire (GET_LOCK(name, a
// year)), as in the contended scenario; floor-wait runs its GET_LOCK under
// a context that cannot end, as bench's floor does, floor-wait-cancellable
// under the cancellable one that lockkit's wait gets (go-sql-driver then
// runs its cancellation watcher). The variants run interleaved, in
// batches of 100, so that a machine's changing load touches them alike;
// the ratios are the median of lockkit's CPU over its floor's, batch by
// batch.
func BenchmarkMySQLCPU(b *testing.B) {
	db := integration.MySQL(b)
	m, err := New(db, nil)
	if err != nil {
		b.Fatal(err)
	}
	name := integration.Name(b)
	server, err := m.UserLockName(name)
	if err != nil {
		b.Fatal(err)
	}
	fl := &mysqlFloor{db: db, server: server}
	floor := func(wait, watchWait bool) func(ctx, rctx context.Context) {
		return func(ctx, rctx context.Context) {
			if err := fl.op(ctx, rctx, wait, watchWait); err != nil {
				b.Fatal(err)
			}
		}
	}
	lk := func(wait bool) func(ctx, rctx context.Context) {
		return func(ctx, rctx context.Context) {
			acquire := m.TryAcquire
			if wait {
				acquire = m.Acquire
			}
			lk, err := acquire(ctx, name)
			if err != nil {
				b.Fatal(err)
			}
			if err := lk.Release(rctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	vs := []cpuVariant{
		{"lockkit-try", false, lk(false)},
		{"floor-try", false, floor(false, false)},
		{"lockkit-wait", true, lk(true)},
		{"floor-wait", true, floor(true, false)},
		{"floor-wait-cancellable", true, floor(true, true)},
	}
	cpuBench(b, vs)
}

// mysqlFloor is lockkit's acquire and release done with the raw driver:
// the same statements, prepared once per connection (as bench's floor,
// with integration.MySQLStmts), and the
// connection id read once per connection before its first wait.
type mysqlFloor struct {
	db     *sql.DB
	server string // the GET_LOCK name
	stmts  integration.MySQLStmts
	mu     sync.Mutex
	ids    map[any]int64
}

// op takes the lock (a try, or a wait under ctx when cancellable, else
// under a context that cannot end) and releases it under rctx.
func (f *mysqlFloor) op(ctx, rctx context.Context, wait, cancellable bool) error {
	conn, err := f.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var got []sql.NullInt64
	if wait {
		var dc any
		_ = conn.Raw(func(d any) error { dc = d; return nil })
		f.mu.Lock()
		_, ok := f.ids[dc]
		f.mu.Unlock()
		if !ok {
			var id int64
			if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
				return err
			}
			f.mu.Lock()
			if f.ids == nil {
				f.ids = map[any]int64{}
			}
			f.ids[dc] = id
			f.mu.Unlock()
		}
		wctx := context.WithoutCancel(ctx)
		if cancellable {
			wctx = ctx
		}
		got, err = f.stmts.Query(wctx, conn, 2, "SELECT GET_LOCK(?, ?), CONNECTION_ID()", f.server, float64(365*24*3600))
	} else {
		got, err = f.stmts.Query(ctx, conn, 2, "SELECT GET_LOCK(?, 0), CONNECTION_ID()", f.server)
	}
	if err != nil || got[0].Int64 != 1 {
		return fmt.Errorf("GET_LOCK: %v, %v", got, err)
	}
	if got, err = f.stmts.Query(rctx, conn, 1, "SELECT RELEASE_LOCK(?)", f.server); err != nil || got[0].Int64 != 1 {
		return fmt.Errorf("RELEASE_LOCK: %v, %v", got, err)
	}
	return nil
}

// cpuBench runs each variant's op b.N times, interleaved in batches, and
// reports each one's CPU and allocations per op. The contexts are the
// bench harness's: in the memory scenario (try) one context with a
// deadline for the whole batch, acquire and release alike; in the
// contended one (wait) a cancellable context for the acquire and one with
// a deadline per release.
func cpuBench(b *testing.B, vs []cpuVariant) {
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tctx, tcancel := context.WithTimeout(context.Background(), time.Hour)
	defer tcancel()
	one := func(v cpuVariant) {
		if !v.wait {
			v.op(tctx, tctx)
			return
		}
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		v.op(wctx, rctx)
		rcancel()
	}
	for _, v := range vs {
		for range 5 {
			one(v)
		}
	}
	cpu := make([][]float64, len(vs)) // per batch, µs per op
	allocs := make([]uint64, len(vs))
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	const batch = 100
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		for i, v := range vs {
			metrics.Read(s)
			a0 := s[0].Value.Uint64()
			c0 := procstat.SelfCPU()
			for range batch {
				one(v)
			}
			cpu[i] = append(cpu[i], float64((procstat.SelfCPU()-c0).Nanoseconds())/1e3/batch)
			metrics.Read(s)
			allocs[i] += s[0].Value.Uint64() - a0
		}
	}
	n := float64(len(cpu[0]) * batch)
	// Each lockkit variant is followed by its floor: the median of their
	// ratio batch by batch.
	for i := 0; i+1 < len(vs); i += 2 {
		ratios := make([]float64, len(cpu[i]))
		for r := range ratios {
			ratios[r] = cpu[i][r] / cpu[i+1][r]
		}
		b.ReportMetric(median(ratios), vs[i].name+"/"+vs[i+1].name+"-cpu-ratio")
	}
	for i, v := range vs {
		b.ReportMetric(median(cpu[i]), v.name+"-cpu-µs/op")
		b.ReportMetric(float64(allocs[i])/n, v.name+"-allocs/op")
	}
}

func median(x []float64) float64 {
	x = slices.Clone(x)
	slices.Sort(x)
	return x[len(x)/2]
}

// TestMySQLAllocs guards the allocations of an uncontended acquire and
// release (BenchmarkMySQLCPU measures their CPU): the bench harness's
// memory scenario (a try and its release under one context with a
// deadline) and its contended one (a wait under a cancellable context, a
// release under its own deadline). The limits are the counts measured
// when they were set, plus a margin of 2; before the probe timer per lock,
// the derived contexts of a wait and the release's runtime timer went,
// the counts were 41 and 54.
func TestMySQLAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	db := integration.MySQL(t)
	m, err := New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := integration.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	for _, c := range []struct {
		what  string
		limit float64
		op    func() error
	}{
		{"try+release", tryAllocs + 2, func() error {
			lk, err := m.TryAcquire(ctx, name)
			if err != nil {
				return err
			}
			return lk.Release(ctx)
		}},
		{"wait+release", waitAllocs + 2, func() error {
			lk, err := m.Acquire(wctx, name)
			if err != nil {
				return err
			}
			rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
			defer rcancel()
			return lk.Release(rctx)
		}},
	} {
		var opErr error
		got := testing.AllocsPerRun(200, func() {
			if err := c.op(); err != nil && opErr == nil {
				opErr = err
			}
		})
		if opErr != nil {
			t.Fatal(opErr)
		}
		t.Logf("%s: %.1f allocations", c.what, got)
		if got > c.limit {
			t.Errorf("%s: %.1f allocations, want at most %.0f", c.what, got, c.limit)
		}
	}
}

// The allocations TestMySQLAllocs measured when its limits were set (the
// wait's includes the test's own context.WithTimeout, 5).
const tryAllocs, waitAllocs = 34, 40

// BenchmarkMySQLContendedCPU is the bench harness's contended scenario in
// miniature: 16 workers wait for one name and release it at once, through
// one Locker or through the floor (mysqlFloor, its wait under a context
// that cannot end, as bench's floor; floor-cancellable under the workers'
// cancellable context, as lockkit's), each on a pool of its own, in
// windows of 200 ms, in turn. It reports each one's acquisitions per
// second and client CPU per acquisition (both only until the window's
// end, before the waiters still waiting are cancelled), and the median of
// lockkit's CPU ratios window by window. b.N is the number of rounds.
func BenchmarkMySQLContendedCPU(b *testing.B) {
	const workers, window = 16, 200 * time.Millisecond
	pool := func() *sql.DB {
		db := integration.MySQL(b)
		db.SetMaxOpenConns(workers + 4)
		db.SetMaxIdleConns(workers + 4)
		return db
	}
	name := integration.Name(b)
	m, err := New(pool(), nil)
	if err != nil {
		b.Fatal(err)
	}
	server, err := m.UserLockName(name)
	if err != nil {
		b.Fatal(err)
	}
	fl := &mysqlFloor{db: pool(), server: server}
	ops := []func(ctx, rctx context.Context) error{
		func(ctx, rctx context.Context) error {
			lk, err := m.Acquire(ctx, name)
			if err != nil {
				return err
			}
			return lk.Release(rctx)
		},
		func(ctx, rctx context.Context) error { return fl.op(ctx, rctx, true, false) },
		func(ctx, rctx context.Context) error { return fl.op(ctx, rctx, true, true) },
	}
	names := []string{"lockkit", "floor", "floor-cancellable"}
	// The waiters still waiting at a window's end are cancelled: lockkit
	// discards their connections (and kills their sessions), the floor's
	// waits cannot be cancelled and drain. So that the next window does
	// not pay lockkit's new connections (the dial, the connection id, the
	// statements' prepares), each worker first takes and releases a name
	// of its own, unmeasured, as the bench harness warms each slice's
	// Locker.
	slice := func(i int) (n int64, cpu time.Duration) {
		op := ops[i]
		if i == 0 {
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					lk, err := m.Acquire(context.Background(), name+"-warm-"+strconv.Itoa(w))
					if err != nil {
						b.Error(err)
						return
					}
					_ = lk.Release(context.Background())
				})
			}
			wg.Wait()
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var (
			count atomic.Int64
			wg    sync.WaitGroup
			start = make(chan struct{})
			end   time.Time
		)
		for range workers {
			wg.Go(func() {
				<-start
				for time.Now().Before(end) {
					rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
					err := op(ctx, rctx)
					rcancel()
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						b.Error(err)
						return
					}
					count.Add(1)
				}
			})
		}
		c0 := procstat.SelfCPU()
		end = time.Now().Add(window)
		close(start)
		time.Sleep(window)
		n, cpu = count.Load(), procstat.SelfCPU()-c0
		cancel()
		wg.Wait()
		return n, cpu
	}
	for i := range ops { // warm the pools
		slice(i)
	}
	rate := make([][]float64, len(ops))
	cpu := make([][]float64, len(ops))
	ratios := make([][]float64, len(ops))
	b.ResetTimer()
	for round := 0; b.Loop(); round++ {
		// In turn, each round starting one later: a window after
		// lockkit's runs while the server ends the sessions of the
		// waiters cancelled at its end.
		for k := range ops {
			i := (round + k) % len(ops)
			n, c := slice(i)
			rate[i] = append(rate[i], float64(n)/window.Seconds())
			cpu[i] = append(cpu[i], float64(c.Nanoseconds())/1e3/float64(max(n, 1)))
		}
		for i := 1; i < len(ops); i++ {
			ratios[i] = append(ratios[i], cpu[0][len(cpu[0])-1]/cpu[i][len(cpu[i])-1])
		}
	}
	for i, n := range names {
		b.ReportMetric(median(rate[i]), n+"-acq/s")
		b.ReportMetric(median(cpu[i]), n+"-cpu-µs/acq")
		if i > 0 {
			b.ReportMetric(median(ratios[i]), "lockkit/"+n+"-cpu-ratio")
		}
	}
}
