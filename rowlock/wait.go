package rowlock

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/backoff"
	"github.com/lockkit/lockkit/internal/sqlconn"
	"github.com/lockkit/lockkit/internal/turns"
)

// maxNotifiedWait caps a waiter's sleep while notifications flow: a safety
// net only, since a release notifies and an expiry is waited for exactly.
const maxNotifiedWait = 30 * time.Second

// listenerLinger keeps an idle notification listener open for the next
// waiter before closing its connection.
const listenerLinger = 2 * time.Second

// listenerRetry is the least time between two attempts to start the
// notification listener after it failed; waiters poll meanwhile.
const listenerRetry = 250 * time.Millisecond

// wait is Acquire with Wait set. The waiters of one name in this Locker
// queue in FIFO order and only the head of the queue attempts and waits on
// the database; the others wait for their turn in-process, so that a
// release makes one statement per Locker, not one per waiter. The head
// passes the turn on when it acquires, fails or gives up.
func (l *Locker) wait(ctx context.Context, name string, ls *lease) (*Lock, error) {
	q, w := l.wake.Join(name)
	defer l.wake.Leave(name, q, w)
	select {
	case <-w.Turn():
	case <-ctx.Done():
	}
	if err := ctx.Err(); err != nil {
		return nil, &lockkit.HeldError{Name: name, Holder: l.wake.lastHolder(q).public(), Cause: err}
	}
	return l.head(ctx, name, ls, q)
}

// head is the wait of the head of name's queue. A release of name in this
// process or a notification for it (the queue's wake) makes it attempt again at once;
// wake-ups that came before an attempt began are discarded, since the
// attempt sees their effect. Once this Locker's listener has shown that it
// talks to PostgreSQL directly, the head waits in the name's waiting room
// (room.go) instead. On MySQL it waits in the room after a failed attempt,
// or at once when the name was contended lately (room_mysql.go).
func (l *Locker) head(ctx context.Context, name string, ls *lease, q *turns.Queue[*waitState]) (*Lock, error) {
	// Was the listener up before the first attempt? Then a release after
	// that attempt is announced on the queue's wake; otherwise the attempt is
	// repeated once LISTEN is active.
	var listening bool
	if l.notify != nil {
		l.notify.hold()
		defer l.notify.unhold()
		if lk, err := l.roomWait(ctx, name, ls, q, nil); err != errNoRoom {
			return lk, err
		}
		listening = l.notify.active()
	}
	mysqlRoom := l.s.dialect == MySQL
	if mysqlRoom && l.contendedRecently(name) {
		if lk, err := l.roomWait(ctx, name, ls, q, nil); err != errNoRoom {
			return lk, err
		}
	}
	turns.Drain(q.State.wake)
	lk, holder, err := l.attempt(ctx, name, ls)
	if err != nil || lk != nil {
		return lk, err
	}
	l.wake.setHolder(q, holder)
	if mysqlRoom {
		l.markContended(name)
		if lk, err := l.roomWait(ctx, name, ls, q, holder); err != errNoRoom {
			return lk, err
		}
	}
	try := func() (*Lock, *heldInfo, error) { return l.attempt(ctx, name, ls) }
	return l.waitLoop(ctx, name, q, holder, listening, try)
}

// waitLoop waits for name after a failed attempt that saw holder, and
// attempts with try on wake-ups and at the holder's expiry. The first
// attempt is repeated at once only when LISTEN was not active before it
// (listening false) and is now.
func (l *Locker) waitLoop(ctx context.Context, name string, q *turns.Queue[*waitState], holder *heldInfo, listening bool, try func() (*Lock, *heldInfo, error)) (*Lock, error) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	poll := minPoll
	first := true
	for {
		notified := l.notify != nil && l.notify.ensure(ctx)
		if err := ctx.Err(); err != nil {
			return nil, &lockkit.HeldError{Name: name, Holder: holder.public(), Cause: err}
		}
		// The queue's wake covers this process's releases since join, and
		// notifications since LISTEN: the first attempt is repeated
		// only when LISTEN came after it.
		if !first || (notified && !listening) {
			turns.Drain(q.State.wake)
			lk, h, err := try()
			if err != nil || lk != nil {
				return lk, withHolder(err, holder)
			}
			if h != nil {
				holder = h
				l.wake.setHolder(q, h)
			}
		}
		first = false

		var d time.Duration
		if notified {
			// A release notifies; an expiry does not, so wake when the
			// lease runs out.
			d = maxNotifiedWait
		} else {
			// Polling: exponential backoff with jitter, from minPoll
			// up to MaxPoll; the sleep is uniform in [poll/2, poll].
			d = backoff.Jitter(poll)
			poll = min(2*poll, l.s.maxPoll)
		}
		if holder != nil {
			d = min(d, holder.remaining+time.Millisecond)
		} else {
			// The row changed under the attempts: look again soon.
			d = min(d, 10*time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return nil, &lockkit.HeldError{Name: name, Holder: holder.public(), Cause: ctx.Err()}
		case <-q.State.wake:
		case <-timer.C:
		}
	}
}

