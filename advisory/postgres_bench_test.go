package advisory

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/internal/procstat"
	"github.com/lockkit/lockkit/keyhash"
)

// countedSQL opens a database/sql pool over pgx whose writes are counted.
func countedSQL(tb testing.TB, n int) (*sql.DB, *integration.RoundTrips) {
	tb.Helper()
	cfg, err := pgx.ParseConfig(integration.PostgresDSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	w := &integration.RoundTrips{}
	cfg.DialFunc = w.Dial
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(n)
	tb.Cleanup(func() { _ = db.Close() })
	return db, w
}

// countedPool opens a pgxpool whose writes are counted; set, if any,
// adjusts its config first.
func countedPool(tb testing.TB, set ...func(*pgxpool.Config)) (*pgxpool.Pool, *integration.RoundTrips) {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(integration.PostgresDSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	w := &integration.RoundTrips{}
	cfg.ConnConfig.DialFunc = w.Dial
	for _, f := range set {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool, w
}

// Round trips are a protocol property, not a speed: one for a try, one for
// a release, one for a hundred keys, three for a transaction-scoped lock
// through database/sql (BEGIN, lock, COMMIT).
func TestPostgresRoundTrips(t *testing.T) {
	t.Parallel()
	db, wdb := countedSQL(t, 1)
	pool, wpool := countedPool(t)
	ps, err := New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	pp, err := NewPool(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := testKeys(t, 1)[0]
	hundred := testKeys(t, 100)
	ctx := pgCtx(t, 30*time.Second)
	// count runs op a few times (warming the statement cache first) and
	// returns the fewest writes one run took: database/sql pings a reused
	// connection now and then, which is not the operation's.
	count := func(w *integration.RoundTrips, op func()) int64 {
		op()
		best := int64(1 << 62)
		for range 3 {
			before := w.Writes()
			op()
			best = min(best, w.Writes()-before)
		}
		return best
	}
	for _, c := range []struct {
		name string
		w    *integration.RoundTrips
		p    *Locker
	}{{"sql", wdb, ps}, {"pgxpool", wpool, pp}} {
		var l *Lock
		if n := count(c.w, func() {
			if l, err = c.p.TryLockKey(ctx, key, nil); err != nil {
				t.Fatal(err)
			}
			mustRelease(t, l)
		}); n != 2 {
			t.Errorf("%s: try+release took %d round trips, want 2", c.name, n)
		}
		if n := count(c.w, func() {
			if l, err = c.p.LockKeys(ctx, hundred, nil); err != nil {
				t.Fatal(err)
			}
			mustRelease(t, l)
		}); n != 2 {
			t.Errorf("%s: lock+unlock of 100 keys took %d round trips, want 2", c.name, n)
		}
		if n := count(c.w, func() {
			if l, err = c.p.TryLockKeys(ctx, hundred, nil); err != nil {
				t.Fatal(err)
			}
			mustRelease(t, l)
		}); n != 2 {
			t.Errorf("%s: try+unlock of 100 keys took %d round trips, want 2", c.name, n)
		}
	}
	fn := func(context.Context, *sql.Tx) error { return nil }
	if n := count(wdb, func() {
		if err := WithTxLock(ctx, db, hundred, nil, fn); err != nil {
			t.Fatal(err)
		}
	}); n != 3 {
		t.Errorf("WithTxLock of 100 keys took %d round trips, want 3 (BEGIN, lock, COMMIT)", n)
	}
	if n := count(wdb, func() {
		if err := WithTxLock(ctx, db, hundred, &TxOptions{LockTimeout: time.Second}, fn); err != nil {
			t.Fatal(err)
		}
	}); n != 3 {
		t.Errorf("WithTxLock with LockTimeout took %d round trips, want 3 (the setting is pipelined)", n)
	}
}

// BenchmarkPostgresTryRelease is an uncontended TryLockKey + Release
// through lockkit: pin a pool connection, pg_try_advisory_lock, start the
// loss watcher; stop it, pg_advisory_unlock, unpin. Compare with
// BenchmarkRawPgxTryRelease, the floor.
func BenchmarkPostgresTryRelease(b *testing.B) {
	key := keyhash.Name(integration.Name(b))
	ctx := context.Background()
	run := func(b *testing.B, p *Locker, w *integration.RoundTrips) {
		l, err := p.TryLockKey(ctx, key, nil) // warm the pool and cache
		if err != nil {
			b.Fatal(err)
		}
		_ = l.Release(ctx)
		before := w.Writes()
		b.ResetTimer()
		for b.Loop() {
			l, err := p.TryLockKey(ctx, key, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Release(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(w.Writes()-before)/float64(b.N), "roundtrips/op")
	}
	b.Run("pgxpool", func(b *testing.B) {
		pool, w := countedPool(b)
		p, err := NewPool(pool, nil)
		if err != nil {
			b.Fatal(err)
		}
		run(b, p, w)
	})
	b.Run("pgxpool-fencing", func(b *testing.B) {
		// Config.Fencing: nextval in the lock statement, no round trip
		// more (the sequence's lookup is in the warm-up).
		pool, w := countedPool(b)
		p, err := NewPool(pool, &Config{Fencing: true})
		if err != nil {
			b.Fatal(err)
		}
		run(b, p, w)
	})
	b.Run("sql", func(b *testing.B) {
		db, w := countedSQL(b, 4)
		p, err := New(db, nil)
		if err != nil {
			b.Fatal(err)
		}
		run(b, p, w)
	})
}

// BenchmarkRawPgxTryRelease is the floor: the same two statements on one
// pgx connection, no pool, no watcher, no checks beyond scanning.
func BenchmarkRawPgxTryRelease(b *testing.B) {
	key := keyhash.Name(integration.Name(b)).Int64()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(integration.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	w := &integration.RoundTrips{}
	cfg.DialFunc = w.Dial
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var ok bool
	before := w.Writes()
	for b.Loop() {
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::bigint)", key).Scan(&ok); err != nil || !ok {
			b.Fatal(err, ok)
		}
		if err := conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1::bigint)", key).Scan(&ok); err != nil || !ok {
			b.Fatal(err, ok)
		}
	}
	b.ReportMetric(float64(w.Writes()-before)/float64(b.N), "roundtrips/op")
}

// BenchmarkRawSQLTryRelease is the database/sql floor: the same two
// statements on one pinned *sql.Conn.
func BenchmarkRawSQLTryRelease(b *testing.B) {
	key := keyhash.Name(integration.Name(b)).Int64()
	ctx := context.Background()
	db, w := countedSQL(b, 1)
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var ok bool
	before := w.Writes()
	for b.Loop() {
		if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1::bigint)", key).Scan(&ok); err != nil || !ok {
			b.Fatal(err, ok)
		}
		if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1::bigint)", key).Scan(&ok); err != nil || !ok {
			b.Fatal(err, ok)
		}
	}
	b.ReportMetric(float64(w.Writes()-before)/float64(b.N), "roundtrips/op")
}

