package rowlock

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/lockkit/lockkit/internal/mysqlconn"
)

// The waiting room on MySQL and MariaDB (see room.go for the design). The
// room is a user lock (GET_LOCK) named after the table and the name, on a
// connection the head keeps while it waits:
//
//   - the head takes the room with roomEnter, bounded by GET_LOCK's own
//     timeout (roomBound); when ctx ends, KILL QUERY from another
//     connection of the pool ends the wait in the server;
//   - in the room it attempts (acquire, and the holder's read) through
//     the pool as any attempt does, on wake-ups and at the holder's
//     expiry, polling as any MySQL waiter does: the room's connection
//     only holds the room, so a killed room session never leaves an
//     attempt's outcome unknown;
//   - it keeps the room for roomLingerMySQL after it acquired, and its
//     release gives the room back inside the release's UPDATE
//     (roomRelease), so the next head's GET_LOCK returns with the lease
//     ended: three round trips a contended acquisition (room, attempt,
//     release);
//   - the room is used only for names this Locker saw contended within
//     roomRecent (an attempt that found the lease held, or a room found
//     taken), so an uncontended acquisition stays one statement;
//   - never on a Galera node (wsrep_on), where GET_LOCK is granted by one
//     node only (or refused), nor through a pool too small for it.
//
// The room's statements are prepared once per connection and its id (for
// KILL QUERY) is known through mysqlconn's cache, which package mysqllock
// shares.

// roomRecent is how long a name counts as contended after this Locker saw
// it so; only then does a head wait in the room at once (MySQL). An
// acquisition in the room that finds the name free costs a round trip
// more than one outside it (two statements and the release, against one
// and the release).
const roomRecent = 5 * time.Second

// roomContendedMax bounds the names a Locker remembers as contended.
const roomContendedMax = 1024

// roomLockPrefix starts every room's user-lock name: apart from the names
// that package mysqllock renders (a namespace cannot hold "."; a name
// hashed to fit has a "~").
const roomLockPrefix = "lockkit.rowlock.room:"

// errRoomLost: the wait for the room ended without an answer (the
// session was killed, the server went away): nothing was taken.
var errRoomLost = errors.New("rowlock: the waiting room's session ended")

// roomLockName is the user lock of name's waiting room in table: the
// prefix and 40 hex digits of a digest, 61 characters, within the 64 that
// MySQL allows.
func roomLockName(table, name string) string {
	h := sha256.Sum256([]byte(table + "\x00" + name))
	return roomLockPrefix + hex.EncodeToString(h[:20])
}

// markContended records that name was seen contended now.
func (l *Locker) markContended(name string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.contended == nil {
		l.contended = make(map[string]time.Time)
	}
	if len(l.contended) >= roomContendedMax {
		for n, t := range l.contended {
			if now.Sub(t) >= roomRecent {
				delete(l.contended, n)
			}
		}
		if len(l.contended) >= roomContendedMax {
			clear(l.contended)
		}
	}
	l.contended[name] = now
}

// contendedRecently reports whether name was seen contended within
// roomRecent.
func (l *Locker) contendedRecently(name string) bool {
	l.mu.Lock()
	t, ok := l.contended[name]
	l.mu.Unlock()
	return ok && time.Since(t) < roomRecent
}

// Galera states of a Locker's server, for the room (MySQL).
const (
	galeraUnknown int32 = iota
	galeraNo
	galeraYes
)

// readyMySQL finds out whether the room works on this server (not a
// Galera node: asked once per Locker) and learns the id of r's
// connection, for KILL QUERY (once per connection of the pool). An error
// leaves r's connection in an unknown state.
func (r *room) readyMySQL(ctx context.Context) (bool, error) {
	l := r.l
	switch l.galera.Load() {
	case galeraYes:
		return false, nil
	case galeraUnknown:
		v, err := mysqlconn.GlobalValue(ctx, r.conn, mysqlconn.VariableQueries, "wsrep_on")
		var me *mysql.MySQLError
		switch {
		case errors.As(err, &me):
			// No variables table it knows, or no privilege: as package
			// mysqllock does, not a Galera node as far as anyone can
			// tell (there GET_LOCK may fail, which only ends the room).
			l.galera.Store(galeraNo)
		case err != nil:
			return false, err
		case strings.EqualFold(v, "ON"):
			l.galera.Store(galeraYes)
			return false, nil
		default:
			l.galera.Store(galeraNo)
		}
	}
	dc := mysqlconn.DriverConn(r.conn)
	id, ok := l.conns.ID(dc)
	if !ok {
		if err := r.conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
			return false, err
		}
		l.conns.SetID(l.db, dc, id)
	}
	r.id = id
	return id != 0, nil
}

// runMySQL is run on MySQL: with wait, the wait for the room, then (in
// it) the attempt; without, the attempt alone.
func (r *room) runMySQL(ctx context.Context, ls *lease, wait bool, bound time.Duration) roomResult {
	var waited bool
	if wait {
		res := r.waitMySQL(ctx, bound)
		if res.err != nil {
			return res
		}
		if err := ctx.Err(); err != nil {
			return roomResult{err: err, held: true}
		}
		waited = res.waited
	}
	res := r.attemptMySQL(ls)
	res.waited = waited
	return res
}

