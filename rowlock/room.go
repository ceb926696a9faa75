package rowlock

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/pginterrupt"
	"github.com/lockkit/lockkit/internal/sqlconn"
)

// The waiting room (PostgreSQL on a direct pgx session; MySQL and MariaDB
// outside Galera, see room_mysql.go). The heads of a name's queues in
// different Lockers and processes take turns at the name through a session
// lock derived from the table and the name (on PostgreSQL an advisory lock,
// on MySQL a user lock), which the server grants in the order it was asked
// for:
//
//   - a head's attempt is roomEnter, on a connection it keeps while it
//     waits: take the room (waiting for it in the server, behind the
//     other Lockers' heads), then attempt. Acquired without waiting: the
//     room is given back in the same statement. Otherwise the head holds
//     the room and alone attempts on releases (NOTIFY) and at the
//     holder's expiry, as it did before, on the same connection;
//   - a head that waited keeps the room for roomLinger after it acquires,
//     and its Release gives the room back in the release statement, after
//     the lease has ended. The next head's roomEnter then returns with
//     the lease: a handoff in the server, with no wake-up and no failed
//     attempt. After roomLinger the room is given back on its own, and
//     the next head waits for the release as above.
//
// The room only orders attempts; the row decides who holds the lease.
// Every room wait is bounded (roomBound): a room that a stopped process
// keeps, or that a user's own lock on the same keys (name) takes, costs at
// most the holder's lease (or roomFirstWait when no holder is known)
// before the head attempts without it.
//
// On MySQL taking the room is a statement of its own (roomEnter there),
// followed by the attempt, which runs through the pool; the release still
// gives the room back inside its statement. A contended acquisition so costs
// three round trips (the room, the attempt, the release) instead of two,
// and the room is used only for names that this Locker saw contended
// within roomRecent, so that an uncontended acquisition keeps its one.

// roomLinger is how long a Lock that waited keeps the room after it
// acquired, so that a short hold hands over in its release statement.
// On MySQL it is roomLingerMySQL: there a head that gets the room before
// the release finds the lease held and polls, where on PostgreSQL a
// notification wakes it.
const (
	roomLinger      = 50 * time.Millisecond
	roomLingerMySQL = time.Second
)

// roomFirstWait bounds a wait for the room when no holder of the lease is
// known, roomMargin is added to the holder's time left otherwise, and
// roomMaxWait caps either.
const (
	roomFirstWait = time.Second
	roomMargin    = 50 * time.Millisecond
	roomMaxWait   = maxNotifiedWait
)

// roomStmtTimeout bounds a room statement that does not wait for the room.
const roomStmtTimeout = lockkit.ReleaseTimeout

// errRoomBusy: the room stayed taken for the whole bound; nothing was taken.
var errRoomBusy = errors.New("rowlock: waiting room busy")

// roomKeys derives the room's two advisory keys from the table and the
// name. The two-key form is a key space of its own in pg_locks, apart from
// the one-key form most applications (and package advisory) use.
func roomKeys(table, name string) [2]int32 {
	h := sha256.Sum256([]byte("lockkit.rowlock.room\x00" + table + "\x00" + name))
	return [2]int32{int32(binary.BigEndian.Uint32(h[:4])), int32(binary.BigEndian.Uint32(h[4:8]))}
}

// room is one head's connection to a name's waiting room.
type room struct {
	l    *Locker
	name string
	conn *sql.Conn
	keys [2]int32 // PostgreSQL: the advisory lock's keys
	lock string   // MySQL: the user lock's name
	id   int64    // MySQL: the connection's id, for KILL QUERY

	mu       sync.Mutex
	disposed bool // left, discarded, or handed to a Lock or to the background
	claimed  bool // the lingering room went to a release or to the linger's end
	timer    *time.Timer
	tracked  bool // counted in l.abandoned while it lingers
}

// roomResult is the outcome of a statement on the room's connection.
type roomResult struct {
	token  int64
	h      *heldInfo
	waited bool // roomEnter waited for the room
	held   bool // the session holds the room afterwards
	err    error
	broken bool // the session may be in any state: discard it
}

func (l *Locker) newRoom(ctx context.Context, name string) (*room, error) {
	conn, err := l.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	r := &room{l: l, name: name, conn: conn}
	if l.s.dialect == MySQL {
		r.lock = roomLockName(l.s.table, name)
	} else {
		r.keys = roomKeys(l.s.table, name)
	}
	return r, nil
}

// ready reports whether the room works through this pool: on PostgreSQL
// a direct pgx session (notifier.probe), on MySQL a server that is not a
// Galera node (readyMySQL). An error leaves the connection in an unknown
// state.
func (r *room) ready(ctx context.Context) (bool, error) {
	if r.l.s.dialect == MySQL {
		return r.readyMySQL(ctx)
	}
	return r.l.notify.probe(ctx, r.conn), nil
}

