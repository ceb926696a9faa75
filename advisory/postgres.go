package advisory

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/lockstate"
	"github.com/lockkit/lockkit/internal/pginterrupt"
	"github.com/lockkit/lockkit/internal/starter"
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

	// Fencing gives every exclusive session lock a fencing token
	// ([Lock.Token]): the next value of the sequence FencingSequence,
	// drawn by the lock statement itself when it grants the lock (no
	// extra round trip). Tokens strictly increase across every name of
	// the database. Shared locks get no token (0). See the package
	// documentation, Fencing tokens.
	Fencing bool

	// FencingSequence is the sequence Fencing draws from, "name" or
	// "schema.name" (unquoted identifiers: letters, digits, "_"). Empty
	// means [DefaultFencingSequence]. The first fenced lock of a Locker
	// looks it up, as regclass input resolves it (through search_path
	// unless schema-qualified), and creates it (CREATE SEQUENCE IF NOT
	// EXISTS) when there is none.
	FencingSequence string
}

// DefaultFencingSequence is the sequence of Config.Fencing when
// Config.FencingSequence is empty.
const DefaultFencingSequence = "lockkit_fence"

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
	unlockBounds   pginterrupt.Bounds // the release timeout of the unlocks
	watchStarts    starter.Starter    // begins the locks' watchers (watcher.Start)
	tel            *telemetry.Recorder

	fencing  bool
	fenceSeq string       // Config.FencingSequence, validated
	fenceMu  sync.Mutex   // serialises the sequence's lookup
	fenceOID atomic.Int64 // the sequence's oid, once looked up

	idPrefix string        // of the holder ids (the session marker), unique to this Locker
	seq      atomic.Uint64 // the last holder id's sequence number
	verified atomic.Bool   // a granted lock was seen in pg_locks (see verifySQL)
	checks   atomic.Int64  // how many grants were checked in pg_locks, for tests
	// refused, once set, refuses every session lock: the evidence that
	// the server sessions are shared, or that the server locks nothing.
	refused atomic.Pointer[refusedError]
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
	seq := cmp.Or(cfg.FencingSequence, DefaultFencingSequence)
	if err := validSequence(seq); err != nil {
		return nil, err
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	timeout := cmp.Or(cfg.ReleaseTimeout, DefaultReleaseTimeout)
	return &Locker{
		fencing:        cfg.Fencing,
		fenceSeq:       seq,
		src:            src,
		ns:             cfg.Namespace,
		releaseTimeout: timeout,
		unlockBounds:   pginterrupt.Bounds{Timeout: timeout},
		tel:            telemetry.New(cfg.Telemetry, telemetryBackend),
		idPrefix:       "lockkit:" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(r[:]) + ":",
	}, nil
}

// validSequence checks a Config.FencingSequence: one or two unquoted
// identifiers joined by ".".
func validSequence(s string) error {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return invalid.Errorf("advisory: FencingSequence %q: want name or schema.name", s)
	}
	for _, p := range parts {
		ok := p != "" && len(p) <= 63 && !(p[0] >= '0' && p[0] <= '9')
		for _, c := range p {
			ok = ok && (c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
		}
		if !ok {
			return invalid.Errorf("advisory: FencingSequence %q: %q is not an unquoted identifier (letters, digits, _)", s, p)
		}
	}
	return nil
}

