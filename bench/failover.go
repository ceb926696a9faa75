package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/election"
	"github.com/lockkit/lockkit/filelock"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/mysqllock"
	"github.com/lockkit/lockkit/redislock"
	"github.com/lockkit/lockkit/rowlock"
)

// The failover scenario: a leader process is SIGKILLed, and the time until
// a candidate in this process is in office is measured. lockkit's election
// (election.Campaign, a blocking wait on the backend) is compared with a
// client-go-style loop on the same backend's lock: every candidate tries
// the lock every RetryPeriod (jittered by client-go's factor 1.2), and on
// the lease backends the leader's lease lasts LeaseDuration and is renewed
// every RetryPeriod, as client-go's leaderelection does with its defaults
// (15 s lease, 2 s retry period).

// foChildEnv carries a leader process's foSpec: when it is set, the bench
// binary runs as a leader (see failoverChild).
const foChildEnv = "LOCKKIT_BENCH_FAILOVER_LEADER"

// Modes of the failover scenario.
const (
	foLockkit  = "lockkit"  // election.Campaign: waits on the backend
	foClientGo = "clientgo" // try every RetryPeriod (jittered), lease LeaseDuration
)

// client-go leaderelection's defaults (k8s.io/client-go/tools/leaderelection
// as used by its examples and by kube-controller-manager), and its jitter.
const (
	clientGoLease       = 15 * time.Second
	clientGoRetry       = 2 * time.Second
	clientGoJitter      = 1.2
	foLockkitTTL        = 2 * time.Second // the lease of lockkit's election on the lease backends (1 s with -quick)
	foQuickN, foFullN   = 2, 10           // lockkit failovers per backend
	foQuickCG, foFullCG = 1, 3            // client-go-style failovers per backend
)

// foSpec is what a leader process is told, and what the candidate opens.
type foSpec struct {
	Backend string        `json:"backend"`
	DSN     string        `json:"dsn,omitempty"`
	Dir     string        `json:"dir,omitempty"`
	Object  string        `json:"object,omitempty"` // the run's lock table, fencing sequence or table, or Redis prefix
	Name    string        `json:"name"`
	Mode    string        `json:"mode"`
	TTL     time.Duration `json:"ttl,omitempty"`   // lease backends: the lease
	Renew   time.Duration `json:"renew,omitempty"` // lease backends: the renew interval
	Retry   time.Duration `json:"retry,omitempty"` // clientgo: the retry period
	Conns   int           `json:"conns,omitempty"` // pool size; 0 means 4
}

// foBackends are the backends of the failover scenario, by harness name.
var foBackends = map[string]struct {
	lease bool
	note  string
}{
	"pg-advisory":    {false, "advisory.Config{Fencing: true}: the server frees the lock when the leader's connection closes; the candidate waits in pg_advisory_lock"},
	"mysql-advisory": {false, "mysqllock.Config{Fencing: true}: the server frees the lock when the leader's connection closes; the candidate waits in GET_LOCK"},
	"pg-rowlock":     {true, "rowlock: the leader's lease runs out; the candidate waits (LISTEN/NOTIFY, polling)"},
	"mysql-rowlock":  {true, "rowlock: the leader's lease runs out; the candidate polls"},
	"redis":          {true, "redislock.Config{Fencing: true}: the leader's key expires; the candidate retries"},
	"files":          {false, "filelock.Config{Fencing: true}: the kernel drops the leader's flock; the candidate waits (inotify)"},
}

// open opens the spec's Locker, on a pool of s.Conns connections (4 when
// 0); closeFn closes what it opened.
func (s foSpec) open(ctx context.Context) (lk lockkit.Locker, closeFn func(), err error) {
	conns := cmp.Or(s.Conns, 4)
	switch s.Backend {
	case "pg-advisory":
		db, err := newPgxDB(s.DSN, &netCounter{}, conns)
		if err != nil {
			return nil, nil, err
		}
		l, err := advisory.New(db, &advisory.Config{Fencing: true, FencingSequence: s.Object})
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		return l, func() { db.Close() }, nil
	case "mysql-advisory":
		db, err := newMySQLDB(s.DSN, &netCounter{}, conns)
		if err != nil {
			return nil, nil, err
		}
		l, err := mysqllock.New(db, &mysqllock.Config{Fencing: true, FencingTable: s.Object})
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		return l, func() { db.Close() }, nil
	case "pg-rowlock", "mysql-rowlock":
		open, dialect := newPgxDB, rowlock.Postgres
		if s.Backend == "mysql-rowlock" {
			open, dialect = newMySQLDB, rowlock.MySQL
		}
		db, err := open(s.DSN, &netCounter{}, conns)
		if err != nil {
			return nil, nil, err
		}
		l, err := rowlock.New(db, &rowlock.Config{Dialect: dialect, Table: s.Object, TTL: s.TTL, RenewInterval: s.Renew})
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		return l, func() { l.Close(); db.Close() }, nil
	case "redis":
		rc, err := newRedis(s.DSN, &netCounter{})
		if err != nil {
			return nil, nil, err
		}
		l, err := redislock.New(rc, &redislock.Config{Prefix: s.Object, TTL: s.TTL, RenewInterval: s.Renew, Fencing: true})
		if err != nil {
			rc.Close()
			return nil, nil, err
		}
		return l, func() { l.Close(); rc.Close() }, nil
	case "files":
		l, err := filelock.New(s.Dir, &filelock.Config{Fencing: true})
		if err != nil {
			return nil, nil, err
		}
		return l, func() { l.Close() }, nil
	}
	return nil, nil, fmt.Errorf("failover: unknown backend %q", s.Backend)
}

