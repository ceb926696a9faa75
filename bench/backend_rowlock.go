package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	gooselock "github.com/pressly/goose/v3/lock"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/rowlock"
)

// rlTTL is the lease of every lock-table variant: rowlock's default.
const rlTTL = rowlock.DefaultTTL

// createLockTable creates a lock table of this run's own from lockkit's
// migration files, renamed, so that the run never touches the shared
// lockkit_locks table.
func createLockTable(ctx context.Context, db *sql.DB, d migrations.Dialect, table string) error {
	fsys, err := migrations.FS(d)
	if err != nil {
		return err
	}
	ups, err := fs.Glob(fsys, "*.up.sql")
	if err != nil {
		return err
	}
	slices.Sort(ups)
	for _, f := range ups {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return err
		}
		src := stripComments(strings.ReplaceAll(string(b), migrations.TableName, table))
		for _, st := range strings.Split(src, ";") {
			if strings.TrimSpace(st) == "" {
				continue
			}
			if _, err := db.ExecContext(ctx, st); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
	}
	return nil
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// rowlockCfg is what the two dialects differ in.
type rowlockCfg struct {
	dialect  rowlock.Dialect
	mdialect migrations.Dialect
	dsn      string
	open     func(dsn string, c *netCounter, size int) (*sql.DB, error)
	quote    func(string) string
	goose    func(opts ...gooselock.TableLockerOption) (gooselock.Locker, error)
}

func setupPGRowlock(ctx context.Context, e *env) (*backendSetup, error) {
	if e.pgDSN == "" {
		return nil, errors.New("no PostgreSQL: set LOCKKIT_TEST_POSTGRES or -postgres")
	}
	return setupRowlock(ctx, e, rowlockCfg{
		dialect: rowlock.Postgres, mdialect: migrations.Postgres, dsn: e.pgDSN,
		open:  newPgxDB,
		quote: func(s string) string { return `"` + s + `"` },
		goose: gooselock.NewPostgresTableLocker,
	})
}

func setupMySQLRowlock(ctx context.Context, e *env) (*backendSetup, error) {
	if e.myDSN == "" {
		return nil, errors.New("no MySQL: set LOCKKIT_TEST_MYSQL or -mysql")
	}
	return setupRowlock(ctx, e, rowlockCfg{
		dialect: rowlock.MySQL, mdialect: migrations.MySQL, dsn: e.myDSN,
		open:  newMySQLDB,
		quote: func(s string) string { return "`" + s + "`" },
		goose: gooselock.NewMySQLTableLocker,
	})
}

func setupRowlock(ctx context.Context, e *env, rc rowlockCfg) (*backendSetup, error) {
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*backendSetup, error) { cleanup(); return nil, err }
	name := e.lockName
	pg := rc.dialect == rowlock.Postgres
	table := "lockkit_bench_" + e.runID + "_locks"
	gtable := "lockkit_bench_" + e.runID + "_goose"

	admin, err := rc.open(rc.dsn, &netCounter{}, 2)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { admin.Close() })
	if err := createLockTable(ctx, admin, rc.mdialect, table); err != nil {
		return fail(fmt.Errorf("create the lock table: %w", err))
	}
	closers = append(closers, func() {
		bg := context.Background()
		_, _ = admin.ExecContext(bg, "DROP TABLE IF EXISTS "+rc.quote(table))
		_, _ = admin.ExecContext(bg, "DROP TABLE IF EXISTS "+rc.quote(gtable))
	})

	newLocker := func(db *sql.DB) (*rowlock.Locker, error) {
		return rowlock.New(db, &rowlock.Config{Dialect: rc.dialect, Table: table, Owner: "bench-" + e.runID})
	}
	lkNet := &netCounter{}
	lkDB, err := rc.open(rc.dsn, lkNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { lkDB.Close() })
	lk, err := newLocker(lkDB)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { lk.Close() })
	wakeHow := "heads of different Lockers queue in a waiting room (a session advisory lock), LISTEN/NOTIFY wake-up"
	if !pg {
		wakeHow = "polling 2–100 ms with jitter, and an in-process wake-up on a release through the same Locker"
	}
	lockkitV := &variant{
		name: "lockkit", role: roleLockkit, net: lkNet,
		note: fmt.Sprintf("rowlock.New(db, {Table, Owner}): 30 s lease renewed every 10 s; TryAcquire/Acquire (%s) + Release; one Locker for the 16 workers", wakeHow),
		try:  lockkitTry(lk, name),
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			db, err := rc.open(rc.dsn, lkNet, n+4)
			if err != nil {
				return nil, nil, err
			}
			warmDB(ctx, db, n)
			l, err := newLocker(db)
			if err != nil {
				db.Close()
				return nil, nil, err
			}
			warmLocker(ctx, l, n, name(k))
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = lockkitWorker(l, name(k))
			}
			return ws, func() { l.Close(); db.Close() }, nil
		},
	}
	variants := []*variant{lockkitV}
	backendName := "mysql-rowlock"
	if pg {
		backendName = "pg-rowlock"
	}
	ind, err := independentVariants(e, backendName, &netCounter{})
	if err != nil {
		return fail(err)
	}
	variants = append(variants, ind...)

	// The floor.
	flNet := &netCounter{}
	flDB, err := rc.open(rc.dsn, flNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { flDB.Close() })
	host, _ := os.Hostname()
	// The floor sends rowlock's own statements (rowlock.Statements): on
	// PostgreSQL the acquire that also returns the holder when the lease
	// is live elsewhere (one round trip per attempt); on MySQL the
	// acquire, and after a failed one the holder read.
	dialect := rowlock.MySQL
	if pg {
		dialect = rowlock.Postgres
	}
	q, err := rowlock.Statements(dialect, table)
	if err != nil {
		return fail(err)
	}
	newFloor := func(db *sql.DB) (*rowFloor, error) {
		f := &rowFloor{pg: pg, db: db, owner: "bench-floor-" + e.runID, host: host, pid: os.Getpid(),
			channel: q.Channel, wake: newGeneration()}
		if pg {
			f.acquire, f.release = q.Acquire, q.Release
			return f, nil
		}
		var err error
		if f.acqStmt, err = db.PrepareContext(ctx, q.Acquire); err != nil {
			return nil, err
		}
		if f.holdStmt, err = db.PrepareContext(ctx, q.Holder); err != nil {
			return nil, err
		}
		if f.relStmt, err = db.PrepareContext(ctx, q.Release); err != nil {
			return nil, err
		}
		return f, nil
	}
	fl, err := newFloor(flDB)
	if err != nil {
		return fail(err)
	}
	floorWait := "one waiter at a time per process waits on the server (the others queue in-process, FIFO, as rowlock's do): it LISTENs on one connection and tries again on each NOTIFY (no lease timer)"
	everyWait := "waiters LISTEN on one connection and try again on each NOTIFY"
	if !pg {
		floorWait = "one waiter at a time per process waits on the server (the others queue in-process, FIFO, as rowlock's do): it polls with lockkit's backoff (2 ms doubling to 100 ms, jitter) and is woken by a release in this process"
		everyWait = "waiters poll with lockkit's backoff (2 ms doubling to 100 ms, jitter) and are woken by a release in this process"
	}
	// everyWaiter: every contended worker tries on the server on each
	// wake-up (rowlock's design before 56bd722).
	everyWaiter := func(ctx context.Context, k, n int) ([]worker, func(), error) {
		db, err := rc.open(rc.dsn, flNet, n+4)
		if err != nil {
			return nil, nil, err
		}
		warmDB(ctx, db, n)
		f, err := newFloor(db)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		stop := func() { db.Close() }
		if pg {
			unlisten, err := f.listen(ctx, e.pgDSN, flNet)
			if err != nil {
				db.Close()
				return nil, nil, err
			}
			stop = func() { unlisten(); db.Close() }
		}
		ws := make([]worker, n)
		for i := range ws {
			ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) { return f.wait(ctx, name(k)) })
		}
		return ws, stop, nil
	}
	holderHow := "the acquire statement returns the holder when held"
	if !pg {
		holderHow = "prepared, as rowlock does; a failed acquire is followed by the holder read"
	}
	floorV := &variant{
		name: "floor", role: roleFloor, net: flNet,
		note: "database/sql (the driver lockkit takes) running rowlock's acquire and release statements (" + holderHow + "); contended: " + floorWait,
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			rel, err := fl.try(ctx, name(k))
			if err == nil && rel == nil {
				err = errors.New("held")
			}
			return rel, err
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			ws, stop, err := everyWaiter(ctx, k, n)
			if err != nil {
				return nil, nil, err
			}
			return singleFile(ws), stop, nil
		},
	}
	variants = append(variants, floorV, &variant{
		name: "floor, every waiter on the server (diagnostic)", role: roleFloor, net: flNet, diagnostic: true,
		note:      "the floor's statements with rowlock's wait design before 56bd722: " + everyWait + ", so a release wakes every waiter",
		contended: everyWaiter,
	})

	// Peer: goose's table locker, one per lock id (each holds an
	// in-process mutex from Lock to Unlock).
	gNet := &netCounter{}
	gdsn := rc.dsn
	if !pg {
		// goose's MySQL store scans DATETIME into time.Time: it needs
		// parseTime=true.
		mc, err := mysql.ParseDSN(rc.dsn)
		if err != nil {
			return fail(err)
		}
		mc.ParseTime = true
		gdsn = mc.FormatDSN()
	}
	gDB, err := rc.open(gdsn, gNet, pgPoolSize)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { gDB.Close() })
	var (
		gmu     sync.Mutex
		glocker = map[int]gooselock.Locker{}
	)
	newGoose := func(k int) gooselock.Locker {
		l, err := rc.goose(gooselock.WithTableName(gtable), gooselock.WithTableLockID(e.keyInt64(k)))
		if err != nil {
			panic(err)
		}
		return l
	}
	gooseFor := func(k int) gooselock.Locker {
		gmu.Lock()
		defer gmu.Unlock()
		if l := glocker[k]; l != nil {
			return l
		}
		l := newGoose(k)
		glocker[k] = l
		return l
	}
	gooseV := &variant{
		name: "goose table lock", role: rolePeer, net: gNet,
		note: "pressly/goose/v3/lock table locker (WithTableName, WithTableLockID), defaults: 30 s lease, 5 s heartbeat, a failed Lock retries every 5 s ±25 %; one locker per lock id (a locker is one lock); on MySQL the DSN gets parseTime=true, which goose needs",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			l := gooseFor(k)
			if err := l.Lock(ctx, gDB); err != nil {
				return nil, err
			}
			return func(ctx context.Context) error { return l.Unlock(ctx, gDB) }, nil
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			db, err := rc.open(gdsn, gNet, n+4)
			if err != nil {
				return nil, nil, err
			}
			warmDB(ctx, db, n)
			ws := make([]worker, n)
			for i := range ws {
				l := newGoose(k)
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) {
					if err := l.Lock(ctx, db); err != nil {
						return nil, err
					}
					return func(ctx context.Context) error { return l.Unlock(ctx, db) }, nil
				})
			}
			return ws, func() { db.Close() }, nil
		},
	}
	variants = append(variants, gooseV)
	notes := []string{"tables of this run's own, created from lockkit's migration files and dropped afterwards"}
	if !pg {
		notes = append(notes, "MySQL: rowlock prepares its statements once per Locker (database/sql re-prepares per connection), so each costs one round trip; the floor does the same")
	}
	return &backendSetup{variants: variants, notes: notes, cleanup: cleanup}, nil
}

