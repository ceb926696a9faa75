package rowlock

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/mysqlconn"
	"github.com/lockkit/lockkit/internal/telemetry"
)

// errLeaseGone is the cause of a loss found by the database: the lease
// expired, was taken over or force-released.
var errLeaseGone = errors.New("rowlock: lease expired, was taken over or was force-released")

// errLeaseExpired is the cause of a loss found locally: the lease ran out
// before a renewal was confirmed.
var errLeaseExpired = errors.New("rowlock: lease ran out before it was renewed")

// errClosed is returned by a Locker's methods after Close.
var errClosed = errors.New("rowlock: Locker is closed")

// Locker takes leases on named locks in the lock table. It implements
// [lockkit.Locker]; its own methods add per-call options, resuming a lease
// from another request or process, listing, force-release and cleanup.
//
// A Locker is safe for concurrent use. Close it when done: it stops the
// notification listener and closes its prepared statements. It never
// closes the *sql.DB.
type Locker struct {
	db *sql.DB
	s  *settings
	q  *statements

	wake   *wakers
	notify *notifier // PostgreSQL only
	tel    *telemetry.Recorder

	mu     sync.Mutex
	stmts  map[string]*sql.Stmt // MySQL: prepared once, one round trip a call
	closed bool

	// MySQL's waiting room (room_mysql.go): the pool's connection ids
	// and statements, whether the server is a Galera node, and the names
	// seen contended lately (under mu).
	conns     *mysqlconn.Cache
	galera    atomic.Int32
	contended map[string]time.Time

	// abandoned counts acquire statements whose caller's context ended
	// before they answered, until a lease they took is given back. Added
	// to under mu while not closed; Close waits for it.
	abandoned sync.WaitGroup

	// lingering holds the waiting rooms that leases keep after they
	// acquired (room.linger), under mu: Close gives them back at once.
	lingering map[*room]struct{}

	// testHook, when set (by tests, before any use), is called before
	// each acquire statement ("acquire") and holder read ("holder") of
	// an acquisition attempt; the function it returns, after it.
	testHook func(op string) (done func())

	// now reads the client's clock. Leases never depend on it: it only
	// dates Lock.Expires and times the local end of a lease, through its
	// monotonic reading.
	now func() time.Time
}

var _ lockkit.Locker = (*Locker)(nil)

// New returns a Locker on db's lock table. cfg may be nil only when the
// dialect can be detected from db's driver; see [Config] for the defaults.
// Bad configuration is reported as an error matching lockkit.ErrInvalid,
// before any I/O. The table must exist: see package migrations.
func New(db *sql.DB, cfg *Config) (*Locker, error) {
	s, err := newSettings(db, cfg)
	if err != nil {
		return nil, err
	}
	l := &Locker{
		db:    db,
		s:     s,
		q:     newStatements(s.dialect, s.qtable),
		wake:  newWakers(),
		stmts: map[string]*sql.Stmt{},
		now:   time.Now,
		tel:   telemetry.New(s.tel, telemetryBackend(s.dialect)),
	}
	if s.dialect == Postgres {
		l.notify = newNotifier(db, s.channel, l.wake)
	} else {
		l.conns = mysqlconn.CacheOf(db)
	}
	return l, nil
}

// Close stops the Locker's notification listener and closes its prepared
// statements. It does not release held locks, and never closes the
// *sql.DB. Locks still held keep working (their renewals run without
// prepared statements). Acquire, TryAcquire, Lock and TryLock fail after
// Close.
//
// Close first waits for acquires that their context abandoned while their
// statement ran to give back any lease that statement took, so that closing
// the *sql.DB right after Close leaves nothing held. Each of those is
// bounded by lockkit.ReleaseTimeout for the statement and again for the
// give-back; normally they take a round trip. It gives back at once the
// waiting rooms that locks which waited keep for a while after they
// acquired (see the package documentation, "Waiting"); those locks are
// released without them.
func (l *Locker) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	stmts := l.stmts
	l.stmts = nil
	rooms := make([]*room, 0, len(l.lingering))
	for r := range l.lingering {
		rooms = append(rooms, r)
	}
	l.mu.Unlock()
	for _, r := range rooms {
		r.end()
	}
	l.abandoned.Wait()
	if l.notify != nil {
		l.notify.close()
	}
	var err error
	for _, st := range stmts {
		err = errors.Join(err, st.Close())
	}
	return err
}