// jitter is client-go's wait.Jitter: d plus up to factor×d.
func jitter(d time.Duration, factor float64) time.Duration {
	return d + time.Duration(rand.Float64()*factor*float64(d))
}

// lead campaigns in the spec's mode until this caller leads, and returns
// the lock it leads with (its token is the term).
func (s foSpec) lead(ctx context.Context, l lockkit.Locker) (lockkit.Lock, error) {
	if s.Mode == foLockkit {
		el, err := election.New(l, nil)
		if err != nil {
			return nil, err
		}
		ld, err := el.Campaign(ctx, s.Name, "")
		if err != nil {
			return nil, err
		}
		return ld.Lock(), nil
	}
	// client-go's acquire loop: try at once, then every RetryPeriod with
	// jitter factor 1.2, until the lock is ours.
	for {
		lk, err := l.TryAcquire(ctx, s.Name)
		if err == nil {
			return lk, nil
		}
		if !errors.Is(err, lockkit.ErrNotAcquired) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(jitter(s.Retry, clientGoJitter)):
		}
	}
}

// failoverChild is a leader process: it leads, says so ("lead TERM") and
// holds until it is killed or its stdin closes.
func failoverChild(raw string) int {
	var s foSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		fmt.Fprintln(os.Stderr, "failover leader:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, closeFn, err := s.open(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover leader:", err)
		return 1
	}
	defer closeFn()
	lk, err := s.lead(ctx, l)
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover leader:", err)
		return 1
	}
	fmt.Printf("lead %d\n", lk.Token())
	// Hold until killed; stdin closes when the parent goes away.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = lk.Release(context.Background())
	return 0
}

// failoverResult is one row: a backend and a mode.
type failoverResult struct {
	Backend   string    `json:"backend"`
	Mode      string    `json:"mode"`
	Lease     string    `json:"lease"`           // the leader's lease, or "session"
	Retry     string    `json:"retry,omitempty"` // clientgo: the retry period
	Note      string    `json:"note"`
	RTT       int64     `json:"rtt_ns,omitempty"` // a round trip to the server (median of pings)
	Failovers []int64   `json:"failovers_ns"`     // kill → candidate in office, per failover
	P50       int64     `json:"p50_ns"`
	P99       int64     `json:"p99_ns"`
	Max       int64     `json:"max_ns"`
	Goal      string    `json:"goal"`
	Met       bool      `json:"met"`
	Errors    []string  `json:"errors,omitempty"`
	Lapsed    []string  `json:"lapsed,omitempty"` // the leader's lease ran out before the kill: no sample
	Skipped   string    `json:"skipped,omitempty"`
	Started   time.Time `json:"started"`
}

// runFailover measures every selected backend that the failover scenario
// knows, in both modes.
func runFailover(ctx context.Context, e *env, c *config, stderr io.Writer) []*failoverResult {
	var out []*failoverResult
	for _, b := range backends {
		if _, ok := foBackends[b.name]; !ok || !slices.Contains(c.backends, b.name) || ctx.Err() != nil {
			continue
		}
		fmt.Fprintf(stderr, "bench: failover: %s ...\n", b.name)
		out = append(out, failoverBackend(ctx, e, c, b.name)...)
	}
	return out
}