// BenchmarkPostgresTryReleaseRatio interleaves the lockkit operation and
// the raw floor (one of each per iteration, on the same key), so that load
// from other processes on the machine falls on both alike, and reports
// lockkit's time over the floor's.
func BenchmarkPostgresTryReleaseRatio(b *testing.B) {
	ctx := context.Background()
	key := keyhash.Name(integration.Name(b))
	ratio := func(b *testing.B, p *Locker, raw func() error) {
		l, err := p.TryLockKey(ctx, key, nil)
		if err != nil {
			b.Fatal(err)
		}
		_ = l.Release(ctx)
		if err := raw(); err != nil {
			b.Fatal(err)
		}
		var tk, tr time.Duration
		b.ResetTimer()
		for b.Loop() {
			t0 := time.Now()
			l, err := p.TryLockKey(ctx, key, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Release(ctx); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := raw(); err != nil {
				b.Fatal(err)
			}
			tk += t1.Sub(t0)
			tr += time.Since(t1)
		}
		b.ReportMetric(float64(tk.Nanoseconds())/float64(b.N), "lockkit-ns/op")
		b.ReportMetric(float64(tr.Nanoseconds())/float64(b.N), "raw-ns/op")
		b.ReportMetric(float64(tk)/float64(tr), "ratio")
	}
	k := key.Int64()
	b.Run("pgxpool-vs-pgx", func(b *testing.B) {
		pool := integration.PgxPool(b)
		p, err := NewPool(pool, nil)
		if err != nil {
			b.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, integration.PostgresDSN(b))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		ratio(b, p, func() error {
			var ok bool
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::bigint)", k).Scan(&ok); err != nil || !ok {
				return fmt.Errorf("raw try: %v %v", ok, err)
			}
			if err := conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1::bigint)", k).Scan(&ok); err != nil || !ok {
				return fmt.Errorf("raw unlock: %v %v", ok, err)
			}
			return nil
		})
	})
	b.Run("sql-vs-sql", func(b *testing.B) {
		db := integration.Postgres(b)
		db.SetMaxOpenConns(4)
		p, err := New(db, nil)
		if err != nil {
			b.Fatal(err)
		}
		rawDB := integration.Postgres(b)
		conn, err := rawDB.Conn(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		ratio(b, p, func() error {
			var ok bool
			if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1::bigint)", k).Scan(&ok); err != nil || !ok {
				return fmt.Errorf("raw try: %v %v", ok, err)
			}
			if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1::bigint)", k).Scan(&ok); err != nil || !ok {
				return fmt.Errorf("raw unlock: %v %v", ok, err)
			}
			return nil
		})
	})
}

