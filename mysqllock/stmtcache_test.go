package mysqllock

import (
	"context"
	"database/sql"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
)

// preparedStmts returns the server's Prepared_stmt_count: the statements
// prepared and not closed, over every session.
func preparedStmts(t *testing.T, admin *sql.DB) int {
	t.Helper()
	var name string
	var n int
	if err := admin.QueryRowContext(mctx(t, 10*time.Second), "SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'").Scan(&name, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitPrepared waits until the server's Prepared_stmt_count is at most
// limit. Other clients of a shared server prepare statements too, for
// moments, so a count above the limit is read again before it fails.
func waitPrepared(t *testing.T, admin *sql.DB, limit int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := preparedStmts(t, admin)
		if n <= limit {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: Prepared_stmt_count is %d, want at most %d", what, n, limit)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sessionStmts returns, for each of db's open connections (all of them
// idle), how many statements its session holds prepared: its
// Com_stmt_prepare less its Com_stmt_close, which only the session itself
// can read. Unlike Prepared_stmt_count, it does not see other clients.
func sessionStmts(t *testing.T, db *sql.DB) []int {
	t.Helper()
	n := db.Stats().OpenConnections
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := db.Conn(mctx(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	out := make([]int, n)
	for i, c := range conns {
		rows, err := c.QueryContext(mctx(t, 10*time.Second), "SHOW SESSION STATUS WHERE Variable_name IN ('Com_stmt_prepare', 'Com_stmt_close')")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name string
			var v int
			if err := rows.Scan(&name, &v); err != nil {
				t.Fatal(err)
			}
			if name == "Com_stmt_close" {
				v = -v
			}
			out[i] += v
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return out
}

// checkSessionStmts fails t if a connection of db holds more than
// numCached statements.
func checkSessionStmts(t *testing.T, db *sql.DB) {
	t.Helper()
	for _, n := range sessionStmts(t, db) {
		if n > numCached || n < 0 {
			t.Errorf("a connection's session holds %d prepared statements, want at most %d", n, numCached)
		}
	}
}

// countedDB opens a pool of size connections on the MySQL test database
// with the driver's defaults (no interpolateParams), its round trips
// counted by w.
func countedDB(t *testing.T, w *integration.RoundTrips, size int) *sql.DB {
	t.Helper()
	return integration.MySQLPrepared(t, integration.MySQLDSN(t), w, size)
}

// With the driver's defaults (no interpolateParams), a contended
// acquisition across several Lockers, each with a pool of its own as a
// separate process would have, costs one round trip for the wait and one
// for the release: the statements are prepared once per connection, not
// per acquisition (it took 4.0 before). The statements stay bounded (a few
// per connection) and are freed with the connections.
func TestMySQLPreparedReuse(t *testing.T) {
	admin := integration.MySQL(t)
	start := preparedStmts(t, admin)
	const (
		lockers  = 4
		poolSize = 2
		each     = 60
	)
	w := &integration.RoundTrips{}
	name := integration.Name(t)
	dbs := make([]*sql.DB, lockers)
	ms := make([]*Locker, lockers)
	for i := range ms {
		dbs[i] = countedDB(t, w, poolSize)
		defer dbs[i].Close()
		m, err := New(dbs[i], &Config{ProbeInterval: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	before := w.Exchanges()
	var wg sync.WaitGroup
	errs := make(chan error, lockers)
	for _, m := range ms {
		wg.Go(func() {
			for range each {
				l, err := m.Acquire(mctx(t, 30*time.Second), name)
				if err != nil {
					errs <- err
					return
				}
				if err := l.Release(context.Background()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Everything counts, the first acquire's wsrep_on, CONNECTION_ID()
	// and the preparing included.
	perAcq := float64(w.Exchanges()-before) / (lockers * each)
	t.Logf("%.2f round trips per contended acquisition and release", perAcq)
	if perAcq > 2.5 {
		t.Errorf("%.2f round trips per contended acquisition and release, want at most 2.5", perAcq)
	}
	open := 0
	for _, db := range dbs {
		checkSessionStmts(t, db)
		open += db.Stats().OpenConnections
	}
	waitPrepared(t, admin, start+numCached*open, "while the pools are open")
	for _, db := range dbs {
		_ = db.Close()
	}
	waitPrepared(t, admin, start, "after the pools were closed")
}

// A connection that the pool closes (here by SetConnMaxLifetime) or that
// lockkit discards takes its statements with it: the next connection
// prepares its own, and nothing piles up on the server.
func TestMySQLPreparedConnChurn(t *testing.T) {
	admin := integration.MySQL(t)
	start := preparedStmts(t, admin)
	w := &integration.RoundTrips{}
	db := countedDB(t, w, 2)
	defer db.Close()
	db.SetConnMaxLifetime(30 * time.Millisecond)
	m, err := New(db, &Config{ProbeInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	name := integration.Name(t)
	ids := map[int64]bool{}
	for i := range 20 {
		l, err := m.Lock(mctx(t, 10*time.Second), name)
		if err != nil {
			t.Fatal(err)
		}
		ids[l.ConnID()] = true
		if i%5 == 4 {
			// Lost: the session is killed; the lock's connection is
			// discarded, and its statements end with the session.
			if _, err := admin.ExecContext(mctx(t, 10*time.Second), "KILL CONNECTION "+strconv.FormatInt(l.ConnID(), 10)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-l.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the killed lock was not lost")
			}
			_ = l.Release(context.Background())
		} else if err := l.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(ids) < 4 {
		t.Errorf("%d connections over the run, want the pool to have replaced them", len(ids))
	}
	checkSessionStmts(t, db)
	waitPrepared(t, admin, start+numCached*2, "while the pool is open")
	_ = db.Close()
	waitPrepared(t, admin, start, "after the pool was closed")
}

// numCached is the most statements mysqllock has the connection cache
// prepare on one connection: the single-name GET_LOCK try and wait,
// RELEASE_LOCK, the probe, the holder query, the fencing bump and the
// holders row's write.
const numCached = 7
