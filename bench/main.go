// Command bench compares lockkit with the raw-driver floor and with the
// libraries people use instead, side by side in one run, on the same
// servers, interleaved.
//
//	cd bench && go run . -backends all          # full run, about 5 minutes
//	cd bench && go run . -quick                 # smoke test, about 30 seconds
//	cd bench && go run . -scenarios failover,semaphore   # about 3 minutes
//
// The failover scenario (failover.go) SIGKILLs a leader process and times
// the new leader's election, against a client-go-style loop
// (-clientgo-real for client-go's own 15 s / 2 s defaults); the semaphore
// scenario (semaphore.go) runs 16 workers on 4 permits.
//
// It prints tables and writes results.json, tables.md and PNG charts of the
// latency distributions to -out. Server addresses come from -postgres,
// -mysql and -redis, which default to LOCKKIT_TEST_POSTGRES,
// LOCKKIT_TEST_MYSQL and LOCKKIT_TEST_REDIS; a backend without its server
// is skipped with a message. etcd comes from -etcd (LOCKKIT_TEST_ETCD),
// else the harness starts a private single member from the etcd binary
// (Debian's etcd-server) and stops it on exit; without either, etcd is
// skipped with a message, and counts as a failure only when it was asked
// for (-backends naming it, or -etcd). See RESULTS.md for a run and how
// to read it.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/lockkit/lockkit/integration"
)

// env is what every backend's setup gets.
type env struct {
	pgDSN, myDSN, redisURL string
	// etcd is -etcd: client endpoints, comma-separated; "" starts a
	// private member (startEtcd). etcdRequested: etcd was asked for by
	// name, so its absence fails a -strict run. etcdEndpoints is what the
	// etcd backend's setup connected to, for its worker processes.
	etcd          string
	etcdRequested bool
	etcdEndpoints []string
	quick         bool
	p             params
	runID         string // unique per run: names, tables, prefixes
	keySeed       int64  // base of numeric lock ids
	tmp           string // scratch directory (lock files)
	verbose       bool
	// privatePG: pgDSN is a private server of this run's own, whose lock
	// table holds 10,000 advisory locks (-private-postgres).
	privatePG bool
}

// backend is one lock mechanism with its variants.
type backend struct {
	name  string
	title string
	setup func(ctx context.Context, e *env) (*backendSetup, error)
}

// backendSetup is a backend ready to measure.
type backendSetup struct {
	variants []*variant
	notes    []string
	cleanup  func()
}

var backends = []backend{
	{"pg-advisory", "PostgreSQL advisory lock (session)", setupPGAdvisory},
	{"mysql-advisory", "MySQL/MariaDB GET_LOCK", setupMySQLAdvisory},
	{"pg-rowlock", "PostgreSQL lock table (rowlock)", setupPGRowlock},
	{"mysql-rowlock", "MySQL/MariaDB lock table (rowlock)", setupMySQLRowlock},
	{"redis", "Redis lease", setupRedis},
	{"files", "flock(2) file lock", setupFiles},
	{"etcd", "etcd lease + key (etcdlock)", setupEtcd},
}

var allScenarios = []string{"single", "distinct", "contended", "multi", "memory", "scale", "failover", "semaphore"}

// ownScenarios run on their own (failover.go, semaphore.go), not through
// runBackend's variants.
var ownScenarios = []string{"failover", "semaphore"}

