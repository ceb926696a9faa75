package cli

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"strconv"
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
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	err = db.PingContext(pctx)
	cancel()
	if err != nil {
		r.unreachable = true
		r.add("connect", statusFail, "cannot reach the database: %v", err)
		return
	}
	r.add("connect", statusOK, "connected in %s", time.Since(start).Round(time.Millisecond))

	// The server.
	var version, num string
	if err := db.QueryRowContext(ctx, "SELECT pg_catalog.version(), pg_catalog.current_setting('server_version_num')").Scan(&version, &num); err != nil {
		r.add("server", statusFail, "SELECT version(): %v", err)
	} else {
		switch low := strings.ToLower(version); {
		case strings.Contains(low, "cockroachdb"):
			r.add("server", statusWarn, "%s: CockroachDB's session advisory lock functions lock nothing; lockkit refuses them (use --table)", version)
		case strings.Contains(low, "-yb-") || strings.Contains(low, "yugabyte"):
			r.add("server", statusWarn, "%s: YugabyteDB has advisory locks only where they are enabled; the lock probe below says whether they exclude", version)
		default:
			r.add("server", statusOK, "%s", version)
		}
	}

	e.doctorPgPooler(ctx, cfg, r)

	e.doctorPgSessionLocks(ctx, open, r)

	e.doctorPgXact(ctx, open, r)
	doctorTable(ctx, db, migrations.Postgres, r,
		"SELECT pg_catalog.to_regclass($1) IS NOT NULL, pg_catalog.to_regclass($2) IS NOT NULL")
	e.doctorPgNotify(ctx, cfg, r)

	// The clock.
	before := time.Now()
	var server time.Time
	if err := db.QueryRowContext(ctx, "SELECT pg_catalog.clock_timestamp()").Scan(&server); err != nil {
		r.add("clock", statusFail, "SELECT clock_timestamp(): %v", err)
	} else {
		clockCheck(r, server, before, time.Now(), " (advisory locks and the lock table's leases use no client clock)")
	}

	// Capacity.
	var maxConn, reserved, used int
	err = db.QueryRowContext(ctx, `SELECT pg_catalog.current_setting('max_connections')::integer,
 pg_catalog.current_setting('superuser_reserved_connections')::integer,
 (SELECT pg_catalog.count(*)::integer FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')`).Scan(&maxConn, &reserved, &used)
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
	a, err := pgx.ConnectConfig(pctx, cfg)
	if err != nil {
		r.add("pooler", statusFail, "connect: %v", err)
		return
	}
	defer a.Close(context.WithoutCancel(pctx))
	token := probeName()
	var pid int32
	if err := a.QueryRow(pctx, "SELECT pg_catalog.pg_backend_pid() FROM (SELECT pg_catalog.set_config('lockkit.doctor', $1, false)) s", token).Scan(&pid); err != nil {
		r.add("pooler", statusFail, "%v", err)
		return
	}
	defer func() {
		_, _ = a.Exec(context.WithoutCancel(pctx), "SELECT pg_catalog.set_config('lockkit.doctor', '', false)")
	}()
	client := a.PgConn().PID()
	if uint32(pid) == client {
		r.add("pooler", statusOK, "none: the connection reaches its own server session (pid %d)", pid)
		return
	}
	// Something answers for the server with pids of its own. Does it give
	// a server session that carries another client connection's setting?
	b, err := pgx.ConnectConfig(pctx, cfg)
	if err != nil {
		r.add("pooler", statusWarn, "a pooler or proxy answers (the connection was given pid %d, its server session is pid %d); a second connection failed: %v", client, pid, err)
		return
	}
	defer b.Close(context.WithoutCancel(pctx))
	pids := map[int32]bool{pid: true}
	for range 5 {
		var seen *string
		var bpid int32
		if err := b.QueryRow(pctx, "SELECT pg_catalog.current_setting('lockkit.doctor', true), pg_catalog.pg_backend_pid()").Scan(&seen, &bpid); err != nil {
			r.add("pooler", statusWarn, "a pooler or proxy answers (pid %d given, server session pid %d): %v", client, pid, err)
			return
		}
		if seen != nil && *seen == token {
			r.add("pooler", statusFail, "a pooler shares server sessions between client connections (transaction or statement pooling): a second connection ran on server session pid %d, which carries the first connection's setting. Session locks exclude nothing there and lockkit refuses them: use --table (the lock table) or transaction-scoped locks, or a session-mode pool", bpid)
			return
		}
		var apid int32
		if err := a.QueryRow(pctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&apid); err == nil {
			pids[apid] = true
		}
	}
	if len(pids) > 1 {
		r.add("pooler", statusFail, "a pooler moves one client connection between server sessions (it ran on %d of them): transaction or statement pooling, where lockkit refuses session locks; use --table or transaction-scoped locks, or a session-mode pool", len(pids))
		return
	}
	r.add("pooler", statusInfo, "a pooler or proxy answers for the server (the connection was given pid %d, its server session is pid %d), and kept each connection on a server session of its own in this probe, as session pooling does. lockkit checks every session lock through it (the session marker, and pg_locks at a cost per acquire)", client, pid)
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
	l, err := pgx.ConnectConfig(pctx, cfg)
	if err != nil {
		r.add("notify", statusFail, "connect: %v", err)
		return
	}
	defer l.Close(context.WithoutCancel(pctx))
	ch := strings.ReplaceAll(probeName(), ".", "_")
	if _, err := l.Exec(pctx, "LISTEN "+ch); err != nil {
		r.add("notify", statusWarn, "LISTEN: %v; the lock table's waiters poll instead", err)
		return
	}
	s, err := pgx.ConnectConfig(pctx, cfg)
	if err != nil {
		r.add("notify", statusFail, "connect: %v", err)
		return
	}
	defer s.Close(context.WithoutCancel(pctx))
	if _, err := s.Exec(pctx, "SELECT pg_catalog.pg_notify($1, 'probe')", ch); err != nil {
		r.add("notify", statusWarn, "NOTIFY: %v; the lock table's waiters poll instead", err)
		return
	}
	wctx, wcancel := context.WithTimeout(pctx, 2*time.Second)
	defer wcancel()
	start := time.Now()
	n, err := l.WaitForNotification(wctx)
	if err != nil || n.Channel != ch {
		r.add("notify", statusWarn, "a NOTIFY did not reach a LISTENing connection within 2s (a pooler in transaction mode does not keep LISTEN): the lock table's waiters poll (up to rowlock's MaxPoll) instead of being woken at once")
		return
	}
	r.add("notify", statusOK, "a NOTIFY reached a LISTENing connection in %s: the lock table's waiters are woken at once on release", time.Since(start).Round(time.Microsecond))
}