// roomWait is head in name's waiting room: roomEnter waits for the room
// and attempts, and once in the room every attempt runs on the room's
// session; holder is the holder an attempt just saw, if any. It returns
// errNoRoom, having attempted nothing, when the pool does not reach
// PostgreSQL directly through pgx (see notifier.direct), or the MySQL
// server is a Galera node: there the head waits as before.
func (l *Locker) roomWait(ctx context.Context, name string, ls *lease, q *turns.Queue[*waitState], holder *heldInfo) (*Lock, error) {
	if l.galera.Load() == galeraYes || !l.roomAffordable() {
		return nil, errNoRoom
	}
	r, err := l.newRoom(ctx, name)
	if err != nil {
		return nil, l.opError(ctx, name, "acquire", err)
	}
	if ok, err := r.ready(ctx); !ok {
		if err != nil {
			sqlconn.Discard(r.conn)
		} else {
			_ = r.conn.Close()
		}
		if err := ctx.Err(); err != nil {
			return nil, &lockkit.HeldError{Name: name, Cause: err}
		}
		return nil, errNoRoom
	}
	var (
		listening bool
		inRoom    = true
	)
	for {
		// As in head: a release after the attempt is announced on the
		// queue's wake only if LISTEN was active before it.
		listening = l.notify != nil && l.notify.active()
		turns.Drain(q.State.wake)
		sent := l.now()
		res := r.enter(ctx, ls, true, roomBound(holder))
		if res.err == errRoomBusy {
			// Taken for the whole bound (a stopped process, or another
			// lock on the same keys): attempt without it.
			lk, h, err := l.attempt(ctx, name, ls)
			if err != nil || lk != nil {
				r.leave(false, false)
				return lk, withHolder(err, holder)
			}
			if h != nil {
				holder = h
				l.wake.setHolder(q, h)
			}
			continue
		}
		if res.err != nil && ctx.Err() == nil && r.ended(res.err, true) {
			// The room's session was killed while it waited: wait on
			// without the room, attempting at once.
			inRoom, listening = false, false
			break
		}
		if res.err != nil {
			return nil, withHolder(l.opError(ctx, name, "acquire", res.err), holder)
		}
		if res.token != 0 {
			return r.acquired(name, ls, res, sent), nil
		}
		if res.h != nil {
			holder = res.h
			l.wake.setHolder(q, res.h)
		}
		break
	}
	// In the room, or waiting without it.
	lk, err := l.waitLoop(ctx, name, q, holder, listening, func() (*Lock, *heldInfo, error) {
		if !inRoom {
			return l.attempt(ctx, name, ls)
		}
		sent := l.now()
		res := r.enter(ctx, ls, false, 0)
		if res.err != nil && ctx.Err() == nil && r.ended(res.err, false) {
			// The room's session was killed: the room is free for
			// the next head, and this one waits on without it.
			inRoom = false
			return l.attempt(ctx, name, ls)
		}
		if res.err != nil {
			return nil, nil, l.opError(ctx, name, "acquire", res.err)
		}
		if res.token != 0 {
			return r.acquired(name, ls, res, sent), nil, nil
		}
		return nil, res.h, nil
	})
	if lk == nil && !r.gone() {
		r.abandon()
	}
	return lk, err
}

// roomAffordable reports whether the pool can give a head its room's
// connection and still have one for other statements (a release of the
// lease the head waits for, in this process) besides the listener's: a
// pool with MaxOpenConns set below that waits without rooms.
func (l *Locker) roomAffordable() bool {
	st := l.db.Stats()
	if st.MaxOpenConnections <= 0 {
		return true
	}
	need := 2 // the room's and one more (on MySQL, also for a KILL QUERY)
	if l.notify != nil && !l.notify.active() {
		need++ // and the listener's, soon
	}
	return st.MaxOpenConnections-st.InUse >= need
}

