package mysqllock

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/lockstate"
	"github.com/lockkit/lockkit/internal/sqlconn"
	"github.com/lockkit/lockkit/internal/starter"
)

// Lock is a held MySQL or MariaDB user lock: one or more GET_LOCK
// names held by one pinned connection. It implements [lockkit.Lock]; its
// methods are safe for concurrent use.
//
// Name is the name it was acquired under; for several names, their sorted
// list joined by ",". Token is 0 unless Config.Fencing is set: GET_LOCK has
// no fencing token of its own.
// While the lock is held, a probe on its connection checks every
// ProbeInterval that the server still grants every name to this session;
// when it does not (the session was killed, the server restarted, the
// connection broke), Done closes and Err wraps lockkit.ErrLost.
type Lock struct {
	state *lockstate.Handle

	conn    *sql.Conn
	connID  int64
	targets []mysqlTarget
	probeQ  string // the probe statement; built by the first probe, under mu
	probeA  []any  // its arguments

	m *Locker

	mu      sync.Mutex    // held by a probe; serialises probing with Release
	stopped bool          // no more probes
	probeAt starter.Entry // the next probe's place in m.probes

	rctx releaseCtx // the release's context, when Release's can end
}

var _ lockkit.Lock = (*Lock)(nil)

// Name returns the name the lock was acquired under.
func (l *Lock) Name() string { return l.state.Name() }

// Token returns the lock's fencing token: with Config.Fencing, for a lock
// on one name, its counter's value drawn at acquire; otherwise 0.
func (l *Lock) Token() int64 { return l.state.Token() }

// Done is closed when the lock is released or lost.
func (l *Lock) Done() <-chan struct{} { return l.state.Done() }

// Err is nil while the lock is held; then lockkit.ErrReleased, or an error
// wrapping lockkit.ErrLost with the cause.
func (l *Lock) Err() error { return l.state.Err() }

// Release gives the lock back with RELEASE_LOCK, which must answer 1 for
// every name; see [lockkit.Lock.Release]. A release the server did not
// confirm destroys the connection and reports the lock lost.
func (l *Lock) Release(ctx context.Context) error { return l.state.Release(ctx) }

// ConnID is the server's connection id (CONNECTION_ID()) of the session
// that holds the lock: what IS_USED_LOCK returns for its names, and what
// KILL takes.
func (l *Lock) ConnID() int64 { return l.connID }

// Names returns the names the lock holds, as the caller gave them (for
// keys, their String form), in the order they were taken.
func (l *Lock) Names() []string {
	out := make([]string, len(l.targets))
	for i, t := range l.targets {
		out[i] = t.name
	}
	return out
}

// UserLockNames returns the GET_LOCK names the lock holds on the server,
// in the order they were taken: sorted.
func (l *Lock) UserLockNames() []string {
	out := make([]string, len(l.targets))
	for i, t := range l.targets {
		out[i] = t.server
	}
	return out
}

func (m *Locker) newLock(conn *sql.Conn, connID int64, ts []mysqlTarget, token int64) *Lock {
	l := &Lock{
		conn:    conn,
		connID:  connID,
		targets: ts,
		m:       m,
	}
	l.state = lockstate.New(lockName(ts), token, l.unlock)
	m.probes.Add(&l.probeAt, probeStart{l}, m.probeInterval)
	return l
}

// probeStart starts a probe of its lock when m.probes finds it due. (A
// struct of one pointer: an interface holds it without an allocation.)
type probeStart struct{ l *Lock }

func (p probeStart) Start() { go p.l.tick() }

// lockName is the name of a lock on ts: the name, or for several names
// their list joined by ",".
func lockName(ts []mysqlTarget) string {
	if len(ts) == 1 {
		return ts[0].name
	}
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.name
	}
	return strings.Join(names, ",")
}

// tick runs one probe when it is due, and schedules the next one. It
// holds mu for the probe, so that Release (which takes mu to stop the
// probing) never runs RELEASE_LOCK while a probe is in flight, and a probe
// never sees its own lock's release. The Locker's one timer (m.probes),
// rather than a goroutine or a timer per lock, keeps an uncontended
// acquire and release free of scheduling work: a timer per lock cost each
// acquisition a wake-up of another thread (see package starter).
func (l *Lock) tick() {
	if cause := l.tickLocked(); errors.Is(cause, errNoAnswer) {
		// The connection stopped answering, and the server may not know:
		// its session would keep the lock until the server noticed
		// (wait_timeout, TCP keepalive). End it from another connection,
		// outside mu, so that Release need not wait for it.
		l.m.kill(l.connID)
	}
}