// doctorTable reports whether the lock table is migrated, and to which
// version, without touching the database: existsSQL takes the lock
// table's and the history table's names and says whether each exists.
func doctorTable(ctx context.Context, db *sql.DB, dialect migrations.Dialect, r *report, existsSQL string) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	newest := newestMigration(dialect)
	var table, history bool
	if err := db.QueryRowContext(pctx, existsSQL, migrations.TableName, migrations.DefaultMigrationsTable).Scan(&table, &history); err != nil {
		r.add("lock table", statusFail, "%v", err)
		return
	}
	if !table && !history {
		r.add("lock table", statusInfo, "%s does not exist: only --table needs it (lockkit migrate up creates it, version %d)", migrations.TableName, newest)
		return
	}
	if !history {
		r.add("lock table", statusWarn, "%s exists but its migration history %s does not: it was not created by lockkit migrate", migrations.TableName, migrations.DefaultMigrationsTable)
		return
	}
	var (
		version int64
		dirty   bool
	)
	err := db.QueryRowContext(pctx, "SELECT version, dirty FROM "+migrations.DefaultMigrationsTable+" LIMIT 1").Scan(&version, &dirty)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		r.add("lock table", statusWarn, "%s is empty: no migration applied (lockkit migrate up)", migrations.DefaultMigrationsTable)
	case err != nil:
		r.add("lock table", statusFail, "%s: %v", migrations.DefaultMigrationsTable, err)
	case dirty:
		r.add("lock table", statusWarn, "migration %d failed halfway (dirty): fix the database by hand", version)
	case !table:
		r.add("lock table", statusWarn, "the history says version %d, but %s does not exist", version, migrations.TableName)
	case version < int64(newest):
		r.add("lock table", statusWarn, "%s is at version %d, the newest is %d: lockkit migrate up", migrations.TableName, version, newest)
	default:
		r.add("lock table", statusOK, "%s is migrated, version %d (the newest)", migrations.TableName, version)
	}
}

