package advisory

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/sqlconn"
	"github.com/lockkit/lockkit/keyhash"
)

// Defaults of [MySQLConfig].
const (
	// DefaultMySQLProbeInterval is how often a held MySQL lock checks, on
	// its own connection, that the server still grants it.
	DefaultMySQLProbeInterval = 500 * time.Millisecond

	// DefaultMySQLProbeTimeout bounds one such check.
	DefaultMySQLProbeTimeout = 2 * time.Second

	// DefaultMySQLReleaseTimeout bounds RELEASE_LOCK when Release is
	// called with a context that can be cancelled (see
	// MySQLConfig.ReleaseTimeout).
	DefaultMySQLReleaseTimeout = 10 * time.Second

	// minMySQLProbeInterval keeps a misconfigured interval from flooding
	// the server.
	minMySQLProbeInterval = 10 * time.Millisecond

	// mysqlForever is the GET_LOCK timeout of a wait without a deadline:
	// one year. MySQL reads a negative timeout as "forever", but MariaDB
	// returns NULL for it, so lockkit passes a large positive one and ends
	// the wait through the context instead.
	mysqlForever = 365 * 24 * time.Hour

	// mysqlWaitGrace is how long after the context's deadline lockkit
	// still waits for the server's own GET_LOCK timeout to answer, so that
	// a wait that timed out keeps its connection. Past it the driver
	// closes the connection.
	mysqlWaitGrace = 2 * time.Second

	// mysqlKillTimeout bounds the KILL that ends an abandoned wait.
	mysqlKillTimeout = 5 * time.Second

	// mysqlBadConnRetries is how often an acquire starts over on a fresh
	// connection when the driver reports driver.ErrBadConn for its first
	// statement, which it does only when nothing was sent.
	mysqlBadConnRetries = 3
)

// MySQL and MariaDB error numbers lockkit maps.
const (
	mysqlErUserLockDeadlock = 3058 // MySQL: ER_USER_LOCK_DEADLOCK
	mysqlErLockDeadlock     = 1213 // MariaDB (and InnoDB): ER_LOCK_DEADLOCK
	mysqlErNoSuchThread     = 1094 // KILL of a session that has ended
)

// MySQLConfig configures a [MySQL] locker. The zero value (or a nil
// *MySQLConfig) is ready to use.
type MySQLConfig struct {
	// Namespace is put in front of every lock name ("namespace.name") and
	// every key ("namespace#key"), because the server's user-lock namespace
	// is shared by every database on it. Empty means the name of the
	// connection's current database, read once by [NewMySQL] with SELECT
	// DATABASE(). It must not contain "." or "#".
	Namespace string

	// NoNamespace sends names as they are, with no namespace: for sharing
	// a lock with another tool that calls GET_LOCK on a plain name (see
	// keyhash.MigrateMySQLLockName and keyhash.WithAdvisoryLockMySQL).
	// Names longer than 64 characters are still hashed. It excludes
	// Namespace.
	NoNamespace bool

	// ProbeInterval is how often a held lock checks, on its own
	// connection, that the server still grants it (see "Lost locks" in
	// the MySQL documentation of this package). Zero means
	// [DefaultMySQLProbeInterval]; the least is 10ms.
	ProbeInterval time.Duration

	// ProbeTimeout bounds one check; a check that does not answer in time
	// counts as a lost lock. Zero means [DefaultMySQLProbeTimeout].
	ProbeTimeout time.Duration

	// ReleaseTimeout bounds RELEASE_LOCK when Release is given a context
	// that can be cancelled: Release then runs it detached from that
	// context's cancellation (so a cancelled request still gives its lock
	// back cleanly) and bounded by ReleaseTimeout instead. A context that
	// can never be cancelled (context.Background) is used as it is, which
	// spares database/sql and the driver their per-query cancellation
	// watchers; the DSN's readTimeout then bounds the release. Zero means
	// [DefaultMySQLReleaseTimeout].
	ReleaseTimeout time.Duration
}