// tickLocked probes under mu, and returns the cause of a loss it found.
func (l *Lock) tickLocked() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return nil
	}
	err := l.probe()
	if err == nil {
		l.m.probes.Add(&l.probeAt, probeStart{l}, l.m.probeInterval)
		return nil
	}
	l.stopped = true
	if l.state.MarkLost(err) {
		// Whatever the session still holds (if it is alive at all) must
		// not go back to the pool.
		sqlconn.Discard(l.conn)
	}
	return err
}

// errNoAnswer marks a probe or release that the connection did not answer
// in time.
var errNoAnswer = errors.New("no answer")

// errNotGranted is the loss cause when the server no longer grants a name
// to the lock's session.
var errNotGranted = errors.New("the server no longer grants the lock to this session")

// probe checks that the server still grants every name to the lock's
// session.
func (l *Lock) probe() error {
	if l.probeQ == "" {
		// Built at the first probe, off the acquire path.
		var q strings.Builder
		q.WriteString("SELECT ")
		for i, t := range l.targets {
			if i > 0 {
				q.WriteString(" AND ")
			}
			q.WriteString("IS_USED_LOCK(?) <=> CONNECTION_ID()")
			l.probeA = append(l.probeA, t.server)
		}
		l.probeQ = q.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.m.probeTimeout)
	defer cancel()
	var ok sql.NullBool
	var err error
	if len(l.targets) == 1 {
		err = l.m.conns.QueryRow(ctx, l.conn, l.probeQ, l.probeA, &ok)
	} else {
		err = l.conn.QueryRowContext(ctx, l.probeQ, l.probeA...).Scan(&ok)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w within %v: %w", errNoAnswer, l.m.probeTimeout, err)
		}
		return fmt.Errorf("mysqllock: probing the lock's connection %d: %w", l.connID, err)
	}
	if !ok.Valid || !ok.Bool {
		return fmt.Errorf("mysqllock: connection %d: %w", l.connID, errNotGranted)
	}
	return nil
}

// unlock is the handle's UnlockFunc: it stops the watcher, then releases
// every name and requires 1 from each. A release that is not confirmed
// destroys the connection, which ends the session and every lock it holds.
func (l *Lock) unlock(ctx context.Context, lost bool) error {
	l.stopWatch()
	if lost {
		sqlconn.Discard(l.conn)
		return nil
	}
	rctx := ctx
	if ctx.Done() != nil {
		l.rctx = releaseCtx{Context: context.WithoutCancel(ctx), deadline: time.Now().Add(l.m.releaseTimeout), done: make(chan struct{})}
		rctx = &l.rctx
		l.m.releases.Add(&l.rctx.at, &l.rctx, l.m.releaseTimeout)
		defer l.m.releases.Remove(&l.rctx.at)
	}
	if err := l.m.releaseAll(rctx, l.conn, l.targets); err != nil {
		sqlconn.Discard(l.conn)
		if rctx.Err() != nil {
			// No answer: the server may not know the connection is
			// gone, and would keep the lock until it noticed.
			l.m.kill(l.connID)
		}
		return fmt.Errorf("mysqllock: release on connection %d: %w", l.connID, err)
	}
	// Confirmed: the connection goes back to the pool holding nothing.
	_ = l.conn.Close()
	return nil
}

// releaseCtx is the context of a release given a context that can end:
// the caller's values without its cancellation, ending releaseTimeout
// after the release began (context.DeadlineExceeded). Its end comes from
// the Locker's one release timer (m.releases), not from a runtime timer
// per release as context.WithTimeout's would (see package starter).
//
// Its Context is context.WithoutCancel of the caller's, not the caller's
// itself, so that neither context.Cause nor a context derived from it
// finds the caller's cancellation through Value.
type releaseCtx struct {
	context.Context
	deadline time.Time
	done     chan struct{}
	at       starter.Entry // its place in m.releases
}

func (c *releaseCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *releaseCtx) Done() <-chan struct{}       { return c.done }

func (c *releaseCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// Start ends c: m.releases found it due.
func (c *releaseCtx) Start() { close(c.done) }

// stopWatch ends the probing, waiting for a probe in flight.
func (l *Lock) stopWatch() {
	l.mu.Lock()
	l.stopped = true
	l.m.probes.Remove(&l.probeAt)
	l.mu.Unlock()
}
