package mysqllock_test

import (
	"context"
	"database/sql"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/mysqllock"
)

// BenchmarkMySQLTryRelease is an uncontended TryAcquire plus Release
// through lockkit: pin a connection, GET_LOCK(name, 0) with CONNECTION_ID(),
// start the loss probe, stop it, RELEASE_LOCK, return the connection.
func BenchmarkMySQLTryRelease(b *testing.B) {
	benchMySQLTryRelease(b, nil)
}

// BenchmarkMySQLTryReleaseFencing is BenchmarkMySQLTryRelease with
// Config.Fencing: one more statement, the counter's bump (a commit).
func BenchmarkMySQLTryReleaseFencing(b *testing.B) {
	benchMySQLTryRelease(b, &mysqllock.Config{Fencing: true})
}

func benchMySQLTryRelease(b *testing.B, cfg *mysqllock.Config) {
	db := integration.MySQL(b)
	m, err := mysqllock.New(db, cfg)
	if err != nil {
		b.Fatal(err)
	}
	name := integration.Name(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		lk, err := m.TryAcquire(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		if err := lk.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMySQLRawTryRelease is the floor: the same two statements
// through go-sql-driver/mysql on one *sql.Conn, results checked.
func BenchmarkMySQLRawTryRelease(b *testing.B) {
	db := integration.MySQL(b)
	m, err := mysqllock.New(db, nil)
	if err != nil {
		b.Fatal(err)
	}
	name, err := m.UserLockName(integration.Name(b))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var got, id sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0), CONNECTION_ID()", name).Scan(&got, &id); err != nil || got.Int64 != 1 {
			b.Fatalf("GET_LOCK = %v, %v", got, err)
		}
		if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", name).Scan(&got); err != nil || got.Int64 != 1 {
			b.Fatalf("RELEASE_LOCK = %v, %v", got, err)
		}
	}
}

// BenchmarkMySQLTryReleaseRatio alternates one lockkit cycle and one raw
// cycle (on two names, so they never meet) and reports each one's mean
// and their ratio. Alternating cancels the drift of a machine shared
// with other work, which two separate benchmarks do not.
func BenchmarkMySQLTryReleaseRatio(b *testing.B) {
	db := integration.MySQL(b)
	m, err := mysqllock.New(db, nil)
	if err != nil {
		b.Fatal(err)
	}
	name := integration.Name(b)
	rawName, err := m.UserLockName(integration.Name(b))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	var lockkitTime, rawTime time.Duration
	for b.Loop() {
		start := time.Now()
		lk, err := m.TryAcquire(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		if err := lk.Release(ctx); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		var got, id sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0), CONNECTION_ID()", rawName).Scan(&got, &id); err != nil || got.Int64 != 1 {
			b.Fatalf("GET_LOCK = %v, %v", got, err)
		}
		if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", rawName).Scan(&got); err != nil || got.Int64 != 1 {
			b.Fatalf("RELEASE_LOCK = %v, %v", got, err)
		}
		end := time.Now()
		lockkitTime += mid.Sub(start)
		rawTime += end.Sub(mid)
	}
	b.ReportMetric(float64(lockkitTime.Nanoseconds())/float64(b.N), "lockkit-ns/op")
	b.ReportMetric(float64(rawTime.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(lockkitTime)/float64(rawTime), "ratio")
}

// BenchmarkMySQLAcquireRelease is an uncontended waiting Acquire plus
// Release, without and with interpolateParams=true in the DSN.
func BenchmarkMySQLAcquireRelease(b *testing.B) {
	for _, interpolate := range []bool{false, true} {
		b.Run(map[bool]string{false: "prepared", true: "interpolated"}[interpolate], func(b *testing.B) {
			db := mysqlBenchDB(b, interpolate)
			m, err := mysqllock.New(db, nil)
			if err != nil {
				b.Fatal(err)
			}
			name := integration.Name(b)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				lk, err := m.Acquire(ctx, name)
				if err != nil {
					b.Fatal(err)
				}
				if err := lk.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMySQLNames100 is TryLockNames and LockNames of 100 names
// plus Release, with interpolateParams=true in the DSN.
func BenchmarkMySQLNames100(b *testing.B) {
	db := mysqlBenchDB(b, true)
	m, err := mysqllock.New(db, nil)
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, 100)
	for i := range names {
		names[i] = integration.Name(b) + "-" + strconv.Itoa(i)
	}
	ctx := context.Background()
	for _, wait := range []bool{false, true} {
		b.Run(map[bool]string{false: "try", true: "wait"}[wait], func(b *testing.B) {
			for b.Loop() {
				acquire := m.TryLockNames
				if wait {
					acquire = m.LockNames
				}
				lk, err := acquire(ctx, names)
				if err != nil {
					b.Fatal(err)
				}
				if err := lk.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// mysqlBenchDB opens the test database, with interpolateParams=true in its
// DSN if asked.
func mysqlBenchDB(b *testing.B, interpolate bool) *sql.DB {
	b.Helper()
	if !interpolate {
		return integration.MySQL(b)
	}
	cfg, err := mysql.ParseDSN(integration.MySQLDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.InterpolateParams = true
	db := sql.OpenDB(must(mysql.NewConnector(cfg)))
	b.Cleanup(func() { _ = db.Close() })
	return db
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