func telemetryBackend(d Dialect) telemetry.Backend {
	b := telemetry.Backend{Name: "rowlock", DBSystem: "postgresql", Reason: lossReason}
	if d == MySQL {
		b.DBSystem = "mysql"
	}
	return b
}

// lossReason is the telemetry reason of a loss.
func lossReason(cause error, _ bool) telemetry.Reason {
	switch {
	case errors.Is(cause, errLeaseExpired):
		return telemetry.LeaseExpired
	case errors.Is(cause, errLeaseGone):
		// Found gone on the database before it ran out on our clock,
		// which is never later than the database's: taken over or
		// force-released.
		return telemetry.TakenOver
	}
	return telemetry.Other
}

func (l *Locker) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Owner returns the owner string this Locker's leases carry unless an
// Options overrides it.
func (l *Locker) Owner() string { return l.s.owner }

// Dialect returns the Locker's SQL dialect.
func (l *Locker) Dialect() Dialect { return l.s.dialect }

// stmt returns a prepared statement for query on MySQL, where an
// unprepared call with arguments costs two round trips; nil elsewhere or
// after Close.
func (l *Locker) stmt(ctx context.Context, query string) *sql.Stmt {
	if l.s.dialect != MySQL {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if st := l.stmts[query]; st != nil {
		return st
	}
	st, err := l.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the unprepared call reports the error
	}
	l.stmts[query] = st
	return st
}

func (l *Locker) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := l.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return l.db.ExecContext(ctx, query, args...)
}

func (l *Locker) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := l.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return l.db.QueryRowContext(ctx, query, args...)
}

// Options override the Locker's Config for one lease. Zero fields take the
// Locker's values.
type Options struct {
	// Owner of this lease, such as the user who edits a record; at most
	// 255 characters.
	Owner string
	// Data stored with this lease, shown in HeldError and List.
	Data string
	// TTL of this lease, from MinTTL to MaxTTL.
	TTL time.Duration
	// RenewInterval for this lease: 0 means the Locker's setting (or
	// TTL/3 when TTL is overridden and the Locker renews); NoRenew turns
	// renewal off; at most TTL/2.
	RenewInterval time.Duration
}

// lease is a validated Options.
type lease struct {
	owner, data string
	ttl, renew  time.Duration
}

func (l *Locker) lease(name string, o *Options) (*lease, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	ls := &lease{owner: l.s.owner, data: l.s.data, ttl: l.s.ttl, renew: l.s.renew}
	if o == nil {
		return ls, nil
	}
	if o.Owner != "" {
		if err := checkText("owner", o.Owner, MaxOwnerChars, false); err != nil {
			return nil, err
		}
		ls.owner = o.Owner
	}
	if o.Data != "" {
		if err := checkData(o.Data); err != nil {
			return nil, err
		}
		ls.data = o.Data
	}
	if o.TTL != 0 {
		if err := checkTTL(o.TTL); err != nil {
			return nil, err
		}
		ls.ttl = o.TTL
	}
	renew := o.RenewInterval
	if renew == 0 {
		switch {
		case l.s.renew < 0:
			renew = NoRenew
		case o.TTL != 0:
			renew = 0 // TTL/3 of this lease's TTL
		default:
			renew = l.s.renew
		}
	}
	r, err := renewInterval(ls.ttl, renew)
	if err != nil {
		return nil, err
	}
	ls.renew = r
	return ls, nil
}

// Acquire waits until the named lock is held or ctx ends; it is
// [Locker.Lock] with nil options, for the [lockkit.Locker] interface.
func (l *Locker) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return asLock(l.acquire(ctx, name, nil, true))
}

