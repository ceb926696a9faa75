// Package pginterrupt stops a PostgreSQL statement the way the server needs:
// a cancel request, which ends a server-side wait (pg_advisory_lock, a row
// lock) at once, before pgx's own way of closing the socket. advisory runs
// its lock statements through it, and rowlock its waiting-room statements.
package pginterrupt

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// cancelGrace is how long a statement interrupted by its context may take to
// return after the cancel request, before its socket is given a past deadline
// (which makes pgx close the connection).
const cancelGrace = 2 * time.Second

// Run runs stmt, a statement that runs on c under
// context.Background, so that the end of ctx, or timeout if positive,
// interrupts it the way PostgreSQL needs: a cancel request to the server,
// which stops a server-side wait (pg_advisory_lock) at once, then, if stmt
// has still not returned after cancelGrace, a past deadline on the socket.
//
// pgx's own handling of a cancelled context only sets a deadline on the
// socket and closes the connection; the backend would go on waiting for the
// lock and take it after the client left. Here the server stops waiting.
//
// interrupted reports that ctx ended or the timeout expired while stmt ran.
// The statement's outcome is then unknown (the lock may have been granted
// just before the cancel), so the caller must discard the session.
//
// A timeout alone (ctx without Done) is for statements that never wait on
// the server (an unlock, the holder query): it skips the cancel request and
// sets the past deadline at once, so the bound is the timeout.
func Run(ctx context.Context, timeout time.Duration, c *pgx.Conn, stmt func() error) (err error, interrupted bool) {
	if ctx.Done() == nil && timeout <= 0 {
		return stmt(), false
	}
	it := &interrupter{c: c, cancelServer: ctx.Done() != nil}
	var stopCtx func() bool
	var timer *time.Timer
	if ctx.Done() != nil {
		stopCtx = context.AfterFunc(ctx, it.fire)
	}
	if timeout > 0 {
		timer = time.AfterFunc(timeout, it.fire)
	}
	err = stmt()
	if stopCtx != nil {
		stopCtx()
	}
	if timer != nil {
		timer.Stop()
	}
	it.mu.Lock()
	it.finished = true
	after := it.after
	if it.fin != nil {
		close(it.fin)
	}
	it.mu.Unlock()
	if after != nil {
		<-after
		return err, true
	}
	return err, false
}

// interrupter is the state of one interruptible statement.
type interrupter struct {
	c            *pgx.Conn
	cancelServer bool // send a cancel request before the deadline
	mu           sync.Mutex
	finished     bool          // stmt returned
	fin          chan struct{} // closed when stmt returns; made by fire
	after        chan struct{} // closed when fire is done; made by fire
}

func (it *interrupter) fire() {
	it.mu.Lock()
	if it.after != nil || it.finished {
		it.mu.Unlock()
		return
	}
	it.after, it.fin = make(chan struct{}), make(chan struct{})
	it.mu.Unlock()
	defer close(it.after)
	pg := it.c.PgConn()
	if it.cancelServer {
		cctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
		defer cancel()
		_ = pg.CancelRequest(cctx)
		select {
		case <-it.fin:
			return
		case <-cctx.Done():
		}
	}
	it.mu.Lock()
	if !it.finished {
		_ = pg.Conn().SetDeadline(time.Now())
	}
	it.mu.Unlock()
}