// failoverBackend measures one backend: lockkit's election, then the
// client-go-style loop.
func failoverBackend(ctx context.Context, e *env, c *config, name string) []*failoverResult {
	fb := foBackends[name]
	base, rtt, cleanup, err := foPrepare(ctx, e, name, "fo")
	if err != nil {
		return []*failoverResult{{Backend: name, Mode: foLockkit, Skipped: err.Error()}}
	}
	defer cleanup()
	base.Name = "bench-" + e.runID + "-failover"
	var rt int64
	if rtt != nil {
		rt = medianRTT(ctx, rtt)
	}

	n, ncg := foFullN, foFullCG
	cgLease, cgRetry, cgLabel := clientGoLease, clientGoRetry, "client-go defaults"
	if c.quick {
		n, ncg = foQuickN, foQuickCG
	}
	if c.failoverN > 0 {
		n = c.failoverN
	}
	if !c.clientGoReal {
		cgLease, cgRetry, cgLabel = clientGoLease/10, clientGoRetry/10, "client-go defaults scaled ×0.1"
	}
	lk := base
	lk.Mode = foLockkit
	cg := base
	cg.Mode, cg.Retry = foClientGo, cgRetry
	if fb.lease {
		lk.TTL = foLockkitTTL
		if c.quick {
			lk.TTL = time.Second
		}
		lk.Renew = lk.TTL / 3
		cg.TTL, cg.Renew = cgLease, cgRetry
	}
	rs := []*failoverResult{measureFailovers(ctx, e, lk, n, fb.note)}
	// -quick keeps CI's smoke run short: the client-go-style loop (the
	// same code on every backend) runs on the session backends only.
	if !c.quick || !fb.lease {
		rs = append(rs, measureFailovers(ctx, e, cg, ncg, fmt.Sprintf("%s: TryAcquire every %v (jitter ×%.1f)", cgLabel, cgRetry, clientGoJitter)))
	}
	for _, r := range rs {
		r.RTT = rt
		r.Lease = "session"
		lease := time.Duration(0)
		if fb.lease {
			lease = lk.TTL
			if r.Mode == foClientGo {
				lease = cg.TTL
			}
			r.Lease = lease.String()
		}
		switch {
		case r.Mode == foClientGo:
			r.Goal = "comparison"
			r.Met = true
		case fb.lease:
			r.Goal = "≤ TTL + 1 round trip"
			r.Met = len(r.Failovers) > 0 && r.P99 <= int64(lease)+rt
		default: // the session backends: the server or the kernel frees the lock at once
			r.Goal = "≤ 1 s"
			r.Met = len(r.Failovers) > 0 && r.P99 <= int64(time.Second)
		}
	}
	return rs
}

// foPrepare returns the spec of backend name on this run's servers, with
// the run's own objects (a fencing sequence or table, a lock table, a key
// prefix; suffix keeps two scenarios' objects apart), a ping of the server
// (nil for files), and the cleanup that drops them. An error means the
// backend is skipped.
func foPrepare(ctx context.Context, e *env, name, suffix string) (s foSpec, ping func(context.Context) error, cleanup func(), err error) {
	s = foSpec{Backend: name}
	switch name {
	case "pg-advisory", "pg-rowlock":
		if e.pgDSN == "" {
			return s, nil, nil, errors.New("no PostgreSQL: set LOCKKIT_TEST_POSTGRES or -postgres")
		}
		s.DSN = e.pgDSN
	case "mysql-advisory", "mysql-rowlock":
		if e.myDSN == "" {
			return s, nil, nil, errors.New("no MySQL: set LOCKKIT_TEST_MYSQL or -mysql")
		}
		s.DSN = e.myDSN
	case "redis":
		if e.redisURL == "" {
			return s, nil, nil, errors.New("no Redis: set LOCKKIT_TEST_REDIS or -redis")
		}
		s.DSN = e.redisURL
	case "files":
		s.Dir = e.tmp
		return s, nil, func() {}, nil
	default:
		return s, nil, nil, fmt.Errorf("no failover setup for %q", name)
	}
	obj := "lockkit_bench_" + e.runID + "_" + suffix
	if name == "redis" {
		s.Object = "lockkit-bench-" + e.runID + "-" + suffix + ":"
		rc, err := newRedis(s.DSN, &netCounter{})
		if err != nil {
			return s, nil, nil, err
		}
		return s, func(ctx context.Context) error { return rc.Ping(ctx).Err() }, func() {
			bg := context.Background()
			if keys, err := rc.Keys(bg, s.Object+"*").Result(); err == nil && len(keys) > 0 {
				_ = rc.Del(bg, keys...).Err()
			}
			rc.Close()
		}, nil
	}
	open, quote, d := newPgxDB, func(s string) string { return `"` + s + `"` }, migrations.Postgres
	if strings.HasPrefix(name, "mysql") {
		open, quote, d = newMySQLDB, func(s string) string { return "`" + s + "`" }, migrations.MySQL
	}
	admin, err := open(s.DSN, &netCounter{}, 2)
	if err != nil {
		return s, nil, nil, err
	}
	drop := "DROP TABLE IF EXISTS " + quote(obj)
	switch name {
	case "pg-advisory":
		drop = "DROP SEQUENCE IF EXISTS " + quote(obj)
	case "pg-rowlock", "mysql-rowlock":
		if err := createLockTable(ctx, admin, d, obj); err != nil {
			admin.Close()
			return s, nil, nil, fmt.Errorf("create the lock table: %w", err)
		}
	}
	s.Object = obj
	return s, admin.PingContext, func() {
		_, _ = admin.ExecContext(context.Background(), drop)
		admin.Close()
	}, nil
}