// TryAcquire makes one attempt; it is [Locker.TryLock] with nil options,
// for the [lockkit.Locker] interface.
func (l *Locker) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return asLock(l.acquire(ctx, name, nil, false))
}

func asLock(lk *Lock, err error) (lockkit.Lock, error) {
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// Lock waits until it holds a lease on name, or ctx ends. o overrides the
// Locker's settings for this lease; nil means none. This Locker's waiters
// on a name queue in FIFO order and only the first attempts, as the
// package documentation on waiting describes. The lease renews itself in
// the background unless renewal is off.
//
// An attempt is one statement that inserts the row or takes over an
// expired lease, drawing a new fencing token. When the lease is live
// elsewhere the error is a *lockkit.HeldError with the holder's owner,
// data, host, pid, since, expiry and token; a wait that ends by ctx
// returns one that also matches ctx's error.
//
// If ctx ends while the acquire statement runs, the call returns at once
// and a lease the statement takes after all is given back as soon as it
// answers. If the connection fails after the statement was sent, the lease
// may have been taken without this process learning its token. Nobody can
// use such a lease; it ends when its TTL runs out.
func (l *Locker) Lock(ctx context.Context, name string, o *Options) (*Lock, error) {
	return l.acquire(ctx, name, o, true)
}

// TryLock makes one attempt at a lease on name, like [Locker.Lock]. When
// the lease is live elsewhere the error is a *lockkit.HeldError naming the
// holder.
func (l *Locker) TryLock(ctx context.Context, name string, o *Options) (*Lock, error) {
	return l.acquire(ctx, name, o, false)
}

func (l *Locker) acquire(ctx context.Context, name string, o *Options, wait bool) (*Lock, error) {
	ls, err := l.lease(name, o)
	if err != nil {
		return nil, err
	}
	if l.isClosed() {
		return nil, errClosed
	}
	ctx, op := l.tel.StartAcquire(ctx, name, wait)
	lk, err := l.acquireLease(ctx, name, ls, wait)
	if hold := op.End(ctx, err); lk != nil {
		lk.state.Observe(hold)
	}
	return lk, err
}

func (l *Locker) acquireLease(ctx context.Context, name string, ls *lease, wait bool) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, &lockkit.HeldError{Name: name, Cause: err}
	}
	if wait {
		return l.wait(ctx, name, ls)
	}
	lk, holder, err := l.attempt(ctx, name, ls)
	if err != nil || lk != nil {
		return lk, err
	}
	return nil, &lockkit.HeldError{Name: name, Holder: holder.public()}
}

// attempt makes one acquisition attempt. When the lock is held it returns
// the holder (nil when it could not be read), with a nil lock and error.
// On PostgreSQL a failed attempt is one round trip: the acquire statement
// returns the holder's row itself. On MySQL the holder is read by a second
// statement.
func (l *Locker) attempt(ctx context.Context, name string, ls *lease) (*Lock, *heldInfo, error) {
	for range 3 {
		sent := l.now()
		token, h, err := l.acquireDetached(ctx, name, ls)
		switch {
		case err == nil:
		case l.s.dialect == MySQL && ctx.Err() == nil && rolledBack(err):
			// Nothing was taken: another transaction wrote the row
			// first. Look at the holder as for a live lease.
			token, h = 0, nil
		default:
			return nil, nil, l.opError(ctx, name, "acquire", err)
		}
		if token != 0 {
			return newLock(l, name, ls.owner, token, ls.ttl, sent.Add(ls.ttl), ls.renew), nil, nil
		}
		if l.s.dialect != Postgres {
			done := l.hook("holder")
			h, err = l.holder(ctx, name)
			done()
			if err != nil {
				return nil, nil, l.opError(ctx, name, "read holder of", err)
			}
		}
		if h != nil && h.remaining > 0 {
			return nil, h, nil
		}
		// Released or expired between the two statements (or, on
		// PostgreSQL, the row was inserted after the statement's
		// snapshot): try again.
	}
	return nil, nil, nil
}

