package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/etcdlock"
	"github.com/lockkit/lockkit/filelock"
	"github.com/lockkit/lockkit/mysqllock"
	"github.com/lockkit/lockkit/redislock"
	"github.com/lockkit/lockkit/rowlock"
)

// Sixteen processes, not sixteen goroutines. The contended lockkit
// variants share one Locker among their workers, so a handoff goes
// through lockkit's in-process queue. Two more variants per backend take
// that away:
//
//   - "a Locker per worker": each worker goroutine gets a Locker of its
//     own, with connections of its own, made exactly as a separate process
//     would make it (workerLocker);
//   - "16 processes": the harness re-executes itself 16 times as worker
//     processes (workerMain), each with one such Locker, and merges what
//     they measured. Handoff times compare CLOCK_MONOTONIC readings, which
//     are one clock for every process of the machine.
//
// Both run in full runs only (-quick stays a smoke test).

// lockerFactory makes one Locker with connections of its own; the func
// frees them.
type lockerFactory func(ctx context.Context, net *netCounter) (lockkit.Locker, func(), error)

// rowlockTable is the run's lock table (setupRowlock creates it).
func (e *env) rowlockTable() string { return "lockkit_bench_" + e.runID + "_locks" }

// workerLocker returns how a worker of backend makes its Locker, from
// what a worker process knows: the env.
func workerLocker(e *env, backend string) (lockerFactory, error) {
	switch backend {
	case "files":
		return func(ctx context.Context, _ *netCounter) (lockkit.Locker, func(), error) {
			l, err := filelock.New(filepath.Join(e.tmp, "locks"), nil)
			if err != nil {
				return nil, nil, err
			}
			return l, func() { l.Close() }, nil
		}, nil
	case "pg-advisory":
		return func(ctx context.Context, net *netCounter) (lockkit.Locker, func(), error) {
			pool, err := newPgxPool(ctx, e.pgDSN, net, 1)
			if err != nil {
				return nil, nil, err
			}
			warmPgx(ctx, pool, 1)
			l, err := advisory.NewPool(pool, nil)
			if err != nil {
				pool.Close()
				return nil, nil, err
			}
			return l, pool.Close, nil
		}, nil
	case "mysql-advisory":
		return func(ctx context.Context, net *netCounter) (lockkit.Locker, func(), error) {
			db, err := newMySQLDB(e.myDSN, net, 2)
			if err != nil {
				return nil, nil, err
			}
			warmDB(ctx, db, 1)
			l, err := mysqllock.New(db, nil)
			if err != nil {
				db.Close()
				return nil, nil, err
			}
			return l, func() { db.Close() }, nil
		}, nil
	case "pg-rowlock", "mysql-rowlock":
		return func(ctx context.Context, net *netCounter) (lockkit.Locker, func(), error) {
			open, dsn, d := newPgxDB, e.pgDSN, rowlock.Postgres
			if backend == "mysql-rowlock" {
				open, dsn, d = newMySQLDB, e.myDSN, rowlock.MySQL
			}
			// Three connections: the listener's, a waiting head's room
			// (PostgreSQL) and one for the other statements; rowlock
			// waits without a room in a pool that cannot spare them.
			db, err := open(dsn, net, 3)
			if err != nil {
				return nil, nil, err
			}
			warmDB(ctx, db, 1)
			l, err := rowlock.New(db, &rowlock.Config{Dialect: d, Table: e.rowlockTable(), Owner: "bench-" + e.runID})
			if err != nil {
				db.Close()
				return nil, nil, err
			}
			return l, func() { l.Close(); db.Close() }, nil
		}, nil
	case "redis":
		return func(ctx context.Context, net *netCounter) (lockkit.Locker, func(), error) {
			c, err := newRedis(e.redisURL, net)
			if err != nil {
				return nil, nil, err
			}
			if err := c.Ping(ctx).Err(); err != nil {
				c.Close()
				return nil, nil, err
			}
			l, err := redislock.New(c, nil)
			if err != nil {
				c.Close()
				return nil, nil, err
			}
			return l, func() { l.Close(); c.Close() }, nil
		}, nil
	case "etcd":
		return func(ctx context.Context, net *netCounter) (lockkit.Locker, func(), error) {
			c, err := newEtcd(e.etcdEndpoints, net)
			if err != nil {
				return nil, nil, err
			}
			l, err := etcdlock.New(c, &etcdlock.Config{Prefix: e.etcdPrefix() + "lk/"})
			if err != nil {
				c.Close()
				return nil, nil, err
			}
			return l, func() { l.Close(); c.Close() }, nil
		}, nil
	}
	return nil, fmt.Errorf("no worker Locker for backend %q", backend)
}

