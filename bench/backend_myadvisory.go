package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/mysqllock"
)

// The statements lockkit's mysqllock package sends on MySQL
// (advisory/mysql.go: getLockQuery, attempt, wait, releaseAll): every name
// of an acquire in one statement that also reads the connection id, a try
// with timeout 0, a wait (without a deadline) with a year's timeout and no
// try before it; the connection id a wait needs beforehand comes from a
// cache per pool connection, filled by SELECT CONNECTION_ID() the first time
// a connection waits.
const (
	myTrySQL     = "SELECT GET_LOCK(?, 0), CONNECTION_ID()" // one name
	myWaitSQL    = "SELECT GET_LOCK(?, ?), CONNECTION_ID()" // one name, waiting
	myConnIDSQL  = "SELECT CONNECTION_ID()"                 // once per connection, before its first wait
	myReleaseSQL = "SELECT RELEASE_LOCK(?)"
	myForever    = 365 * 24 * 3600 // lockkit's wait timeout without a deadline: a year
)

// myTryNamesSQL is lockkit's try of n names: one statement.
func myTryNamesSQL(n int) string {
	if n == 1 {
		return myTrySQL
	}
	return "SELECT " + strings.Repeat("GET_LOCK(?, 0), ", n) + "CONNECTION_ID()"
}

// myStmts keeps the floor's one-name statements prepared per driver
// connection, as mysqllock keeps its own (integration.MySQLStmts):
// go-sql-driver otherwise prepares, executes and closes a statement with
// arguments every time (2 round trips instead of 1). Statements on several
// names are prepared each time, by lockkit and the floor alike.
type myStmts struct{ integration.MySQLStmts }

// query runs q, which returns one row of cols integer columns, with args
// on conn: a statement on one name (names == 1) through the statement
// kept for conn's driver connection, one on several names through
// database/sql. NULL columns are not Valid.
func (s *myStmts) query(ctx context.Context, conn *sql.Conn, names, cols int, q string, args ...any) ([]sql.NullInt64, error) {
	if names > 1 {
		got := make([]sql.NullInt64, cols)
		dest := make([]any, cols)
		for i := range got {
			dest[i] = &got[i]
		}
		return got, conn.QueryRowContext(ctx, q, args...).Scan(dest...)
	}
	return s.Query(ctx, conn, cols, q, args...)
}

// myConnIDs caches the connection id of each driver connection, as
// lockkit's mysqllock.Locker does, so that a wait is one statement.
type myConnIDs struct {
	mu  sync.Mutex
	ids map[any]int64
}

// id returns conn's connection id, reading it with myConnIDSQL the first
// time conn's driver connection is seen.
func (c *myConnIDs) id(ctx context.Context, conn *sql.Conn) (int64, error) {
	var dc any
	_ = conn.Raw(func(d any) error { dc = d; return nil })
	c.mu.Lock()
	id, ok := c.ids[dc]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	if err := conn.QueryRowContext(ctx, myConnIDSQL).Scan(&id); err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.ids == nil {
		c.ids = map[any]int64{}
	}
	c.ids[dc] = id
	c.mu.Unlock()
	return id, nil
}

var myNetSeq atomic.Int64

// newMySQLDB opens a go-sql-driver pool whose connections are counted by c,
// through a dial function registered under a network name of its own.
func newMySQLDB(dsn string, c *netCounter, size int) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	netName := fmt.Sprintf("lockkit-bench-%d", myNetSeq.Add(1))
	mysql.RegisterDialContext(netName, func(ctx context.Context, addr string) (netConn, error) {
		return c.dial(ctx, "tcp", addr)
	})
	if cfg.Net == "unix" {
		return nil, errors.New("the MySQL DSN must use tcp for round trips to be counted")
	}
	cfg.Net = netName
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	return db, nil
}

