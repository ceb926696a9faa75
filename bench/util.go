package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockkit/lockkit"
)

// countFDs returns how many descriptors this process has open.
func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// lockName is the name of lock index k in this run: unique per run, so
// that a run never meets another run's (or another engineer's) locks.
func (e *env) lockName(k int) string {
	return "bench-" + e.runID + "-" + strconv.Itoa(k)
}

// keyInt64 is the advisory key of lock index k for the variants that take
// raw keys (peers with a numeric lock id).
func (e *env) keyInt64(k int) int64 {
	return e.keySeed + int64(k)
}

// logf prints a progress line to stderr.
func (e *env) logf(format string, args ...any) {
	if e.verbose {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

func errDriverBadConn() error { return driver.ErrBadConn }

// netConn is net.Conn, for dial function signatures.
type netConn = net.Conn

// warmPgx opens n connections of pool before a measurement, so that no
// acquire in it waits for a dial. The dials run in parallel.
func warmPgx(ctx context.Context, pool *pgxpool.Pool, n int) {
	cs := make([]*pgxpool.Conn, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { cs[i], _ = pool.Acquire(ctx) })
	}
	wg.Wait()
	for _, c := range cs {
		if c != nil {
			c.Release()
		}
	}
}

// warmDB opens n connections of db before a measurement, in parallel.
func warmDB(ctx context.Context, db *sql.DB, n int) {
	cs := make([]*sql.Conn, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { cs[i], _ = db.Conn(ctx) })
	}
	wg.Wait()
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// warmLocker readies l for a contended measurement the way a
// long-running process has long been ready (warmHeld, on distinct free
// names). A fresh advisory Locker sends its first statement on a
// connection in a longer form, checks its first grant in pg_locks, and
// prepares the blocking lock statement on a connection the first time it
// runs there in the lean form (see the advisory package); golang-migrate's
// drivers do the same during their setup. Try+release cycles would not:
// a try does not prepare the blocking statement, and two tries run at once
// can share a connection, leaving another cold. Errors are ignored: the
// measurement reports its own.
func warmLocker(ctx context.Context, l lockkit.Locker, n int, prefix string) {
	warmHeld(ctx, n, func(ctx context.Context, i int) (releaseFunc, error) {
		lk, err := l.Acquire(ctx, prefix+"-warm-"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		return lk.Release, nil
	})
}

// warmHeld runs acquire(ctx, i) for i in [0, n) at once, twice, each
// holding what it got until all n hold theirs, then releasing it. With n
// distinct free locks and a pool of at least n connections, n distinct
// connections each run a blocking lock and its release twice: whatever a
// connection sets up on its first statements (a prepared statement, what
// lockkit learned of the session) is done before the measurement, for
// lockkit and the floor alike.
func warmHeld(ctx context.Context, n int, acquire func(ctx context.Context, i int) (releaseFunc, error)) {
	for range 2 {
		var held, wg sync.WaitGroup
		held.Add(n)
		for i := range n {
			wg.Go(func() {
				rel, err := acquire(ctx, i)
				held.Done()
				if err != nil {
					return
				}
				held.Wait()
				_ = rel(ctx)
			})
		}
		wg.Wait()
	}
}
