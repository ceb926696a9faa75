package mysqllock

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
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/mysqlconn"
	"github.com/lockkit/lockkit/internal/sqlconn"
	"github.com/lockkit/lockkit/internal/starter"
	"github.com/lockkit/lockkit/internal/telemetry"
	"github.com/lockkit/lockkit/keyhash"
)

// Defaults of [Config].
const (
	// DefaultProbeInterval is how often a held MySQL lock checks, on
	// its own connection, that the server still grants it.
	DefaultProbeInterval = 500 * time.Millisecond

	// DefaultProbeTimeout bounds one such check.
	DefaultProbeTimeout = 2 * time.Second

	// DefaultReleaseTimeout bounds RELEASE_LOCK when Release is
	// called with a context that can be cancelled (see
	// Config.ReleaseTimeout).
	DefaultReleaseTimeout = 10 * time.Second

	// minProbeInterval keeps a misconfigured interval from flooding
	// the server.
	minProbeInterval = 10 * time.Millisecond

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

// Config configures a [Locker] locker. The zero value (or a nil
// *Config) is ready to use.
type Config struct {
	// Namespace is put in front of every lock name ("namespace.name") and
	// every key ("namespace#key"), because the server's user-lock namespace
	// is shared by every database on it. Empty means the name of the
	// connection's current database, read once by [New] with SELECT
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
	// [DefaultProbeInterval]; the least is 10ms.
	ProbeInterval time.Duration

	// ProbeTimeout bounds one check; a check that does not answer in time
	// counts as a lost lock. Zero means [DefaultProbeTimeout].
	ProbeTimeout time.Duration

	// ReleaseTimeout bounds RELEASE_LOCK when Release is given a context
	// that can be cancelled: Release then runs it detached from that
	// context's cancellation (so a cancelled request still gives its lock
	// back cleanly) and bounded by ReleaseTimeout instead. A context that
	// can never be cancelled (context.Background) is used as it is, which
	// spares database/sql and the driver their per-query cancellation
	// watchers; the DSN's readTimeout then bounds the release. Zero means
	// [DefaultReleaseTimeout].
	ReleaseTimeout time.Duration

	// Telemetry says where the Locker's metrics, spans and logs go; nil
	// means OpenTelemetry's global providers and no logs. See
	// [lockkit.Telemetry].
	Telemetry *lockkit.Telemetry

	// Fencing gives every lock on one name a fencing token
	// ([Lock.Token]): a counter per GET_LOCK name in the table
	// FencingTable, bumped on the lock's connection right after GET_LOCK
	// granted it. Tokens strictly increase per name. A lock on several
	// names (LockNames, LockKeys) gets no token (0). See the package
	// documentation, Fencing tokens.
	Fencing bool

	// FencingTable is the table of Fencing's counters, "table" (in the
	// connection's current database) or "database.table": letters,
	// digits and "_". Empty means [DefaultFencingTable]. It is created
	// (CREATE TABLE IF NOT EXISTS) the first time a bump finds it
	// missing.
	FencingTable string
}

// DefaultFencingTable is the table of Config.Fencing when
// Config.FencingTable is empty.
const DefaultFencingTable = "lockkit_fence"

// Locker acquires MySQL and MariaDB user locks (GET_LOCK) on one *sql.DB.
// It implements [lockkit.Locker]; see the package documentation for names,
// connections, waiting and loss detection. It is safe for concurrent use.
type Locker struct {
	db             *sql.DB
	namespace      string
	probeInterval  time.Duration
	probeTimeout   time.Duration
	releaseTimeout time.Duration
	conns          *mysqlconn.Cache // shared by every Locker on db
	probes         starter.Starter  // the next probes of the held locks
	releases       starter.Starter  // the ends of the releases in flight (releaseCtx)
	tel            *telemetry.Recorder

	// clusterChecked: the server said it is not a Galera node (see
	// checkCluster).
	clusterChecked atomic.Bool

	fenceBump   string // the bump statement of Config.Fencing; "" without
	fenceCreate string // the CREATE TABLE of the counters' table
	fenceRead   string // reads a name's counter, for List

	holdersWrite, holdersCreate, holdersRead, holdersEnsure string   // the holders table's statements; see WithData
	rowMade                                                 sync.Map // GET_LOCK names known to have a holders row
}

var telemetryBackend = telemetry.Backend{
	Name:     "mysqllock",
	DBSystem: "mysql",
	Reason: func(cause error, release bool) telemetry.Reason {
		switch {
		case release:
			return telemetry.ReleaseUnconfirmed
		case errors.Is(cause, errNotGranted):
			return telemetry.TakenOver
		}
		// A probe that failed or did not answer: the session is gone, or
		// was killed for not answering.
		return telemetry.SessionEnded
	},
}

var _ lockkit.Locker = (*Locker)(nil)

// New returns a locker on db, which must be a go-sql-driver/mysql
// database with a utf8mb4 connection character set (the driver's default).
// A nil cfg means the defaults. Unless cfg sets Namespace or NoNamespace,
// New reads the current database's name (SELECT DATABASE()) as the
// namespace, and fails if the connection has none selected. Bad
// configuration gets an error matching lockkit.ErrInvalid before any I/O.
func New(db *sql.DB, cfg *Config) (*Locker, error) {
	if db == nil {
		return nil, invalid.Errorf("mysqllock: New: nil *sql.DB")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.NoNamespace && c.Namespace != "" {
		return nil, invalid.Errorf("mysqllock: Config: Namespace %q and NoNamespace both set", c.Namespace)
	}
	if err := validateNamespace(c.Namespace); err != nil {
		return nil, err
	}
	if c.ProbeInterval < 0 || c.ProbeTimeout < 0 || c.ReleaseTimeout < 0 {
		return nil, invalid.Errorf("mysqllock: Config: negative duration (ProbeInterval %v, ProbeTimeout %v, ReleaseTimeout %v)",
			c.ProbeInterval, c.ProbeTimeout, c.ReleaseTimeout)
	}
	if c.ProbeInterval != 0 && c.ProbeInterval < minProbeInterval {
		return nil, invalid.Errorf("mysqllock: Config: ProbeInterval %v is below the least, %v", c.ProbeInterval, minProbeInterval)
	}
	table := cmp.Or(c.FencingTable, DefaultFencingTable)
	qtable, err := quoteTable(table)
	if err != nil {
		return nil, err
	}
	m := &Locker{
		db:             db,
		namespace:      c.Namespace,
		probeInterval:  cmp.Or(c.ProbeInterval, DefaultProbeInterval),
		probeTimeout:   cmp.Or(c.ProbeTimeout, DefaultProbeTimeout),
		releaseTimeout: cmp.Or(c.ReleaseTimeout, DefaultReleaseTimeout),
		conns:          mysqlconn.CacheOf(db),
		tel:            telemetry.New(c.Telemetry, telemetryBackend),
	}
	if c.Fencing {
		// at: when the counter was last bumped, in microseconds since
		// the epoch, the holder's Since for List.
		const now = "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"
		m.fenceBump = "INSERT INTO " + qtable + " (name, n, at) VALUES (?, LAST_INSERT_ID(1), " + now + ")" +
			" ON DUPLICATE KEY UPDATE n = LAST_INSERT_ID(n + 1), at = " + now
		m.fenceCreate = "CREATE TABLE IF NOT EXISTS " + qtable +
			" (name VARBINARY(255) NOT NULL PRIMARY KEY, n BIGINT NOT NULL, at BIGINT NOT NULL) ENGINE=InnoDB"
		m.fenceRead = "SELECT n, at FROM " + qtable + " WHERE name = ?"
	}
	// A FencingTable too long to take the suffix leaves WithData without
	// a table: its acquires fail and List reads no data.
	if qholders, err := quoteTable(table + "_holders"); err == nil {
		m.setHolders(qholders)
	}
	if c.Namespace == "" && !c.NoNamespace {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var dbName sql.NullString
		if err := db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName); err != nil {
			return nil, fmt.Errorf("mysqllock: New: reading the database name for the lock namespace: %w", err)
		}
		if !dbName.Valid || dbName.String == "" {
			return nil, invalid.Errorf("mysqllock: New: the connection has no database selected; name one in the DSN or set Config.Namespace or NoNamespace")
		}
		if err := validateNamespace(dbName.String); err != nil {
			return nil, fmt.Errorf("mysqllock: New: database name %q cannot be the lock namespace; set Config.Namespace: %w", dbName.String, err)
		}
		m.namespace = dbName.String
	}
	return m, nil
}

// Namespace returns the namespace the locker puts in front of names; ""
// with NoNamespace.
func (m *Locker) Namespace() string { return m.namespace }

// UserLockName returns the GET_LOCK name the locker uses for name: see
// [UserLockName]. It is what IS_USED_LOCK, IS_FREE_LOCK and other tools
// must be given to see the same lock.
func (m *Locker) UserLockName(name string) (string, error) { return UserLockName(m.namespace, name) }

// KeyUserLockName returns the GET_LOCK name the locker uses for key: see
// [KeyUserLockName].
func (m *Locker) KeyUserLockName(k keyhash.Key) (string, error) {
	return KeyUserLockName(m.namespace, k)
}

// Acquire waits until the named lock is held or ctx ends; it is
// [Locker.Lock] for the [lockkit.Locker] interface.
func (m *Locker) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := m.acquire(ctx, []string{name}, true, false)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// TryAcquire makes one attempt; it is [Locker.TryLock] for the
// [lockkit.Locker] interface.
func (m *Locker) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := m.acquire(ctx, []string{name}, false, false)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// Lock waits until the named lock is held or ctx ends. The wait is the
// server's: one GET_LOCK whose timeout is ctx's deadline. When ctx ends
// first the error is a *lockkit.HeldError matching lockkit.ErrNotAcquired
// and ctx.Err(), and nothing is left held: a wait cancelled in flight has
// its connection closed and its server session killed, so a late grant
// cannot outlive it.
func (m *Locker) Lock(ctx context.Context, name string) (*Lock, error) {
	return m.acquire(ctx, []string{name}, true, false)
}

// TryLock makes one attempt, GET_LOCK(name, 0). When the lock is held
// elsewhere the error is a *lockkit.HeldError naming the holder's
// connection id, user, host and since when (see the package
// documentation, Holder info).
func (m *Locker) TryLock(ctx context.Context, name string) (*Lock, error) {
	return m.acquire(ctx, []string{name}, false, false)
}

// LockNames waits until every one of names is held by one lock, or ctx
// ends. The names are taken on one connection by one statement, in the
// sorted order of their GET_LOCK names, so two callers that do so cannot
// deadlock each other; when the server still detects a deadlock (with
// locks taken in another order elsewhere) the error matches
// lockkit.ErrDeadlock and nothing is left held. Duplicate names are
// refused, because the server would stack them.
func (m *Locker) LockNames(ctx context.Context, names []string) (*Lock, error) {
	return m.acquire(ctx, names, true, false)
}

// TryLockNames is [Locker.LockNames] with GET_LOCK(name, 0) for every
// name, in one statement: when one of them is held elsewhere it returns a
// *lockkit.HeldError for the first such name and gives back those it took.
func (m *Locker) TryLockNames(ctx context.Context, names []string) (*Lock, error) {
	return m.acquire(ctx, names, false, false)
}

// LockKey waits until the keyhash key k is held, or ctx ends. The key is
// rendered into a GET_LOCK name by [KeyUserLockName]; the lock's Name is
// k.String().
func (m *Locker) LockKey(ctx context.Context, k keyhash.Key) (*Lock, error) {
	return m.acquireKeys(ctx, []keyhash.Key{k}, true)
}

// TryLockKey is [Locker.LockKey] with a single attempt.
func (m *Locker) TryLockKey(ctx context.Context, k keyhash.Key) (*Lock, error) {
	return m.acquireKeys(ctx, []keyhash.Key{k}, false)
}

// LockKeys takes several keys at once, like [Locker.LockNames].
func (m *Locker) LockKeys(ctx context.Context, keys []keyhash.Key) (*Lock, error) {
	return m.acquireKeys(ctx, keys, true)
}

// TryLockKeys is [Locker.LockKeys] with a single attempt per key.
func (m *Locker) TryLockKeys(ctx context.Context, keys []keyhash.Key) (*Lock, error) {
	return m.acquireKeys(ctx, keys, false)
}

func (m *Locker) acquireKeys(ctx context.Context, keys []keyhash.Key, wait bool) (*Lock, error) {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.String()
	}
	return m.acquire(ctx, names, wait, true)
}