// roomBound is the longest wait for the room: the holder's time left plus
// a margin, or roomFirstWait with no holder known.
func roomBound(h *heldInfo) time.Duration {
	if h == nil {
		return roomFirstWait
	}
	return min(max(h.remaining, 0)+roomMargin, roomMaxWait)
}

// enter runs roomEnter (wait is true) or, in the room, the attempt of
// acquireHolder. On an error other than errRoomBusy the room is gone: left,
// or its session discarded. enter returns as soon as ctx ends; the
// statement then runs on (a wait for the room is cancelled in the server),
// and in the background a lease it took is given back and the room left.
func (r *room) enter(ctx context.Context, ls *lease, wait bool, bound time.Duration) roomResult {
	l := r.l
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		r.leave(!wait, false)
		return roomResult{err: errClosed}
	}
	l.abandoned.Add(1)
	l.mu.Unlock()
	done := make(chan roomResult, 1)
	go func() { done <- r.run(ctx, ls, wait, bound) }()
	select {
	case res := <-done:
		l.abandoned.Done()
		if res.err != nil && res.err != errRoomBusy {
			r.leave(res.held, res.broken)
		}
		return res
	case <-ctx.Done():
	}
	r.dispose()
	go func() {
		defer l.abandoned.Done()
		res := <-done
		if res.err == nil && res.token != 0 {
			rctx, cancel := context.WithTimeout(context.Background(), lockkit.ReleaseTimeout)
			_, err := l.endLease(rctx, l.q.release, r.name, ls.owner, res.token)
			cancel()
			l.tel.GaveBack(r.name, err)
		}
		r.leave(res.held, res.broken)
	}()
	return roomResult{err: ctx.Err()}
}

// run runs the statement of enter on the room's session. A wait for the
// room is interrupted by a cancel request (MySQL: KILL QUERY) when ctx
// ends.
func (r *room) run(ctx context.Context, ls *lease, wait bool, bound time.Duration) (res roomResult) {
	l := r.l
	if l.s.dialect == MySQL {
		return r.runMySQL(ctx, ls, wait, bound)
	}
	defer l.hook("acquire")()
	ttl := ls.ttl.Microseconds()
	args := []any{r.name, ls.owner, ttl, l.s.host, l.s.pid, ls.data}
	query := l.q.acquireHolder
	ictx, timeout := context.Background(), roomStmtTimeout
	if wait {
		query = l.q.roomEnter
		args = append(args, r.keys[0], r.keys[1], strconv.FormatInt(max(bound.Milliseconds(), 1), 10)+"ms")
		ictx, timeout = ctx, bound+roomStmtTimeout
	}
	var token int64
	dest := []any{&token}
	if wait {
		dest = append(dest, &res.waited)
	}
	err := r.conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errNotPgx
		}
		c := sc.Conn()
		err, interrupted := pginterrupt.Run(ictx, timeout, c, func() error {
			h, err := scanHolder(roomRow{c.QueryRow(context.Background(), query, args...), wait}, dest...)
			res.h = h
			return err
		})
		if interrupted {
			res.broken = true
		}
		return err
	})
	res.token = token
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		res.held = !wait || token == 0 || res.waited
		if token != 0 {
			res.h = nil
		}
	case errors.Is(err, pgx.ErrNoRows):
		// The row changed under the statement: in the room, look again.
		res.held = true
	case wait && errors.As(err, &pgErr) && pgErr.Code == "55P03":
		// lock_timeout ran out in the wait for the room, which is all
		// it bounds: nothing is held.
		res.err = errRoomBusy
	default:
		if token != 0 {
			// The token came with the error (a session that ended
			// right after the statement): end the lease in case it
			// was committed.
			rctx, cancel := context.WithTimeout(context.Background(), lockkit.ReleaseTimeout)
			_, gerr := l.endLease(rctx, l.q.release, r.name, ls.owner, token)
			cancel()
			l.tel.GaveBack(r.name, gerr)
		}
		res.err, res.broken, res.token = err, true, 0
	}
	return res
}

// ended reports whether err, from a statement of enter (wait: the one
// that waits for the room), says that the room's session ended
// (terminated, the server shut down) before or while the statement ran,
// or that it was never sent: either way it took nothing.
func (r *room) ended(err error, wait bool) bool {
	if r.l.s.dialect == MySQL {
		// Only the wait for the room, which writes nothing: an attempt
		// may have committed before its session ended.
		return wait && errors.Is(err, errRoomLost)
	}
	return sessionEnded(err)
}

// sessionEnded is ended on PostgreSQL.
func sessionEnded(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Severity == "FATAL"
	}
	return pgconn.SafeToRetry(err)
}

// roomRow scans roomEnter's extra columns (waited, and the room's
// give-back) after the holder's.
type roomRow struct {
	row  pgx.Row
	wait bool
}

