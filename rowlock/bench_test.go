package rowlock_test

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockkit/lockkit/rowlock"
)

// BenchmarkAcquireRelease compares an uncontended TryAcquire + Release
// through rowlock with the same two statements issued through database/sql
// directly (prepared on MySQL, as rowlock does; pgx caches its prepared
// statements itself). The two alternate iteration by iteration, so that
// load from elsewhere on a shared machine hits both alike; the benchmark
// reports the median of each and their ratio. "renew" takes the lock as
// Acquire does, with background renewal (a goroutine per lock);
// "norenew" without.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, d := range dialects {
		b.Run(string(d), func(b *testing.B) {
			e := setup(b, d)
			e.db.SetMaxIdleConns(16)
			ctx := context.Background()
			raw := rawLocker(b, e)
			for _, renew := range []struct {
				label string
				every time.Duration
			}{{"renew", 0}, {"norenew", rowlock.NoRenew}} {
				b.Run(renew.label, func(b *testing.B) {
					l := e.locker(b, &rowlock.Config{TTL: 30 * time.Second, RenewInterval: renew.every})
					name := "bench." + randHex(6)
					var lib, floor []time.Duration
					for b.Loop() {
						start := time.Now()
						lk, err := l.TryAcquire(ctx, name)
						if err != nil {
							b.Fatal(err)
						}
						if err := lk.Release(ctx); err != nil {
							b.Fatal(err)
						}
						mid := time.Now()
						raw(name)
						lib, floor = append(lib, mid.Sub(start)), append(floor, time.Since(mid))
					}
					ml, mf := median(lib), median(floor)
					b.ReportMetric(float64(ml.Microseconds()), "rowlock-µs")
					b.ReportMetric(float64(mf.Microseconds()), "raw-µs")
					b.ReportMetric(float64(ml)/float64(mf), "ratio")
				})
			}
		})
	}
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// rawLocker returns a function that takes and releases name with
// rowlock's own statements, straight through database/sql.
func rawLocker(b *testing.B, e *env) func(name string) {
	ctx := context.Background()
	q, err := rowlock.Statements(e.dialect, rowlock.DefaultTable)
	if err != nil {
		b.Fatal(err)
	}
	acquire, release := q.Acquire, q.Release
	owner, host, pid, data, ttl := "raw-owner", "host", 1, "", int64(30_000_000)
	if e.dialect == rowlock.Postgres {
		return func(name string) {
			var token, n int64
			var hOwner, hHost, hData string
			var hToken, hAcq, hExp, hPid, hLeft int64
			if err := e.db.QueryRowContext(ctx, acquire, name, owner, ttl, host, pid, data).Scan(
				&token, &hOwner, &hToken, &hAcq, &hExp, &hHost, &hPid, &hData, &hLeft); err != nil {
				b.Fatal(err)
			}
			if token == 0 {
				b.Fatal("not acquired")
			}
			if err := e.db.QueryRowContext(ctx, release, name, owner, token, q.Channel).Scan(&n); err != nil || n != 1 {
				b.Fatal(n, err)
			}
		}
	}
	acq, err := e.db.PrepareContext(ctx, acquire)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = acq.Close() })
	rel, err := e.db.PrepareContext(ctx, release)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rel.Close() })
	return func(name string) {
		res, err := acq.ExecContext(ctx, name, owner, ttl, host, pid, data, owner, host, pid, data, ttl)
		if err != nil {
			b.Fatal(err)
		}
		token, _ := res.LastInsertId()
		if token == 0 {
			b.Fatal("not acquired")
		}
		res, err = rel.ExecContext(ctx, name, owner, token)
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			b.Fatal("not released")
		}
	}
}

