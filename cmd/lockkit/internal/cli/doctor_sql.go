package cli

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/mysqllock"
)

// doctorPostgres checks a PostgreSQL backend.
func (e *env) doctorPostgres(ctx context.Context, b *backendURL, r *report, locks int) {
	cfg, err := e.pgConfig(b)
	if err != nil {
		r.usage = err
		return
	}
	// Each probe has connections of its own, so that a pooler cannot hand
	// two of them one client connection.
	open := func(n int) *sql.DB {
		db := stdlib.OpenDB(*cfg)
		db.SetMaxOpenConns(n)
		return db
	}
	// One connection for the plain queries: through a session-mode pooler
	// every open client connection holds a server connection, and the
	// probes close theirs when done.
	db := open(1)
	defer db.Close()
	if !r.connect(ctx, db) {
		return
	}

	// The server.
	if info, err := advisory.ServerVersion(ctx, db); err != nil {
		r.add("server", statusFail, "%v", err)
	} else {
		switch info.Kind {
		case advisory.KindCockroachDB:
			r.add("server", statusWarn, "%s: CockroachDB's session advisory lock functions lock nothing; lockkit refuses them (use --table)", info.Version)
		case advisory.KindYugabyteDB:
			r.add("server", statusWarn, "%s: YugabyteDB has advisory locks only where they are enabled; the lock probe below says whether they exclude", info.Version)
		default:
			r.add("server", statusOK, "%s", info.Version)
		}
	}

	e.doctorPgPooler(ctx, cfg, r)

	e.doctorPgSessionLocks(ctx, open, r)

	e.doctorPgXact(ctx, open, r)
	doctorTable(ctx, db, migrations.Postgres, r)
	e.doctorPgNotify(ctx, cfg, r)

	// The clock.
	before := time.Now()
	if server, err := advisory.ServerTime(ctx, db); err != nil {
		r.add("clock", statusFail, "%v", err)
	} else {
		clockCheck(r, server, before, time.Now(), " (advisory locks and the lock table's leases use no client clock)")
	}

	// Capacity.
	maxConn, reserved, used, err := advisory.Connections(ctx, db)
	if err != nil {
		r.add("connections", statusFail, "max_connections: %v", err)
	} else {
		capacityCheck(r, "max_connections", maxConn, reserved, used, locks)
	}
}

// doctorPgSessionLocks runs the two-session probe of session locks: two
// Lockers on two pools of their own.
func (e *env) doctorPgSessionLocks(ctx context.Context, open func(int) *sql.DB, r *report) {
	pa, pb := open(1), open(1)
	defer pa.Close()
	defer pb.Close()
	la, errA := advisory.New(pa, nil)
	lb, errB := advisory.New(pb, nil)
	if err := errors.Join(errA, errB); err != nil {
		r.add("session locks", statusFail, "%v", err)
		return
	}
	st, detail := exclusionProbe(ctx, la, lb, probeName(), "session")
	if st == statusOK && r.failed("pooler") {
		st, detail = statusFail, "lockkit refuses session locks through this pooler (see pooler); the probe's two sessions happened not to share one"
	}
	r.add("session locks", st, "%s", detail)
}

// capacityCheck words the connection headroom against locks held session
// locks, each of which pins a connection.
func capacityCheck(r *report, setting string, max, reserved, used, locks int) {
	free := max - reserved - used
	need := locks + 1
	status := statusOK
	if free < need {
		status = statusWarn
	}
	r.add("connections", status, "%s %d, %d reserved, %d in use: %d free; %d held session locks pin %d connections, and each waiting acquire one more (--locks %d)",
		setting, max, reserved, used, free, locks, locks, locks)
}

// doctorPgPooler detects a pooler or proxy between lockkit and PostgreSQL,
// and whether it shares server sessions between client connections.
func (e *env) doctorPgPooler(ctx context.Context, cfg *pgx.ConnConfig, r *report) {
	pctx, cancel := context.WithTimeout(ctx, 3*probeTimeout)
	defer cancel()
	p, err := advisory.ProbePooler(pctx, cfg, probeName())
	switch {
	case err != nil:
		r.add("pooler", statusFail, "%v", err)
	case p.Direct:
		r.add("pooler", statusOK, "none: the connection reaches its own server session (pid %d)", p.ServerPID)
	case p.SecondConnect != nil:
		r.add("pooler", statusWarn, "a pooler or proxy answers (the connection was given pid %d, its server session is pid %d); a second connection failed: %v", p.ClientPID, p.ServerPID, p.SecondConnect)
	case p.SecondQuery != nil:
		r.add("pooler", statusWarn, "a pooler or proxy answers (pid %d given, server session pid %d): %v", p.ClientPID, p.ServerPID, p.SecondQuery)
	case p.Shared:
		r.add("pooler", statusFail, "a pooler shares server sessions between client connections (transaction or statement pooling): a second connection ran on server session pid %d, which carries the first connection's setting. Session locks exclude nothing there and lockkit refuses them: use --table (the lock table) or transaction-scoped locks, or a session-mode pool", p.SharedPID)
	case p.Sessions > 1:
		r.add("pooler", statusFail, "a pooler moves one client connection between server sessions (it ran on %d of them): transaction or statement pooling, where lockkit refuses session locks; use --table or transaction-scoped locks, or a session-mode pool", p.Sessions)
	default:
		r.add("pooler", statusInfo, "a pooler or proxy answers for the server (the connection was given pid %d, its server session is pid %d), and kept each connection on a server session of its own in this probe, as session pooling does. lockkit checks every session lock through it (the session marker, and pg_locks at a cost per acquire)", p.ClientPID, p.ServerPID)
	}
}

