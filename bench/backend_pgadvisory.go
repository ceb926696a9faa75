package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	gooselock "github.com/pressly/goose/v3/lock"

	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/keyhash"
)

// The floor's single-key statements: the bare lock functions. For several
// keys it sends the advisory package's own statements (pgKeys).
const (
	pgTrySQL    = "SELECT pg_try_advisory_lock($1::bigint)"
	pgLockSQL   = "SELECT pg_advisory_lock($1::bigint)"
	pgUnlockSQL = "SELECT pg_advisory_unlock($1::bigint)"
)

// pgPoolSize bounds each uncontended pool: the server's max_connections
// (100 here) is shared with other engineers' tests.
const pgPoolSize = 12

// newPgxPool opens a pgx pool whose connections are counted by c.
func newPgxPool(ctx context.Context, dsn string, c *netCounter, size int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.DialFunc = c.dial
	cfg.MaxConns = size
	cfg.MinConns = 0
	return pgxpool.NewWithConfig(ctx, cfg)
}

// newPgxDB opens a database/sql pool over pgx's stdlib driver whose
// connections are counted by c.
func newPgxDB(dsn string, c *netCounter, size int) (*sql.DB, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cc.DialFunc = c.dial
	db := stdlib.OpenDB(*cc)
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	return db, nil
}

