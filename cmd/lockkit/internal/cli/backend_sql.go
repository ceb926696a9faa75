package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/mysqllock"
	"github.com/lockkit/lockkit/rowlock"
)

// applicationName is what lockkit's PostgreSQL sessions show in
// pg_stat_activity, unless the URL sets application_name: "lockkit", or
// "lockkit run NAME" (advisory.RunAppPrefix + NAME, by which the advisory
// backend's List names the lock) for run, cut to PostgreSQL's 63 bytes at
// a character boundary.
func (e *env) applicationName() string {
	if e.appName == "" {
		return "lockkit"
	}
	s := e.appName
	for len(s) > 63 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// sqlBackend is PostgreSQL or MySQL through database/sql: advisory locks,
// or the lock table with --table.
type sqlBackend struct {
	e       *env
	kind    string // kindPostgres or kindMySQL
	db      *sql.DB
	display string
	table   *rowlock.Locker // made by locker with --table; closed by close
}

func openPostgres(ctx context.Context, e *env, b *backendURL) (backend, error) {
	cfg, err := e.pgConfig(b)
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*cfg)
	return finishSQL(ctx, e, b, kindPostgres, db)
}

// pgConfig parses a postgres:// URL into pgx's configuration, with
// lockkit's application_name and connect timeout, and registers the
// password with the scrubber.
//
// Unless the URL sets default_query_exec_mode, statements run as unnamed
// prepared statements (exec): lockkit sends a handful of statements per
// run, and named ones (pgx's default) fail through PgBouncer in
// transaction mode before 1.21 ("prepared statement ... already exists"),
// where the lock table and transaction-scoped locks otherwise work.
func (e *env) pgConfig(b *backendURL) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(b.u.String())
	if err != nil {
		return nil, usagef("%s: %v", b.display, err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = e.applicationName()
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pingTimeout
	}
	if !b.u.Query().Has("default_query_exec_mode") {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	// The password may also come from a .pgpass file or PGPASSWORD: keep
	// it out of messages too.
	e.scrub.add(cfg.Password)
	return cfg, nil
}

func openMySQL(ctx context.Context, e *env, b *backendURL) (backend, error) {
	cfg, err := mysqlConfig(b)
	if err != nil {
		return nil, err
	}
	cfg.Logger = mysqlLogger{e}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, usagef("%s: %v", b.display, err)
	}
	return finishSQL(ctx, e, b, kindMySQL, sql.OpenDB(conn))
}

// mysqlConfig converts mysql://USER:PASS@HOST:PORT/DB?PARAMS into the
// go-sql-driver configuration. PARAMS are the driver's DSN parameters
// (tls=true, timeout=5s, ...).
func mysqlConfig(b *backendURL) (*mysql.Config, error) {
	u := b.u
	var cfg *mysql.Config
	if u.RawQuery != "" {
		// Let the driver parse and check its own parameters.
		c, err := mysql.ParseDSN("/?" + u.RawQuery)
		if err != nil {
			return nil, usagef("%s: %v", b.display, err)
		}
		cfg = c
	} else {
		cfg = mysql.NewConfig()
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.Net = "tcp"
	cfg.Addr = host
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if cfg.DBName == "" || strings.Contains(cfg.DBName, "/") {
		return nil, usagef("%s: name one database: %s", b.display, urlForm("mysql"))
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = pingTimeout
	}
	// A server that accepts the connection but never answers must not hang
	// lockkit; held locks are probed far more often than this.
	return cfg, nil
}

// mysqlLogger routes the MySQL driver's log lines (a connection it found
// dead, for instance) through lockkit's scrubbed stderr, with -v only.
type mysqlLogger struct{ e *env }

func (l mysqlLogger) Print(v ...any) {
	if l.e.verbose {
		l.e.errorf("mysql: %s", strings.TrimSpace(fmt.Sprint(v...)))
	}
}

func finishSQL(ctx context.Context, e *env, b *backendURL, kind string, db *sql.DB) (backend, error) {
	// A held session lock pins a connection; waiting for it may need a
	// second one, status queries a third.
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(time.Minute)
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("cannot reach the database: %w", err)
	}
	return &sqlBackend{e: e, kind: kind, db: db, display: b.display}, nil
}