// fenceSeqOID returns the oid of the fencing sequence, looked up on c (and
// created there when missing) at the Locker's first fenced lock.
func (p *Locker) fenceSeqOID(ctx context.Context, c *pgx.Conn) (int64, error) {
	if oid := p.fenceOID.Load(); oid != 0 {
		return oid, nil
	}
	p.fenceMu.Lock()
	defer p.fenceMu.Unlock()
	if oid := p.fenceOID.Load(); oid != 0 {
		return oid, nil
	}
	ident := pgx.Identifier(strings.Split(p.fenceSeq, ".")).Sanitize()
	var (
		oid  *int64
		kind *string
	)
	look := func() error { return c.QueryRow(ctx, fenceSeqSQL, ident).Scan(&oid, &kind) }
	err := look()
	if errors.Is(err, pgx.ErrNoRows) {
		if err = createIfMissing(ctx, c, "CREATE SEQUENCE IF NOT EXISTS "+ident); err != nil {
			return 0, fmt.Errorf("Config.Fencing: create the fencing sequence %s (it needs CREATE on the schema; or create it beforehand, CREATE SEQUENCE %s, and grant USAGE on it to the locking role): %w", ident, ident, err)
		}
		err = look()
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("Config.Fencing: look up the fencing sequence %s: %w", ident, err)
	case oid == nil || kind == nil || *kind != "S":
		return 0, fmt.Errorf("Config.Fencing: %s is not a sequence", ident)
	}
	p.fenceOID.Store(*oid)
	return *oid, nil
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

// newID returns a holder id for the session marker: unique to this Locker
// and this acquire, and showing the client process's pid.
func (p *Locker) newID() string {
	return p.idPrefix + strconv.FormatUint(p.seq.Add(1), 10)
}

// refuse makes r the reason every later session lock of p is refused,
// unless another reason came first.
func (p *Locker) refuse(r *refusedError) {
	p.refused.CompareAndSwap(nil, r)
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

	p       *Locker
	keys    []keyhash.Key
	mode    Mode
	pid     int32    // the server session's, as pg_backend_pid() gave it
	id      string   // the holder id in the session's marker
	form    stmtForm // of the lock statement: formLean set no marker
	pc      pgPinned
	w       watcher
	timeout time.Duration

	// The release's statement and its outcome; Release is serialised by
	// the Handle.
	relConn        *pgx.Conn
	rel            unlockResult
	relErr         error
	relInterrupted bool
	relIt          pginterrupt.Interrupter // the unlock statement's
}

var _ lockkit.Lock = (*Lock)(nil)

// Name returns the name the lock was acquired under; for keys, their
// String form.
func (l *Lock) Name() string { return l.state.Name() }

// Token returns the lock's fencing token: with Config.Fencing, for an
// exclusive lock, the value the lock statement drew from the fencing
// sequence; otherwise 0.
func (l *Lock) Token() int64 { return l.state.Token() }

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
// lock, as pg_locks and pg_stat_activity show it (pg_backend_pid(), read by
// the lock statement: behind a pooler it differs from the pid the
// connection was given).
func (l *Lock) PID() int { return int(l.pid) }

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
	if r := p.refused.Load(); r != nil {
		return nil, fmt.Errorf("advisory: lock %q: %w", name, r)
	}
	pc, err := p.src.pin(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, noConnection(ctx, name)
		}
		return nil, fmt.Errorf("advisory: lock %q: pin a connection: %w", name, err)
	}
	a := &acquireOp{p: p, ctx: ctx, keys: keys, mode: mode, try: try, holderOK: true}
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
	case a.refusal != nil:
		// Nothing was locked, or the lock is not one (the statement went
		// through a shared session, or to a server that locks nothing):
		// close the connection, which ends whatever its session may hold
		// unless a pooler keeps the session.
		pc.discard()
		if a.refusal.kind == ErrLockNotEnforced || a.res.why != gateOwnKeyHeld {
			p.refuse(a.refusal)
		}
		return nil, fmt.Errorf("advisory: lock %q: %w", name, a.refusal)
	case a.vErr != nil:
		pc.discard()
		return nil, fmt.Errorf("advisory: lock %q: check that the server holds the lock: %w", name, a.vErr)
	case !a.res.granted:
		if a.res.unlockFailed || !a.holderOK {
			pc.discard()
		} else {
			pc.release()
		}
		return nil, &lockkit.HeldError{Name: name, Holder: a.holder}
	}
	if a.verify {
		p.verified.Store(true)
	}
	l := &Lock{p: p, keys: keys, mode: mode, pid: a.res.pid, id: a.id, form: a.form, pc: pc, timeout: p.releaseTimeout}
	l.state = lockstate.New(name, a.res.token, l.unlock)
	l.w.init(pc, a.nc, l.onLoss)
	p.watchStarts.Add(&l.w.at, &l.w, watchDelay)
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
	p      *Locker
	ctx    context.Context
	keys   []keyhash.Key
	mode   Mode
	try    bool
	verify bool   // the grant was checked in pg_locks (the Locker's first)
	fence  int64  // the fencing sequence's oid: draw a token; 0 none
	id     string // the holder id for the session marker, if the statement sets one

	it          pginterrupt.Interrupter // the lock statement's
	c           *pgx.Conn
	nc          net.Conn
	clientPID   uint32   // the pid the connection was given at connect
	kind        connKind // what was known of the connection
	form        stmtForm // of the lock statement
	res         lockResult
	stErr       error
	interrupted bool
	holder      *lockkit.Holder
	holderOK    bool
	refusal     *refusedError // the lock statement or the check refused
	vErr        error         // the check failed
}