var _ lockkit.Locker = (*MySQL)(nil)

// NewMySQL returns a locker on db, which must be a go-sql-driver/mysql
// database with a utf8mb4 connection character set (the driver's default).
// A nil cfg means the defaults. Unless cfg sets Namespace or NoNamespace,
// NewMySQL reads the current database's name (SELECT DATABASE()) as the
// namespace, and fails if the connection has none selected. Bad
// configuration gets an error matching lockkit.ErrInvalid before any I/O.
func NewMySQL(db *sql.DB, cfg *MySQLConfig) (*MySQL, error) {
	if db == nil {
		return nil, lockkit.Invalidf("advisory: NewMySQL: nil *sql.DB")
	}
	var c MySQLConfig
	if cfg != nil {
		c = *cfg
	}
	if c.NoNamespace && c.Namespace != "" {
		return nil, lockkit.Invalidf("advisory: MySQLConfig: Namespace %q and NoNamespace both set", c.Namespace)
	}
	if err := validateMySQLNamespace(c.Namespace); err != nil {
		return nil, err
	}
	if c.ProbeInterval < 0 || c.ProbeTimeout < 0 || c.ReleaseTimeout < 0 {
		return nil, lockkit.Invalidf("advisory: MySQLConfig: negative duration (ProbeInterval %v, ProbeTimeout %v, ReleaseTimeout %v)",
			c.ProbeInterval, c.ProbeTimeout, c.ReleaseTimeout)
	}
	if c.ProbeInterval != 0 && c.ProbeInterval < minMySQLProbeInterval {
		return nil, lockkit.Invalidf("advisory: MySQLConfig: ProbeInterval %v is below the least, %v", c.ProbeInterval, minMySQLProbeInterval)
	}
	m := &MySQL{
		db:             db,
		namespace:      c.Namespace,
		probeInterval:  cmp.Or(c.ProbeInterval, DefaultMySQLProbeInterval),
		probeTimeout:   cmp.Or(c.ProbeTimeout, DefaultMySQLProbeTimeout),
		releaseTimeout: cmp.Or(c.ReleaseTimeout, DefaultMySQLReleaseTimeout),
	}
	if c.Namespace == "" && !c.NoNamespace {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var dbName sql.NullString
		if err := db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName); err != nil {
			return nil, fmt.Errorf("advisory: NewMySQL: reading the database name for the lock namespace: %w", err)
		}
		if !dbName.Valid || dbName.String == "" {
			return nil, lockkit.Invalidf("advisory: NewMySQL: the connection has no database selected; name one in the DSN or set MySQLConfig.Namespace or NoNamespace")
		}
		if err := validateMySQLNamespace(dbName.String); err != nil {
			return nil, fmt.Errorf("advisory: NewMySQL: database name %q cannot be the lock namespace; set MySQLConfig.Namespace: %w", dbName.String, err)
		}
		m.namespace = dbName.String
	}
	return m, nil
}

// Namespace returns the namespace the locker puts in front of names; ""
// with NoNamespace.
func (m *MySQL) Namespace() string { return m.namespace }

// LockName returns the GET_LOCK name the locker uses for name: see
// [MySQLLockName]. It is what IS_USED_LOCK, IS_FREE_LOCK and other tools
// must be given to see the same lock.
func (m *MySQL) LockName(name string) (string, error) { return MySQLLockName(m.namespace, name) }

// KeyName returns the GET_LOCK name the locker uses for key: see
// [MySQLKeyName].
func (m *MySQL) KeyName(k keyhash.Key) (string, error) { return MySQLKeyName(m.namespace, k) }