// rowFloor runs rowlock's acquire and release statements directly.
type rowFloor struct {
	pg               bool
	db               *sql.DB
	acquire, release string    // PostgreSQL
	acqStmt, relStmt *sql.Stmt // MySQL
	holdStmt         *sql.Stmt // MySQL: the holder read after a failed acquire
	owner, host      string
	pid              int
	channel          string
	wake             *generation
}

// try runs the acquire statement once; a nil release means held.
func (f *rowFloor) try(ctx context.Context, name string) (releaseFunc, error) {
	ttl := rlTTL.Microseconds()
	var token int64
	// The holder's columns, scanned as rowlock scans them.
	var (
		owner, host, data              string
		htoken, since, expires, remain int64
		pid                            int64
	)
	holder := []any{&owner, &htoken, &since, &expires, &host, &pid, &data, &remain}
	// The statement runs to its end even when ctx ends, as rowlock's
	// does: the harness ends every contended slice by cancelling its
	// workers, and a statement cancelled in flight may still take the
	// lease, with a token nobody learns, blocking the name for the TTL and
	// so every later slice. A lease taken after ctx ended is given back.
	actx := ctx
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if f.pg {
		err := f.db.QueryRowContext(ctx, f.acquire, name, f.owner, ttl, f.host, f.pid, "").Scan(append([]any{&token}, holder...)...)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && token == 0) {
			return nil, nil // held (the holder came with the answer), or changed under the statement
		}
		if err != nil {
			return nil, err
		}
	} else {
		res, err := f.acqStmt.ExecContext(ctx, name, f.owner, ttl, f.host, f.pid, "", f.owner, f.host, f.pid, "", ttl)
		if err != nil {
			return nil, err
		}
		if token, err = res.LastInsertId(); err != nil {
			return nil, err
		}
		if token == 0 {
			err := f.holdStmt.QueryRowContext(ctx, name).Scan(holder...)
			if errors.Is(err, sql.ErrNoRows) {
				err = nil
			}
			return nil, err
		}
	}
	release := func(ctx context.Context) error {
		var n int64
		if f.pg {
			if err := f.db.QueryRowContext(ctx, f.release, name, f.owner, token, f.channel).Scan(&n); err != nil {
				return err
			}
		} else {
			res, err := f.relStmt.ExecContext(ctx, name, f.owner, token)
			if err != nil {
				return err
			}
			if n, err = res.RowsAffected(); err != nil {
				return err
			}
		}
		if n != 1 {
			return fmt.Errorf("release: %d rows", n)
		}
		f.wake.broadcast()
		return nil
	}
	if err := actx.Err(); err != nil {
		_ = release(ctx)
		return nil, err
	}
	return release, nil
}