// doctorPgXact checks that transaction-scoped locks exclude: a second
// transaction is refused a key the first holds, and gets it after COMMIT.
func (e *env) doctorPgXact(ctx context.Context, open func(int) *sql.DB, r *report) {
	db := open(2)
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	k := keyhash.Name(probeName())
	fail := func(format string, args ...any) {
		r.add("xact locks", statusFail, format, args...)
	}
	t1, err := db.BeginTx(pctx, nil)
	if err != nil {
		fail("BEGIN: %v", err)
		return
	}
	defer t1.Rollback()
	if ok, err := advisory.TryLockTx(pctx, t1, k); err != nil || !ok {
		fail("the first transaction's pg_try_advisory_xact_lock = %v, %v", ok, err)
		return
	}
	t2, err := db.BeginTx(pctx, nil)
	if err != nil {
		if pctx.Err() != nil {
			r.add("xact locks", statusWarn, "no second transaction could start within %v while one was open (a pool of one server connection?)", probeTimeout)
			return
		}
		fail("BEGIN: %v", err)
		return
	}
	defer t2.Rollback()
	ok, err := advisory.TryLockTx(pctx, t2, k)
	switch {
	case err != nil:
		fail("%v", err)
		return
	case ok:
		fail("a second transaction got the key the first one holds: transaction-scoped locks exclude nothing here")
		return
	}
	_ = t2.Rollback()
	if err := t1.Commit(); err != nil {
		fail("COMMIT: %v", err)
		return
	}
	t3, err := db.BeginTx(pctx, nil)
	if err != nil {
		fail("BEGIN: %v", err)
		return
	}
	defer t3.Rollback()
	if ok, err := advisory.TryLockTx(pctx, t3, k); err != nil || !ok {
		fail("after COMMIT the key should be free: %v, %v", ok, err)
		return
	}
	r.add("xact locks", statusOK, "a second transaction was refused the key the first held, and got it after COMMIT (advisory.WithTxLock, LockTx)")
}

// doctorPgNotify checks that NOTIFY reaches a listener, which the lock
// table's waiters on PostgreSQL use to learn of a release at once.
func (e *env) doctorPgNotify(ctx context.Context, cfg *pgx.ConnConfig, r *report) {
	pctx, cancel := context.WithTimeout(ctx, 2*probeTimeout)
	defer cancel()
	p, err := advisory.ProbeNotify(pctx, cfg, strings.ReplaceAll(probeName(), ".", "_"), 2*time.Second)
	switch {
	case err != nil:
		r.add("notify", statusFail, "%v", err)
	case p.Listen != nil:
		r.add("notify", statusWarn, "%v; the lock table's waiters poll instead", p.Listen)
	case p.Notify != nil:
		r.add("notify", statusWarn, "%v; the lock table's waiters poll instead", p.Notify)
	case !p.Delivered:
		r.add("notify", statusWarn, "a NOTIFY did not reach a LISTENing connection within 2s (a pooler in transaction mode does not keep LISTEN): the lock table's waiters poll (up to rowlock's MaxPoll) instead of being woken at once")
	default:
		r.add("notify", statusOK, "a NOTIFY reached a LISTENing connection in %s: the lock table's waiters are woken at once on release", p.Latency.Round(time.Microsecond))
	}
}