// Acquire waits until the named lock is held or ctx ends. The wait is the
// server's: one GET_LOCK whose timeout is ctx's deadline. When ctx ends
// first the error matches lockkit.ErrNotAcquired and ctx.Err(), and
// nothing is left held: a wait cancelled in flight has its connection
// closed and its server session killed, so a late grant cannot outlive it.
func (m *MySQL) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := m.acquire(ctx, []string{name}, nil, true, false)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// TryAcquire makes one attempt, GET_LOCK(name, 0). When the lock is held
// elsewhere the error is a *lockkit.HeldError naming the holder's
// connection id, user, host and since when (see [MySQL]).
func (m *MySQL) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := m.acquire(ctx, []string{name}, nil, false, false)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// AcquireNames waits until every one of names is held by one lock, or ctx
// ends. The names are taken on one connection in the sorted order of their
// GET_LOCK names, so two callers that do so cannot deadlock each other;
// when the server still detects a deadlock (with locks taken in another
// order elsewhere) the error matches lockkit.ErrDeadlock and nothing is
// left held. opts may be nil; a Shared mode fails with an error matching
// lockkit.ErrUnsupported. Duplicate names are refused, because the server
// would stack them.
func (m *MySQL) AcquireNames(ctx context.Context, names []string, opts *Options) (*MySQLLock, error) {
	return m.acquire(ctx, names, opts, true, false)
}

// TryAcquireNames is [MySQL.AcquireNames] with GET_LOCK(name, 0) for every
// name: when one of them is held elsewhere it returns a *lockkit.HeldError
// for that name and gives back those it took.
func (m *MySQL) TryAcquireNames(ctx context.Context, names []string, opts *Options) (*MySQLLock, error) {
	return m.acquire(ctx, names, opts, false, false)
}

// AcquireKey waits until the keyhash key k is held, or ctx ends. The key is
// rendered into a GET_LOCK name by [MySQLKeyName]; the lock's Name is
// k.String(). opts may be nil; Shared fails with lockkit.ErrUnsupported.
func (m *MySQL) AcquireKey(ctx context.Context, k keyhash.Key, opts *Options) (*MySQLLock, error) {
	return m.acquireKeys(ctx, []keyhash.Key{k}, opts, true)
}

// TryAcquireKey is [MySQL.AcquireKey] with a single attempt.
func (m *MySQL) TryAcquireKey(ctx context.Context, k keyhash.Key, opts *Options) (*MySQLLock, error) {
	return m.acquireKeys(ctx, []keyhash.Key{k}, opts, false)
}

// AcquireKeys takes several keys at once, like [MySQL.AcquireNames].
func (m *MySQL) AcquireKeys(ctx context.Context, keys []keyhash.Key, opts *Options) (*MySQLLock, error) {
	return m.acquireKeys(ctx, keys, opts, true)
}

// TryAcquireKeys is [MySQL.AcquireKeys] with a single attempt per key.
func (m *MySQL) TryAcquireKeys(ctx context.Context, keys []keyhash.Key, opts *Options) (*MySQLLock, error) {
	return m.acquireKeys(ctx, keys, opts, false)
}

func (m *MySQL) acquireKeys(ctx context.Context, keys []keyhash.Key, opts *Options, wait bool) (*MySQLLock, error) {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.String()
	}
	return m.acquire(ctx, names, opts, wait, true)
}

// mysqlTarget is one name of an acquire: the caller's and the server's.
type mysqlTarget struct {
	name   string // as the caller gave it (for a key, k.String())
	server string // the GET_LOCK name
}

// prepare validates everything an acquire needs, before any I/O.
func (m *MySQL) prepare(names []string, opts *Options, keys bool) ([]mysqlTarget, error) {
	switch mode := opts.mode(); mode {
	case Exclusive:
	case Shared:
		return nil, fmt.Errorf("advisory: MySQL and MariaDB user locks (GET_LOCK) have no shared mode: %w", lockkit.ErrUnsupported)
	default:
		return nil, lockkit.Invalidf("advisory: unknown lock mode %v", mode)
	}
	if len(names) == 0 {
		return nil, lockkit.Invalidf("advisory: no lock names given")
	}
	ts := make([]mysqlTarget, len(names))
	for i, n := range names {
		sep := mysqlNameSep
		if keys {
			sep = mysqlKeySep
		} else if err := validateMySQLName(n); err != nil {
			return nil, err
		}
		ts[i] = mysqlTarget{name: n, server: renderMySQLName(m.namespace, sep, n)}
	}
	slices.SortFunc(ts, func(a, b mysqlTarget) int { return strings.Compare(a.server, b.server) })
	for i := 1; i < len(ts); i++ {
		if ts[i].server == ts[i-1].server {
			return nil, lockkit.Invalidf("advisory: %q and %q are the same lock %q; the server would stack it", ts[i-1].name, ts[i].name, ts[i].server)
		}
	}
	return ts, nil
}