func (a *acquireOp) onConn(c *pgx.Conn) error {
	if c.PgConn().ParameterStatus("in_hot_standby") == "on" {
		return &refusedError{kind: ErrStandby, evidence: fmt.Sprintf(
			"the connection reached a server in hot standby (in_hot_standby on; server pid %d), whose advisory locks exclude nobody on the primary", c.PgConn().PID())}
	}
	a.c, a.nc = c, c.PgConn().Conn()
	a.clientPID, a.kind = c.PgConn().PID(), connKindOf(c)
	if a.p.fencing && a.mode == Exclusive {
		var err error
		if a.fence, err = a.p.fenceSeqOID(a.ctx, c); err != nil {
			return err
		}
	}
	a.stErr, a.interrupted = a.it.Run(a.ctx, 0, c, a.stmt)
	ran := a.stErr == nil && !a.interrupted
	if ran {
		noteSession(c, a.res.pid)
	}
	switch {
	case ran && a.form == formLean && uint32(a.res.pid) != a.clientPID:
		// A connection that reached the server session of its own pid
		// before has now reached another: a pooler or proxy that passes
		// the pid through. The lean statement had no session check.
		a.refusal = sharedSession("the connection was given pid %d when it connected and reached that server session before, but this lock statement ran on server session pid %d: its statements run on different server sessions", a.clientPID, a.res.pid)
	case ran && a.res.why != gateOK:
		a.refusal = a.res.refusal(a.clientPID, a.keys)
	case ran && a.form != formLean && a.res.granted && !a.res.marked:
		a.stErr = errors.New("the lock statement granted the lock but did not set the session marker")
	case ran && !a.try && !a.res.granted:
		// pg_advisory_lock returns when it has the lock, or fails.
		a.refusal = &refusedError{kind: ErrLockNotEnforced, evidence: fmt.Sprintf(
			"the server's %s returned NULL on server session pid %d, neither granting the lock nor failing", fnLock.name(a.mode), a.res.pid)}
	case ran && a.res.granted && !a.p.verified.Load():
		// Whether to check is decided at the grant, not when the acquire
		// began: an acquire that waited behind the Locker's first grant
		// finds it checked already, so under contention the check runs
		// once, not once per waiter, each under the lock.
		a.verify = true
		a.p.checks.Add(1)
		a.refusal, a.vErr = verifyHeld(c, a.mode, a.keys, a.res.pid, a.id, a.form == formLean)
	case ran && !a.res.granted && !a.res.unlockFailed:
		a.holder, a.holderOK = findHolder(c, []keyhash.Key{a.res.denied})
	case !a.interrupted && pgCode(a.stErr) == codeLockNotAvailable:
		a.holder, _ = findHolder(c, a.keys)
	}
	return nil
}