func setupPGAdvisory(ctx context.Context, e *env) (*backendSetup, error) {
	if e.pgDSN == "" {
		return nil, errors.New("no PostgreSQL: set LOCKKIT_TEST_POSTGRES or -postgres")
	}
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*backendSetup, error) { cleanup(); return nil, err }
	name := e.lockName

	// lockkit over a pgx pool.
	lkNet := &netCounter{}
	lkPool, err := newPgxPool(ctx, e.pgDSN, lkNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, lkPool.Close)
	lk, err := advisory.NewPool(lkPool, nil)
	if err != nil {
		return fail(err)
	}
	key := func(k int) keyhash.Key {
		kk, err := lk.Key(name(k))
		if err != nil {
			panic(err)
		}
		return kk
	}
	keysOf := func(ks []int) []keyhash.Key {
		out := make([]keyhash.Key, len(ks))
		for i, k := range ks {
			out[i] = key(k)
		}
		return out
	}
	lockkitV := &variant{
		name: "lockkit", role: roleLockkit, net: lkNet,
		note: "advisory.NewPool(pgxpool): TryAcquire(name)/Acquire(name) + Release; TryLockKeys for several keys; contended: a fresh pool and Locker per slice, warmed by one try+release per connection (a fresh Locker's first statement on each connection, and its first grant's pg_locks check, are a one-off cost that would otherwise fall in every slice)",
		try:  lockkitTry(lk, name),
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			pool, err := newPgxPool(ctx, e.pgDSN, lkNet, int32(n+2))
			if err != nil {
				return nil, nil, err
			}
			warmPgx(ctx, pool, n)
			l, err := advisory.NewPool(pool, nil)
			if err != nil {
				pool.Close()
				return nil, nil, err
			}
			warmLocker(ctx, l, n, name(k))
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = lockkitWorker(l, name(k))
			}
			return ws, pool.Close, nil
		},
		multi: func(ctx context.Context, ks []int) (releaseFunc, error) {
			l, err := lk.TryLockKeys(ctx, keysOf(ks), nil)
			if err != nil {
				return nil, err
			}
			return l.Release, nil
		},
		hold: func(ctx context.Context, ks []int) (releaseFunc, error) {
			l, err := lk.TryLockKeys(ctx, keysOf(ks), nil)
			if err != nil {
				return nil, err
			}
			return l.Release, nil
		},
		holdCap:    pgHoldCap(e),
		holdCapWhy: "advisory locks share the server's lock table (max_locks_per_transaction 64 × max_connections 100 = 6,400 slots) with other tests on this server; 10,000 would fail with 53200 (-private-postgres lifts the cap)",
	}

	// The floor: raw pgx on a pool, the same statements.
	flNet := &netCounter{}
	flPool, err := newPgxPool(ctx, e.pgDSN, flNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, flPool.Close)
	floorV := &variant{
		name: "floor", role: roleFloor, net: flNet,
		note: "raw pgxpool: Acquire conn, " + pgTrySQL + ", " + pgUnlockSQL + ", Release conn; contended: " + pgLockSQL + " (the server's blocking wait); several keys: lockkit's one statement",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			return pgFloorLock(ctx, flPool, key(k).Int64(), false)
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			pool, err := newPgxPool(ctx, e.pgDSN, flNet, int32(n+2))
			if err != nil {
				return nil, nil, err
			}
			warmPgx(ctx, pool, n)
			warmHeld(ctx, n, func(ctx context.Context, i int) (releaseFunc, error) {
				return pgFloorLock(ctx, pool, warmKey(name(k), i), true)
			})
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) {
					return pgFloorLock(ctx, pool, key(k).Int64(), true)
				})
			}
			return ws, pool.Close, nil
		},
		multi: func(ctx context.Context, ks []int) (releaseFunc, error) {
			return pgFloorMulti(ctx, flPool, keysOf(ks))
		},
		hold: func(ctx context.Context, ks []int) (releaseFunc, error) {
			return pgFloorMulti(ctx, flPool, keysOf(ks))
		},
		holdCap:    pgHoldCap(e),
		holdCapWhy: "as lockkit",
	}
	// A diagnostic: the floor plus what lockkit adds on the wire's path —
	// a goroutine blocked in a read on the held session (its loss
	// watcher), stopped by a read deadline before the unlock. It
	// attributes lockkit's overhead. It has a pool of its own, as every
	// variant of the latency scenarios has: a connection that two
	// variants share serves twice as many of a round's operations as the
	// others, which made it the faster one (PostgreSQL serves each
	// connection with a process of its own; see RESULTS.md, "the
	// floor's shared connection").
	wNet := &netCounter{}
	wPool, err := newPgxPool(ctx, e.pgDSN, wNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, wPool.Close)
	watchV := &variant{
		name: "floor + a watcher started at once (diagnostic)", role: roleFloor, net: wNet, diagnostic: true,
		note: "the floor on a pool of its own, plus lockkit's first loss watcher copied (advisory at c6871b8): right after the lock a goroutine blocks in PgConn.WaitForNotification on the session; before the unlock a past read deadline ends it and the releaser waits for it. lockkit now starts its watcher 10 ms after the grant, so a lock released sooner never pays this",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			return withWatcher(pgFloorHold(ctx, wPool, key(k).Int64(), false))
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			pool, err := newPgxPool(ctx, e.pgDSN, wNet, int32(n+2))
			if err != nil {
				return nil, nil, err
			}
			warmPgx(ctx, pool, n)
			warmHeld(ctx, n, func(ctx context.Context, i int) (releaseFunc, error) {
				return pgFloorLock(ctx, pool, warmKey(name(k), i), true)
			})
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) {
					return withWatcher(pgFloorHold(ctx, pool, key(k).Int64(), true))
				})
			}
			return ws, pool.Close, nil
		},
	}
	lpNet := &netCounter{}
	lpPool, err := newPgxPool(ctx, e.pgDSN, lpNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, lpPool.Close)
	loopV := &variant{
		name: "floor, one statement per key", role: roleFloor, net: lpNet,
		note: "raw pgx, one connection of a pool of its own: " + pgTrySQL + " for each key, then " + pgUnlockSQL + " for each",
		multi: func(ctx context.Context, ks []int) (releaseFunc, error) {
			c, err := lpPool.Acquire(ctx)
			if err != nil {
				return nil, err
			}
			keys := keysOf(ks)
			for i, kk := range keys {
				var ok bool
				if err := c.QueryRow(ctx, pgTrySQL, kk.Int64()).Scan(&ok); err != nil || !ok {
					c.Hijack().Close(context.Background())
					return nil, fmt.Errorf("key %d: %v %v", i, ok, err)
				}
			}
			return func(ctx context.Context) error {
				defer c.Release()
				for _, kk := range keys {
					var ok bool
					if err := c.QueryRow(ctx, pgUnlockSQL, kk.Int64()).Scan(&ok); err != nil || !ok {
						return fmt.Errorf("unlock: %v %v", ok, err)
					}
				}
				return nil
			}, nil
		},
	}

	// Peer: goose's session locker (database/sql over pgx's stdlib).
	gNet := &netCounter{}
	gdb, err := newPgxDB(e.pgDSN, gNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { gdb.Close() })
	var (
		gmu     sync.Mutex
		glocker = map[int64]gooselock.SessionLocker{}
	)
	gooseLocker := func(id int64) gooselock.SessionLocker {
		gmu.Lock()
		defer gmu.Unlock()
		l := glocker[id]
		if l == nil {
			var err error
			if l, err = gooselock.NewPostgresSessionLocker(gooselock.WithLockID(id)); err != nil {
				panic(err)
			}
			glocker[id] = l
		}
		return l
	}
	gooseLock := func(ctx context.Context, db *sql.DB, id int64) (releaseFunc, error) {
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		l := gooseLocker(id)
		if err := l.SessionLock(ctx, conn); err != nil {
			conn.Raw(func(any) error { return errBadConn })
			conn.Close()
			return nil, err
		}
		return func(ctx context.Context) error {
			defer conn.Close()
			return l.SessionUnlock(ctx, conn)
		}, nil
	}
	gooseV := &variant{
		name: "goose lock", role: rolePeer, net: gNet,
		note: "pressly/goose/v3/lock NewPostgresSessionLocker(WithLockID) on a pinned *sql.Conn (pgx stdlib): SessionLock/SessionUnlock, defaults (a failed try retries every 5 s); 100 keys: one locker per key, in a loop on one connection",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			return gooseLock(ctx, gdb, e.keyInt64(k))
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			db, err := newPgxDB(e.pgDSN, gNet, n+2)
			if err != nil {
				return nil, nil, err
			}
			warmDB(ctx, db, n)
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) { return gooseLock(ctx, db, e.keyInt64(k)) })
			}
			return ws, func() { db.Close() }, nil
		},
		multi: func(ctx context.Context, ks []int) (releaseFunc, error) {
			conn, err := gdb.Conn(ctx)
			if err != nil {
				return nil, err
			}
			for _, k := range ks {
				if err := gooseLocker(e.keyInt64(k)).SessionLock(ctx, conn); err != nil {
					conn.Raw(func(any) error { return errBadConn })
					conn.Close()
					return nil, err
				}
			}
			return func(ctx context.Context) error {
				defer conn.Close()
				for _, k := range ks {
					if err := gooseLocker(e.keyInt64(k)).SessionUnlock(ctx, conn); err != nil {
						return err
					}
				}
				return nil
			}, nil
		},
	}

	// Peer: golang-migrate's pgx/v5 driver lock: one lock per migrations
	// table, so one key only.
	mNet := &netCounter{}
	mdb, err := newPgxDB(e.pgDSN, mNet, pgPoolSize+6)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { mdb.Close() })
	mtable := "lockkit_bench_" + e.runID + "_migrate"
	closers = append(closers, func() {
		_, _ = mdb.ExecContext(context.Background(), `DROP TABLE IF EXISTS "`+mtable+`"`)
	})
	newMigrate := func(db *sql.DB) (database.Driver, error) {
		return migratepgx.WithInstance(db, &migratepgx.Config{MigrationsTable: mtable})
	}
	mdrv, err := newMigrate(mdb)
	if err != nil {
		return fail(fmt.Errorf("golang-migrate pgx/v5 driver: %w", err))
	}
	closers = append(closers, func() { mdrv.Close() })
	migrateV := &variant{
		name: "golang-migrate lock", role: rolePeer, net: mNet, singleKey: true,
		note: "golang-migrate/v4 database/pgx/v5 driver (WithInstance on a *sql.DB): Lock (pg_advisory_lock, waits) + Unlock; one lock per migrations table, so the single-key scenarios only",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			if err := mdrv.Lock(); err != nil {
				return nil, err
			}
			return func(context.Context) error { return mdrv.Unlock() }, nil
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			// The driver's Close closes the *sql.DB too: a pool per slice.
			db, err := newPgxDB(e.pgDSN, mNet, n+2)
			if err != nil {
				return nil, nil, err
			}
			ws := make([]worker, n)
			drvs := make([]database.Driver, n)
			errs := make([]error, n)
			done := func() {
				for _, d := range drvs {
					if d != nil {
						d.Close()
					}
				}
				db.Close()
			}
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { drvs[i], errs[i] = newMigrate(db) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				done()
				return nil, nil, err
			}
			for i := range ws {
				d := drvs[i]
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) {
					if err := d.Lock(); err != nil {
						return nil, err
					}
					return func(context.Context) error { return d.Unlock() }, nil
				})
			}
			return ws, done, nil
		},
	}

	ind, err := independentVariants(e, "pg-advisory", &netCounter{})
	if err != nil {
		return fail(err)
	}
	return &backendSetup{
		variants: append([]*variant{lockkitV, floorV, gooseV, migrateV, watchV, loopV}, ind...),
		notes: []string{
			"pools: at most 12 connections each for the uncontended scenarios, a fresh pool of 18 per variant for the contended one (max_connections is 100, shared)",
			"goose and golang-migrate have no non-waiting try; their lock call is measured uncontended, where it returns at once",
		},
		cleanup: cleanup,
	}, nil
}

