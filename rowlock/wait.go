package rowlock

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/sqlconn"
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

// wait is Acquire's loop after a first failed attempt. It registers for
// wake-ups first, then attempts again, so that a release between the two
// is never missed.
func (l *Locker) wait(ctx context.Context, name string, ls *lease, holder *heldInfo) (*Lock, error) {
	wake := l.wake.add(name)
	defer l.wake.remove(name, wake)
	if l.notify != nil {
		l.notify.hold()
		defer l.notify.unhold()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	poll := minPoll
	for {
		notified := l.notify != nil && l.notify.ensure(ctx)
		if err := ctx.Err(); err != nil {
			return nil, &lockkit.HeldError{Name: name, Holder: holder.public(), Cause: err}
		}
		lk, h, err := l.attempt(ctx, name, ls)
		if err != nil || lk != nil {
			return lk, err
		}
		if h != nil {
			holder = h
		}

		var d time.Duration
		if notified {
			// A release notifies; an expiry does not, so wake when the
			// lease runs out.
			d = maxNotifiedWait
		} else {
			// Polling: exponential backoff with jitter, from minPoll
			// up to MaxPoll; the sleep is uniform in [poll/2, poll].
			d = poll/2 + rand.N(poll/2+1)
			poll = min(2*poll, l.s.maxPoll)
		}
		if h != nil {
			d = min(d, h.remaining+time.Millisecond)
		} else {
			// The row changed under the attempts: look again soon.
			d = min(d, 10*time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return nil, &lockkit.HeldError{Name: name, Holder: holder.public(), Cause: ctx.Err()}
		case <-wake:
		case <-timer.C:
		}
	}
}

// wakers lets waiters in this process sleep until a release of their name,
// announced by this process's releases and, on PostgreSQL, by
// notifications from every process.
type wakers struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]struct{}
}

func newWakers() *wakers { return &wakers{m: map[string]map[chan struct{}]struct{}{}} }

func (w *wakers) add(name string) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.m[name]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		w.m[name] = set
	}
	set[ch] = struct{}{}
	return ch
}

func (w *wakers) remove(name string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m[name], ch)
	if len(w.m[name]) == 0 {
		delete(w.m, name)
	}
}

func (w *wakers) broadcast(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[name] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (w *wakers) broadcastAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range w.m {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// errNotPgx means the *sql.DB's driver is not pgx's stdlib, so there is no
// way to wait for notifications; waiters poll.
var errNotPgx = errors.New("rowlock: the database/sql driver is not pgx's stdlib; waiters poll")

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
	if errors.Is(err, errNotPgx) {
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
		if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{n.channel}.Sanitize()); err != nil {
			return err
		}
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