// errNoRoom: the waiting room does not work through this pool.
var errNoRoom = errors.New("rowlock: no waiting room through this pool")

// withHolder adds the holder last seen to the error of an attempt that
// ctx ended.
func withHolder(err error, h *heldInfo) error {
	var he *lockkit.HeldError
	if errors.As(err, &he) && he.Holder == nil {
		he.Holder = h.public()
	}
	return err
}

// wakers holds, per name, the queue of this Locker's waiters (only the
// holder of the turn attempts and waits on the database) and the wake-up
// of that waiter: releases of the name in this process and, on PostgreSQL,
// notifications from every process.
type wakers struct {
	turns.Set[*waitState]
}

// waitState is the state of one name's queue.
type waitState struct {
	// wake holds one pending wake-up for the holder of the turn. It
	// outlives a holder, so a release while the turn passes is not lost.
	// Set once, read without the lock.
	wake chan struct{}
	// holder is the holder the last failed attempt saw, for the errors
	// of waiters whose context ends in the queue.
	holder *heldInfo
}

func newWakers() *wakers {
	return &wakers{turns.Set[*waitState]{New: func() *waitState {
		return &waitState{wake: make(chan struct{}, 1)}
	}}}
}

func (w *wakers) setHolder(q *turns.Queue[*waitState], h *heldInfo) {
	if h != nil {
		w.Do(func() { q.State.holder = h })
	}
}

func (w *wakers) lastHolder(q *turns.Queue[*waitState]) (h *heldInfo) {
	w.Do(func() { h = q.State.holder })
	return h
}

// broadcast wakes the waiter holding the turn of name, if any.
func (w *wakers) broadcast(name string) {
	if st, ok := w.Lookup(name); ok {
		signal(st.wake)
	}
}

// broadcastAll wakes the waiter holding the turn of every name.
func (w *wakers) broadcastAll() {
	w.Range(func(st *waitState) { signal(st.wake) })
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// errNotPgx means the *sql.DB's driver is not pgx's stdlib, so there is no
// way to wait for notifications; waiters poll.
var errNotPgx = errors.New("rowlock: the database/sql driver is not pgx's stdlib; waiters poll")

// errPooled means the listener's connection goes through a pooler or proxy
// (its server session's pid is not the one the connection was given at
// connect, as PgBouncer and others make pids up), where a LISTEN may stay
// with a server session that serves other clients (transaction pooling)
// and notifications never arrive: waiters poll instead.
var errPooled = errors.New("rowlock: the connection goes through a pooler; waiters poll")

// notifier runs one LISTEN connection per Locker while anyone waits, and
// turns notifications into wake-ups. It is shared by all waiters of the
// Locker and reference-counted.
type notifier struct {
	db      *sql.DB
	channel string
	wake    *wakers

	mu       sync.Mutex
	refs     int
	run      *listenRun
	linger   *time.Timer
	disabled bool      // the driver cannot listen
	isDirect bool      // a listener ran LISTEN on a session of its own: no pooler
	failedAt time.Time // last failure of a run
	closed   bool

	runs sync.WaitGroup // listener goroutines, for close to wait on
}

// listenRun is one listener connection's lifetime.
type listenRun struct {
	cancel    context.CancelFunc
	ready     chan struct{} // closed when LISTEN is active or the run failed
	readyOnce sync.Once
	done      chan struct{} // closed when the run's goroutine returned
	err       error         // set before done closes
}

func newNotifier(db *sql.DB, channel string, wake *wakers) *notifier {
	return &notifier{db: db, channel: channel, wake: wake}
}

func (n *notifier) hold() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refs++
	if n.linger != nil {
		n.linger.Stop()
		n.linger = nil
	}
}

func (n *notifier) unhold() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refs--
	if n.refs == 0 && n.run != nil && !n.closed {
		n.linger = time.AfterFunc(listenerLinger, n.stopIfIdle)
	}
}

func (n *notifier) stopIfIdle() {
	n.mu.Lock()
	if n.refs > 0 || n.run == nil {
		n.mu.Unlock()
		return
	}
	r := n.run
	n.run = nil
	n.linger = nil
	n.mu.Unlock()
	r.cancel()
	<-r.done
}