// warmKey is the advisory key of the i-th warm-up lock of a contended
// slice on the lock name.
func warmKey(name string, i int) int64 {
	return keyhash.Name(name + "-warm-" + strconv.Itoa(i)).Int64()
}

// pgHoldCap caps the held locks of the scale scenario on a shared server;
// a private one (-private-postgres) has room for 25,600.
func pgHoldCap(e *env) int {
	if e.privatePG {
		return 0
	}
	return 1000
}

// errBadConn makes database/sql destroy a pinned connection.
var errBadConn = errDriverBadConn()

// pgHeld is a lock the floor holds: its release, and its connection for
// the diagnostic watcher.
type pgHeld struct {
	release releaseFunc
	conn    *pgxpool.Conn
}

// withWatcher runs lockkit's loss watcher (advisory/postgres_conn.go,
// startWatcher and stop) on a floor lock.
func withWatcher(h pgHeld, err error) (releaseFunc, error) {
	if err != nil {
		return nil, err
	}
	pg := h.conn.Conn().PgConn()
	nc := pg.Conn()
	var stopping atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			err := pg.WaitForNotification(context.Background())
			if err == nil {
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pg.IsClosed() {
				if stopping.Load() {
					_ = nc.SetReadDeadline(time.Time{})
					return
				}
				continue
			}
			return
		}
	}()
	return func(ctx context.Context) error {
		if stopping.CompareAndSwap(false, true) {
			_ = nc.SetReadDeadline(time.Now())
		}
		<-done
		return h.release(ctx)
	}, nil
}