// newestMigration is the highest version among the bundled migrations.
func newestMigration(dialect migrations.Dialect) int {
	fsys, err := migrations.FS(dialect)
	if err != nil {
		return 0
	}
	newest := 0
	_ = fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".up.sql") {
			return nil
		}
		num, _, _ := strings.Cut(path, "_")
		if n, err := strconv.Atoi(num); err == nil && n > newest {
			newest = n
		}
		return nil
	})
	return newest
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
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	err = db.PingContext(pctx)
	cancel()
	if err != nil {
		r.unreachable = true
		r.add("connect", statusFail, "cannot reach the database: %v", err)
		return
	}
	r.add("connect", statusOK, "connected in %s", time.Since(start).Round(time.Millisecond))

	var version, comment string
	if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@version_comment").Scan(&version, &comment); err != nil {
		r.add("server", statusFail, "SELECT VERSION(): %v", err)
	} else {
		desc := version + " (" + comment + ")"
		switch low := strings.ToLower(version + " " + comment); {
		case strings.Contains(low, "vitess"):
			r.add("server", statusWarn, "%s: Vitess sends GET_LOCK to one shard and needs reserved connections; the lock probe below says whether it excludes", desc)
		case strings.Contains(low, "proxysql"):
			r.add("server", statusWarn, "%s: ProxySQL multiplexes connections; GET_LOCK disables multiplexing for the session, but check the probe below", desc)
		default:
			r.add("server", statusOK, "%s", desc)
		}
	}
	// Galera and Group Replication.
	cluster := func(variable string) string {
		var name, value string
		if err := db.QueryRowContext(ctx, "SHOW GLOBAL VARIABLES LIKE '"+variable+"'").Scan(&name, &value); err != nil {
			return ""
		}
		return value
	}
	switch {
	case strings.EqualFold(cluster("wsrep_on"), "ON"):
		r.add("cluster", statusFail, "Galera (wsrep_on=ON): user locks (GET_LOCK) are not replicated, and recent versions reject them (MDEV-30473): use --table, or a server outside the cluster")
	case cluster("group_replication_group_name") != "":
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

	doctorTable(ctx, db, migrations.MySQL, r,
		"SELECT COUNT(CASE WHEN table_name = ? THEN 1 END) > 0, COUNT(CASE WHEN table_name = ? THEN 1 END) > 0 FROM information_schema.tables WHERE table_schema = DATABASE()")

	before := time.Now()
	var micros int64
	if err := db.QueryRowContext(ctx, "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)").Scan(&micros); err != nil {
		r.add("clock", statusFail, "%v", err)
	} else {
		clockCheck(r, time.UnixMicro(micros), before, time.Now(), " (user locks use no clock; the lock table's leases use the server's)")
	}

	var maxConn, used int
	var name string
	err = db.QueryRowContext(ctx, "SELECT @@max_connections").Scan(&maxConn)
	if err == nil {
		err = db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Threads_connected'").Scan(&name, &used)
	}
	if err != nil {
		r.add("connections", statusFail, "max_connections: %v", err)
	} else {
		// MySQL keeps one extra connection for a user with SUPER or
		// CONNECTION_ADMIN.
		capacityCheck(r, "max_connections", maxConn, 1, used, locks)
	}
}