func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	if n.linger != nil {
		n.linger.Stop()
		n.linger = nil
	}
	r := n.run
	n.run = nil
	n.mu.Unlock()
	if r != nil {
		r.cancel()
	}
	// Also waits for a run that stopIfIdle is stopping.
	n.runs.Wait()
}

// active reports whether a listener has executed LISTEN and still runs.
func (n *notifier) active() bool {
	n.mu.Lock()
	r := n.run
	n.mu.Unlock()
	if r == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
	}
	select {
	case <-r.ready:
		return true
	default:
		return false
	}
}

// checkDirect returns errPooled when c's server session's pid is not the
// one c was given at connect: a pooler or proxy stands between.
func checkDirect(ctx context.Context, c *pgx.Conn) error {
	var pid int32
	if err := c.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&pid); err != nil {
		return err
	}
	if uint32(pid) != c.PgConn().PID() {
		return errPooled
	}
	return nil
}

// probe finds out, on conn, whether the pool reaches PostgreSQL directly
// through pgx (see direct), unless a listener or an earlier probe already
// has: one round trip, once per Locker.
func (n *notifier) probe(ctx context.Context, conn *sql.Conn) bool {
	n.mu.Lock()
	known, direct := n.isDirect || n.disabled, n.isDirect && !n.disabled
	n.mu.Unlock()
	if known {
		return direct
	}
	err := conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errNotPgx
		}
		return checkDirect(ctx, sc.Conn())
	})
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case err == nil:
		n.isDirect = true
	case errors.Is(err, errNotPgx) || errors.Is(err, errPooled):
		n.disabled = true
	}
	return err == nil
}

// direct reports whether the pool reaches PostgreSQL directly through
// pgx, as a listener found (its session's pid is the one it was given at
// connect), so that session advisory locks stay with their connection:
// the waiting room needs that.
func (n *notifier) direct() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.isDirect && !n.disabled
}

// ensure makes sure a listener is running and has executed LISTEN, and
// reports whether it has. When it reports false the caller polls.
func (n *notifier) ensure(ctx context.Context) bool {
	n.mu.Lock()
	if n.disabled || n.closed {
		n.mu.Unlock()
		return false
	}
	r := n.run
	if r != nil {
		select {
		case <-r.done:
			r = nil // failed: start another
		default:
		}
	}
	if r == nil {
		if time.Since(n.failedAt) < listenerRetry {
			n.mu.Unlock()
			return false
		}
		ctx, cancel := context.WithCancel(context.Background())
		r = &listenRun{cancel: cancel, ready: make(chan struct{}), done: make(chan struct{})}
		n.run = r
		n.runs.Add(1)
		go n.listen(ctx, r)
	}
	n.mu.Unlock()
	select {
	case <-r.ready:
		select {
		case <-r.done:
			return false
		default:
			return true
		}
	case <-ctx.Done():
		return false
	}
}

func (n *notifier) listen(ctx context.Context, r *listenRun) {
	defer n.runs.Done()
	err := n.listenConn(ctx, r)
	n.mu.Lock()
	r.err = err
	if ctx.Err() == nil {
		n.failedAt = time.Now()
	}
	if errors.Is(err, errNotPgx) || errors.Is(err, errPooled) {
		n.disabled = true
	}
	n.mu.Unlock()
	r.readyOnce.Do(func() { close(r.ready) })
	close(r.done)
	// Waiters that relied on this listener poll or restart it.
	n.wake.broadcastAll()
}

func (n *notifier) listenConn(ctx context.Context, r *listenRun) error {
	conn, err := n.db.Conn(ctx)
	if err != nil {
		return err
	}
	// The session is LISTENing; it never goes back to the pool.
	defer sqlconn.Discard(conn)
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errNotPgx
		}
		pc := sc.Conn()
		n.mu.Lock()
		known := n.isDirect // a probe found the pool direct: same DSN
		n.mu.Unlock()
		if !known {
			if err := checkDirect(ctx, pc); err != nil {
				return err
			}
		}
		if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{n.channel}.Sanitize()); err != nil {
			return err
		}
		n.mu.Lock()
		n.isDirect = true
		n.mu.Unlock()
		r.readyOnce.Do(func() { close(r.ready) })
		for {
			nt, err := pc.WaitForNotification(ctx)
			if err != nil {
				return err
			}
			if nt.Channel == n.channel {
				n.wake.broadcast(nt.Payload)
			}
		}
	})
}