// wait tries until acquired: woken by NOTIFY (PostgreSQL, after listen) or
// a local release, else polling like rowlock.
func (f *rowFloor) wait(ctx context.Context, name string) (releaseFunc, error) {
	poll := 2 * time.Millisecond
	for {
		gen := f.wake.current()
		rel, err := f.try(ctx, name)
		if err != nil || rel != nil {
			return rel, err
		}
		d := 30 * time.Second
		if !f.pg {
			d = poll/2 + rand.N(poll/2+1)
			poll = min(2*poll, rowlock.DefaultMaxPoll)
		}
		t := time.NewTimer(d)
		select {
		case <-gen:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

// listen opens a LISTEN connection whose notifications wake the waiters.
func (f *rowFloor) listen(ctx context.Context, dsn string, c *netCounter) (func(), error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cc.DialFunc = c.dial
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{f.channel}.Sanitize()); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := conn.WaitForNotification(lctx); err != nil {
				return
			}
			f.wake.broadcast()
		}
	}()
	return func() {
		cancel()
		<-done
		conn.Close(context.Background())
	}, nil
}

// generation wakes every current waiter at once.
type generation struct {
	mu sync.Mutex
	ch chan struct{}
}

func newGeneration() *generation { return &generation{ch: make(chan struct{})} }

func (g *generation) current() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ch
}

func (g *generation) broadcast() {
	g.mu.Lock()
	close(g.ch)
	g.ch = make(chan struct{})
	g.mu.Unlock()
}

var _ lockkit.Locker = (*rowlock.Locker)(nil)
