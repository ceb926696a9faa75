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

// warmLocker runs n try+release cycles at once on distinct names through
// l, so that each of n pooled connections has run a lock statement before
// a measurement: a fresh advisory Locker sends its first statement on a
// connection in a longer form, and checks its first grant in pg_locks
// (see the advisory package), which a long-running process has done long
// before. Errors are ignored: the measurement reports its own.
func warmLocker(ctx context.Context, l lockkit.Locker, n int, prefix string) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if lk, err := l.TryAcquire(ctx, prefix+"-warm-"+strconv.Itoa(i)); err == nil {
				_ = lk.Release(ctx)
			}
		})
	}
	wg.Wait()
}
