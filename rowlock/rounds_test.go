package rowlock_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/rowlock"
)

// countedDB opens a pool of at most n connections on the test's lock
// table whose traffic rt counts (on MySQL without interpolateParams, as
// go-sql-driver/mysql's defaults have it).
func (e *env) countedDB(t *testing.T, rt *integration.RoundTrips, n int) *sql.DB {
	t.Helper()
	if e.dialect == rowlock.MySQL {
		return integration.MySQLPrepared(t, e.dsn(nil), rt, n)
	}
	cfg, err := pgx.ParseConfig(e.dsn(nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = rt.Dial
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(n)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestLockerPerWorkerRoundTrips: workers with a Locker (and a pool of three
// connections) each, as separate processes have, take turns at one name.
// The waiting room makes a contended acquisition two round trips (the
// room's attempt, which the server answers when the previous holder's
// release gives the room back, and the release), and serves the workers in
// turn. Without it every release woke every worker, whose attempts all but
// one failed: 12 or more round trips per acquisition.
func TestLockerPerWorkerRoundTrips(t *testing.T) {
	if per := lockerPerWorker(t, setup(t, rowlock.Postgres)); per > 3 {
		t.Errorf("%.2f round trips per acquisition with a Locker per worker, want at most 3 (2 per handoff in the waiting room)", per)
	}
}

// TestMySQLLockerPerWorkerRoundTrips is TestLockerPerWorkerRoundTrips on
// MySQL, whose waiting room makes a contended acquisition three round
// trips (the room, the attempt, the release). Without it the workers
// polled: about 6 round trips per acquisition. On a loaded machine a few
// heads find the room busy for its whole first bound or the name no
// longer marked contended, and attempt outside it (two round trips more
// each): hence the margin over 3.
func TestMySQLLockerPerWorkerRoundTrips(t *testing.T) {
	if per := lockerPerWorker(t, setup(t, rowlock.MySQL)); per > 3.25 {
		t.Errorf("%.2f round trips per acquisition with a Locker per worker, want 3 (the room, the attempt and the release) and at most 3.25", per)
	}
}

// lockerPerWorker runs the workers of TestLockerPerWorkerRoundTrips on e
// and returns the round trips per acquisition.
func lockerPerWorker(t *testing.T, e *env) float64 {
	const workers, warm, each = 16, 3, 20
	var rt integration.RoundTrips
	name := e.name(t)
	lockers := make([]*rowlock.Locker, workers)
	for i := range lockers {
		lockers[i] = e.lockerOn(t, e.countedDB(t, &rt, 3), &rowlock.Config{TTL: 30 * time.Second})
	}
	ctx := ctxT(t, 2*time.Minute)
	// Every worker takes the name n times; the order of acquisitions.
	run := func(n int) []int {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			order []int
		)
		errs := make(chan error, workers)
		for i, l := range lockers {
			wg.Go(func() {
				for range n {
					lk, err := l.Lock(ctx, name, nil)
					if err == nil {
						mu.Lock()
						order = append(order, i)
						mu.Unlock()
						err = lk.Release(context.Background())
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("worker: %v", err)
		}
		return order
	}
	// Warm up, contended: the connections, the listener (PostgreSQL),
	// the statements prepared on each connection (MySQL).
	run(warm)
	before := rt.Exchanges()
	start := time.Now()
	order := run(each)
	per := float64(rt.Exchanges()-before) / (workers * each)
	others := 0
	for i := 1; i < len(order); i++ {
		if order[i] != order[i-1] {
			others++
		}
	}
	t.Logf("%.2f round trips per acquisition, %d workers with a Locker each, %v; %d of %d handoffs to another worker", per, workers, time.Since(start), others, len(order)-1)
	return per
}