// notAcquiredCtx is the error of an acquire that ended by its context.
func notAcquiredCtx(name string, holder *lockkit.Holder, cause error) error {
	return &lockkit.HeldError{Name: name, Holder: holder, Cause: cause}
}

func (m *MySQL) acquire(ctx context.Context, names []string, opts *Options, wait, keys bool) (*MySQLLock, error) {
	ts, err := m.prepare(names, opts, keys)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("advisory: acquire %q: %w: %w", ts[0].name, lockkit.ErrNotAcquired, err)
	}
	for attempt := 0; ; attempt++ {
		lk, err := m.attempt(ctx, ts, wait)
		if errors.Is(err, errRetryBadConn) && attempt < mysqlBadConnRetries {
			continue
		}
		if errors.Is(err, errRetryBadConn) {
			err = fmt.Errorf("advisory: acquire %q: %w", ts[0].name, driver.ErrBadConn)
		}
		return lk, err
	}
}

// errRetryBadConn says the first statement of an attempt failed with
// driver.ErrBadConn, before anything was sent: the attempt may start over.
var errRetryBadConn = errors.New("advisory: stale pooled connection")

// attempt runs one acquire on one pinned connection.
func (m *MySQL) attempt(ctx context.Context, ts []mysqlTarget, wait bool) (*MySQLLock, error) {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("advisory: acquire %q: waiting for a connection: %w: %w", ts[0].name, lockkit.ErrNotAcquired, cerr)
		}
		return nil, fmt.Errorf("advisory: acquire %q: %w", ts[0].name, err)
	}
	var connID int64
	for i, t := range ts {
		var got sql.NullInt64
		if i == 0 {
			// The connection id comes with the first GET_LOCK, for free:
			// the holder check, ConnID, and the KILL of an abandoned wait
			// need it.
			err = conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0), CONNECTION_ID()", t.server).Scan(&got, &connID)
			if errors.Is(err, driver.ErrBadConn) && ctx.Err() == nil {
				sqlconn.Discard(conn)
				return nil, errRetryBadConn
			}
		} else {
			err = conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", t.server).Scan(&got)
		}
		if err == nil && got.Valid && got.Int64 == 0 && wait {
			got, err = m.wait(ctx, conn, connID, t)
		}
		switch {
		case err != nil:
			sqlconn.Discard(conn)
			return nil, m.acquireError(ctx, t, err)
		case !got.Valid:
			sqlconn.Discard(conn)
			return nil, fmt.Errorf("advisory: GET_LOCK(%q) returned NULL (an error, or the session's query was killed)", t.server)
		case got.Int64 == 1:
			continue
		case got.Int64 != 0:
			sqlconn.Discard(conn)
			return nil, fmt.Errorf("advisory: GET_LOCK(%q) returned %d, want 1 or 0", t.server, got.Int64)
		}
		// Held elsewhere: give back what this attempt took, and say who
		// holds it.
		if !m.giveBack(conn, ts[:i]) {
			return nil, m.notAcquired(ctx, t, nil, wait)
		}
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.probeTimeout)
		holder, herr := holderOf(hctx, conn, t.server)
		cancel()
		if herr != nil {
			sqlconn.Discard(conn)
		} else {
			_ = conn.Close()
		}
		return nil, m.notAcquired(ctx, t, holder, wait)
	}
	if cerr := ctx.Err(); cerr != nil {
		// The context ended while the last statement ran, and the driver
		// may have closed the connection under it. Never hand out a lock
		// in doubt: ending the session frees whatever it holds.
		sqlconn.Discard(conn)
		m.kill(connID)
		return nil, notAcquiredCtx(ts[0].name, nil, cerr)
	}
	return m.newLock(conn, connID, ts), nil
}