// waitMySQL takes the room with roomEnter, waiting at most bound in the
// server. When ctx ends first, KILL QUERY on another connection ends the
// wait; the connection is then discarded unless the room was granted
// (which leave gives back).
func (r *room) waitMySQL(ctx context.Context, bound time.Duration) roomResult {
	l := r.l
	qctx, cancel := context.WithTimeout(context.Background(), bound+roomStmtTimeout)
	defer cancel()
	killed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(killed)
		l.killQuery(r.id)
	})
	var free, got sql.NullInt64
	var id int64
	err := l.conns.QueryRow(qctx, r.conn, l.q.roomEnter, []any{r.lock, r.lock, mysqlconn.Seconds(bound)}, &free, &got, &id)
	interrupted := !stop()
	if interrupted {
		// Nothing else may run on the connection before the KILL has.
		<-killed
	}
	held := err == nil && got.Valid && got.Int64 == 1 && id == r.id
	switch {
	case interrupted || qctx.Err() != nil:
		return roomResult{err: cmp.Or(ctx.Err(), err, qctx.Err()), held: held, broken: !held}
	case err != nil:
		return roomResult{err: fmt.Errorf("%w: %w", errRoomLost, err), broken: true}
	case id != r.id:
		// Never expected: the cache gave another session's id.
		return roomResult{err: fmt.Errorf("rowlock: CONNECTION_ID() = %d, expected %d", id, r.id), held: got.Valid && got.Int64 == 1, broken: true}
	case !got.Valid:
		return roomResult{err: fmt.Errorf("%w: GET_LOCK(%q) returned NULL", errRoomLost, r.lock), broken: true}
	case got.Int64 == 0:
		return roomResult{err: errRoomBusy}
	case got.Int64 != 1:
		return roomResult{err: fmt.Errorf("rowlock: GET_LOCK(%q) returned %d", r.lock, got.Int64), broken: true}
	}
	waited := free.Valid && free.Int64 == 0
	if waited {
		l.markContended(r.name)
	}
	return roomResult{held: true, waited: waited}
}

// attemptMySQL is Locker.attempt for a head in the room. It runs on the
// pool, like every attempt, not on the room's connection: a room session
// killed while its head polls then costs the room (its release falls back
// to the pool, see releaseMySQL) but never an attempt's outcome.
func (r *room) attemptMySQL(ls *lease) roomResult {
	l := r.l
	ctx, cancel := context.WithTimeout(context.Background(), roomStmtTimeout)
	defer cancel()
	for range 3 {
		token, _, err := l.acquireStmt(ctx, r.name, ls)
		switch {
		case err == nil:
		case rolledBack(err):
			// Nothing was taken: another transaction wrote the row first.
			token = 0
		default:
			return roomResult{err: err, held: true}
		}
		if token != 0 {
			return roomResult{token: token, held: true}
		}
		done := l.hook("holder")
		h, err := l.holder(ctx, r.name)
		done()
		switch {
		case err != nil:
			return roomResult{err: err, held: true}
		case h != nil && h.remaining > 0:
			l.markContended(r.name)
			return roomResult{h: h, held: true}
		}
	}
	return roomResult{held: true}
}

// releaseMySQL runs roomRelease: the count of leases ended, and whether
// the room was given back. When the room's session is gone (killed while
// the lock was held) the release runs on the pool instead; if the first
// statement did end the lease after all, the second finds it gone and the
// lock reports lost.
func (r *room) releaseMySQL(ctx context.Context, owner string, token int64) (int64, bool, error) {
	res, err := r.l.conns.Exec(ctx, r.conn, r.l.q.roomRelease, []any{r.lock, r.name, owner, token})
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) {
		n, err := r.l.endLease(ctx, r.l.q.release, r.name, owner, token)
		return n, false, err
	}
	if err != nil {
		return 0, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, false, err
	}
	left, err := res.LastInsertId()
	if err != nil {
		return 0, false, err
	}
	return n, n == 1 && left == 2, nil
}

// leaveMySQL gives the room back with roomLeave.
func (r *room) leaveMySQL(ctx context.Context) (bool, error) {
	var got sql.NullInt64
	err := r.l.conns.QueryRow(ctx, r.conn, r.l.q.roomLeave, []any{r.lock}, &got)
	return got.Valid && got.Int64 == 1, err
}

// killQuery ends the statement that the server session id runs, from
// another connection of the pool: a wait for the room returns NULL. A
// KILL that fails leaves the wait to its own timeout.
func (l *Locker) killQuery(id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), roomStmtTimeout)
	defer cancel()
	// id is the server's own integer, not user input.
	_, _ = l.db.ExecContext(ctx, "KILL QUERY "+strconv.FormatInt(id, 10))
}
