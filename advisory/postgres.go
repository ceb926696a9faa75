package advisory

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/lockstate"
	"github.com/lockkit/lockkit/internal/telemetry"
	"github.com/lockkit/lockkit/keyhash"
)

// DefaultReleaseTimeout bounds a release's unlock statement when
// Config.ReleaseTimeout is zero.
const DefaultReleaseTimeout = 5 * time.Second

// holderTimeout bounds the pg_locks query behind a conflict error's Holder.
const holderTimeout = 2 * time.Second

// Config configures a [Locker] locker. A nil *Config
// means the defaults.
type Config struct {
	// Namespace is mixed into the key of every lock name
	// ([keyhash.NamespacedName]), so that applications sharing a database
	// keep their names apart. Empty means no namespace: the key of a name
	// is then [keyhash.Name]. It does not apply to LockKey and
	// LockKeys, which take keys as they are.
	Namespace string

	// ReleaseTimeout bounds the unlock statement of a release. The unlock
	// runs on the caller's context stripped of its cancellation
	// (context.WithoutCancel) and bounded by this timeout, so a cancelled
	// caller still gives the lock back; when it expires the session is
	// closed, which releases the lock too. Zero means
	// DefaultReleaseTimeout.
	ReleaseTimeout time.Duration

	// Telemetry says where the Locker's metrics, spans and logs go; nil
	// means OpenTelemetry's global providers and no logs. See
	// [lockkit.Telemetry].
	Telemetry *lockkit.Telemetry
}

// Locker takes PostgreSQL advisory locks in session scope: each held
// [Lock] pins one connection (one server session) of the pool until it is
// released. It implements [lockkit.Locker] for named locks, and adds
// shared locks, raw keys and several keys at once.
//
// A Locker is safe for concurrent use. It does not own the pool: closing
// the pool is the caller's business, after every lock was released.
type Locker struct {
	src            pgSource
	ns             string
	releaseTimeout time.Duration
	starter        watchStarter
	tel            *telemetry.Recorder
}

var _ lockkit.Locker = (*Locker)(nil)

// New returns a locker over db, a database/sql pool that uses pgx's
// stdlib driver (sql.Open("pgx", dsn), or stdlib.OpenDB). A nil db, another
// driver, or an invalid config give an error matching lockkit.ErrInvalid.
func New(db *sql.DB, cfg *Config) (*Locker, error) {
	if db == nil {
		return nil, invalid.Errorf("advisory: New: nil *sql.DB")
	}
	if _, ok := db.Driver().(*stdlib.Driver); !ok {
		return nil, invalid.Errorf("advisory: New: driver %T is not pgx's database/sql driver (github.com/jackc/pgx/v5/stdlib)", db.Driver())
	}
	return newLocker(sqlSource{db}, cfg)
}

// NewPool returns a locker over a native pgx pool. A nil pool or an
// invalid config give an error matching lockkit.ErrInvalid.
func NewPool(pool *pgxpool.Pool, cfg *Config) (*Locker, error) {
	if pool == nil {
		return nil, invalid.Errorf("advisory: NewPool: nil *pgxpool.Pool")
	}
	return newLocker(poolSource{pool}, cfg)
}

func newLocker(src pgSource, cfg *Config) (*Locker, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := keyhash.ValidateNamespace(cfg.Namespace); err != nil {
		return nil, err
	}
	if cfg.ReleaseTimeout < 0 {
		return nil, invalid.Errorf("advisory: negative ReleaseTimeout %v", cfg.ReleaseTimeout)
	}
	return &Locker{
		src:            src,
		ns:             cfg.Namespace,
		releaseTimeout: cmp.Or(cfg.ReleaseTimeout, DefaultReleaseTimeout),
		tel:            telemetry.New(cfg.Telemetry, telemetryBackend),
	}, nil
}

// errSessionEnded is the cause of a loss the watcher found.
var errSessionEnded = errors.New("advisory: session ended")