// BenchmarkPostgresSessionCheckCost measures what the session checks cost
// each acquire and release: the lock and unlock statements lockkit sends
// against the bare pg_try_advisory_lock and pg_advisory_unlock, one of each
// per iteration on the same connection and key, so that load from other
// processes falls on both alike. All are one round trip each. "direct" is
// the lean form of a connection known to reach its own server session (the
// lock also returns pg_backend_pid(), the unlock checks it); "marker" the
// form of a connection through a pooler (the marker read and set, the pid
// compared). The first statement on a connection also has the pg_locks
// check, which runs only behind a pooler: a scan of the server's lock
// table, once per connection. "keys100" is a try and unlock of 100 keys:
// the statements with the marker (which several keys use on every
// connection) against multi's without it.
func BenchmarkPostgresSessionCheckCost(b *testing.B) {
	ctx := context.Background()
	key := keyhash.Name(integration.Name(b))
	conn, err := pgx.Connect(ctx, integration.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	pid := conn.PgConn().PID()
	bare := func() error {
		var ok bool
		st := single(fnTry, Exclusive, key)
		if err := conn.QueryRow(ctx, st.sql, st.args...).Scan(&ok); err != nil || !ok {
			return fmt.Errorf("bare try: %v %v", ok, err)
		}
		st = single(fnUnlock, Exclusive, key)
		if err := conn.QueryRow(ctx, st.sql, st.args...).Scan(&ok); err != nil || !ok {
			return fmt.Errorf("bare unlock: %v %v", ok, err)
		}
		return nil
	}
	keys := []keyhash.Key{key}
	hundred := sortKeys(testKeys(b, 100))
	// bare100 is the multi-key statement without the session checks (multi).
	bare100 := func() error {
		for _, f := range []pgFunc{fnTry, fnUnlock} {
			st := multi(f, Exclusive, hundred)
			rows, err := conn.Query(ctx, st.sql, st.args...)
			if err != nil {
				return err
			}
			n := 0
			for rows.Next() {
				var (
					pair bool
					k    int64
					a, c int32
					ok   bool
				)
				if err := rows.Scan(&pair, &k, &a, &c, &ok); err != nil || !ok {
					rows.Close()
					return fmt.Errorf("bare 100 keys: %v %v", ok, err)
				}
				n++
			}
			rows.Close()
			if err := rows.Err(); err != nil || n != len(hundred) {
				return fmt.Errorf("bare 100 keys: %d rows: %v", n, err)
			}
		}
		return nil
	}
	checked100 := func() error {
		st := sessionLock(fnTry, Exclusive, hundred, "bench", pid, checksLean)
		var (
			res lockResult
			u   unlockResult
		)
		err := runLock(conn, st, hundred, &res)
		if err != nil || !res.granted || res.why != gateOK {
			return fmt.Errorf("checked try of 100 keys: %+v %v", res, err)
		}
		err = runUnlock(conn, sessionUnlock(Exclusive, hundred, "bench", res.pid, st.form), &u)
		if err != nil || !u.mine || !u.all || !u.cleared || u.n != len(hundred) {
			return fmt.Errorf("checked unlock of 100 keys: %+v %v", u, err)
		}
		return nil
	}
	checked := func(checks lockChecks) func() error {
		return func() error {
			st := sessionLock(fnTry, Exclusive, keys, "bench", pid, checks)
			var (
				res lockResult
				u   unlockResult
			)
			err := runLock(conn, st, keys, &res)
			if err != nil || !res.granted || res.why != gateOK {
				return fmt.Errorf("checked try: %+v %v", res, err)
			}
			err = runUnlock(conn, sessionUnlock(Exclusive, keys, "bench", res.pid, st.form), &u)
			if err != nil || !u.mine || !u.all || !u.cleared {
				return fmt.Errorf("checked unlock: %+v %v", u, err)
			}
			return nil
		}
	}
	for _, f := range []func() error{bare, checked(checksLean), checked(checksMarker), bare100, checked100} { // warm the statement cache
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name          string
		bare, checked func() error
	}{{"direct", bare, checked(checksLean)}, {"marker", bare, checked(checksMarker)}, {"keys100", bare100, checked100}} {
		b.Run(c.name, func(b *testing.B) {
			bare, checked := c.bare, c.checked
			var tb, tc time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := bare(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := checked(); err != nil {
					b.Fatal(err)
				}
				tb += t1.Sub(t0)
				tc += time.Since(t1)
			}
			b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N), "bare-ns/op")
			b.ReportMetric(float64(tc.Nanoseconds())/float64(b.N), "checked-ns/op")
			b.ReportMetric(float64(tc)/float64(tb), "ratio")
		})
	}
}