// BenchmarkHandoff measures the time from a holder's Release call to a
// waiter on another Locker (another process, as far as wake-ups go)
// holding the lock: LISTEN/NOTIFY on PostgreSQL, polling on MySQL. The
// waiter has waited 10–50ms when the release comes. "same-locker" has the
// waiter on the releasing Locker, woken in-process. Reports the median
// and 90th percentile in microseconds, and the median of the floor: the
// same two statements (a release, then an acquire) issued back to back
// through the raw driver, measured in the same iterations. handoff/floor
// near 1 means the waiter lost no time between the two.
func BenchmarkHandoff(b *testing.B) {
	for _, d := range dialects {
		b.Run(string(d), func(b *testing.B) {
			e := setup(b, d)
			raw := rawLocker(b, e)
			for _, same := range []bool{false, true} {
				label := "other-locker"
				if same {
					label = "same-locker"
				}
				b.Run(label, func(b *testing.B) {
					holder := e.locker(b, &rowlock.Config{TTL: time.Minute})
					waiter := holder
					if !same {
						waiter = e.locker(b, &rowlock.Config{TTL: time.Minute})
					}
					name := "bench." + randHex(6)
					ctx := context.Background()
					var lat, floor []time.Duration
					for b.Loop() {
						held, err := holder.TryAcquire(ctx, name)
						if err != nil {
							b.Fatal(err)
						}
						got := make(chan time.Time, 1)
						errc := make(chan error, 1)
						go func() {
							lk, err := waiter.Acquire(ctx, name)
							if err != nil {
								close(got)
								errc <- err
								return
							}
							got <- time.Now()
							errc <- lk.Release(ctx)
						}()
						time.Sleep(10*time.Millisecond + rand.N(40*time.Millisecond))
						start := time.Now()
						if err := held.Release(ctx); err != nil {
							b.Fatal(err)
						}
						if at, ok := <-got; ok {
							lat = append(lat, at.Sub(start))
						}
						if err := <-errc; err != nil {
							b.Fatal(err)
						}
						start = time.Now()
						raw(name)
						floor = append(floor, time.Since(start))
					}
					b.ReportMetric(float64(median(floor).Microseconds()), "floor-µs")
					b.ReportMetric(float64(median(lat))/float64(median(floor)), "handoff/floor")
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "median-µs")
					b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "p90-µs")
					b.ReportMetric(0, "ns/op")
				})
			}
		})
	}
}