// mysqlTarget is one name of an acquire: the caller's and the server's.
type mysqlTarget struct {
	name   string // as the caller gave it (for a key, k.String())
	server string // the GET_LOCK name
}

// prepare validates everything an acquire needs, before any I/O.
func (m *Locker) prepare(names []string, keys bool) ([]mysqlTarget, error) {
	if len(names) == 0 {
		return nil, invalid.Errorf("mysqllock: no lock names given")
	}
	ts := make([]mysqlTarget, len(names))
	for i, n := range names {
		sep := mysqlNameSep
		if keys {
			sep = mysqlKeySep
		} else if err := validateName(n); err != nil {
			return nil, err
		}
		ts[i] = mysqlTarget{name: n, server: renderName(m.namespace, sep, n)}
	}
	slices.SortFunc(ts, func(a, b mysqlTarget) int { return strings.Compare(a.server, b.server) })
	for i := 1; i < len(ts); i++ {
		if ts[i].server == ts[i-1].server {
			return nil, invalid.Errorf("mysqllock: %q and %q are the same lock %q; the server would stack it", ts[i-1].name, ts[i].name, ts[i].server)
		}
	}
	return ts, nil
}

// notAcquiredCtx is the error of an acquire that ended by its context.
func notAcquiredCtx(name string, holder *lockkit.Holder, cause error) error {
	return &lockkit.HeldError{Name: name, Holder: holder, Cause: cause}
}