// doctorTable reports whether the lock table is migrated, and to which
// version, without touching the database.
func doctorTable(ctx context.Context, db *sql.DB, dialect migrations.Dialect, r *report) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	newest := migrations.Latest(dialect)
	st, err := migrations.Inspect(pctx, db, dialect)
	switch {
	case err != nil:
		r.add("lock table", statusFail, "%v", err)
	case !st.Table && !st.History:
		r.add("lock table", statusInfo, "%s does not exist: only --table needs it (lockkit migrate up creates it, version %d)", migrations.TableName, newest)
	case !st.History:
		r.add("lock table", statusWarn, "%s exists but its migration history %s does not: it was not created by lockkit migrate", migrations.TableName, migrations.DefaultMigrationsTable)
	case !st.Applied:
		r.add("lock table", statusWarn, "%s is empty: no migration applied (lockkit migrate up)", migrations.DefaultMigrationsTable)
	case st.Dirty && st.Migrating:
		r.add("lock table", statusInfo, "migration %d is running now (dirty while it runs, and the migrators' lock is held); run doctor again when it is done", st.Version)
	case st.Dirty:
		r.add("lock table", statusWarn, "migration %d failed halfway (dirty): fix the database by hand", st.Version)
	case !st.Table:
		r.add("lock table", statusWarn, "the history says version %d, but %s does not exist", st.Version, migrations.TableName)
	case st.Version < newest:
		r.add("lock table", statusWarn, "%s is at version %d, the newest is %d: lockkit migrate up", migrations.TableName, st.Version, newest)
	default:
		r.add("lock table", statusOK, "%s is migrated, version %d (the newest)", migrations.TableName, st.Version)
	}
}

// doctorMySQL checks a MySQL or MariaDB backend.
func (e *env) doctorMySQL(ctx context.Context, b *backendURL, r *report, locks int) {
	cfg, err := mysqlConfig(b)
	if err != nil {
		r.usage = err
		return
	}
	e.scrub.add(cfg.Passwd)
	cfg.Logger = mysqlLogger{e}
	open := func(n int) (*sql.DB, error) {
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return nil, usagef("%s: %v", b.display, err)
		}
		db := sql.OpenDB(conn)
		db.SetMaxOpenConns(n)
		return db, nil
	}
	db, err := open(4)
	if err != nil {
		r.usage = err
		return
	}
	defer db.Close()
	if !r.connect(ctx, db) {
		return
	}

	info, err := mysqllock.Diagnose(ctx, db)
	if err != nil {
		r.add("server", statusFail, "%v", err)
	} else {
		desc := info.Version + " (" + info.VersionComment + ")"
		switch {
		case info.Vitess():
			r.add("server", statusWarn, "%s: Vitess sends GET_LOCK to one shard and needs reserved connections; the lock probe below says whether it excludes", desc)
		case info.ProxySQL():
			r.add("server", statusWarn, "%s: ProxySQL multiplexes connections; GET_LOCK disables multiplexing for the session, but check the probe below", desc)
		default:
			r.add("server", statusOK, "%s", desc)
		}
	}
	// Galera and Group Replication.
	switch {
	case info.Galera:
		r.add("cluster", statusFail, "Galera cluster node (wsrep_on=ON): GET_LOCK is not replicated and excludes nothing across nodes, so lockkit refuses it: use --table (the lock table, whose rows replicate to every node)")
	case info.GroupReplication != "":
		r.add("cluster", statusWarn, "MySQL Group Replication: user locks (GET_LOCK) are not replicated; every client must use the same primary")
	default:
		r.add("cluster", statusOK, "neither Galera nor Group Replication")
	}

	pa, errA := open(2)
	pb, errB := open(2)
	if err := errors.Join(errA, errB); err != nil {
		r.add("session locks", statusFail, "%v", err)
	} else {
		defer pa.Close()
		defer pb.Close()
		la, errA := mysqllock.New(pa, nil)
		lb, errB := mysqllock.New(pb, nil)
		if err := errors.Join(errA, errB); err != nil {
			r.add("session locks", statusFail, "%v", err)
		} else {
			st, detail := exclusionProbe(ctx, la, lb, probeName(), "session")
			r.add("session locks", st, "%s", detail)
		}
	}

	doctorTable(ctx, db, migrations.MySQL, r)

	before := time.Now()
	if server, err := mysqllock.ServerTime(ctx, db); err != nil {
		r.add("clock", statusFail, "%v", err)
	} else {
		clockCheck(r, server, before, time.Now(), " (user locks use no clock; the lock table's leases use the server's)")
	}

	maxConn, used, err := mysqllock.Connections(ctx, db)
	if err != nil {
		r.add("connections", statusFail, "max_connections: %v", err)
	} else {
		// MySQL keeps one extra connection for a user with SUPER or
		// CONNECTION_ADMIN.
		capacityCheck(r, "max_connections", maxConn, 1, used, locks)
	}
}

// connect pings db within pingTimeout and records the "connect" check; it
// reports whether the database answered (if not, r is unreachable).
func (r *report) connect(ctx context.Context, db *sql.DB) bool {
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	err := db.PingContext(pctx)
	cancel()
	if err != nil {
		r.unreachable = true
		r.add("connect", statusFail, "cannot reach the database: %v", err)
		return false
	}
	r.add("connect", statusOK, "connected in %s", time.Since(start).Round(time.Millisecond))
	return true
}