// notAcquired is the error of an attempt that found t held elsewhere.
func (m *MySQL) notAcquired(ctx context.Context, t mysqlTarget, holder *lockkit.Holder, wait bool) error {
	if !wait {
		return &lockkit.HeldError{Name: t.name, Holder: holder}
	}
	// A wait answers 0 only once ctx's deadline has passed; the server's
	// clock may see it a moment before ctx does.
	return notAcquiredCtx(t.name, holder, cmp.Or(ctx.Err(), context.DeadlineExceeded))
}

// wait blocks in GET_LOCK until t is granted or ctx ends. It returns 1, 0
// (timed out by ctx's deadline, connection still clean), NULL, or an
// error; after an error the connection may be dead and must be discarded.
func (m *MySQL) wait(ctx context.Context, conn *sql.Conn, connID int64, t mysqlTarget) (sql.NullInt64, error) {
	base := context.WithoutCancel(ctx)
	for retry := false; ; retry = true {
		var (
			timeout = mysqlForever
			qctx    context.Context
			cancel  context.CancelFunc
		)
		deadline, hasDeadline := ctx.Deadline()
		if hasDeadline {
			timeout = time.Until(deadline)
			if timeout <= 0 {
				return sql.NullInt64{Valid: true, Int64: 0}, nil
			}
			if retry {
				// The server answered 0 before the deadline: it rounds
				// timeouts to whole seconds (MySQL). Wait a whole second
				// rather than spin; mysqlWaitGrace covers the overshoot.
				timeout = max(timeout, time.Second)
			}
			qctx, cancel = context.WithDeadline(base, deadline.Add(mysqlWaitGrace))
		} else {
			qctx, cancel = context.WithCancel(base)
		}
		// The driver closes the connection when qctx ends: when ctx is
		// cancelled, or mysqlWaitGrace after ctx's deadline. At the
		// deadline itself the server's own timeout answers first and the
		// connection stays clean.
		stop := context.AfterFunc(ctx, func() {
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				cancel()
			}
		})
		var got sql.NullInt64
		err := conn.QueryRowContext(qctx, "SELECT GET_LOCK(?, ?)", t.server, mysqlSeconds(timeout)).Scan(&got)
		stop()
		interrupted := qctx.Err() != nil
		cancel()
		if interrupted {
			// The driver closed (or is closing) the socket. The server
			// notices a closed socket only when the wait ends, and a grant
			// in between would be held by a dead session: end it now,
			// after giving the connection's pool slot back for the KILL.
			sqlconn.Discard(conn)
			m.kill(connID)
			return sql.NullInt64{}, cmp.Or(err, ctx.Err(), context.Canceled)
		}
		if err != nil {
			return got, err
		}
		if got.Valid && got.Int64 == 0 && ctx.Err() == nil && (!hasDeadline || time.Until(deadline) > 0) {
			continue
		}
		return got, nil
	}
}

// mysqlSeconds renders d as GET_LOCK's timeout: seconds with microseconds,
// which MariaDB honours; MySQL rounds to whole seconds.
func mysqlSeconds(d time.Duration) float64 {
	us := (d + time.Microsecond - 1) / time.Microsecond
	return float64(us) / 1e6
}

// kill ends the server session connID, from another connection of the
// pool, and waits (within mysqlKillTimeout) until the session has left the
// processlist: KILL only flags a session, which then ends on its own, and
// until it has, a lock released elsewhere could still be granted to it. A
// session that has ended already is not an error.
func (m *MySQL) kill(connID int64) {
	if connID == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), mysqlKillTimeout)
	defer cancel()
	// connID is the server's own integer, not user input.
	if _, err := m.db.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(connID, 10)); err != nil {
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != mysqlErNoSuchThread {
			return
		}
	}
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		var n int
		err := m.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", connID).Scan(&n)
		if err != nil || n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// acquireError maps an error of GET_LOCK.