// rolledBack reports whether a MySQL statement failed with
// ER_LOCK_DEADLOCK (1213), which rolls it back whole: InnoDB chose it as a
// deadlock victim, or Galera aborted it because a conflicting write on
// another node was certified first (with wsrep_retry_autocommit=0, or
// after its retries). For the acquire statement that means another
// acquirer's write won the row, and this one took nothing.
func rolledBack(err error) bool {
	var myErr *mysql.MySQLError
	return errors.As(err, &myErr) && myErr.Number == 1213
}

// acquireDetached runs the acquire statement so that ctx ending cannot
// leave its outcome unknown. The statement runs on a context of its own,
// bounded by lockkit.ReleaseTimeout; when ctx ends first the call returns
// ctx's error at once, and a lease the statement took after all is given
// back (by owner and token) as soon as its token is known; Close waits for
// that. Cancelling the
// statement itself would leave a lease that it may have taken, with a token
// nobody knows, held until its TTL runs out.
func (l *Locker) acquireDetached(ctx context.Context, name string, ls *lease) (int64, *heldInfo, error) {
	if ctx.Done() == nil {
		return l.acquireStmt(ctx, name, ls)
	}
	type result struct {
		token int64
		h     *heldInfo
		err   error
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, nil, errClosed
	}
	l.abandoned.Add(1)
	l.mu.Unlock()
	done := make(chan result, 1)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockkit.ReleaseTimeout)
	go func() {
		defer cancel()
		token, h, err := l.acquireStmt(sctx, name, ls)
		done <- result{token, h, err}
	}()
	select {
	case r := <-done:
		l.abandoned.Done()
		return r.token, r.h, r.err
	case <-ctx.Done():
	}
	go func() {
		defer l.abandoned.Done()
		r := <-done
		if r.err == nil && r.token != 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockkit.ReleaseTimeout)
			defer cancel()
			_, err := l.endLease(rctx, l.q.release, name, ls.owner, r.token)
			l.tel.GaveBack(name, err)
		}
	}()
	return 0, nil, ctx.Err()
}

// acquireStmt runs the acquire statement and returns the new token, or 0
// when the lease is live elsewhere. On PostgreSQL it also returns the
// holder then (nil when the row could not be read).
func (l *Locker) acquireStmt(ctx context.Context, name string, ls *lease) (int64, *heldInfo, error) {
	defer l.hook("acquire")()
	ttl := ls.ttl.Microseconds()
	if l.s.dialect == Postgres {
		var token int64
		h, err := scanHolder(l.queryRow(ctx, l.q.acquireHolder, name, ls.owner, ttl, l.s.host, l.s.pid, ls.data), &token)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return 0, nil, nil
		case err != nil:
			return 0, nil, err
		case token != 0:
			return token, nil, nil
		}
		return 0, h, nil
	}
	res, err := l.exec(ctx, l.q.acquire,
		name, ls.owner, ttl, l.s.host, l.s.pid, ls.data,
		ls.owner, l.s.host, l.s.pid, ls.data, ttl)
	if err != nil {
		return 0, nil, err
	}
	token, err := res.LastInsertId()
	return token, nil, err
}

func (l *Locker) hook(op string) (done func()) {
	if l.testHook != nil {
		return l.testHook(op)
	}
	return func() {}
}

// heldInfo is the holder as read from the table, with the time left on the
// lease by the database clock.
type heldInfo struct {
	lockkit.Holder
	remaining time.Duration
}

func (h *heldInfo) public() *lockkit.Holder {
	if h == nil {
		return nil
	}
	c := h.Holder
	return &c
}

