package mysqlconn

import (
	"context"
	"database/sql"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
)

func mctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
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
	var c Cache
	live, unknown := new(int), new(int)
	c.SetID(db, live, liveID)
	c.entry(unknown) // an id never learnt
	for i := range 1000 {
		// Sessions that ended (ids no server has handed out yet).
		c.SetID(db, new(int), int64(1<<40+i))
	}
	for c.sweeping.Load() {
		time.Sleep(time.Millisecond)
	}
	c.sweep(db)
	if id, ok := c.ID(live); !ok || id != liveID {
		t.Errorf("after the sweeps, the live connection's id = %d, %v; want %d", id, ok, liveID)
	}
	if n := c.Len(); n > 2 {
		t.Errorf("%d connections cached after 1000 ended ones came and went, want the live one and one other", n)
	}
	c.sweep(db)
	c.sweep(db)
	if n := c.Len(); n != 1 {
		t.Errorf("%d connections cached after two more sweeps, want only the live one (the unknown one unused)", n)
	}
	if _, ok := c.ID(nil); ok {
		t.Error("a nil driver connection has an id")
	}
}

// When the server's session list cannot be read, a sweep drops only
// entries without statements that were not used since the previous sweep:
// the server may still hold the others' statements.
func TestMySQLConnCacheSweepBlind(t *testing.T) {
	closed := integration.MySQL(t)
	_ = closed.Close()
	var c Cache
	idsOnly, prepared := new(int), new(int)
	c.SetID(closed, idsOnly, 7)
	c.SetID(closed, prepared, 8)
	c.entry(prepared).prepared = true // as stmt marks it, under mu
	c.sweep(closed)                   // both used since the last sweep
	if n := c.Len(); n != 2 {
		t.Fatalf("%d entries after a blind sweep of fresh ones, want 2", n)
	}
	c.sweep(closed)
	if _, ok := c.ID(idsOnly); ok {
		t.Error("a stale entry without statements survived a blind sweep")
	}
	if id, ok := c.ID(prepared); !ok || id != 8 {
		t.Error("a blind sweep dropped an entry with statements")
	}
}

// The caches of the *sql.DBs a program dropped go with them.
func TestMySQLConnCacheFollowsDB(t *testing.T) {
	count := func() int {
		n := 0
		caches.Range(func(any, any) bool { n++; return true })
		return n
	}
	before := count()
	func() {
		db, err := sql.Open("mysql", integration.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		CacheOf(db)
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

// A connection never gets more than MaxStmts statements prepared by the
// cache, and none before its id is known: otherwise a statement runs as
// database/sql runs it (prepared, executed and closed).
func TestMySQLConnCacheBound(t *testing.T) {
	db := integration.MySQLPrepared(t, integration.MySQLDSN(t), nil, 1)
	defer db.Close()
	var c Cache
	conn, err := db.Conn(mctx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	run := func(round int) {
		t.Helper()
		for i := range MaxStmts + 3 {
			var got sql.NullInt64
			q := "SELECT ? + " + strconv.Itoa(i)
			if err := c.QueryRow(mctx(t, 10*time.Second), conn, q, []any{int64(round)}, &got); err != nil {
				t.Fatal(err)
			}
			if got.Int64 != int64(round+i) {
				t.Errorf("%s with %d = %v", q, round, got)
			}
		}
	}
	dc := DriverConn(conn)
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
	c.SetID(db, dc, id)
	run(1)
	run(2)
	if n := len(c.entry(dc).stmts); n != MaxStmts {
		t.Errorf("%d statements cached on the connection, want %d", n, MaxStmts)
	}
}
