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
// table whose traffic rt counts.
func (e *env) countedDB(t *testing.T, rt *integration.RoundTrips, n int) *sql.DB {
	t.Helper()
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
	e := setup(t, rowlock.Postgres)
	const workers, each = 16, 20
	var rt integration.RoundTrips
	name := e.name(t)
	lockers := make([]*rowlock.Locker, workers)
	for i := range lockers {
		lockers[i] = e.lockerOn(t, e.countedDB(t, &rt, 3), &rowlock.Config{TTL: 30 * time.Second})
		// Warm up: a connection and the listener.
		lk, err := lockers[i].Lock(ctxT(t, 10*time.Second), name+".warm", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	before := rt.Exchanges()
	ctx := ctxT(t, 2*time.Minute)
	counts := make([]int, workers)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		order []int
	)
	errs := make(chan error, workers)
	start := time.Now()
	for i, l := range lockers {
		wg.Go(func() {
			for range each {
				lk, err := l.Lock(ctx, name, nil)
				if err == nil {
					counts[i]++
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
	per := float64(rt.Exchanges()-before) / (workers * each)
	others := 0
	for i := 1; i < len(order); i++ {
		if order[i] != order[i-1] {
			others++
		}
	}
	t.Logf("%.2f round trips per acquisition, %d workers with a Locker each, %v; %d of %d handoffs to another worker", per, workers, time.Since(start), others, len(order)-1)
	if per > 3 {
		t.Errorf("%.2f round trips per acquisition with a Locker per worker, want at most 3 (2 per handoff in the waiting room)", per)
	}
}