// holder reads the row of name; nil when there is none.
func (l *Locker) holder(ctx context.Context, name string) (*heldInfo, error) {
	h, err := scanHolder(l.queryRow(ctx, l.q.holder, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return h, err
}

type scanner interface{ Scan(...any) error }

func scanHolder(row scanner, extra ...any) (*heldInfo, error) {
	var (
		h                      heldInfo
		since, expires, remain int64
		pid                    int64
	)
	dest := append(extra, &h.Owner, &h.Token, &since, &expires, &h.Host, &pid, &h.Data, &remain)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	h.PID = int(pid)
	h.Since = time.UnixMicro(since)
	h.Expires = time.UnixMicro(expires)
	h.remaining = time.Duration(remain) * time.Microsecond
	return &h, nil
}

// opError wraps a database error; when ctx ended, the result matches
// lockkit.ErrNotAcquired and ctx's error.
func (l *Locker) opError(ctx context.Context, name, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return &lockkit.HeldError{Name: name, Cause: cerr}
	}
	return fmt.Errorf("rowlock: %s %q: %w", op, name, noTable(err))
}

// Resume continues a lease taken elsewhere — in an earlier HTTP request or
// another process — from its name, owner and fencing token. It checks on
// the database that the lease is live and still carries that owner and
// token, and returns a handle without automatic renewal: call Renew to
// extend the lease by the Locker's TTL, Release to end it, or nothing to
// leave it running until it expires. A lease that is gone (expired, taken
// over, released) gives an error matching lockkit.ErrLost.
func (l *Locker) Resume(ctx context.Context, name, owner string, token int64) (*Lock, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := checkText("owner", owner, MaxOwnerChars, false); err != nil {
		return nil, err
	}
	if token <= 0 {
		return nil, invalid.Errorf("rowlock: fencing token %d is not positive", token)
	}
	sent := l.now()
	var remain int64
	err := l.queryRow(ctx, l.q.resume, name, owner, token).Scan(&remain)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &lockkit.LostError{Name: name, Cause: errLeaseGone}
	}
	if err != nil {
		return nil, fmt.Errorf("rowlock: resume %q: %w", name, noTable(err))
	}
	return newLock(l, name, owner, token, l.s.ttl, sent.Add(time.Duration(remain)*time.Microsecond), NoRenew), nil
}

// ForceRelease ends the live lease on name, whoever holds it: an
// administrator's action. It reports whether a live lease was ended. The
// holder finds out at its next renewal (its Done channel closes and Err
// matches lockkit.ErrLost); its renew and release fail. The next holder
// still gets a larger fencing token.
func (l *Locker) ForceRelease(ctx context.Context, name string) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	n, err := l.endLease(ctx, l.q.force, name)
	if err != nil {
		return false, fmt.Errorf("rowlock: force-release %q: %w", name, noTable(err))
	}
	return n == 1, nil
}

// endLease runs a release-like statement; on PostgreSQL it notifies
// waiters in the same statement.
func (l *Locker) endLease(ctx context.Context, query, name string, args ...any) (int64, error) {
	var n int64
	if l.s.dialect == Postgres {
		args = append([]any{name}, append(args, l.s.channel)...)
		if err := l.queryRow(ctx, query, args...).Scan(&n); err != nil {
			return 0, err
		}
	} else {
		res, err := l.exec(ctx, query, append([]any{name}, args...)...)
		if err != nil {
			return 0, err
		}
		if n, err = res.RowsAffected(); err != nil {
			return 0, err
		}
	}
	if n > 0 {
		l.wake.broadcast(name) // this process's waiters, at once
	}
	return n, nil
}

// CleanupExpired deletes the rows whose lease ended more than olderThan ago
// and returns how many it deleted. Live leases are never touched. On
// MySQL a released or force-released lease counts as ended when it was
// acquired (see the release statement for why), so its row may go sooner
// than olderThan after the release.
//
// Fencing tokens stay strictly increasing per name across a deleted row: on
// PostgreSQL they come from a sequence; on MySQL a new row's token is the
// database clock in microseconds, above the deleted row's token as long as
// the database clock has not been set back by more than olderThan plus the
// deleted lease's TTL. An olderThan of a few minutes or more is
// recommended on MySQL.
func (l *Locker) CleanupExpired(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan < 0 {
		return 0, invalid.Errorf("rowlock: negative cleanup age %v", olderThan)
	}
	res, err := l.db.ExecContext(ctx, l.q.cleanup, olderThan.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("rowlock: cleanup: %w", noTable(err))
	}
	return res.RowsAffected()
}
