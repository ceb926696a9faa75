// Package mysqlconn keeps what lockkit knows about each physical
// connection of a *sql.DB on MySQL and MariaDB: the server's connection id
// (for a KILL that ends a wait from another connection) and the statements
// prepared on it, so that a statement with arguments costs one round trip.
// Package mysqllock and package rowlock's MySQL waiting room share it.
package mysqlconn

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// Cache keeps what lockkit knows about each physical connection of one
// *sql.DB, keyed by the driver's connection: the server's connection id
// (CONNECTION_ID()) and the statements prepared on it. Every Locker on the
// db (of package mysqllock, and package rowlock's waiting room) shares it,
// so that a connection has one set of statements however many Lockers use
// it.
//
// The id: a waiting acquire needs it before it blocks, to KILL the session
// if the wait is abandoned; with the id cached the wait is one statement.
// Every lock statement reads CONNECTION_ID() too, so the lock's own id
// never depends on the cache.
//
// The statements: without interpolateParams, go-sql-driver/mysql runs a
// statement with arguments as a prepare, an execute and a close, two round
// trips. The hot statements (see QueryRow) are instead prepared once per
// connection and executed from then on, one round trip each, their values
// still bound. They are the callers' constant statements on one name, so
// a connection holds at most that many (MaxStmts), whatever the names. A
// statement is used only inside conn.Raw on its own connection, where
// database/sql holds that connection's lock, so never by two goroutines at
// once. A connection that the pool closes (SetConnMaxLifetime, a broken
// connection, db.Close) or that lockkit discards ends its server session,
// and the server frees the session's statements with it.
//
// The key is only compared, never used outside conn.Raw: database/sql
// never hands out a driver connection that it closed, and while the map
// holds a key its address cannot be reused by another connection, so a hit
// is always the connection's own entry. Connections that the pool closed
// are reported to no one, so when the map has doubled since the last
// sweep (and has at least cacheMin entries) a sweep asks the server
// which sessions are alive and drops the entries of the others. Only the
// server's answer drops an entry whose connection has statements: the
// Go-side connection cannot be asked safely while another goroutine may
// be using it, and an entry dropped while its session lives would leave
// that session's statements on the server until it ended.
type Cache struct {
	mu       sync.Mutex
	conns    map[any]*connEntry
	seq      uint64 // entries made so far
	epoch    uint64 // sweeps so far
	limit    int    // sweep when the map grows past it
	sweeping atomic.Bool
}

type connEntry struct {
	// Under Cache.mu.
	id       int64  // the server's connection id; 0 while unknown
	born     uint64 // Cache.seq when made
	epoch    uint64 // Cache.epoch of the last use
	prepared bool   // stmts is not empty

	// Only inside conn.Raw of the entry's connection.
	stmts map[string]driver.Stmt
}

// cacheMin is the least size of the map before a sweep.
const cacheMin = 64

// MaxStmts is the most statements a connection gets prepared by the
// cache: the texts QueryRow and Exec are given. Package mysqllock sends
// seven (single-name GET_LOCK try and wait, RELEASE_LOCK, the probe, the
// holder query, the fencing bump, the holders row's write), package
// rowlock's waiting room three on its table (GET_LOCK of the room, the
// release that gives the room back, RELEASE_LOCK of the room). Lockers on
// one *sql.DB with different FencingTables or lock tables have statements
// of their own: past the bound those run uncached.
const MaxStmts = 10

// sweepTimeout bounds a sweep's one query.
const sweepTimeout = 10 * time.Second

// caches holds the Cache of each *sql.DB that a Locker uses,
// keyed weakly: when the db is garbage, so is its cache.
var caches sync.Map // weak.Pointer[sql.DB] -> *Cache

// CacheOf returns db's Cache, shared by every caller on db.
func CacheOf(db *sql.DB) *Cache {
	k := weak.Make(db)
	if c, ok := caches.Load(k); ok {
		return c.(*Cache)
	}
	c, loaded := caches.LoadOrStore(k, &Cache{})
	if !loaded {
		runtime.AddCleanup(db, func(k weak.Pointer[sql.DB]) { caches.Delete(k) }, k)
	}
	return c.(*Cache)
}