// BenchmarkPostgresContended is the bench harness's contended scenario in
// small: contendedWorkers goroutines wait for one name through one Locker
// over one pgxpool (workers + 2 connections), each acquiring with a
// cancellable context they share and releasing under a bounded one, as
// the harness's workers do. ns/op is wall time per acquisition (the
// inverse of the throughput), allocs/op the whole process's allocations
// per acquisition, cpu-ns/op the process's user and system CPU per
// acquisition, goroutines/op the goroutines it started per acquisition
// (loss watches and timer callbacks). "migrate-like" is golang-migrate's pgx/v5 driver lock
// (the harness's peer): a *sql.Conn pinned per worker for the whole run,
// pg_advisory_lock and pg_advisory_unlock sent with ExecContext under
// context.Background, no result read. "pgxpool-floor" is the harness's
// floor: raw pgxpool, a connection per acquisition.
func BenchmarkPostgresContended(b *testing.B) {
	name := integration.Name(b)
	run := contendedRun
	release := func(ctx context.Context, rel func(context.Context) error) error {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer rcancel()
		return rel(rctx)
	}
	b.Run("lockkit", func(b *testing.B) {
		pool := contendedPool(b)
		p, err := NewPool(pool, nil)
		if err != nil {
			b.Fatal(err)
		}
		// Warm every connection and the Locker's first grant check.
		var wg sync.WaitGroup
		for i := range contendedWorkers {
			wg.Go(func() {
				if l, err := p.TryAcquire(context.Background(), fmt.Sprintf("%s-warm-%d", name, i)); err == nil {
					_ = l.Release(context.Background())
				}
			})
		}
		wg.Wait()
		run(b, func(ctx context.Context, _ int) error {
			l, err := p.Acquire(ctx, name)
			if err != nil {
				return err
			}
			return release(ctx, l.Release)
		})
	})
	b.Run("pgxpool-floor", func(b *testing.B) {
		// The harness's floor: a pool connection per acquisition,
		// pg_advisory_lock, pg_advisory_unlock and its result checked.
		pool := contendedPool(b)
		key := keyhash.Name(name).Int64()
		run(b, func(ctx context.Context, _ int) error {
			c, err := pool.Acquire(ctx)
			if err != nil {
				return err
			}
			if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1::bigint)", key); err != nil {
				c.Hijack().Close(context.Background())
				return err
			}
			return release(ctx, func(ctx context.Context) error {
				var ok bool
				if err := c.QueryRow(ctx, "SELECT pg_advisory_unlock($1::bigint)", key).Scan(&ok); err != nil || !ok {
					c.Hijack().Close(context.Background())
					return fmt.Errorf("unlock: %v %v", ok, err)
				}
				c.Release()
				return nil
			})
		})
	})
	b.Run("migrate-like", func(b *testing.B) {
		db := integration.Postgres(b)
		db.SetMaxOpenConns(contendedWorkers + 2)
		key := keyhash.Name(name).Int64()
		conns := make([]*sql.Conn, contendedWorkers)
		for i := range conns {
			c, err := db.Conn(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			conns[i] = c
		}
		run(b, func(ctx context.Context, w int) error {
			c := conns[w]
			if _, err := c.ExecContext(context.Background(), "SELECT pg_advisory_lock($1)", key); err != nil {
				return err
			}
			return release(ctx, func(context.Context) error {
				_, err := c.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", key)
				return err
			})
		})
	})
}