// BenchmarkContended has 16 goroutines take and release one name in a
// loop through one Locker, as the bench harness's contended scenario does.
// Reports acquisitions per second, statements per acquisition (acquire
// statements and holder reads, counted by the test hook, plus the
// release), the median and 90th percentile handoff (from a release to the
// next acquisition) and the spread (most acquisitions of a worker over
// fewest).
func BenchmarkContended(b *testing.B) {
	for _, d := range dialects {
		b.Run(string(d), func(b *testing.B) {
			e := setup(b, d)
			e.db.SetMaxOpenConns(20)
			l := e.locker(b, &rowlock.Config{TTL: 30 * time.Second})
			var stmts atomic.Int64
			rowlock.SetTestHook(l, func(string) func() { stmts.Add(1); return func() {} })
			name := "bench." + randHex(6)
			ctx := context.Background()
			const workers = 16
			var (
				mu       sync.Mutex
				released time.Time
				handoffs []time.Duration
				left     atomic.Int64
				counts   [workers]int
				wg       sync.WaitGroup
			)
			left.Store(int64(b.N))
			b.ResetTimer()
			start := time.Now()
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for left.Add(-1) >= 0 {
						lk, err := l.Acquire(ctx, name)
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						if !released.IsZero() {
							handoffs = append(handoffs, time.Since(released))
						}
						counts[w]++
						released = time.Now()
						mu.Unlock()
						if err := lk.Release(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(handoffs)
			lo, hi := slices.Min(counts[:]), slices.Max(counts[:])
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "acq/s")
			b.ReportMetric(float64(stmts.Load()+int64(b.N))/float64(b.N), "stmts/acq")
			if len(handoffs) > 0 {
				b.ReportMetric(float64(handoffs[len(handoffs)/2].Microseconds()), "handoff-p50-µs")
				b.ReportMetric(float64(handoffs[len(handoffs)*9/10].Microseconds()), "handoff-p90-µs")
			}
			b.ReportMetric(float64(hi)/float64(max(lo, 1)), "spread")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkMySQLAcquireStrategies measures the two MySQL acquire patterns
// the issue names, each made correct, for an acquire + release cycle on a
// name whose row exists (rows outlive leases):
//
//   - odku: INSERT ... ON DUPLICATE KEY UPDATE with a conditional takeover,
//     the token reported by LAST_INSERT_ID: one round trip.
//   - insert-ignore: INSERT IGNORE, then SHOW WARNINGS to make sure the
//     only warning is the duplicate key (IGNORE turns NULL, truncation and
//     foreign-key errors into warnings too), then, on the duplicate, an
//     UPDATE ... WHERE expired to take the lease over: three round trips.
//
// Both run on one pinned connection with prepared statements, alternating
// iteration by iteration; release is the same statement. Reports the
// median of each and their ratio.
func BenchmarkMySQLAcquireStrategies(b *testing.B) {
	e := setup(b, rowlock.MySQL)
	ctx := context.Background()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	prep := func(q string) *sql.Stmt {
		st, err := conn.PrepareContext(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		return st
	}
	q, err := rowlock.Statements(rowlock.MySQL, rowlock.DefaultTable)
	if err != nil {
		b.Fatal(err)
	}
	acquire, release := q.Acquire, q.Release
	rel := prep(release)
	const owner, host, pid, data, ttl = "bench", "host", 1, "", int64(30_000_000)
	releaseToken := func(name string, token int64) {
		res, err := rel.ExecContext(ctx, name, owner, token)
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			b.Fatal("not released")
		}
	}

	acq := prep(acquire)
	odku := func(name string) {
		res, err := acq.ExecContext(ctx, name, owner, ttl, host, pid, data, owner, host, pid, data, ttl)
		if err != nil {
			b.Fatal(err)
		}
		token, _ := res.LastInsertId()
		if token == 0 {
			b.Fatal("not acquired")
		}
		releaseToken(name, token)
	}

	ins := prep(`INSERT IGNORE INTO lockkit_locks (name, owner, token, acquired_at, expires_at, host, pid, data)
VALUES (?, ?, LAST_INSERT_ID(TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))), UTC_TIMESTAMP(6),
        UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?, ?, ?)`)
	take := prep(`UPDATE lockkit_locks SET
  token = LAST_INSERT_ID(GREATEST(token + 1, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)))),
  owner = ?, acquired_at = UTC_TIMESTAMP(6), host = ?, pid = ?, data = ?,
  expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
WHERE name = ? AND expires_at <= UTC_TIMESTAMP(6)`)
	warnings := func() (dupOnly bool) {
		rows, err := conn.QueryContext(ctx, "SHOW WARNINGS")
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		n, dup := 0, 0
		for rows.Next() {
			var level, msg string
			var code int
			if err := rows.Scan(&level, &code, &msg); err != nil {
				b.Fatal(err)
			}
			n++
			if code == 1062 {
				dup++
			}
		}
		if n != dup {
			b.Fatal(errors.New("INSERT IGNORE raised a warning other than the duplicate key"))
		}
		return dup == 1
	}
	ignore := func(name string) {
		res, err := ins.ExecContext(ctx, name, owner, ttl, host, pid, data)
		if err != nil {
			b.Fatal(err)
		}
		var token int64
		if n, _ := res.RowsAffected(); n == 1 {
			token, _ = res.LastInsertId()
			warnings() // an inserted row can still carry truncation warnings
		} else {
			if !warnings() {
				b.Fatal("no row inserted and no duplicate-key warning")
			}
			res, err := take.ExecContext(ctx, owner, host, pid, data, ttl, name)
			if err != nil {
				b.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				b.Fatal("held")
			}
			token, _ = res.LastInsertId()
		}
		releaseToken(name, token)
	}

	n1, n2 := "bench."+randHex(6), "bench."+randHex(6)
	var a, c []time.Duration
	for b.Loop() {
		start := time.Now()
		odku(n1)
		mid := time.Now()
		ignore(n2)
		a, c = append(a, mid.Sub(start)), append(c, time.Since(mid))
	}
	ma, mc := median(a), median(c)
	b.ReportMetric(float64(ma.Microseconds()), "odku-µs")
	b.ReportMetric(float64(mc.Microseconds()), "insert-ignore-µs")
	b.ReportMetric(float64(mc)/float64(ma), "ignore/odku")
}