// DriverConn returns conn's driver connection, as a key for Cache,
// or nil if conn is closed or its driver connection is not a pointer (and
// so perhaps neither comparable nor unique).
func DriverConn(conn *sql.Conn) any {
	var dc any
	_ = conn.Raw(func(c any) error {
		if reflect.TypeOf(c).Kind() == reflect.Pointer {
			dc = c
		}
		return nil
	})
	return dc
}

// entry returns dc's entry, made if need be, and marks it used.
func (c *Cache) entry(dc any) *connEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entryLocked(dc)
}

// entryLocked is entry, under c.mu.
func (c *Cache) entryLocked(dc any) *connEntry {
	if c.conns == nil {
		c.conns = make(map[any]*connEntry)
		c.limit = cacheMin
	}
	e, ok := c.conns[dc]
	if !ok {
		c.seq++
		e = &connEntry{born: c.seq}
		c.conns[dc] = e
	}
	e.epoch = c.epoch
	return e
}

// ID returns the cached id of the driver connection dc.
func (c *Cache) ID(dc any) (int64, bool) {
	if dc == nil {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entryLocked(dc)
	return e.id, e.id != 0
}

// SetID records id as the connection id of dc. When the map has outgrown
// its limit it starts a sweep on db, in the background.
func (c *Cache) SetID(db *sql.DB, dc any, id int64) {
	if dc == nil || id == 0 {
		return
	}
	c.mu.Lock()
	c.entryLocked(dc).id = id
	grown := len(c.conns) > c.limit
	c.mu.Unlock()
	if grown && c.sweeping.CompareAndSwap(false, true) {
		go func() {
			defer c.sweeping.Store(false)
			c.sweep(db)
		}()
	}
}

// sweep drops the entries of connections whose server session has ended,
// and those that never learnt their id (they have no statements) and were
// not used since the previous sweep. An entry made after the server's list was read is kept:
// its session may be missing from it for being new. When the list cannot
// be read, the sweep drops only entries without statements that were not
// used since the previous sweep (a live one costs a SELECT CONNECTION_ID()
// the next time it waits).
func (c *Cache) sweep(db *sql.DB) {
	c.mu.Lock()
	before := c.seq
	c.mu.Unlock()
	live, err := liveSessions(db)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.conns {
		stale := e.epoch != c.epoch
		switch {
		case err != nil && stale && !e.prepared:
		case err != nil, e.born > before:
			continue
		case e.id != 0 && live[e.id], e.id == 0 && !stale:
			continue
		}
		delete(c.conns, k)
	}
	c.epoch++
	c.limit = max(cacheMin, 2*len(c.conns))
}

// liveSessions returns the connection ids of the server's sessions that
// db's user can see: its own, at least.
func liveSessions(db *sql.DB) (map[int64]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sweepTimeout)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	live := make(map[int64]bool)
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		live[id] = true
	}
	return live, rows.Err()
}

// Len returns the number of cached connections, for tests.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

// QueryRow runs q, one of the caller's constant statements, on conn with
// args and scans its one row into dest (each a sql.Scanner, an *int64 or
// a *string; NULL only into a sql.Scanner). No row is sql.ErrNoRows.
// It asks the driver to run q at once first, as database/sql does: with
// interpolateParams=true the driver sends it with its arguments in one
// packet. Otherwise (the driver answers driver.ErrSkip) q runs as the
// prepared statement the cache keeps for conn's connection, prepared the
// first time; once it is, the driver is not asked again. A driver
// connection that cannot do either, whose id is not known yet, or that
// has MaxStmts statements already, runs q through
// database/sql.
func (c *Cache) QueryRow(ctx context.Context, conn *sql.Conn, q string, args []any, dest ...any) error {
	_, err := c.run(ctx, conn, q, args, dest)
	return err
}

// Exec runs q, a statement without rows, as QueryRow runs one with rows,
// and returns its result.
func (c *Cache) Exec(ctx context.Context, conn *sql.Conn, q string, args []any) (sql.Result, error) {
	return c.run(ctx, conn, q, args, nil)
}