// independentVariants returns the "a Locker per worker" and "16
// processes" variants of backend, counting the in-process variant's
// traffic on net (nil: no network).
func independentVariants(e *env, backend string, net *netCounter) ([]*variant, error) {
	mk, err := workerLocker(e, backend)
	if err != nil {
		return nil, err
	}
	perWorker := &variant{
		name: "lockkit, a Locker per worker", role: roleLockkit, net: net, fullOnly: true,
		note: "as lockkit, but each of the workers has a Locker of its own with connections of its own, made as a separate process makes it: no in-process queue between them",
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			var (
				ws       = make([]worker, n)
				cleanups = make([]func(), n)
				errs     = make([]error, n)
				wg       sync.WaitGroup
			)
			for i := range n {
				wg.Go(func() {
					var l lockkit.Locker
					l, cleanups[i], errs[i] = mk(ctx, net)
					if errs[i] == nil {
						warmLocker(ctx, l, 1, e.lockName(k)+"-"+strconv.Itoa(i))
						ws[i] = lockkitWorker(l, e.lockName(k))
					}
				})
			}
			wg.Wait()
			cleanup := func() {
				for _, c := range cleanups {
					if c != nil {
						c()
					}
				}
			}
			if err := errors.Join(errs...); err != nil {
				cleanup()
				return nil, nil, err
			}
			return ws, cleanup, nil
		},
	}
	procs := &variant{
		name: "lockkit, 16 processes", role: roleLockkit, net: net, fullOnly: true,
		note: "each worker is a process of its own (the harness re-executes itself), with one Locker made as above; handoffs are timed on CLOCK_MONOTONIC across the processes; round trips are the processes' own counts",
		procs: func(ctx context.Context, k, n int, window time.Duration, r *contendedResult) int64 {
			return procSlice(ctx, e, backend, false, e.lockName(k), n, window, r)
		},
	}
	vs := []*variant{perWorker, procs}
	if backend == "files" {
		// The kernel's order across processes, without lockkit: how fair
		// can sixteen processes blocking in flock(2) be?
		vs = append(vs, &variant{
			name: "floor, 16 processes (diagnostic)", role: roleFloor, fullOnly: true, diagnostic: true,
			note: "each worker is a process of its own running the floor's blocking flock(LOCK_EX) and close, as the floor above: the kernel's own order among processes",
			procs: func(ctx context.Context, k, n int, window time.Duration, r *contendedResult) int64 {
				return procSlice(ctx, e, backend, true, e.lockName(k), n, window, r)
			},
		})
	}
	return vs, nil
}

// workerEnv is the environment variable that makes the harness a worker
// process; its value is a workerSpec in JSON.
const workerEnv = "LOCKKIT_BENCH_WORKER"

// workerSpec is what a worker process needs to know.
type workerSpec struct {
	Backend  string `json:"backend"`
	Floor    bool   `json:"floor,omitempty"` // files only: the floor's blocking flock instead of a Locker
	Name     string `json:"name"`
	RunID    string `json:"run_id"`
	Tmp      string `json:"tmp"`
	Postgres string `json:"postgres,omitempty"`
	MySQL    string `json:"mysql,omitempty"`
	Redis    string `json:"redis,omitempty"`
	Etcd     string `json:"etcd,omitempty"` // endpoints, comma-separated
}