// config is the parsed command line.
type config struct {
	backends  []string
	scenarios []string
	quick     bool
	out       string
	pg, my    string
	redis     string
	etcd      string
	verbose   bool
	noCharts  bool
	cpuprof   string
	workers   int
	slices    int           // contended: 0 = the mode's default
	window    time.Duration // contended: 0 = the mode's default
	strict    bool
	privatePG bool
	compare   string

	etcdRequested bool // -etcd given, or -backends names etcd

	failoverN    int  // lockkit failovers per backend; 0: the mode's default
	clientGoReal bool // the client-go-style loop with its real defaults, not scaled ×0.1
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	var be, sc string
	fs.StringVar(&be, "backends", "all", "comma-separated backends, or all: "+backendNames())
	fs.StringVar(&sc, "scenarios", "all", "comma-separated scenarios, or all: "+strings.Join(allScenarios, ","))
	fs.BoolVar(&c.quick, "quick", false, "reduced sizes: a smoke test under 30 seconds")
	fs.StringVar(&c.out, "out", "", "directory for results.json, tables.md and the charts (default results, or results/quick with -quick; \"-\": none)")
	fs.StringVar(&c.pg, "postgres", os.Getenv("LOCKKIT_TEST_POSTGRES"), "PostgreSQL URL (default $LOCKKIT_TEST_POSTGRES)")
	fs.StringVar(&c.my, "mysql", os.Getenv("LOCKKIT_TEST_MYSQL"), "MySQL/MariaDB DSN, go-sql-driver form (default $LOCKKIT_TEST_MYSQL)")
	fs.StringVar(&c.redis, "redis", os.Getenv("LOCKKIT_TEST_REDIS"), "Redis URL (default $LOCKKIT_TEST_REDIS)")
	fs.StringVar(&c.etcd, "etcd", os.Getenv(integration.EnvEtcd), "etcd client endpoints, comma-separated (default $"+integration.EnvEtcd+"; empty: a private single member from the etcd binary, stopped on exit)")
	fs.BoolVar(&c.verbose, "v", false, "print progress to stderr")
	fs.BoolVar(&c.noCharts, "nocharts", false, "skip the PNG charts")
	fs.StringVar(&c.cpuprof, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.IntVar(&c.workers, "workers", 16, "workers of the contended scenario")
	fs.IntVar(&c.slices, "slices", 0, fmt.Sprintf("contended: interleaved slices (repeats) per variant (default %d, %d with -quick)", fullParams.slices, quickParams.slices))
	fs.DurationVar(&c.window, "window", 0, fmt.Sprintf("contended: measured time per variant, all slices together; the headline pairs run %d times as long (default %v, %v with -quick)", fullParams.headFactor, fullParams.window, quickParams.window))
	fs.BoolVar(&c.strict, "strict", os.Getenv("LOCKKIT_TEST_REQUIRE") == "1",
		"exit non-zero when a backend is skipped or a lockkit measurement failed (default: $LOCKKIT_TEST_REQUIRE=1); slowness never fails")
	fs.BoolVar(&c.privatePG, "private-postgres", false,
		"run the PostgreSQL backends on a private server started for the run (integration.LaunchPostgres, max_locks_per_transaction 256), so that the scale scenario holds 10,000 advisory locks; slow to start, not for CI")
	fs.StringVar(&c.compare, "compare", "", "RUN1.json,RUN2.json: measure nothing; print the two runs' ratios side by side and whether they agree within ±5 %")
	fs.IntVar(&c.failoverN, "failovers", 0, fmt.Sprintf("failovers of lockkit's election per backend (default %d, %d with -quick)", foFullN, foQuickN))
	fs.BoolVar(&c.clientGoReal, "clientgo-real", false, "run the failover scenario's client-go-style loop with client-go's defaults (15 s lease, 2 s retry period) instead of scaled ×0.1")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch c.out {
	case "":
		c.out = "results"
		if c.quick {
			c.out = filepath.Join("results", "quick")
		}
	case "-":
		c.out = ""
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.backends, err = pick(be, backendNames(), "backend"); err != nil {
		return nil, err
	}
	c.etcdRequested = c.etcd != "" || (be != "all" && be != "" && slices.Contains(c.backends, "etcd"))
	if c.scenarios, err = pick(sc, strings.Join(allScenarios, ","), "scenario"); err != nil {
		return nil, err
	}
	return c, nil
}

func backendNames() string {
	var ns []string
	for _, b := range backends {
		ns = append(ns, b.name)
	}
	return strings.Join(ns, ",")
}

// pick parses a comma list against the known names; "all" is every one.
func pick(list, known, what string) ([]string, error) {
	all := strings.Split(known, ",")
	if list == "all" || list == "" {
		return all, nil
	}
	var out []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("unknown %s %q (known: %s)", what, n, known)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	if spec := os.Getenv(workerEnv); spec != "" {
		// A worker process of the "16 processes" variants.
		if err := workerMain(spec, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(2)
		}
		return
	}
	if raw := os.Getenv(foChildEnv); raw != "" {
		os.Exit(failoverChild(raw)) // a leader process of the failover scenario
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(2)
	}
}

// run is the whole program, callable in-process (bench_test.go).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.compare != "" {
		a, b, ok := strings.Cut(c.compare, ",")
		if !ok {
			return fmt.Errorf("-compare wants two results.json files, comma-separated")
		}
		h, n, err := compareRuns(a, b, stdout)
		if err == nil {
			fmt.Fprintf(stdout, "\n%d ratios differ by more than ±5 %% between the runs; %d headlines differ or are missing from one of them.\n", n, h)
		}
		return err
	}
	if c.cpuprof != "" {
		f, err := os.Create(c.cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := measure(ctx, c, stderr)
	if err != nil {
		return err
	}
	tables := renderTables(rep)
	fmt.Fprint(stdout, tables)
	if c.out != "" {
		if err := writeOutputs(c, rep, tables); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", strings.Join(rep.Files, ", "))
	}
	if problems := failures(rep); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "bench:", p)
		}
		if c.strict {
			return fmt.Errorf("%d problems (see above); -strict is on", len(problems))
		}
	}
	return nil
}