// pgFloorLock takes one key on a pooled connection with the raw statements.
func pgFloorLock(ctx context.Context, pool *pgxpool.Pool, key int64, wait bool) (releaseFunc, error) {
	h, err := pgFloorHold(ctx, pool, key, wait)
	return h.release, err
}

func pgFloorHold(ctx context.Context, pool *pgxpool.Pool, key int64, wait bool) (pgHeld, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return pgHeld{}, err
	}
	if wait {
		if _, err := c.Exec(ctx, pgLockSQL, key); err != nil {
			c.Hijack().Close(context.Background())
			return pgHeld{}, err
		}
	} else {
		var ok bool
		if err := c.QueryRow(ctx, pgTrySQL, key).Scan(&ok); err != nil {
			c.Hijack().Close(context.Background())
			return pgHeld{}, err
		}
		if !ok {
			c.Release()
			return pgHeld{}, errors.New("held")
		}
	}
	return pgHeld{conn: c, release: func(ctx context.Context) error {
		var ok bool
		err := c.QueryRow(ctx, pgUnlockSQL, key).Scan(&ok)
		if err != nil || !ok {
			c.Hijack().Close(context.Background())
			return fmt.Errorf("unlock: %v %v", ok, err)
		}
		c.Release()
		return nil
	}}, nil
}