func (m *Locker) acquire(ctx context.Context, names []string, wait, keys bool) (*Lock, error) {
	ts, err := m.prepare(names, keys)
	if err != nil {
		return nil, err
	}
	ctx, op := m.tel.StartAcquire(ctx, lockName(ts), wait)
	lk, err := m.acquirePrepared(ctx, ts, wait)
	if hold := op.End(ctx, err); lk != nil {
		lk.state.Observe(hold)
	}
	return lk, err
}

func (m *Locker) acquirePrepared(ctx context.Context, ts []mysqlTarget, wait bool) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, notAcquiredCtx(ts[0].name, nil, err)
	}
	for attempt := 0; ; attempt++ {
		lk, err := m.attempt(ctx, ts, wait)
		if errors.Is(err, errRetryBadConn) && attempt < mysqlBadConnRetries {
			continue
		}
		if errors.Is(err, errRetryBadConn) {
			err = fmt.Errorf("mysqllock: acquire %q: %w", ts[0].name, driver.ErrBadConn)
		}
		return lk, err
	}
}

// errRetryBadConn says the first statement of an attempt failed with
// driver.ErrBadConn, before anything was sent: the attempt may start over.
var errRetryBadConn = errors.New("mysqllock: stale pooled connection")

// attempt runs one acquire on one pinned connection.
//
// Every name is taken by one statement, GET_LOCK after GET_LOCK in the
// select list, which MySQL and MariaDB evaluate left to right: the sorted
// order holds within the statement, and a waiting statement waits for each
// name while holding those before it, as one statement per name would. The
// statement also reads CONNECTION_ID(). A try is that one statement. A wait
// needs the connection id before it blocks (to KILL the session if the wait
// is abandoned): it comes from the locker's cache of the pool's
// connections, filled by every lock statement; a connection not seen
// before first runs SELECT CONNECTION_ID(), once.
func (m *Locker) attempt(ctx context.Context, ts []mysqlTarget, wait bool) (*Lock, error) {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, notAcquiredCtx(ts[0].name, nil, fmt.Errorf("waiting for a connection: %w", cerr))
		}
		return nil, fmt.Errorf("mysqllock: acquire %q: %w", ts[0].name, err)
	}
	first := true // no statement sent yet
	if !m.clusterChecked.Load() {
		err := m.checkCluster(ctx, conn)
		var ge *galeraError
		switch {
		case errors.As(err, &ge):
			_ = conn.Close()
			return nil, err
		case errors.Is(err, driver.ErrBadConn) && ctx.Err() == nil:
			sqlconn.Discard(conn)
			return nil, errRetryBadConn
		case err != nil:
			sqlconn.Discard(conn)
			if cerr := ctx.Err(); cerr != nil {
				return nil, notAcquiredCtx(ts[0].name, nil, cerr)
			}
			return nil, fmt.Errorf("mysqllock: acquire %q: is the server a Galera node (wsrep_on)?: %w", ts[0].name, err)
		}
		first = false
	}
	dc := mysqlconn.DriverConn(conn)
	connID, known := m.conns.ID(dc)
	if wait && !known {
		// Once per connection of the pool.
		err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&connID)
		if errors.Is(err, driver.ErrBadConn) && ctx.Err() == nil {
			sqlconn.Discard(conn)
			return nil, errRetryBadConn
		}
		if err != nil {
			sqlconn.Discard(conn)
			if cerr := ctx.Err(); cerr != nil {
				return nil, notAcquiredCtx(ts[0].name, nil, cerr)
			}
			return nil, fmt.Errorf("mysqllock: acquire %q: CONNECTION_ID(): %w", ts[0].name, err)
		}
		first = false
		m.conns.SetID(m.db, dc, connID)
	}
	if !wait {
		got, id, err := m.getLocks(ctx, conn, ts, 0)
		if errors.Is(err, driver.ErrBadConn) && ctx.Err() == nil {
			sqlconn.Discard(conn)
			return nil, errRetryBadConn
		}
		if err != nil {
			// Names the statement took before it failed end with the
			// session.
			sqlconn.Discard(conn)
			return nil, m.acquireError(ctx, ts, err)
		}
		connID = id
		m.conns.SetID(m.db, dc, id)
		i, err := firstDenied(ts, got)
		if err != nil {
			sqlconn.Discard(conn)
			return nil, err
		}
		if i >= 0 {
			// Not all free: give back what the statement took, and say
			// who holds the first name it did not get.
			if !m.giveBack(conn, granted(ts, got)) {
				return nil, m.notAcquired(ctx, ts[i], nil, false)
			}
			return nil, m.held(ctx, conn, ts[i], false)
		}
	}
	if wait {
		i, err := m.wait(ctx, conn, connID, ts)
		switch {
		case errors.Is(err, errConnDiscarded):
			return nil, m.acquireError(ctx, ts, err)
		case errors.Is(err, driver.ErrBadConn) && first && ctx.Err() == nil:
			sqlconn.Discard(conn)
			return nil, errRetryBadConn
		case err != nil:
			sqlconn.Discard(conn)
			return nil, m.acquireError(ctx, ts, err)
		case i >= 0:
			// Timed out by ctx's deadline, and given back what it took.
			return nil, m.held(ctx, conn, ts[i], true)
		}
	}
	if cerr := ctx.Err(); cerr != nil {
		// The context ended while the last statement ran, and the driver
		// may have closed the connection under it. Never hand out a lock
		// in doubt: ending the session frees whatever it holds.
		sqlconn.Discard(conn)
		m.kill(connID)
		return nil, notAcquiredCtx(ts[0].name, nil, cerr)
	}
	var token int64
	if m.fenceBump != "" && len(ts) == 1 {
		if token, err = m.bump(ctx, conn, ts[0].server); err != nil {
			// The session still holds the name: end it.
			sqlconn.Discard(conn)
			m.kill(connID)
			if cerr := ctx.Err(); cerr != nil {
				return nil, notAcquiredCtx(ts[0].name, nil, cerr)
			}
			return nil, fmt.Errorf("mysqllock: acquire %q: Config.Fencing: %w", ts[0].name, err)
		}
	}
	return m.newLock(conn, connID, ts, token), nil
}

