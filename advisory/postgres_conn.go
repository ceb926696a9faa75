package advisory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lockkit/lockkit/internal/sqlconn"
	"github.com/lockkit/lockkit/internal/starter"
)

// This file holds the one seam between the PostgreSQL lock logic and the two
// ways of reaching PostgreSQL: a database/sql pool over pgx's stdlib driver,
// and a native pgxpool. Both hand out a session that the lock logic pins and
// drives through its *pgx.Conn.

// pgSource hands out pinned sessions.
type pgSource interface {
	pin(ctx context.Context) (pgPinned, error)
}

// pgPinned is one session, taken out of its pool for one lock (or one
// transaction). Its methods are not safe for concurrent use: the lock logic
// serialises them (the loss watcher runs inside with, and is stopped before
// anything else runs).
type pgPinned interface {
	// with runs fn on the session's connection.
	with(fn func(c *pgx.Conn) error) error
	// release returns the session to its pool. Only for a session that
	// holds no lock and sits outside any transaction.
	release()
	// discard closes the session and drops it from its pool: the way out
	// of every state in which the session might still hold a lock.
	discard()
}

// sqlSource pins *sql.Conn sessions of a database/sql pool over pgx's stdlib
// driver.
type sqlSource struct{ db *sql.DB }

func (s sqlSource) pin(ctx context.Context) (pgPinned, error) {
	c, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &sqlPinned{c: c}, nil
}

type sqlPinned struct{ c *sql.Conn }

// errNotPgx means the *sql.DB runs a driver other than pgx's stdlib.
var errNotPgx = errors.New("advisory: the *sql.DB does not use pgx's database/sql driver (github.com/jackc/pgx/v5/stdlib)")

func (p *sqlPinned) with(fn func(c *pgx.Conn) error) error {
	return p.c.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errNotPgx
		}
		return fn(sc.Conn())
	})
}

func (p *sqlPinned) release() { _ = p.c.Close() }
func (p *sqlPinned) discard() { sqlconn.Discard(p.c) }

// poolSource pins connections of a pgxpool.
type poolSource struct{ pool *pgxpool.Pool }

func (s poolSource) pin(ctx context.Context) (pgPinned, error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &poolPinned{c: c}, nil
}

type poolPinned struct{ c *pgxpool.Conn }

func (p *poolPinned) with(fn func(c *pgx.Conn) error) error { return fn(p.c.Conn()) }
func (p *poolPinned) release()                              { p.c.Release() }
func (p *poolPinned) discard() {
	conn := p.c.Hijack()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = conn.Close(ctx)
}

// closeTimeout bounds the Terminate message sent when a session is discarded.
// The socket is closed when it expires either way.
const closeTimeout = time.Second

// watcher detects the loss of a held session lock from a signal the server
// pushes: it blocks in a read on the pinned session (WaitForNotification).
// A backend that is terminated (pg_terminate_backend, a server shutdown)
// sends a FATAL error and closes the socket, and a crashed server's kernel
// closes it, so the read returns at once. Notifications (if someone LISTENs
// on the session) are skipped.
//
// The watch starts watchDelay after the lock was granted (see
// Start), so that a short critical section (lock, a few statements
// elsewhere, unlock) pays for no goroutine, no timer and no socket wake-up:
// its unlock statement is what confirms the session was alive. A session
// that dies in that first moment is reported when the watch starts,
// because its socket already reads as closed.
type watcher struct {
	nc      net.Conn // the session's socket, for the stop deadline
	pc      pgPinned
	onLoss  func(cause error)
	done    chan struct{} // made by begin: most locks never start their watch
	lossErr error         // set before done is closed: why the lock was lost, or nil

	mu       sync.Mutex
	started  bool // the goroutine runs, or ran
	stopping atomic.Bool

	at starter.Entry // its place in the Locker's starter, until due
}

// watchDelay is how long after the grant the watch starts. It adds to the
// loss-detection bound only for a session that dies within it.
//
// Under a continuous stream of grants (one name contended by many
// waiters) the starter's timer fires about once per watchDelay, each fire
// a goroutine and a thread woken (about 28 µs of CPU on the 2-core
// benchmark machine): at 1 ms that was 0.10-0.14 fires per acquisition in
// BenchmarkPostgresContended, at 10 ms it is about 0.015.
const watchDelay = 10 * time.Millisecond

// init (re)initialises w to watch pc, whose socket is nc; nothing runs
// until begin. onLoss runs in the watcher's goroutine after the session
// was found dead, before done closes. w must not be in use (never
// started, or stopped).
func (w *watcher) init(pc pgPinned, nc net.Conn, onLoss func(cause error)) {
	w.mu.Lock()
	w.nc, w.pc, w.onLoss = nc, pc, onLoss
	w.done, w.lossErr, w.started = nil, nil, false
	w.stopping.Store(false)
	w.mu.Unlock()
}

// begin starts the watch, unless it was stopped or has started already.
func (w *watcher) begin() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.stopping.Load() {
		return
	}
	w.started = true
	w.done = make(chan struct{})
	go w.run()
}

// Start begins the watch when the Locker's starter finds it due (see
// watchDelay): a Lock arms no timer of its own, which would cost every
// lock a cross-thread wake-up (see package starter). A watcher stopped
// before it is due does not begin.
func (w *watcher) Start() { w.begin() }

func (w *watcher) run() {
	defer close(w.done)
	err := w.pc.with(func(c *pgx.Conn) error {
		pg := c.PgConn()
		for {
			err := pg.WaitForNotification(context.Background())
			if err == nil {
				continue // a NotificationResponse: keep waiting
			}
			if isTimeout(err) && !pg.IsClosed() {
				if w.stopping.Load() {
					// Our own stop deadline. A read timeout leaves the
					// pgconn open and usable (only non-timeout read
					// errors close it); clear the deadline.
					_ = w.nc.SetReadDeadline(time.Time{})
					return nil
				}
				continue
			}
			return err
		}
	})
	if err != nil {
		w.lossErr = fmt.Errorf("%w: %w", errSessionEnded, err)
		w.onLoss(w.lossErr)
	}
}

// stop ends the watch and waits for the goroutine, if it started, to leave
// the session (which clears the deadline stop set). It returns the loss
// error if the watcher found the session dead first. Later calls only wait
// and return the same.
func (w *watcher) stop() error {
	w.mu.Lock()
	first := w.stopping.CompareAndSwap(false, true)
	started := w.started
	w.mu.Unlock()
	if !started {
		return nil // Start will see stopping
	}
	if first {
		_ = w.nc.SetReadDeadline(time.Now())
	}
	<-w.done
	return w.lossErr
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