func (a *acquireOp) stmt() (err error) {
	f := fnLock
	if a.try {
		f = fnTry
	}
	checks := checksFirst
	switch a.kind {
	case connDirect:
		checks = checksLean
	case connPooled:
		checks = checksMarker
	}
	if checks != checksLean || len(a.keys) > 1 {
		a.id = a.p.newID()
	}
	st := sessionLock(f, a.mode, a.keys, a.id, a.clientPID, checks)
	if a.fence != 0 {
		st = fenced(st, a.fence)
	}
	a.form = st.form
	return runLock(a.c, st, a.keys, &a.res)
}

// connKind is what lockkit knows of a connection's server session, kept in
// the connection's pgconn CustomData under connKindKey.
type connKind int8

const (
	connUnknown connKind = iota // no lock statement ran on it yet
	// connDirect: every lock statement so far ran on the server session
	// whose pid the connection was given at connect, as on a connection
	// straight to PostgreSQL (or through a TCP proxy, or a session-mode
	// pooler that passes the pid through). Its single-key statements are
	// lean: no marker, and the pid checked.
	connDirect
	// connPooled: a lock statement ran on a server session whose pid is
	// not the connection's: a pooler or proxy made the pid up (PgBouncer,
	// Supavisor and others do, in every pool mode). Every statement checks
	// and sets the marker. (The first statement on a connection, made
	// before its kind is known, also looks in pg_locks for keys its server
	// session holds for another client, where the pid is not the
	// connection's.)
	connPooled
)

const connKindKey = "github.com/lockkit/lockkit/advisory.connKind"

func connKindOf(c *pgx.Conn) connKind {
	k, _ := c.PgConn().CustomData()[connKindKey].(connKind)
	return k
}

// noteSession records on c that a statement ran on server session pid.
func noteSession(c *pgx.Conn, pid int32) {
	pg := c.PgConn()
	switch {
	case uint32(pid) != pg.PID():
		pg.CustomData()[connKindKey] = connPooled
	case connKindOf(c) == connUnknown:
		pg.CustomData()[connKindKey] = connDirect
	}
}

// lockResult is the outcome of a lock statement that did not fail.
type lockResult struct {
	prev         string      // the session's marker before the statement
	pid          int32       // the server session's pid
	why          int32       // why nothing was locked (see sessionLock), or gateOK
	granted      bool        // every key was granted
	marked       bool        // the marker was set to the holder id
	denied       keyhash.Key // a try: the first key not granted
	unlockFailed bool        // a try: a granted key's unlock returned false
	token        int64       // the fencing token drawn, if the statement was fenced and granted

	col oneCols // a single-key statement's columns, as scanned
	buf leanBuf // a lean statement's parameters, encoded
}

// oneCols receives the columns of a single-key lock or unlock statement.
// They are scanned into the result that holds them, which lives in the
// operation's heap object (acquireOp, Lock), and as pgtype values rather
// than pointers, so that scanning allocates no variable of its own and
// pgx no pointer-to-pointer plan or value.
type oneCols struct {
	r      pgtype.Bool // the lean form's lock or unlock result
	code   int32       // the marker form's code
	marker pgtype.Text // the marker form's marker
	tok    pgtype.Int8 // a fenced statement's token
}

// refusal explains a lock statement that took no lock for reason r.why;
// clientPID is the pid the connection was given at connect.
func (r *lockResult) refusal(clientPID uint32, keys []keyhash.Key) *refusedError {
	if r.why == gateMarked {
		return sharedSession("server session pid %d already carries a lock of another lockkit handle (holder %s)", r.pid, r.prev)
	}
	return sharedSession("server session pid %d, reached through a pooler or proxy (it gave the connection pid %d), already holds one of the keys %s, and no lockkit handle took it there: another client shares the session, and a lock taken on it would stack on that client's", r.pid, clientPID, keysName(keys))
}