// bump draws the next fencing token of the GET_LOCK name server on conn,
// which holds it: one autocommitted statement whose new counter the
// server returns in its OK packet (LAST_INSERT_ID(expr) sets the insert
// id), so no SELECT follows. A missing table is created, once, and the
// bump retried. The bump is a cached statement (see queryRow).
func (m *Locker) bump(ctx context.Context, conn *sql.Conn, server string) (int64, error) {
	for created := false; ; created = true {
		res, err := m.conns.Exec(ctx, conn, m.fenceBump, []any{server})
		var me *mysql.MySQLError
		if !created && errors.As(err, &me) && me.Number == 1146 { // ER_NO_SUCH_TABLE
			if _, cerr := conn.ExecContext(ctx, m.fenceCreate); cerr != nil {
				return 0, fmt.Errorf("create the counters' table (it needs the CREATE privilege; or create it beforehand, %s, and grant INSERT, UPDATE and SELECT on it): %w", m.fenceCreate, cerr)
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("bump the counter (it needs INSERT and UPDATE on the counters' table): %w", err)
		}
		n, err := res.LastInsertId()
		if err != nil {
			return 0, err
		}
		if n <= 0 {
			return 0, fmt.Errorf("the counter's bump returned %d", n)
		}
		return n, nil
	}
}

// quoteTable validates a Config.FencingTable and quotes it.
func quoteTable(t string) (string, error) {
	parts := strings.Split(t, ".")
	if len(parts) > 2 {
		return "", invalid.Errorf("mysqllock: Config: FencingTable %q: want table or database.table", t)
	}
	for i, p := range parts {
		ok := p != "" && len(p) <= 64
		for _, c := range p {
			ok = ok && (c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
		}
		if !ok {
			return "", invalid.Errorf("mysqllock: Config: FencingTable %q: %q is not a plain identifier (letters, digits, _)", t, p)
		}
		parts[i] = "`" + p + "`"
	}
	return strings.Join(parts, "."), nil
}

// held is the error of an attempt that found t held elsewhere and holds
// nothing: it asks who holds t and returns conn to the pool (or discards
// it if the question failed).
func (m *Locker) held(ctx context.Context, conn *sql.Conn, t mysqlTarget, wait bool) error {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.probeTimeout)
	holder, herr := m.holderOf(hctx, conn, t.server)
	cancel()
	if herr != nil {
		sqlconn.Discard(conn)
	} else {
		_ = conn.Close()
	}
	return m.notAcquired(ctx, t, holder, wait)
}

// notAcquired is the error of an attempt that found t held elsewhere.
func (m *Locker) notAcquired(ctx context.Context, t mysqlTarget, holder *lockkit.Holder, wait bool) error {
	if !wait {
		return &lockkit.HeldError{Name: t.name, Holder: holder}
	}
	// A wait answers 0 only once ctx's deadline has passed; the server's
	// clock may see it a moment before ctx does.
	return notAcquiredCtx(t.name, holder, cmp.Or(ctx.Err(), context.DeadlineExceeded))
}

// getLockQuery returns the statement that takes n names and reads the
// connection id. A try (wait false) passes 0 as every timeout. A wait
// passes the first name's timeout in seconds, and every later name's as
// the same timeout in microseconds less the time the statement has waited
// so far (by the server's clock: NOW(6) is the statement's start,
// SYSDATE(6) the moment the call is evaluated), never below 0, so that
// the statement as a whole ends at the caller's deadline.
func getLockQuery(n int, wait bool) string {
	switch {
	case n == 1 && !wait:
		return "SELECT GET_LOCK(?, 0), CONNECTION_ID()"
	case n == 1:
		return "SELECT GET_LOCK(?, ?), CONNECTION_ID()"
	}
	var q strings.Builder
	q.WriteString("SELECT ")
	for i := range n {
		switch {
		case !wait:
			q.WriteString("GET_LOCK(?, 0), ")
		case i == 0:
			q.WriteString("GET_LOCK(?, ?), ")
		default:
			q.WriteString("GET_LOCK(?, GREATEST(0, ? - TIMESTAMPDIFF(MICROSECOND, NOW(6), SYSDATE(6))) / 1e6), ")
		}
	}
	q.WriteString("CONNECTION_ID()")
	return q.String()
}

// getLocks runs one GET_LOCK statement over ts (see getLockQuery) on conn
// under qctx; timeout 0 is a try. It returns each name's answer and the
// connection id. The statement on one name is a cached one (see queryRow).
func (m *Locker) getLocks(qctx context.Context, conn *sql.Conn, ts []mysqlTarget, timeout time.Duration) ([]sql.NullInt64, int64, error) {
	wait := timeout > 0
	args := make([]any, 0, 2*len(ts))
	for i, t := range ts {
		args = append(args, t.server)
		switch {
		case !wait:
		case i == 0:
			args = append(args, mysqlconn.Seconds(timeout))
		default:
			args = append(args, int64((timeout+time.Microsecond-1)/time.Microsecond))
		}
	}
	got := make([]sql.NullInt64, len(ts))
	dest := make([]any, len(ts)+1)
	for i := range got {
		dest[i] = &got[i]
	}
	var id int64
	dest[len(ts)] = &id
	var err error
	if q := getLockQuery(len(ts), wait); len(ts) == 1 {
		err = m.conns.QueryRow(qctx, conn, q, args, dest...)
	} else {
		err = conn.QueryRowContext(qctx, q, args...).Scan(dest...)
	}
	if err != nil {
		return nil, 0, err
	}
	return got, id, nil
}

// firstDenied returns the index of the first name a GET_LOCK statement did
// not grant (0), or -1 when it granted all. An answer that is neither 1 nor
// 0 (NULL: an error, or the session's query was killed) is an error, after
// which the connection must be discarded.
func firstDenied(ts []mysqlTarget, got []sql.NullInt64) (int, error) {
	denied := -1
	for i, g := range got {
		switch {
		case !g.Valid:
			return -1, fmt.Errorf("mysqllock: GET_LOCK(%q) returned NULL (an error, or the session's query was killed)", ts[i].server)
		case g.Int64 == 0:
			if denied < 0 {
				denied = i
			}
		case g.Int64 != 1:
			return -1, fmt.Errorf("mysqllock: GET_LOCK(%q) returned %d, want 1 or 0", ts[i].server, g.Int64)
		}
	}
	return denied, nil
}

// granted returns the targets a GET_LOCK statement granted.
func granted(ts []mysqlTarget, got []sql.NullInt64) []mysqlTarget {
	var out []mysqlTarget
	for i, g := range got {
		if g.Valid && g.Int64 == 1 {
			out = append(out, ts[i])
		}
	}
	return out
}

// errConnDiscarded marks an error after which the connection was
// discarded already (and, for an interrupted wait, its session killed).
var errConnDiscarded = errors.New("connection discarded")

// wait blocks in one GET_LOCK statement over ts until every name is
// granted or ctx ends. It returns -1 when all were granted; the index of
// the first name not granted when ctx's deadline passed (the names the
// statement took were given back and the connection is clean); or an
// error. After errConnDiscarded the connection was discarded and the
// session killed; after another error the caller must discard the
// connection (a deadlock error, 3058 or 1213, leaves the names taken
// before it held, and closing the session ends them).
func (m *Locker) wait(ctx context.Context, conn *sql.Conn, connID int64, ts []mysqlTarget) (int, error) {
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
				return 0, nil
			}
			if retry {
				// The server answered 0 before the deadline: it rounds
				// timeouts to whole seconds (MySQL). Wait a whole second
				// rather than spin; mysqlWaitGrace covers the overshoot.
				timeout = max(timeout, time.Second)
			}
			qctx, cancel = context.WithDeadline(context.WithoutCancel(ctx), deadline.Add(mysqlWaitGrace))
		} else {
			// Without a deadline ctx ends only by cancellation, which
			// must interrupt the wait: ctx itself is the statement's
			// context. (One that can never end, context.Background, also
			// spares database/sql and the driver their per-query
			// cancellation watchers.) No derived context, no AfterFunc:
			// they cost an uncontended wait 6 allocations, and every
			// waiter a registration with ctx, shared by them all in the
			// bench harness.
			qctx, cancel = ctx, func() {}
		}
		// The driver closes the connection when qctx ends: when ctx is
		// cancelled, or mysqlWaitGrace after ctx's deadline. At the
		// deadline itself the server's own timeout answers first and the
		// connection stays clean.
		stop := func() bool { return false }
		if hasDeadline {
			stop = context.AfterFunc(ctx, func() {
				if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
					cancel()
				}
			})
		}
		got, id, err := m.getLocks(qctx, conn, ts, timeout)
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
			return -1, fmt.Errorf("wait interrupted (%w): %w", errConnDiscarded, cmp.Or(err, ctx.Err(), context.Canceled))
		}
		if err != nil {
			return -1, err
		}
		if id != connID {
			// Never expected: the cache gave another session's id. The
			// caller discards the connection, which ends the session.
			return -1, fmt.Errorf("CONNECTION_ID() = %d, expected %d", id, connID)
		}
		i, err := firstDenied(ts, got)
		if err != nil || i < 0 {
			return -1, err
		}
		if !m.giveBack(conn, granted(ts, got)) {
			return -1, fmt.Errorf("giving back the names a timed-out wait took was not confirmed (%w)", errConnDiscarded)
		}
		if ctx.Err() == nil && (!hasDeadline || time.Until(deadline) > 0) {
			continue
		}
		return i, nil
	}
}