func (rr roomRow) Scan(dest ...any) error {
	if !rr.wait {
		return rr.row.Scan(dest...)
	}
	// dest is token, waited, then the holder's columns: roomEnter
	// returns token, the holder's columns, waited, give-back.
	var gaveBack bool
	d := append(append([]any{dest[0]}, dest[2:]...), dest[1], &gaveBack)
	return rr.row.Scan(d...)
}

// dispose marks the room as no longer the waiter's to leave.
func (r *room) dispose() {
	r.mu.Lock()
	r.disposed = true
	r.mu.Unlock()
}

// gone reports whether the room was disposed of.
func (r *room) gone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.disposed
}

// track disposes of r and counts it in its Locker's abandoned rooms,
// which Close waits for; with the Locker closed it leaves the room at once
// instead and reports false.
func (r *room) track() bool {
	l := r.l
	r.dispose()
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.abandoned.Add(1)
	}
	l.mu.Unlock()
	if closed {
		r.leave(true, false)
	}
	return !closed
}

// abandon leaves the room in the background, for a wait that ended.
func (r *room) abandon() {
	if !r.track() {
		return
	}
	go func() {
		defer r.l.abandoned.Done()
		r.leave(true, false)
	}()
}

// acquired makes the Lock of a room statement that took the lease. A head
// that waited keeps the room for roomLinger (linger); otherwise the room
// was given back by the statement and the connection goes back to the pool.
func (r *room) acquired(name string, ls *lease, res roomResult, sent time.Time) *Lock {
	lk := newLock(r.l, name, ls.owner, res.token, ls.ttl, sent.Add(ls.ttl), ls.renew)
	if res.held {
		r.linger(lk)
	} else {
		r.leave(false, false)
	}
	return lk
}

// linger keeps the room for roomLinger after lk acquired, for lk's
// release to give it back; Close gives it back at once.
func (r *room) linger(lk *Lock) {
	if !r.track() {
		return
	}
	r.mu.Lock()
	r.tracked = true
	lk.room = r
	r.mu.Unlock()
	l := r.l
	l.mu.Lock()
	closed := l.closed
	if !closed {
		if l.lingering == nil {
			l.lingering = make(map[*room]struct{})
		}
		l.lingering[r] = struct{}{}
	}
	l.mu.Unlock()
	if closed {
		r.end()
		return
	}
	d := roomLinger
	if l.s.dialect == MySQL {
		d = roomLingerMySQL
	}
	r.mu.Lock()
	if !r.claimed {
		r.timer = time.AfterFunc(d, r.end)
	}
	r.mu.Unlock()
}

// end gives the lingering room back, unless the lock's release has
// claimed it: at the linger's end, or when the Locker is closed.
func (r *room) end() {
	if r.claim() {
		r.leave(true, false)
		r.finish()
	}
}

// claim takes the lingering room for one of the two ways out of it;
// false when the other took it.
func (r *room) claim() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.claimed {
		return false
	}
	r.claimed = true
	if r.timer != nil {
		r.timer.Stop()
	}
	return true
}

// finish ends the lingering room's count in l.abandoned.
func (r *room) finish() {
	if r.tracked {
		r.l.mu.Lock()
		delete(r.l.lingering, r)
		r.l.mu.Unlock()
		r.l.abandoned.Done()
	}
}

// release ends lk's lease with roomRelease, giving the room back after
// it, and returns the connection.
func (r *room) release(ctx context.Context, owner string, token int64) (int64, error) {
	var (
		n    int64
		left bool
		err  error
	)
	if r.l.s.dialect == MySQL {
		n, left, err = r.releaseMySQL(ctx, owner, token)
	} else {
		err = r.conn.QueryRowContext(ctx, r.l.q.roomRelease, r.name, owner, token, r.l.s.channel, r.keys[0], r.keys[1]).Scan(&n, &left)
	}
	defer r.finish()
	if err != nil || !left {
		// Not given back (the session may be broken): ending the
		// session frees the room.
		sqlconn.Discard(r.conn)
	} else {
		_ = r.conn.Close()
	}
	if err != nil {
		return 0, err
	}
	if n > 0 {
		r.l.wake.broadcast(r.name)
	}
	return n, nil
}

// leave gives the room back when the session holds it, and returns the
// connection; a session in an unknown state is discarded, which ends it
// and so frees whatever it held.
func (r *room) leave(held, broken bool) {
	r.dispose()
	if !broken && held {
		ctx, cancel := context.WithTimeout(context.Background(), roomStmtTimeout)
		var ok bool
		var err error
		if r.l.s.dialect == MySQL {
			ok, err = r.leaveMySQL(ctx)
		} else {
			err = r.conn.QueryRowContext(ctx, r.l.q.roomLeave, r.keys[0], r.keys[1]).Scan(&ok)
		}
		cancel()
		broken = err != nil || !ok
	}
	if broken {
		sqlconn.Discard(r.conn)
		return
	}
	_ = r.conn.Close()
}