// medianRTT is the median of 9 round trips of ping.
func medianRTT(ctx context.Context, ping func(context.Context) error) int64 {
	var ds samples
	for range 9 {
		t := time.Now()
		if err := ping(ctx); err != nil {
			return 0
		}
		ds = append(ds, time.Since(t))
	}
	return int64(ds.median())
}

// measureFailovers runs n failovers of s: a leader process leads, a
// candidate here campaigns, the leader is SIGKILLed, and the time from the
// kill to the candidate's leadership is one sample.
func measureFailovers(ctx context.Context, e *env, s foSpec, n int, note string) *failoverResult {
	r := &failoverResult{Backend: s.Backend, Mode: s.Mode, Note: note, Started: time.Now().UTC()}
	if s.Mode == foClientGo {
		r.Retry = s.Retry.String()
	}
	l, closeFn, err := s.open(ctx)
	if err != nil {
		r.Skipped = err.Error()
		return r
	}
	defer closeFn()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		d, err := oneFailover(ctx, e, s, l)
		if err != nil {
			if errors.Is(err, errLapsed) {
				r.Lapsed = append(r.Lapsed, err.Error())
				continue
			}
			r.Errors = append(r.Errors, err.Error())
			continue
		}
		r.Failovers = append(r.Failovers, int64(d))
		e.logf("  failover %s %s #%d: %v", s.Backend, s.Mode, i+1, d)
	}
	var ds samples
	for _, d := range r.Failovers {
		ds = append(ds, time.Duration(d))
	}
	r.P50, r.P99, r.Max = int64(ds.median()), int64(ds.p99()), int64(ds.quantile(1))
	return r
}

// errLapsed marks a failover that did not happen: the leader's lease ran
// out before the kill (a leader stalled past its lease, as on a machine
// whose load starves its renewals), and the candidate led already.
var errLapsed = errors.New("the leader's lease lapsed before the kill")

// oneFailover is one failover of s, the candidate campaigning on l.
func oneFailover(ctx context.Context, e *env, s foSpec, l lockkit.Locker) (time.Duration, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return 0, err
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), foChildEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan struct{})
	defer func() { _ = cmd.Process.Kill(); <-exited }()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	var term int64
	select {
	case line := <-lines:
		t, ok := strings.CutPrefix(line, "lead ")
		if term, err = strconv.ParseInt(t, 10, 64); !ok || err != nil {
			return 0, fmt.Errorf("leader said %q", line)
		}
	case <-exited:
		return 0, errors.New("the leader process exited before it led")
	case <-time.After(time.Minute):
		return 0, errors.New("the leader process did not lead within a minute")
	}

	// The candidate campaigns; the kill comes at a random moment of the
	// leader's renew (or retry) cycle, once the candidate waits.
	type won struct {
		lk  lockkit.Lock
		at  time.Time
		err error
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	got := make(chan won, 1)
	go func() {
		lk, err := s.lead(cctx, l)
		got <- won{lk, time.Now(), err}
	}()
	cycle := cmp.Or(s.Renew, s.Retry, 100*time.Millisecond)
	time.Sleep(100*time.Millisecond + rand.N(cycle))
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		cancel()
		if w := <-got; w.err == nil {
			_ = w.lk.Release(context.Background()) // a late win is given back, not leaked
		}
		return 0, fmt.Errorf("SIGKILL the leader: %w", err)
	}
	w := <-got
	if w.err != nil {
		return 0, fmt.Errorf("candidate: %w", w.err)
	}
	defer func() { _ = w.lk.Release(context.Background()) }()
	if !w.at.After(killed) {
		early := fmt.Errorf("the candidate led %v before the leader was killed (term %d, the leader's %d)", killed.Sub(w.at), w.lk.Token(), term)
		if s.TTL > 0 {
			return 0, fmt.Errorf("%w: %w", errLapsed, early)
		}
		return 0, early // a session lock cannot lapse: two leaders at once
	}
	if w.lk.Token() <= term {
		return 0, fmt.Errorf("the new term %d is not above the killed leader's %d", w.lk.Token(), term)
	}
	return w.at.Sub(killed), nil
}