func (m *MySQL) acquireError(ctx context.Context, t mysqlTarget, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == mysqlErUserLockDeadlock || me.Number == mysqlErLockDeadlock) {
		return fmt.Errorf("advisory: GET_LOCK(%q): %w: %w", t.server, lockkit.ErrDeadlock, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return notAcquiredCtx(t.name, nil, cerr)
	}
	return fmt.Errorf("advisory: GET_LOCK(%q): %w", t.server, err)
}

// giveBack releases the names taken so far by a failed acquire and returns
// conn to the pool. When a release is not confirmed it discards conn
// instead and reports false.
func (m *MySQL) giveBack(conn *sql.Conn, taken []mysqlTarget) bool {
	if len(taken) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.releaseTimeout)
	defer cancel()
	if err := releaseAll(ctx, conn, taken); err != nil {
		sqlconn.Discard(conn)
		return false
	}
	return true
}

// releaseAll runs RELEASE_LOCK for every target in one statement and
// requires 1 from each.
func releaseAll(ctx context.Context, conn *sql.Conn, ts []mysqlTarget) error {
	if len(ts) == 1 {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", ts[0].server).Scan(&got); err != nil {
			return fmt.Errorf("RELEASE_LOCK(%q): %w", ts[0].server, err)
		}
		return releaseResult(ts[0].server, got)
	}
	var q strings.Builder
	args := make([]any, len(ts))
	got := make([]sql.NullInt64, len(ts))
	dest := make([]any, len(ts))
	q.WriteString("SELECT ")
	for i, t := range ts {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("RELEASE_LOCK(?)")
		args[i] = t.server
		dest[i] = &got[i]
	}
	if err := conn.QueryRowContext(ctx, q.String(), args...).Scan(dest...); err != nil {
		return fmt.Errorf("RELEASE_LOCK: %w", err)
	}
	var errs []error
	for i, t := range ts {
		errs = append(errs, releaseResult(t.server, got[i]))
	}
	return errors.Join(errs...)
}

func releaseResult(server string, got sql.NullInt64) error {
	switch {
	case !got.Valid:
		return fmt.Errorf("RELEASE_LOCK(%q) returned NULL: no such lock on the server", server)
	case got.Int64 == 0:
		return fmt.Errorf("RELEASE_LOCK(%q) returned 0: the lock is held by another session", server)
	case got.Int64 != 1:
		return fmt.Errorf("RELEASE_LOCK(%q) returned %d, want 1", server, got.Int64)
	}
	return nil
}

// mysqlHolderSQL finds who holds a user lock: IS_USED_LOCK gives the
// holder's connection id, the processlist its user, host and the start of
// its current command or idle period (server clock). A holder whose
// processlist row the caller may not see (without the PROCESS privilege)
// still has its id.
const mysqlHolderSQL = `SELECT u.id, p.USER, p.HOST, UNIX_TIMESTAMP() - p.TIME
FROM (SELECT IS_USED_LOCK(?) AS id) u
LEFT JOIN information_schema.PROCESSLIST p ON p.ID = u.id`

// holderOf returns who holds server, or nil when nobody does any more. An
// error means conn may be unusable.
func holderOf(ctx context.Context, conn *sql.Conn, server string) (*lockkit.Holder, error) {
	var (
		id          sql.NullInt64
		user, host  sql.NullString
		sinceSecond sql.NullInt64
	)
	if err := conn.QueryRowContext(ctx, mysqlHolderSQL, server).Scan(&id, &user, &host, &sinceSecond); err != nil {
		return nil, err
	}
	if !id.Valid {
		return nil, nil
	}
	h := &lockkit.Holder{PID: int(id.Int64), Owner: user.String, Host: host.String}
	if sinceSecond.Valid {
		h.Since = time.Unix(sinceSecond.Int64, 0)
	}
	return h, nil
}
