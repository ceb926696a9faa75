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
// the server (the holder query, the pg_locks check; an unlock runs under
// a shared bound, RunBounded): it skips the cancel request and
// sets the past deadline at once, so the bound is the timeout.
func Run(ctx context.Context, timeout time.Duration, c *pgx.Conn, stmt func() error) (err error, interrupted bool) {
	if ctx.Done() == nil && timeout <= 0 {
		return stmt(), false
	}
	return new(Interrupter).Run(ctx, timeout, c, stmt)
}

// Run is the package's Run with it, which must not have run before, as
// the statement's state: hot paths keep it in their operation's heap
// object rather than allocate one per statement.
func (it *Interrupter) Run(ctx context.Context, timeout time.Duration, c *pgx.Conn, stmt func() error) (err error, interrupted bool) {
	if ctx.Done() == nil && timeout <= 0 {
		return stmt(), false
	}
	it.c, it.cancelServer = c, ctx.Done() != nil
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
	return it.finish(err)
}

// RunBounded is Run with no context and the timeout of b, whose one timer
// serves every statement bounded by it (see Bounds).
func (it *Interrupter) RunBounded(b *Bounds, c *pgx.Conn, stmt func() error) (err error, interrupted bool) {
	it.c = c
	b.add(it)
	err = stmt()
	b.remove(it)
	return it.finish(err)
}

// finish records that the statement returned err and waits for a fire
// that began before; interrupted reports that one did.
func (it *Interrupter) finish(err error) (_ error, interrupted bool) {
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

// Interrupter is the state of one interruptible statement (see Run); its
// zero value is ready, for one statement.
type Interrupter struct {
	c            *pgx.Conn
	cancelServer bool // send a cancel request before the deadline
	mu           sync.Mutex
	finished     bool          // stmt returned
	fin          chan struct{} // closed when stmt returns; made by fire
	after        chan struct{} // closed when fire is done; made by fire
}

func (it *Interrupter) fire() {
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

// Bounds bounds many statements (advisory: the unlocks of one Locker) by
// Timeout from one timer for all of them: a statement is pending from its
// start to its return, and the timer, armed when it is not, fires the
// Interrupters of the statements past their bound and re-arms for the
// earliest of the rest. Under a stream of statements the timer is armed
// about once per Timeout, not once per statement: a timer per unlock cost
// every release two allocations, a timer heap insert and removal, and at
// times a cross-thread wake-up (about 2 % of the process's CPU in advisory's
// BenchmarkPostgresContended).
type Bounds struct {
	Timeout time.Duration // set before first use
	mu      sync.Mutex
	pending map[*Interrupter]time.Time // when each is due
	armed   bool                       // timer will fire
	timer   *time.Timer
}

// add makes it pending, due timeout from now.
func (b *Bounds) add(it *Interrupter) {
	due := time.Now().Add(b.Timeout)
	b.mu.Lock()
	if b.pending == nil {
		b.pending = map[*Interrupter]time.Time{}
	}
	b.pending[it] = due
	if !b.armed {
		b.armed = true
		if b.timer == nil {
			b.timer = time.AfterFunc(b.Timeout, b.fire)
		} else {
			b.timer.Reset(b.Timeout)
		}
	}
	b.mu.Unlock()
}

// remove ends its pending state (its statement returned).
func (b *Bounds) remove(it *Interrupter) {
	b.mu.Lock()
	delete(b.pending, it)
	b.mu.Unlock()
}

// fire interrupts the pending statements that are due, and re-arms the
// timer for the rest.
func (b *Bounds) fire() {
	b.mu.Lock()
	now := time.Now()
	var (
		due  []*Interrupter
		next time.Time
	)
	for it, d := range b.pending {
		switch {
		case !now.Before(d):
			due = append(due, it)
			delete(b.pending, it)
		case next.IsZero() || d.Before(next):
			next = d
		}
	}
	if next.IsZero() {
		b.armed = false
	} else {
		b.timer.Reset(next.Sub(now))
	}
	b.mu.Unlock()
	// Outside b.mu: a fire waits for the cancel grace at most, and a
	// statement that returned in between is left alone (finished).
	for _, it := range due {
		it.fire()
	}
}