// workerReport is what a worker process prints when its window is over.
type workerReport struct {
	Events  [][3]int64 `json:"events"` // per acquisition in the window: acquire called, acquired, release started (CLOCK_MONOTONIC ns)
	Flights int64      `json:"flights"`
	Errors  int        `json:"errors"`
	LastErr string     `json:"last_error,omitempty"`
}

// monoNow reads CLOCK_MONOTONIC, one clock for every process.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// workerMain is a worker process: make the Locker, say "ready", read
// "go <start> <end>" (CLOCK_MONOTONIC ns) from stdin, acquire and release
// from start until end, print a workerReport.
func workerMain(spec string, stdin io.Reader, stdout io.Writer) error {
	var ws workerSpec
	if err := json.Unmarshal([]byte(spec), &ws); err != nil {
		return err
	}
	e := &env{pgDSN: ws.Postgres, myDSN: ws.MySQL, redisURL: ws.Redis, runID: ws.RunID, tmp: ws.Tmp}
	if ws.Etcd != "" {
		e.etcdEndpoints = strings.Split(ws.Etcd, ",")
	}
	ctx := context.Background()
	net := &netCounter{rpc: ws.Backend == "etcd"}
	var acquire func(context.Context) (releaseFunc, error)
	if ws.Floor {
		if ws.Backend != "files" {
			return fmt.Errorf("no worker floor for backend %q", ws.Backend)
		}
		dir := filepath.Join(e.tmp, "locks")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		fl, err := newFileFloor(dir)
		if err != nil {
			return err
		}
		defer fl.close()
		acquire = func(context.Context) (releaseFunc, error) { return fl.lock(ws.Name, true) }
	} else {
		mk, err := workerLocker(e, ws.Backend)
		if err != nil {
			return err
		}
		l, cleanup, err := mk(ctx, net)
		if err != nil {
			return err
		}
		defer cleanup()
		warmLocker(ctx, l, 1, ws.Name+"-"+strconv.Itoa(os.Getpid()))
		acquire = lockkitWorker(l, ws.Name).acquire
	}
	fmt.Fprintln(stdout, "ready")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil {
		return fmt.Errorf("waiting for go: %w", err)
	}
	var start, end int64
	if _, err := fmt.Sscanf(line, "go %d %d", &start, &end); err != nil {
		return fmt.Errorf("go line %q: %w", line, err)
	}
	time.Sleep(time.Duration(start - monoNow()))
	wctx, cancel := context.WithTimeout(ctx, time.Duration(end-monoNow()))
	defer cancel()
	var rep workerReport
	var after snapshot
	snapped := make(chan struct{})
	t := time.AfterFunc(time.Duration(end-monoNow()), func() { after = net.snap(); close(snapped) })
	before := net.snap()
	for monoNow() < end {
		called := monoNow()
		release, err := acquire(wctx)
		if err != nil {
			// A wait the server ended at the slice's deadline (GET_LOCK's
			// own timeout) may return a moment before wctx notices.
			if wctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				break
			}
			rep.Errors++
			rep.LastErr = err.Error()
			time.Sleep(time.Millisecond)
			continue
		}
		acq := monoNow()
		rel := monoNow()
		if acq < end {
			rep.Events = append(rep.Events, [3]int64{called, acq, rel})
		}
		rctx, rcancel := context.WithTimeout(ctx, opTimeout)
		if err := release(rctx); err != nil {
			rep.Errors++
			rep.LastErr = "release: " + err.Error()
		}
		rcancel()
	}
	if !t.Stop() {
		<-snapped
	} else {
		after = net.snap()
	}
	rep.Flights = after.Flights - before.Flights
	return json.NewEncoder(stdout).Encode(&rep)
}