// kill ends the server session connID, from another connection of the
// pool, and waits (within mysqlKillTimeout) until the session has left the
// processlist: KILL only flags a session, which then ends on its own, and
// until it has, a lock released elsewhere could still be granted to it. A
// session that has ended already is not an error.
func (m *Locker) kill(connID int64) {
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

// acquireError maps an error of a GET_LOCK statement over ts.
func (m *Locker) acquireError(ctx context.Context, ts []mysqlTarget, err error) error {
	what := fmt.Sprintf("GET_LOCK(%q)", ts[0].server)
	if len(ts) > 1 {
		what = fmt.Sprintf("GET_LOCK of %d names (%q ... %q)", len(ts), ts[0].server, ts[len(ts)-1].server)
	}
	if gerr := galeraRefusal(err); gerr != nil {
		return gerr
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == mysqlErUserLockDeadlock || me.Number == mysqlErLockDeadlock) {
		return fmt.Errorf("mysqllock: %s: %w: %w", what, lockkit.ErrDeadlock, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return notAcquiredCtx(ts[0].name, nil, cerr)
	}
	return fmt.Errorf("mysqllock: %s: %w", what, err)
}

// giveBack releases the names a failed acquire took, in one statement, and
// reports whether every release was confirmed. When one is not (an error,
// or an answer other than 1) it discards conn, which ends the session and
// whatever it holds, and reports false.
func (m *Locker) giveBack(conn *sql.Conn, taken []mysqlTarget) bool {
	if len(taken) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.releaseTimeout)
	defer cancel()
	if err := m.releaseAll(ctx, conn, taken); err != nil {
		sqlconn.Discard(conn)
		return false
	}
	return true
}

// releaseAll runs RELEASE_LOCK for every target in one statement and
// requires 1 from each. The statement on one name is a cached one.
func (m *Locker) releaseAll(ctx context.Context, conn *sql.Conn, ts []mysqlTarget) error {
	if len(ts) == 1 {
		var got sql.NullInt64
		if err := m.conns.QueryRow(ctx, conn, "SELECT RELEASE_LOCK(?)", []any{ts[0].server}, &got); err != nil {
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
func (m *Locker) holderOf(ctx context.Context, conn *sql.Conn, server string) (*lockkit.Holder, error) {
	var (
		id          sql.NullInt64
		user, host  sql.NullString
		sinceSecond sql.NullInt64
	)
	if err := m.conns.QueryRow(ctx, conn, mysqlHolderSQL, []any{server}, &id, &user, &host, &sinceSecond); err != nil {
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