// run is QueryRow when dest is not nil, else Exec.
func (c *Cache) run(ctx context.Context, conn *sql.Conn, q string, args []any, dest []any) (sql.Result, error) {
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	var (
		res      driver.Result
		fallback bool
	)
	err := conn.Raw(func(dc any) error {
		preparer, ok := dc.(driver.ConnPrepareContext)
		if !ok || reflect.TypeOf(dc).Kind() != reflect.Pointer {
			fallback = true
			return nil
		}
		// A statement prepared already says that the driver answered
		// ErrSkip for q on this connection, as it always will: it is not
		// asked again. (Asking costs go-sql-driver a round of its
		// cancellation watcher, two goroutine wake-ups, when ctx can end.)
		e := c.entry(dc)
		st := e.stmts[q]
		var (
			rows driver.Rows
			err  error
			skip = st != nil
		)
		if !skip {
			err = driver.ErrSkip
			if ex, ok := dc.(driver.ExecerContext); ok && dest == nil {
				res, err = ex.ExecContext(ctx, q, named)
			} else if qr, ok := dc.(driver.QueryerContext); ok && dest != nil {
				rows, err = qr.QueryContext(ctx, q, named)
			}
			if skip = errors.Is(err, driver.ErrSkip); skip {
				if st, err = c.stmt(ctx, e, preparer, q); err != nil {
					return err
				}
			}
		}
		if skip {
			se, eok := st.(driver.StmtExecContext)
			sq, qok := st.(driver.StmtQueryContext)
			switch {
			case st != nil && dest == nil && eok:
				res, err = se.ExecContext(ctx, named)
			case st != nil && dest != nil && qok:
				rows, err = sq.QueryContext(ctx, named)
			default:
				fallback = true
				return nil
			}
		}
		if err != nil || dest == nil {
			return err
		}
		return scanRow(rows, dest)
	})
	switch {
	case fallback && dest == nil:
		return conn.ExecContext(ctx, q, args...)
	case fallback:
		return nil, conn.QueryRowContext(ctx, q, args...).Scan(dest...)
	case err != nil:
		return nil, err
	}
	return res, nil
}

// stmt returns the statement q prepared on e's connection, preparing it
// the first time. It returns nil, for q to run uncached, while its id is
// unknown (so that a sweep can always tell whether a connection with
// statements is alive), and when the connection has MaxStmts statements
// already (never expected: a guard for the server's
// max_prepared_stmt_count). It runs inside conn.Raw of e's connection.
func (c *Cache) stmt(ctx context.Context, e *connEntry, p driver.ConnPrepareContext, q string) (driver.Stmt, error) {
	if st := e.stmts[q]; st != nil {
		return st, nil
	}
	c.mu.Lock()
	known := e.id != 0
	c.mu.Unlock()
	if !known || len(e.stmts) >= MaxStmts {
		return nil, nil
	}
	st, err := p.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if e.stmts == nil {
		e.stmts = make(map[string]driver.Stmt, MaxStmts)
		c.mu.Lock()
		e.prepared = true
		c.mu.Unlock()
	}
	e.stmts[q] = st
	return st, nil
}

// scanRow reads the first row of rows into dest and closes rows.
func scanRow(rows driver.Rows, dest []any) (err error) {
	defer func() {
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
	}()
	vals := make([]driver.Value, len(rows.Columns()))
	if len(vals) != len(dest) {
		return fmt.Errorf("mysqlconn: %d columns, %d destinations", len(vals), len(dest))
	}
	if err := rows.Next(vals); err != nil {
		if errors.Is(err, io.EOF) {
			return sql.ErrNoRows
		}
		return err
	}
	// Scanned before Close, which may reuse the buffer the values point
	// into.
	for i, d := range dest {
		if err := scanValue(d, vals[i]); err != nil {
			return fmt.Errorf("mysqlconn: column %d: %w", i, err)
		}
	}
	return nil
}

func scanValue(dest any, v driver.Value) error {
	// The integers and NULLs of the lock statements, without
	// database/sql's conversions (reflection).
	switch n, ok := v.(int64); d := dest.(type) {
	case *sql.NullInt64:
		if ok || v == nil {
			*d = sql.NullInt64{Int64: n, Valid: ok}
			return nil
		}
	case *int64:
		if ok {
			*d = n
			return nil
		}
	}
	switch d := dest.(type) {
	case sql.Scanner:
		return d.Scan(v)
	case *string:
		var s sql.NullString
		if err := s.Scan(v); err != nil {
			return err
		}
		if !s.Valid {
			return errors.New("NULL")
		}
		*d = s.String
		return nil
	case *int64:
		var n sql.NullInt64
		if err := n.Scan(v); err != nil {
			return err
		}
		if !n.Valid {
			return errors.New("NULL")
		}
		*d = n.Int64
		return nil
	}
	return fmt.Errorf("unsupported destination %T", dest)
}
