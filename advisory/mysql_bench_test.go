package advisory_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/integration"
)

// BenchmarkMySQLTryRelease is an uncontended TryAcquire plus Release
// through lockkit: pin a connection, GET_LOCK(name, 0) with CONNECTION_ID(),
// start the loss probe, stop it, RELEASE_LOCK, return the connection.
func BenchmarkMySQLTryRelease(b *testing.B) {
	db := integration.MySQL(b)
	m, err := advisory.NewMySQL(db, nil)
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
	m, err := advisory.NewMySQL(db, nil)
	if err != nil {
		b.Fatal(err)
	}
	name, err := m.LockName(integration.Name(b))
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
	m, err := advisory.NewMySQL(db, nil)
	if err != nil {
		b.Fatal(err)
	}
	name := integration.Name(b)
	rawName, err := m.LockName(integration.Name(b))
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