// runLock runs st, a sessionLock statement on keys, on c, and puts its
// outcome in *res (zeroed first).
func runLock(c *pgx.Conn, st sessionStmt, keys []keyhash.Key, res *lockResult) error {
	*res = lockResult{}
	bg := context.Background()
	col := &res.col
	switch st.form {
	case formLean:
		res.denied = keys[0]
		if err := runLean(c, st, &res.buf, col, &res.pid); err != nil {
			return err
		}
		res.granted = col.r.Valid && col.r.Bool
		return res.fenceToken(st.fence, col.tok)
	case formOne:
		res.denied = keys[0]
		dest := []any{&col.code, &col.marker, &res.pid, &col.tok}
		if !st.fence {
			dest = dest[:3]
		}
		if err := c.QueryRow(bg, st.sql, st.args...).Scan(dest...); err != nil {
			return err
		}
		switch col.code {
		case 0:
			res.granted, res.marked = true, true
		case gateMarked, gateOwnKeyHeld:
			res.why = col.code
			res.prev = col.marker.String // "" when NULL
		}
		return res.fenceToken(st.fence, col.tok)
	}
	n := len(keys)
	rows, err := c.Query(context.Background(), st.sql, st.args...)
	if err != nil {
		return err
	}
	res.granted = true
	first, rowsSeen := true, 0
	var tok pgtype.Int8
	for rows.Next() {
		var (
			prev         *string
			pair, marked bool
			k            int64
			a, b         int32
			got, undone  *bool
		)
		dest := []any{&prev, &res.pid, &res.why, &pair, &k, &a, &b, &got, &undone, &marked, &tok}
		if !st.fence {
			dest = dest[:10]
		}
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return err
		}
		rowsSeen++
		if prev != nil {
			res.prev = *prev
		}
		res.marked = marked
		if got == nil {
			res.granted = false // not attempted: why says why
			continue
		}
		key := keyhash.Int64(k)
		if pair {
			key = keyhash.Pair(a, b)
		}
		if !*got {
			res.granted = false
			if first || keyhash.Compare(key, res.denied) < 0 {
				res.denied, first = key, false
			}
		}
		if *got && undone != nil && !*undone {
			res.unlockFailed = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if rowsSeen != n {
		return fmt.Errorf("the lock statement returned %d rows for %d keys", rowsSeen, n)
	}
	return res.fenceToken(st.fence, tok)
}

// fenceToken records tok, the token column of a fenced statement, in r,
// and checks that a granted fenced lock got one.
func (r *lockResult) fenceToken(fence bool, tok pgtype.Int8) error {
	if !fence || !r.granted {
		return nil
	}
	if !tok.Valid || tok.Int64 <= 0 {
		return errors.New("the lock statement granted the lock but drew no fencing token")
	}
	r.token = tok.Int64
	return nil
}

// verifyTimeout bounds the check of verifySQL.
const verifyTimeout = 5 * time.Second

// verifyHeld checks that the session of c really holds keys, granted on
// server session pid with holder id: that the next statement on the
// connection still reaches that session, with the marker, and that
// pg_locks shows the keys held. A lean lock statement set no marker. It
// returns a refusal when one of these fails, or err when the check could
// not be made.
func verifyHeld(c *pgx.Conn, mode Mode, keys []keyhash.Key, pid int32, id string, lean bool) (*refusedError, error) {
	ints, as, bs := splitKeys(keys)
	var (
		vpid    int32
		prev    *string
		version string
		n       int64
	)
	err, interrupted := pginterrupt.Run(context.Background(), verifyTimeout, c, func() error {
		return c.QueryRow(context.Background(), verifySQL, pgLockMode(mode), ints, as, bs).Scan(&vpid, &prev, &version, &n)
	})
	switch {
	case interrupted:
		return nil, fmt.Errorf("no answer within %v", verifyTimeout)
	case err != nil:
		return nil, err
	case vpid != pid:
		return sharedSession("the lock was granted on server session pid %d, and the next statement on the same connection ran on pid %d: the connection is handed to another server session between statements", pid, vpid), nil
	case !lean && (prev == nil || *prev != id):
		return sharedSession("right after the lock statement, its server session pid %d no longer carries the lock's marker: the session was reset (DISCARD ALL, which also drops advisory locks) or is shared", pid), nil
	case n < int64(len(keys)):
		return &refusedError{kind: ErrLockNotEnforced, evidence: fmt.Sprintf(
			"the server (%s) granted %s, but pg_locks shows server session pid %d holding %d of its %d keys: its advisory lock functions lock nothing",
			version, keysName(keys), pid, n, len(keys))}, nil
	}
	return nil, nil
}

// unlockResult is the outcome of an unlock statement that did not fail.
type unlockResult struct {
	prev    string // the session's marker found
	pid     int32  // the server session's pid
	mine    bool   // the marker and pid were the lock's: the unlock ran
	all     bool   // every unlock returned true
	n       int    // rows: one per key
	cleared bool   // the marker was cleared

	col oneCols // a single-key statement's columns, as scanned
	buf leanBuf // a lean statement's parameters, encoded
}

// runUnlock runs st, a sessionUnlock statement, on c, and puts its outcome
// in *res (zeroed first).
func runUnlock(c *pgx.Conn, st sessionStmt, res *unlockResult) error {
	*res = unlockResult{}
	bg := context.Background()
	col := &res.col
	switch st.form {
	case formLean:
		if err := runLean(c, st, &res.buf, col, &res.pid); err != nil {
			return err
		}
		res.mine, res.all, res.cleared, res.n = col.r.Valid, col.r.Valid && col.r.Bool, true, 1
		return nil
	case formOne:
		if err := c.QueryRow(bg, st.sql, st.args...).Scan(&col.code, &col.marker, &res.pid); err != nil {
			return err
		}
		res.prev = col.marker.String // "" when NULL
		res.n = 1
		res.mine = col.code != 2
		res.all = col.code == 0
		res.cleared = col.code == 0
		return nil
	}
	rows, err := c.Query(bg, st.sql, st.args...)
	if err != nil {
		return err
	}
	res.all = true
	for rows.Next() {
		var (
			prev    *string
			pair    bool
			k       int64
			a, b    int32
			ok      *bool
			cleared bool
		)
		if err := rows.Scan(&prev, &res.pid, &res.mine, &pair, &k, &a, &b, &ok, &cleared); err != nil {
			rows.Close()
			return err
		}
		if prev != nil {
			res.prev = *prev
		}
		res.all = res.all && ok != nil && *ok
		res.cleared = cleared
		res.n++
	}
	rows.Close()
	return rows.Err()
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
	err, interrupted := pginterrupt.Run(context.Background(), holderTimeout, c, func() error {
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
	// A watch not begun yet leaves the Locker's starter now, so that under
	// a stream of short holds the starter's timer fires about once per
	// watchDelay, not once per hold.
	l.p.watchStarts.Remove(&l.w.at)
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
	r := &l.rel
	switch {
	case l.relInterrupted:
		err = fmt.Errorf("advisory: unlock %q: not confirmed within %v; session closed", l.Name(), l.timeout)
	case err != nil:
		err = fmt.Errorf("advisory: unlock %q: %w; session closed", l.Name(), err)
	case r.pid != l.pid:
		ref := sharedSession("the unlock ran on server session pid %d, but the lock was taken on pid %d: the connection was handed to another server session, and the lock stays with session %d until that session ends", r.pid, l.pid, l.pid)
		l.p.refuse(ref)
		err = fmt.Errorf("advisory: unlock %q: %w", l.Name(), ref)
	case !r.mine:
		ref := sharedSession("server session pid %d no longer carries the lock's marker (it carries %q): the session was reset (RESET ALL, or DISCARD ALL, which also drops advisory locks) or is shared with another client", r.pid, r.prev)
		l.p.refuse(ref)
		err = fmt.Errorf("advisory: unlock %q: nothing unlocked: %w", l.Name(), ref)
	case !r.all || r.n != len(l.keys) || !r.cleared:
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
	l.relErr, l.relInterrupted = l.relIt.RunBounded(&l.p.unlockBounds, c, l.unlockStmt)
	return nil
}

func (l *Lock) unlockStmt() error {
	return runUnlock(l.relConn, sessionUnlock(l.mode, l.keys, l.id, l.pid, l.form), &l.rel)
}
