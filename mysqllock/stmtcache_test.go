package mysqllock

import (
	"context"
	"database/sql"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
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
	cfg, err := mysql.ParseDSN(integration.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = w.Dial
	cfg.InterpolateParams = false
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	return db
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

// A sweep drops the entries of connections whose session has ended, and
// keeps those of live sessions, whatever their age: a live connection
// must not lose track of its statements.
func TestMySQLConnCacheSweep(t *testing.T) {
	db := integration.MySQL(t)
	conn, err := db.Conn(mctx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var liveID int64
	if err := conn.QueryRowContext(mctx(t, 10*time.Second), "SELECT CONNECTION_ID()").Scan(&liveID); err != nil {
		t.Fatal(err)
	}
	var c connCache
	live, unknown := new(int), new(int)
	c.put(db, live, liveID)
	c.entry(unknown) // an id never learnt
	for i := range 1000 {
		// Sessions that ended (ids no server has handed out yet).
		c.put(db, new(int), int64(1<<40+i))
	}
	for c.sweeping.Load() {
		time.Sleep(time.Millisecond)
	}
	c.sweep(db)
	if id, ok := c.get(live); !ok || id != liveID {
		t.Errorf("after the sweeps, the live connection's id = %d, %v; want %d", id, ok, liveID)
	}
	if n := c.len(); n > 2 {
		t.Errorf("%d connections cached after 1000 ended ones came and went, want the live one and one other", n)
	}
	c.sweep(db)
	c.sweep(db)
	if n := c.len(); n != 1 {
		t.Errorf("%d connections cached after two more sweeps, want only the live one (the unknown one unused)", n)
	}
	if _, ok := c.get(nil); ok {
		t.Error("a nil driver connection has an id")
	}
}

// When the server's session list cannot be read, a sweep drops only
// entries without statements that were not used since the previous sweep:
// the server may still hold the others' statements.
func TestMySQLConnCacheSweepBlind(t *testing.T) {
	closed := integration.MySQL(t)
	_ = closed.Close()
	var c connCache
	idsOnly, prepared := new(int), new(int)
	c.put(closed, idsOnly, 7)
	c.put(closed, prepared, 8)
	c.entry(prepared).prepared = true // as stmt marks it, under mu
	c.sweep(closed)                   // both used since the last sweep
	if n := c.len(); n != 2 {
		t.Fatalf("%d entries after a blind sweep of fresh ones, want 2", n)
	}
	c.sweep(closed)
	if _, ok := c.get(idsOnly); ok {
		t.Error("a stale entry without statements survived a blind sweep")
	}
	if id, ok := c.get(prepared); !ok || id != 8 {
		t.Error("a blind sweep dropped an entry with statements")
	}
}

// The caches of the *sql.DBs a program dropped go with them.
func TestMySQLConnCacheFollowsDB(t *testing.T) {
	count := func() int {
		n := 0
		connCaches.Range(func(any, any) bool { n++; return true })
		return n
	}
	before := count()
	func() {
		db, err := sql.Open("mysql", integration.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(db, &Config{Namespace: "x"}); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for count() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d connection caches, want %d: the dropped db's stays", count(), before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// A connection never gets more than numCached statements prepared by the
// cache, and none before its id is known: otherwise a statement runs as
// database/sql runs it (prepared, executed and closed).
func TestMySQLConnCacheBound(t *testing.T) {
	db := countedDB(t, &integration.RoundTrips{}, 1)
	defer db.Close()
	var c connCache
	conn, err := db.Conn(mctx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	run := func(round int) {
		t.Helper()
		for i := range numCached + 3 {
			var got sql.NullInt64
			q := "SELECT ? + " + strconv.Itoa(i)
			if err := c.queryRow(mctx(t, 10*time.Second), conn, q, []any{int64(round)}, &got); err != nil {
				t.Fatal(err)
			}
			if got.Int64 != int64(round+i) {
				t.Errorf("%s with %d = %v", q, round, got)
			}
		}
	}
	dc := driverConn(conn)
	// Until the connection's id is known, nothing is cached: a sweep
	// could not tell whether its session is alive.
	run(0)
	if n := len(c.entry(dc).stmts); n != 0 {
		t.Errorf("%d statements cached on a connection of unknown id, want 0", n)
	}
	var id int64
	if err := conn.QueryRowContext(mctx(t, 10*time.Second), "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	c.put(db, dc, id)
	run(1)
	run(2)
	if n := len(c.entry(dc).stmts); n != numCached {
		t.Errorf("%d statements cached on the connection, want %d", n, numCached)
	}
}