// procSlice runs one slice of the contended scenario with n worker
// processes and adds their counts to r; it returns their flights.
func procSlice(ctx context.Context, e *env, backend string, floor bool, name string, n int, window time.Duration, r *contendedResult) int64 {
	exe, err := os.Executable()
	if err != nil {
		r.Skipped = "re-exec: " + err.Error()
		return 0
	}
	spec, _ := json.Marshal(workerSpec{Backend: backend, Floor: floor, Name: name, RunID: e.runID, Tmp: e.tmp, Postgres: e.pgDSN, MySQL: e.myDSN, Redis: e.redisURL, Etcd: strings.Join(e.etcdEndpoints, ",")})
	type proc struct {
		cmd   *exec.Cmd
		in    io.WriteCloser
		out   *bufio.Reader
		errb  strings.Builder
		ready bool
	}
	ps := make([]*proc, n)
	pctx, cancel := context.WithTimeout(ctx, window+2*time.Minute)
	defer cancel()
	defer func() {
		for _, p := range ps {
			if p != nil && p.cmd.Process != nil {
				p.in.Close()
				if p.cmd.Wait() != nil && r.LastError == "" && strings.TrimSpace(p.errb.String()) != "" {
					r.LastError = "worker: " + truncate(p.errb.String(), 200)
				}
			}
		}
	}()
	for i := range ps {
		p := &proc{cmd: exec.CommandContext(pctx, exe)}
		p.cmd.Env = append(os.Environ(), workerEnv+"="+string(spec))
		p.cmd.Stderr = &p.errb
		p.in, _ = p.cmd.StdinPipe()
		out, _ := p.cmd.StdoutPipe()
		p.out = bufio.NewReader(out)
		if err := p.cmd.Start(); err != nil {
			r.Skipped = "start worker process: " + err.Error()
			return 0
		}
		ps[i] = p
	}
	for _, p := range ps {
		line, err := p.out.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ready" {
			p.cmd.Wait()
			r.Skipped = fmt.Sprintf("worker process not ready: %q %v: %s", line, err, truncate(p.errb.String(), 200))
			return 0
		}
	}
	start := monoNow() + int64(20*time.Millisecond) // all start together
	for _, p := range ps {
		fmt.Fprintf(p.in, "go %d %d\n", start, start+int64(window))
	}
	reps := make([]workerReport, n)
	for i, p := range ps {
		if err := json.NewDecoder(p.out).Decode(&reps[i]); err != nil {
			r.Skipped = fmt.Sprintf("worker process %d: %v: %s", i, err, truncate(p.errb.String(), 200))
			return 0
		}
	}
	type ev struct {
		who      int
		acq, rel int64
	}
	var evs []ev
	var flights int64
	sliceTotal := 0
	for i, rep := range reps {
		for _, e := range rep.Events {
			evs = append(evs, ev{i, e[1], e[2]})
			r.waits = append(r.waits, time.Duration(e[1]-e[0]))
		}
		r.PerWorker[i] += len(rep.Events)
		sliceTotal += len(rep.Events)
		r.Errors += rep.Errors
		if rep.LastErr != "" {
			r.LastError = rep.LastErr
		}
		flights += rep.Flights
	}
	slices.SortFunc(evs, func(a, b ev) int { return int(a.acq - b.acq) })
	var longest time.Duration
	for i := 1; i < len(evs); i++ {
		d := time.Duration(evs[i].acq - evs[i-1].rel)
		longest = max(longest, d)
		r.handoffs = append(r.handoffs, d)
		if evs[i].who != evs[i-1].who {
			r.others = append(r.others, d)
		}
	}
	r.WindowNs += int64(window)
	r.PerSlice = append(r.PerSlice, sliceTotal)
	r.PerSliceMaxHandoffNs = append(r.PerSliceMaxHandoffNs, int64(longest))
	if sliceTotal == 0 {
		r.EmptySlices++
	}
	return flights
}