// contendedRun runs op b.N times, spread over contendedWorkers goroutines
// (w is the worker's index) sharing one cancellable context, and reports
// the process's CPU and the goroutines it started per op.
func contendedRun(b *testing.B, op func(ctx context.Context, w int) error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, contendedWorkers)
	)
	cpu0, sys0, g0 := procstat.SelfCPU(), selfSys(), procstat.GoroutinesCreated()
	b.ResetTimer()
	for w := range contendedWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := op(ctx, w); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(procstat.SelfCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(selfSys()-sys0)/float64(b.N), "sys-ns/op")
	b.ReportMetric(float64(procstat.GoroutinesCreated()-g0)/float64(b.N), "goroutines/op")
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// selfSys is the system CPU time this process has used.
func selfSys() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Stime.Nano())
}

// contendedWorkers is how many goroutines BenchmarkPostgresContended runs.
const contendedWorkers = 16

// contendedPool is BenchmarkPostgresContended's pgxpool: a connection per
// worker and two more, closed when the benchmark ends.
func contendedPool(b *testing.B) *pgxpool.Pool {
	b.Helper()
	cfg, err := pgxpool.ParseConfig(integration.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = contendedWorkers + 2
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// The lean statements (one key on a direct connection) run as prepared
// statements through pgconn where pgx's exec mode caches statements (its
// default), and through pgx's Query as configured otherwise. Either way an
// uncontended try and release takes 2 round trips; the prepared path
// allocates 21 objects per try and release with a cancellable context
// (27 before, through pgx's Query). The allocation count is the whole
// process's, so the test does not run in parallel.
func TestPostgresLeanStatements(t *testing.T) {
	key := testKeys(t, 1)[0]
	ctx := pgCtx(t, 30*time.Second)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			pool, w := countedPool(t, func(cfg *pgxpool.Config) {
				cfg.ConnConfig.DefaultQueryExecMode = mode
				cfg.MaxConns = 1
			})
			p, err := NewPool(pool, nil)
			if err != nil {
				t.Fatal(err)
			}
			op := func() {
				l, err := p.TryLockKey(ctx, key, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
			op() // the connection's first statement: the marker form
			op() // the lean form, prepared here
			before := w.Writes()
			allocs := testing.AllocsPerRun(50, op)
			if n := float64(w.Writes()-before) / 51; n > 2.05 {
				t.Errorf("try+release took %.2f round trips, want 2", n)
			}
			var prepared int
			err = pool.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE statement IN ($1, $2)",
				leanLockSQL[fnTry][Exclusive][shapeInt], leanUnlockSQL[Exclusive][shapeInt]).Scan(&prepared)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%.0f allocations per try+release, %d lean statements prepared", allocs, prepared)
			switch {
			case mode == pgx.QueryExecModeCacheStatement && prepared != 2:
				t.Errorf("%d lean statements prepared on the session, want the try and the unlock", prepared)
			case mode != pgx.QueryExecModeCacheStatement && prepared != 0:
				t.Errorf("%d lean statements prepared on the session in exec mode %v, want none", prepared, mode)
			case mode == pgx.QueryExecModeCacheStatement && allocs > 22:
				t.Errorf("%.0f allocations per try+release, want at most 22 (21 measured; 27 through pgx's Query)", allocs)
			}
		})
	}
}

// queryCounter is a pgx QueryTracer that counts the statements it sees.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A user's pgx tracer sees the lock and unlock statements: a connection
// with a Tracer keeps pgx's Query for the lean statements.
func TestPostgresLeanStatementsTraced(t *testing.T) {
	key := testKeys(t, 1)[0]
	ctx := pgCtx(t, 30*time.Second)
	tracer := &queryCounter{}
	pool, _ := countedPool(t, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.Tracer = tracer
		cfg.MaxConns = 1
	})
	p, err := NewPool(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l, err := p.TryLockKey(ctx, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := tracer.n.Load()
	l, err := p.TryLockKey(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tracer.n.Load() - before; n < 2 {
		t.Errorf("the tracer saw %d statements of a try+release, want the lock and the unlock", n)
	}
}