// failures lists what keeps a run from being a complete measurement: a
// skipped backend, or a lockkit variant that failed. A peer or floor that
// failed is reported in the tables, not here; a slow result never is.
func failures(rep *report) []string {
	var out []string
	for _, br := range rep.Backends {
		if br.Skipped != "" {
			if !br.Optional {
				out = append(out, br.Backend+": skipped: "+br.Skipped)
			}
			continue
		}
		check := func(scenario, variant string, r role, skipped string, errs int) {
			if r != roleLockkit {
				return
			}
			if skipped != "" {
				out = append(out, fmt.Sprintf("%s: %s: %s: %s", br.Backend, scenario, variant, skipped))
			} else if errs > 0 {
				out = append(out, fmt.Sprintf("%s: %s: %s: %d errors", br.Backend, scenario, variant, errs))
			}
		}
		for _, set := range []struct {
			name string
			rs   []*latencyResult
		}{{"single key", br.Single}, {"distinct keys", br.Distinct}, {"multi-key", br.Multi}} {
			for _, r := range set.rs {
				check(set.name, r.Variant, r.Role, r.Skipped, r.Errors)
			}
		}
		for _, r := range br.Contended {
			check("contended", r.Variant, r.Role, r.Skipped, r.Errors)
			if r.Role == roleLockkit && r.EmptySlices > 0 {
				out = append(out, fmt.Sprintf("%s: contended: %s: %d of %d slices had no acquisition", br.Backend, r.Variant, r.EmptySlices, len(r.PerSlice)))
			}
		}
		for _, r := range br.Memory {
			check("memory", r.Variant, r.Role, r.Skipped, 0)
		}
		for _, r := range br.Scale {
			check("scale", r.Variant, r.Role, r.Skipped, 0)
		}
	}
	return append(out, ownFailures(rep)...)
}

// measure runs every selected backend and scenario.
func measure(ctx context.Context, c *config, stderr io.Writer) (*report, error) {
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	tmp, err := os.MkdirTemp("", "lockkit-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	e := &env{
		pgDSN: c.pg, myDSN: c.my, redisURL: c.redis,
		etcd: c.etcd, etcdRequested: c.etcdRequested,
		quick:   c.quick,
		p:       fullParams,
		runID:   hex.EncodeToString(seed[:4]),
		keySeed: int64(binary.BigEndian.Uint32(seed[4:])&0x7fffffff) << 24,
		tmp:     tmp,
		verbose: c.verbose,
	}
	if c.quick {
		e.p = quickParams
	}
	if c.privatePG {
		fmt.Fprintln(stderr, "bench: starting a private PostgreSQL server ...")
		srv, err := integration.LaunchPostgres(integration.WithServerArgs("-c", "max_locks_per_transaction=256"))
		if err != nil {
			return nil, fmt.Errorf("-private-postgres: %w", err)
		}
		defer srv.Close()
		e.pgDSN, e.privatePG = srv.DSN(), true
	}
	if c.workers > 0 {
		e.p.workers = c.workers
	}
	if c.slices > 0 {
		e.p.slices = c.slices
	}
	if c.window > 0 {
		e.p.window = c.window
	}
	rep := &report{
		Command:   commandLine(),
		Commit:    gitCommit(ctx),
		Started:   time.Now().UTC(),
		Quick:     c.quick,
		Machine:   describeMachine(ctx, e),
		Method:    methodText,
		Scenarios: c.scenarios,
	}
	start := time.Now()
	harness := slices.ContainsFunc(c.scenarios, func(s string) bool { return !slices.Contains(ownScenarios, s) })
	for _, b := range backends {
		if !harness || !slices.Contains(c.backends, b.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "bench: %s ...\n", b.name)
		bt := time.Now()
		br := runBackend(ctx, e, b, c.scenarios)
		br.Seconds = time.Since(bt).Seconds()
		if br.Skipped != "" {
			fmt.Fprintf(stderr, "bench: %s skipped: %s\n", b.name, br.Skipped)
		} else {
			fmt.Fprintf(stderr, "bench: %s done in %.1fs\n", b.name, br.Seconds)
		}
		rep.Backends = append(rep.Backends, br)
	}
	if slices.Contains(c.scenarios, "failover") && ctx.Err() == nil {
		rep.Failover = runFailover(ctx, e, c, stderr)
	}
	if slices.Contains(c.scenarios, "semaphore") && ctx.Err() == nil {
		rep.Semaphore = runSemaphore(ctx, e, c, stderr)
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.Machine.LoadAvgEnd = loadAvg()
	rep.Ratios = computeRatios(rep)
	return rep, ctx.Err()
}

func commandLine() string {
	args := slices.Clone(os.Args[1:])
	return "go run . " + strings.Join(args, " ")
}

func writeOutputs(c *config, rep *report, tables string) error {
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	add := func(name string) string {
		p := filepath.Join(c.out, name)
		rep.Files = append(rep.Files, p)
		return p
	}
	if err := os.WriteFile(add("tables.md"), []byte(tables), 0o644); err != nil {
		return err
	}
	if !c.noCharts {
		if err := writeCharts(rep, add); err != nil {
			return fmt.Errorf("charts: %w", err)
		}
	}
	return writeJSON(add("results.json"), rep)
}

// describeMachine records what the numbers were measured on.
func describeMachine(ctx context.Context, e *env) machine {
	m := machine{
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(),
		GoVersion: runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				_, v, _ := strings.Cut(line, ":")
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	m.LoadAvg = loadAvg()
	m.Servers = serverVersions(ctx, e)
	return m
}

// loadAvg is /proc/loadavg, "" where there is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// gitCommit returns the checkout's HEAD, with "+dirty" when it has
// uncommitted changes, so that a result names the code it measured; ""
// outside a git checkout.
func gitCommit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "+dirty"
	}
	return c
}