// pgKeys are the advisory package's statements for several keys
// (advisory.KeysStatements), which the floor sends raw.
var pgKeys = func() advisory.KeysSQL {
	q, err := advisory.KeysStatements(advisory.Exclusive)
	if err != nil {
		panic(err)
	}
	return q
}()

// pgFloorHolder is the holder id the floor's multi-key locks set as the
// session marker.
const pgFloorHolder = "lockkit-bench-floor"

// pgFloorMulti runs lockkit's multi-key statements raw: one try of every
// key, all or nothing, and one unlock, each checked row by row.
func pgFloorMulti(ctx context.Context, pool *pgxpool.Pool, keys []keyhash.Key) (releaseFunc, error) {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, keyhash.Compare)
	keys = slices.CompactFunc(keys, func(a, b keyhash.Key) bool { return keyhash.Compare(a, b) == 0 })
	ints := make([]int64, len(keys))
	for i, k := range keys {
		ints[i] = k.Int64()
	}
	empty := []int32{}
	c, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (releaseFunc, error) {
		c.Hijack().Close(context.Background())
		return nil, err
	}
	rows, err := c.Query(ctx, pgKeys.Try, pgFloorHolder, ints, empty, empty)
	if err != nil {
		return fail(err)
	}
	var (
		pid    int32
		n      int
		all    = true
		marked bool
	)
	for rows.Next() {
		var (
			prev        *string
			why         int32
			pair        bool
			k           int64
			a, b        int32
			got, undone *bool
		)
		if err := rows.Scan(&prev, &pid, &why, &pair, &k, &a, &b, &got, &undone, &marked); err != nil {
			rows.Close()
			return fail(err)
		}
		all = all && why == 0 && got != nil && *got
		n++
	}
	rows.Close()
	if rows.Err() != nil || !all || !marked || n != len(ints) {
		return fail(fmt.Errorf("multi try: all=%v marked=%v rows=%d of %d: %v", all, marked, n, len(ints), rows.Err()))
	}
	return func(ctx context.Context) error {
		rows, err := c.Query(ctx, pgKeys.Unlock, pgFloorHolder, pid, ints, empty, empty)
		if err != nil {
			c.Hijack().Close(context.Background())
			return err
		}
		var (
			n                  int
			all, mine, cleared = true, true, false
		)
		for rows.Next() {
			var (
				prev *string
				rpid int32
				m    bool
				pair bool
				k    int64
				a, b int32
				ok   *bool
			)
			if err := rows.Scan(&prev, &rpid, &m, &pair, &k, &a, &b, &ok, &cleared); err != nil {
				rows.Close()
				c.Hijack().Close(context.Background())
				return err
			}
			mine = mine && m
			all = all && ok != nil && *ok
			n++
		}
		rows.Close()
		if rows.Err() != nil || !mine || !all || !cleared || n != len(ints) {
			c.Hijack().Close(context.Background())
			return fmt.Errorf("multi unlock: mine=%v all=%v cleared=%v rows=%d of %d: %v", mine, all, cleared, n, len(ints), rows.Err())
		}
		c.Release()
		return nil
	}, nil
}