func setupMySQLAdvisory(ctx context.Context, e *env) (*backendSetup, error) {
	if e.myDSN == "" {
		return nil, errors.New("no MySQL: set LOCKKIT_TEST_MYSQL or -mysql")
	}
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*backendSetup, error) { cleanup(); return nil, err }
	name := e.lockName

	lkNet := &netCounter{}
	lkDB, err := newMySQLDB(e.myDSN, lkNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { lkDB.Close() })
	lk, err := mysqllock.New(lkDB, nil)
	if err != nil {
		return fail(err)
	}
	server := func(k int) string {
		s, err := lk.UserLockName(name(k))
		if err != nil {
			panic(err)
		}
		return s
	}
	names := func(ks []int) []string {
		out := make([]string, len(ks))
		for i, k := range ks {
			out[i] = name(k)
		}
		return out
	}
	lockkitNames := func(ctx context.Context, ks []int) (releaseFunc, error) {
		l, err := lk.TryLockNames(ctx, names(ks))
		if err != nil {
			return nil, err
		}
		return l.Release, nil
	}
	lockkitV := &variant{
		name: "lockkit", role: roleLockkit, net: lkNet,
		note: "mysqllock.New(db, nil) (namespace: the database name): TryAcquire/Acquire + Release; TryLockNames for several names",
		try:  lockkitTry(lk, name),
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			db, err := newMySQLDB(e.myDSN, lkNet, n+4)
			if err != nil {
				return nil, nil, err
			}
			warmDB(ctx, db, n)
			l, err := mysqllock.New(db, nil)
			if err != nil {
				db.Close()
				return nil, nil, err
			}
			warmLocker(ctx, l, n, name(k))
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = lockkitWorker(l, name(k))
			}
			return ws, func() { db.Close() }, nil
		},
		multi: lockkitNames,
		hold:  lockkitNames,
	}

	// The same with interpolateParams=true in the DSN: go-sql-driver then
	// sends each statement with its arguments in one packet, unprepared.
	mc, err := mysql.ParseDSN(e.myDSN)
	if err != nil {
		return fail(err)
	}
	mc.InterpolateParams = true
	ipDSN := mc.FormatDSN()
	ipNet := &netCounter{}
	ipDB, err := newMySQLDB(ipDSN, ipNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { ipDB.Close() })
	ip, err := mysqllock.New(ipDB, nil)
	if err != nil {
		return fail(err)
	}
	ipV := &variant{
		name: "lockkit, interpolateParams=true", role: roleLockkit, net: ipNet,
		note: "lockkit as above, on a DSN with interpolateParams=true (go-sql-driver's client-side argument interpolation)",
		try:  lockkitTry(ip, name),
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			db, err := newMySQLDB(ipDSN, ipNet, n+4)
			if err != nil {
				return nil, nil, err
			}
			warmDB(ctx, db, n)
			l, err := mysqllock.New(db, nil)
			if err != nil {
				db.Close()
				return nil, nil, err
			}
			warmLocker(ctx, l, n, name(k))
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = lockkitWorker(l, name(k))
			}
			return ws, func() { db.Close() }, nil
		},
		multi: func(ctx context.Context, ks []int) (releaseFunc, error) {
			l, err := ip.TryLockNames(ctx, names(ks))
			if err != nil {
				return nil, err
			}
			return l.Release, nil
		},
		diagnostic: true,
	}

	flNet := &netCounter{}
	flDB, err := newMySQLDB(e.myDSN, flNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { flDB.Close() })
	flStmts := &myStmts{}
	floorMulti := func(ctx context.Context, ks []int) (releaseFunc, error) {
		srv := make([]string, len(ks))
		for i, k := range ks {
			srv[i] = server(k)
		}
		return myFloorNames(ctx, flDB, flStmts, srv)
	}
	floorV := &variant{
		name: "floor", role: roleFloor, net: flNet,
		note: "go-sql-driver on a pinned *sql.Conn, one-name statements prepared once per connection and kept (as lockkit keeps them; myStmts): " + myTrySQL + ", " + myReleaseSQL + "; contended: " + myWaitSQL + " with a year's timeout (the server's blocking wait; the connection id is read once per connection before its first wait, as lockkit caches it); several names: SELECT GET_LOCK(?, 0), …, CONNECTION_ID() in one statement, one RELEASE_LOCK statement for all, as lockkit",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			return myFloorNames(ctx, flDB, flStmts, []string{server(k)})
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			db, err := newMySQLDB(e.myDSN, flNet, n+4)
			if err != nil {
				return nil, nil, err
			}
			warmDB(ctx, db, n)
			ids, stmts := &myConnIDs{}, &myStmts{}
			warmHeld(ctx, n, func(ctx context.Context, i int) (releaseFunc, error) {
				s, err := lk.UserLockName(name(k) + "-warm-" + strconv.Itoa(i))
				if err != nil {
					return nil, err
				}
				return myFloorWait(ctx, db, ids, stmts, s)
			})
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) {
					return myFloorWait(ctx, db, ids, stmts, server(k))
				})
			}
			return ws, func() { db.Close() }, nil
		},
		multi: floorMulti,
		hold:  floorMulti,
	}
	ind, err := independentVariants(e, "mysql-advisory", &netCounter{})
	if err != nil {
		return fail(err)
	}
	return &backendSetup{
		variants: append([]*variant{lockkitV, floorV, ipV}, ind...),
		notes: []string{
			"no peer: the issue lists none for MySQL GET_LOCK",
			"the DSN has no interpolateParams, so go-sql-driver prepares every statement with arguments: 2 round trips each (prepare, execute; the close is not answered); lockkit and the floor keep their statements on one name prepared per connection (1 round trip each once prepared) and prepare their statements on several names each time",
		},
		cleanup: cleanup,
	}, nil
}