var telemetryBackend = telemetry.Backend{
	Name:     "advisory",
	DBSystem: "postgresql",
	Reason: func(cause error, _ bool) telemetry.Reason {
		if errors.Is(cause, errSessionEnded) {
			return telemetry.SessionEnded
		}
		return telemetry.Other
	},
}

// Key returns the advisory key of a lock name:
// keyhash.NamespacedName(namespace, name). An invalid name gives an error
// matching lockkit.ErrInvalid.
func (p *Locker) Key(name string) (keyhash.Key, error) {
	if err := keyhash.ValidateName(name); err != nil {
		return keyhash.Key{}, err
	}
	return keyhash.NamespacedName(p.ns, name), nil
}

// Acquire waits until the named lock is held in exclusive mode, or ctx
// ends; it is [Locker.Lock] with nil options, for the [lockkit.Locker]
// interface.
func (p *Locker) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	l, err := p.Lock(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// TryAcquire makes one attempt at the named lock in exclusive mode; it is
// [Locker.TryLock] with nil options, for the [lockkit.Locker] interface.
func (p *Locker) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	l, err := p.TryLock(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Lock waits until the named lock is held, or ctx ends. The wait happens
// in the server (pg_advisory_lock); when ctx ends the server is told to
// stop waiting (a cancel request) and the session is closed, so a grant
// that raced with the cancellation is dropped with it, and the error is a
// *lockkit.HeldError matching lockkit.ErrNotAcquired and ctx.Err(). opts
// may be nil: an exclusive lock.
func (p *Locker) Lock(ctx context.Context, name string, opts *Options) (*Lock, error) {
	return p.lockName(ctx, name, opts, false)
}

// TryLock makes one attempt (pg_try_advisory_lock) at the named lock.
// When it is held elsewhere the error is a *lockkit.HeldError naming the
// holder. opts may be nil: an exclusive lock.
func (p *Locker) TryLock(ctx context.Context, name string, opts *Options) (*Lock, error) {
	return p.lockName(ctx, name, opts, true)
}

func (p *Locker) lockName(ctx context.Context, name string, opts *Options, try bool) (*Lock, error) {
	k, err := p.Key(name)
	if err != nil {
		return nil, err
	}
	m, err := opts.check()
	if err != nil {
		return nil, err
	}
	return p.acquire(ctx, name, []keyhash.Key{k}, m, try)
}

// LockKey waits until key is held, or ctx ends, like [Locker.Lock]. The
// lock's name is the key's String().
func (p *Locker) LockKey(ctx context.Context, key keyhash.Key, opts *Options) (*Lock, error) {
	return p.lockKey(ctx, key, opts, false)
}

// TryLockKey makes one attempt at key, like [Locker.TryLock].
func (p *Locker) TryLockKey(ctx context.Context, key keyhash.Key, opts *Options) (*Lock, error) {
	return p.lockKey(ctx, key, opts, true)
}

func (p *Locker) lockKey(ctx context.Context, key keyhash.Key, opts *Options, try bool) (*Lock, error) {
	m, err := opts.check()
	if err != nil {
		return nil, err
	}
	return p.acquire(ctx, key.String(), []keyhash.Key{key}, m, try)
}

// LockKeys waits until every key is held by one session, or ctx ends.
// The keys are sorted (keyhash.Compare) and taken in that order by one
// statement in one round trip, so two callers locking overlapping sets
// cannot deadlock each other. A key listed twice is taken once. The lock
// is released as a whole. Its name is the sorted keys joined by "+".
func (p *Locker) LockKeys(ctx context.Context, keys []keyhash.Key, opts *Options) (*Lock, error) {
	sorted, mode, err := checkKeys(keys, opts)
	if err != nil {
		return nil, err
	}
	return p.acquire(ctx, keysName(sorted), sorted, mode, false)
}

// TryLockKeys makes one attempt at every key, all or nothing, in one
// statement and one round trip: if any key is held elsewhere, the keys that
// were granted are unlocked by the same statement and the error is a
// *lockkit.HeldError naming the holder of the first key that was not
// granted.
func (p *Locker) TryLockKeys(ctx context.Context, keys []keyhash.Key, opts *Options) (*Lock, error) {
	sorted, mode, err := checkKeys(keys, opts)
	if err != nil {
		return nil, err
	}
	return p.acquire(ctx, keysName(sorted), sorted, mode, true)
}

// checkKeys validates the arguments of a key acquire, before any I/O.
func checkKeys(keys []keyhash.Key, opts *Options) ([]keyhash.Key, Mode, error) {
	if len(keys) == 0 {
		return nil, 0, invalid.Errorf("advisory: no keys to lock")
	}
	m, err := opts.check()
	if err != nil {
		return nil, 0, err
	}
	return sortKeys(keys), m, nil
}

// Lock is one held PostgreSQL session-level advisory lock on one or more
// keys. It pins its session (one pool connection) until released; two Lock
// values never share a session. Its methods are safe for concurrent use.
//
// While it is held a watcher blocks in a read on the session; the server
// pushes the end of the session (pg_terminate_backend, a shutdown) as an
// error and closes the socket, and the lock is marked lost at once: Done
// closes, Err wraps lockkit.ErrLost with the cause, and the connection is
// destroyed. Release is still required, to free the handle.
type Lock struct {
	state *lockstate.Handle

	keys    []keyhash.Key
	mode    Mode
	pid     int
	pc      pgPinned
	w       watcher
	timeout time.Duration

	// The release's statement and its outcome; Release is serialised by
	// the Handle.
	relConn        *pgx.Conn
	relOK          bool
	relErr         error
	relInterrupted bool
}

var _ lockkit.Lock = (*Lock)(nil)

// Name returns the name the lock was acquired under; for keys, their
// String form.
func (l *Lock) Name() string { return l.state.Name() }

// Token returns 0: advisory locks have no fencing token.
func (l *Lock) Token() int64 { return 0 }

// Done is closed when the lock is released or lost.
func (l *Lock) Done() <-chan struct{} { return l.state.Done() }

// Err is nil while the lock is held; then lockkit.ErrReleased, or an error
// wrapping lockkit.ErrLost with the cause.
func (l *Lock) Err() error { return l.state.Err() }

// Release unlocks every key of the lock on its session and checks that the
// server confirmed each; see [lockkit.Lock.Release]. A release the server
// did not confirm closes the session and reports the lock lost.
func (l *Lock) Release(ctx context.Context) error { return l.state.Release(ctx) }

// Keys returns the lock's keys, sorted.
func (l *Lock) Keys() []keyhash.Key { return append([]keyhash.Key(nil), l.keys...) }

// Mode returns the lock's mode.
func (l *Lock) Mode() Mode { return l.mode }

// PID returns the process id of the server session (backend) that holds the
// lock, as pg_locks and pg_stat_activity show it.
func (l *Lock) PID() int { return l.pid }

// acquire runs one lock statement on a freshly pinned session.
func (p *Locker) acquire(ctx context.Context, name string, keys []keyhash.Key, mode Mode, try bool) (*Lock, error) {
	ctx, op := p.tel.StartAcquire(ctx, name, !try)
	l, err := p.acquireOn(ctx, name, keys, mode, try)
	if hold := op.End(ctx, err); l != nil {
		l.state.Observe(hold)
	}
	return l, err
}

func (p *Locker) acquireOn(ctx context.Context, name string, keys []keyhash.Key, mode Mode, try bool) (*Lock, error) {
	if ctx.Err() != nil {
		return nil, notStarted(ctx, name)
	}
	pc, err := p.src.pin(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, noConnection(ctx, name)
		}
		return nil, fmt.Errorf("advisory: lock %q: pin a connection: %w", name, err)
	}
	a := &acquireOp{ctx: ctx, keys: keys, mode: mode, try: try, holderOK: true}
	err = pc.with(a.onConn)
	switch {
	case err != nil:
		pc.discard()
		if errors.Is(err, errNotPgx) {
			return nil, invalid.Errorf("%v", err)
		}
		return nil, fmt.Errorf("advisory: lock %q: %w", name, err)
	case a.interrupted || a.stErr != nil:
		// The outcome is unknown, or a statement failed part-way (a
		// multi-key wait keeps the keys it got before the error): close
		// the session, which ends whatever it may hold.
		pc.discard()
		return nil, classify(ctx, name, a.holder, a.stErr, a.interrupted)
	case !a.res.granted:
		if a.res.unlockFailed || !a.holderOK {
			pc.discard()
		} else {
			pc.release()
		}
		return nil, &lockkit.HeldError{Name: name, Holder: a.holder}
	}
	l := &Lock{keys: keys, mode: mode, pid: a.pid, pc: pc, timeout: p.releaseTimeout}
	l.state = lockstate.New(name, 0, l.unlock)
	l.w.init(pc, a.nc, l.onLoss)
	p.starter.add(&l.w, watchDelay)
	return l, nil
}

// onLoss is called by the watcher when the session died.
func (l *Lock) onLoss(cause error) {
	l.state.MarkLost(cause)
	l.pc.discard()
}

// acquireOp is one lock statement and its outcome, kept in one place so
// that the hot path allocates little.
type acquireOp struct {
	ctx  context.Context
	keys []keyhash.Key
	mode Mode
	try  bool

	c           *pgx.Conn
	pid         int
	nc          net.Conn
	res         lockResult
	stErr       error
	interrupted bool
	holder      *lockkit.Holder
	holderOK    bool
}

func (a *acquireOp) onConn(c *pgx.Conn) error {
	a.c, a.pid, a.nc = c, int(c.PgConn().PID()), c.PgConn().Conn()
	a.stErr, a.interrupted = interruptible(a.ctx, 0, c, a.stmt)
	switch {
	case a.stErr == nil && !a.interrupted && !a.res.granted && !a.res.unlockFailed:
		a.holder, a.holderOK = findHolder(c, []keyhash.Key{a.res.denied})
	case !a.interrupted && pgCode(a.stErr) == codeLockNotAvailable:
		a.holder, _ = findHolder(c, a.keys)
	}
	return nil
}

func (a *acquireOp) stmt() (err error) {
	a.res, err = runLock(a.c, a.mode, a.keys, a.try)
	return err
}

// lockResult is the outcome of a lock statement that did not fail.
type lockResult struct {
	granted      bool
	denied       keyhash.Key // a try: the first key not granted
	unlockFailed bool        // a try: a granted key's unlock returned false
}

// runLock runs the lock statement for keys on c.
func runLock(c *pgx.Conn, mode Mode, keys []keyhash.Key, try bool) (lockResult, error) {
	bg := context.Background()
	switch {
	case !try && len(keys) == 1:
		st := single(fnLock, mode, keys[0])
		_, err := c.Exec(bg, st.sql, st.args...)
		return lockResult{granted: err == nil}, err
	case !try:
		st := multi(fnLock, mode, keys)
		rows, err := c.Query(bg, st.sql, st.args...)
		if err != nil {
			return lockResult{}, err
		}
		rows.Close()
		return lockResult{granted: rows.Err() == nil}, rows.Err()
	case len(keys) == 1:
		st := single(fnTry, mode, keys[0])
		var ok bool
		if err := c.QueryRow(bg, st.sql, st.args...).Scan(&ok); err != nil {
			return lockResult{}, err
		}
		return lockResult{granted: ok, denied: keys[0]}, nil
	}
	st := tryAllOrNothing(mode, keys)
	rows, err := c.Query(bg, st.sql, st.args...)
	if err != nil {
		return lockResult{}, err
	}
	res := lockResult{granted: true}
	first := true
	for rows.Next() {
		var (
			pair     bool
			k        int64
			a, b     int32
			got      bool
			unlocked *bool
		)
		if err := rows.Scan(&pair, &k, &a, &b, &got, &unlocked); err != nil {
			rows.Close()
			return lockResult{}, err
		}
		key := keyhash.Int64(k)
		if pair {
			key = keyhash.Pair(a, b)
		}
		if !got {
			res.granted = false
			if first || keyhash.Compare(key, res.denied) < 0 {
				res.denied, first = key, false
			}
		}
		if got && unlocked != nil && !*unlocked {
			res.unlockFailed = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return lockResult{}, err
	}
	return res, nil
}

// runUnlock unlocks keys on c and reports whether the server confirmed
// every unlock.
func runUnlock(c *pgx.Conn, mode Mode, keys []keyhash.Key) (bool, error) {
	bg := context.Background()
	if len(keys) == 1 {
		st := single(fnUnlock, mode, keys[0])
		var ok bool
		err := c.QueryRow(bg, st.sql, st.args...).Scan(&ok)
		return ok, err
	}
	st := multi(fnUnlock, mode, keys)
	rows, err := c.Query(bg, st.sql, st.args...)
	if err != nil {
		return false, err
	}
	all, n := true, 0
	for rows.Next() {
		var (
			pair bool
			k    int64
			a, b int32
			ok   bool
		)
		if err := rows.Scan(&pair, &k, &a, &b, &ok); err != nil {
			rows.Close()
			return false, err
		}
		all = all && ok
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	return all && n == len(keys), nil
}

// findHolder asks pg_locks and pg_stat_activity who holds the first of keys
// that another session holds, within holderTimeout (also when the caller's
// context has ended: the answer is for the caller's error). ok is false when
// the query failed, which leaves the session's state unknown.
func findHolder(c *pgx.Conn, keys []keyhash.Key) (h *lockkit.Holder, ok bool) {
	cls := make([]int64, len(keys))
	objs := make([]int64, len(keys))
	subs := make([]int16, len(keys))
	for i, k := range keys {
		c, o, s := lockTag(k)
		cls[i], objs[i], subs[i] = int64(c), int64(o), s
	}
	var (
		found bool
		hold  lockkit.Holder
		since *time.Time
		pid   int32
	)
	err, interrupted := interruptible(context.Background(), holderTimeout, c, func() error {
		err := c.QueryRow(context.Background(), holderSQL, cls, objs, subs).Scan(&pid, &hold.Owner, &hold.App, &hold.Host, &since)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // released in the meantime
		}
		found = err == nil
		return err
	})
	if err != nil || interrupted {
		return nil, false
	}
	if !found {
		return nil, true
	}
	hold.PID = int(pid)
	if since != nil {
		hold.Since = *since
	}
	return &hold, true
}

// unlock is the lock's lockstate.UnlockFunc. The unlock statement runs
// detached from ctx's cancellation (like context.WithoutCancel) and bounded
// by the release timeout, so that a cancelled caller still gives the lock
// back; when the bound expires the session is closed.
func (l *Lock) unlock(_ context.Context, lost bool) error {
	if lossErr := l.w.stop(); lossErr != nil {
		return lossErr // the watcher already discarded the session
	}
	if lost {
		// Marked lost from outside (state.MarkLost): the session's state
		// is not known to be clean.
		l.pc.discard()
		return nil
	}
	err := l.pc.with(l.unlockOnConn)
	err = cmp.Or(err, l.relErr)
	switch {
	case l.relInterrupted:
		err = fmt.Errorf("advisory: unlock %q: not confirmed within %v; session closed", l.Name(), l.timeout)
	case err != nil:
		err = fmt.Errorf("advisory: unlock %q: %w; session closed", l.Name(), err)
	case !l.relOK:
		err = fmt.Errorf("advisory: unlock %q: the server reported the lock was not held by this session; session closed", l.Name())
	default:
		l.pc.release()
		return nil
	}
	l.pc.discard()
	return err
}

func (l *Lock) unlockOnConn(c *pgx.Conn) error {
	l.relConn = c
	l.relErr, l.relInterrupted = interruptible(context.Background(), l.timeout, c, l.unlockStmt)
	return nil
}

func (l *Lock) unlockStmt() (err error) {
	l.relOK, err = runUnlock(l.relConn, l.mode, l.keys)
	return err
}