// close closes the lock-table Locker first: it waits for the give-back of
// a lease that an acquire abandoned by --wait or a signal may still take,
// which the process would otherwise leave held until its TTL.
func (s *sqlBackend) close() error {
	if s.table != nil {
		_ = s.table.Close()
	}
	return s.db.Close()
}

func (s *sqlBackend) locker(opts lockOptions) (lockkit.Locker, error) {
	if opts.table {
		cfg := &rowlock.Config{TTL: opts.ttl, Data: opts.owner}
		l, err := rowlock.New(s.db, cfg)
		if err != nil {
			return nil, err
		}
		s.table = l
		return tableLocker{l}, nil
	}
	switch s.kind {
	case kindPostgres:
		p, err := advisory.New(s.db, nil)
		if err != nil {
			return nil, err
		}
		if opts.shared {
			return sharedPostgres{p}, nil
		}
		return p, nil
	default:
		m, err := mysqllock.New(s.db, nil)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
}

// lister returns the lock table's Lister with table, else the advisory
// lock backend's.
func (s *sqlBackend) lister(table bool) (lockkit.Lister, error) {
	if table {
		l, err := rowlock.New(s.db, &rowlock.Config{})
		if err != nil {
			return nil, err
		}
		s.table = l
		return tableLister{l}, nil
	}
	if s.kind == kindPostgres {
		return advisory.New(s.db, nil)
	}
	return mysqllock.New(s.db, nil)
}

// tableLister is a rowlock.Locker's List whose lock-table errors say what
// to do when the table is missing.
type tableLister struct{ l *rowlock.Locker }

func (t tableLister) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	locks, err := t.l.List(ctx, names...)
	return locks, tableHint(err)
}

// Changes and Announce pass the rowlock.Locker's pushed changes on, for
// lockkit status --watch.
func (t tableLister) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	return t.l.Changes(ctx, names...)
}

func (t tableLister) Announce(ctx context.Context, name string) error { return t.l.Announce(ctx, name) }

// tableLocker is a rowlock.Locker whose lock-table errors say what to do
// when the table is missing. It lists and records per-acquire data as the
// rowlock.Locker does, for lockkit run --max.
type tableLocker struct{ l *rowlock.Locker }

var (
	_ lockkit.DataLocker = tableLocker{}
	_ lockkit.Lister     = tableLocker{}
	_ lockkit.Watcher    = tableLocker{}
	_ lockkit.Watcher    = tableLister{}
)

// Changes and Announce pass the rowlock.Locker's pushed changes on, so
// that lockkit run announces its acquire and release.
func (t tableLocker) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	return t.l.Changes(ctx, names...)
}

func (t tableLocker) Announce(ctx context.Context, name string) error { return t.l.Announce(ctx, name) }

func (t tableLocker) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return hinted{t.l}.Acquire(ctx, name)
}

func (t tableLocker) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return hinted{t.l}.TryAcquire(ctx, name)
}

func (t tableLocker) WithData(data string) lockkit.Locker { return hinted{t.l.WithData(data)} }

func (t tableLocker) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	return tableLister(t).List(ctx, names...)
}

// hinted is a Locker on the lock table whose errors say what to do when
// the table is missing.
type hinted struct{ l lockkit.Locker }

func (h hinted) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := h.l.Acquire(ctx, name)
	return lk, tableHint(err)
}

func (h hinted) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := h.l.TryAcquire(ctx, name)
	return lk, tableHint(err)
}

// tableHint adds "run lockkit migrate up" to an error that says the lock
// table does not exist.
func tableHint(err error) error {
	if errors.Is(err, rowlock.ErrNoTable) {
		return fmt.Errorf("%w (create the lock table with 'lockkit migrate up')", err)
	}
	return err
}

// sharedPostgres takes PostgreSQL advisory locks on names in shared mode.
// The key of a name is the one an exclusive lock on it takes, so shared
// and exclusive holders of a name exclude each other.
type sharedPostgres struct{ p *advisory.Locker }

var sharedMode = &advisory.Options{Mode: advisory.Shared}

func (s sharedPostgres) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := s.p.Lock(ctx, name, sharedMode)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

func (s sharedPostgres) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := s.p.TryLock(ctx, name, sharedMode)
	if err != nil {
		return nil, err
	}
	return lk, nil
}