// myFloorNames takes names on one pinned connection with lockkit's
// statement: every name and the connection id in one statement.
func myFloorNames(ctx context.Context, db *sql.DB, stmts *myStmts, names []string) (releaseFunc, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	args := make([]any, len(names))
	for i := range names {
		args[i] = names[i]
	}
	got, err := stmts.query(ctx, conn, len(names), len(names)+1, myTryNamesSQL(len(names)), args...)
	for _, g := range got[:max(0, len(got)-1)] {
		if err == nil && g.Int64 != 1 {
			err = fmt.Errorf("GET_LOCK returned %v", g)
		}
	}
	if err != nil {
		conn.Raw(func(any) error { return errBadConn })
		conn.Close()
		return nil, err
	}
	return myFloorRelease(conn, stmts, names), nil
}

// myFloorRelease releases names with one statement, as lockkit's
// releaseAll.
func myFloorRelease(conn *sql.Conn, stmts *myStmts, names []string) releaseFunc {
	return func(ctx context.Context) error {
		q := myReleaseSQL
		if len(names) > 1 {
			q = "SELECT " + strings.TrimSuffix(strings.Repeat("RELEASE_LOCK(?), ", len(names)), ", ")
		}
		args := make([]any, len(names))
		for i := range names {
			args[i] = names[i]
		}
		got, err := stmts.query(ctx, conn, len(names), len(names), q, args...)
		for _, g := range got {
			if err == nil && g.Int64 != 1 {
				err = fmt.Errorf("RELEASE_LOCK returned %v", g)
			}
		}
		if err != nil {
			conn.Raw(func(any) error { return errBadConn })
		}
		conn.Close()
		return err
	}
}

// myFloorWait waits for a name with the server's blocking GET_LOCK, in
// lockkit's one statement (the connection id read once per connection
// beforehand, as lockkit's cache does). The wait is not cancelled at the
// end of the contended window: it drains.
func myFloorWait(ctx context.Context, db *sql.DB, ids *myConnIDs, stmts *myStmts, name string) (releaseFunc, error) {
	ctx = context.WithoutCancel(ctx)
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	want, err := ids.id(ctx, conn)
	if err != nil {
		conn.Raw(func(any) error { return errBadConn })
		conn.Close()
		return nil, err
	}
	got, err := stmts.query(ctx, conn, 1, 2, myWaitSQL, name, float64(myForever))
	if err != nil || got[0].Int64 != 1 || got[1].Int64 != want {
		conn.Raw(func(any) error { return errBadConn })
		conn.Close()
		return nil, fmt.Errorf("GET_LOCK: %v %v (connection %d)", got, err, want)
	}
	return myFloorRelease(conn, stmts, []string{name}), nil
}
