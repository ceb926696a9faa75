package redislock

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockkit/lockkit/internal/backoff"
	"github.com/lockkit/lockkit/internal/turns"
	"github.com/redis/go-redis/v9"
)

// hub shares one pub/sub connection among all of a Locker's waiters. Each
// waited-on name's release channel is subscribed once, reference-counted by
// its waiters. When its last waiter leaves, the channel stays subscribed
// for the hub's linger (waitLinger), so that a caller that loops Lock and
// Release on a name finds it subscribed and skips both the SUBSCRIBE and
// the first try (see Locker.wait); a channel nobody has waited on for that
// long is unsubscribed, and when no channel is left the connection is
// closed and its reader goroutine ends. A Locker that nobody has waited on
// for the linger therefore holds no pub/sub connection and runs no
// goroutine; [Locker.Close] ends the linger at once (close), and so does
// closing the client (run ends). Since only the head of a Locker's local queue for a name
// waits on the server (see turns), a channel has one waiter per Locker:
// the queue's, handed from head to head with setID.
//
// A release that hands the lock to a waiter publishes that waiter's id (see
// releaseSrc), and the hub wakes only the waiter with that id, if it is
// one of its own, and keeps the grant for it (takeGrant); the other
// waiters sleep on. So that a grant to a waiter
// that never claims it (its process died) does not stall them until their
// own recheck, every grant (re)arms a timer per channel for the grant's
// short lease: if no further grant is seen before it runs out, every waiter
// on the channel is woken to try again. Any other message ("released": the
// key was deleted, nobody was queued) wakes every waiter on the channel.
type hub struct {
	c      Client
	linger time.Duration // how long a channel stays subscribed with no waiter

	mu     sync.Mutex
	cur    *session // nil while nobody waits or lingers
	seq    uint64
	closed bool // Locker.Close ran: no lingering
}

// waitLinger is how long a release channel stays subscribed after its last
// waiter left: long enough for a worker that loops lock, work, release to
// come back to it, short enough that an idle Locker soon holds nothing.
const waitLinger = 5 * time.Second

// session is one pub/sub connection and the waiters on it.
type session struct {
	ps     *redis.PubSub
	chans  map[string]*chanState
	pings  map[string]func() // PING payload -> what its PONG means; under hub.mu
	quit   chan struct{}     // closed by close
	done   chan struct{}     // closed when run has returned
	closed bool
	broken bool // a read failed and no resync has come back since: messages may be lost
}

// brokenRetry is how often a waiter tries again while its Locker's pub/sub
// connection is broken (jittered), instead of waiting for a release
// message that cannot arrive.
const brokenRetry = 100 * time.Millisecond

// chanState is one subscribed channel.
type chanState struct {
	waiters map[*waiter]struct{}
	byID    map[string]*waiter
	ready   chan struct{} // closed once the server has the subscription
	stall   *time.Timer   // wakes every waiter when the last grant ran out; nil before the first
	linger  *time.Timer   // unsubscribes the channel when nobody came back; nil while waited on
	idle    uint64        // counts the times the channel lost its last waiter: which linger is current
}

// waiter is one Acquire waiting on a channel. wake receives a value after a
// release message that concerns it (a grant to its id, or a release that
// handed the lock to nobody), when a grant to another waiter ran out
// unclaimed, or after the connection was re-established (messages may have
// been missed meanwhile).
type waiter struct {
	h       *hub
	s       *session
	ch      string
	id      string // waiterID of its secret
	wake    chan struct{}
	granted *grant // the last grant to id not yet taken (takeGrant); under hub.mu
}

// grant is a release message that handed the lock to a waiter:
// "granted <id> <grant-ms> <score> <fence>" (releaseSrc). A release of an
// earlier lockkit version sends only the first three fields; score is then
// empty.
type grant struct {
	id    string
	lease time.Duration // how long the grant reserves the lock, from when it was made
	score string        // the granted registration's score in the queue
	fence int64         // the lock's fencing token under the grant
}

// waiterID is the id a release publishes when it hands the lock to the
// waiter whose secret is secret ("<secret>|"): its SHA-1, so that the
// secret itself is never published.
func waiterID(secret string) string {
	sum := sha1.Sum([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// retry bounds how long w sleeps before it tries again without a message:
// d, or brokenRetry (jittered) while the pub/sub connection is broken.
func (w *waiter) retry(d time.Duration) time.Duration {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	if w.s.broken || w.s.closed {
		return min(d, backoff.Jitter(brokenRetry))
	}
	return d
}

func (w *waiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// subscribe registers a waiter on channel ch and returns once the server is
// known to have the subscription: a PING sent on the pub/sub connection after
// the SUBSCRIBE has come back. A release published after subscribe returns
// therefore reaches the waiter. id is the waiter's waiterID.
func (h *hub) subscribe(ctx context.Context, ch, id string) (*waiter, error) {
	h.mu.Lock()
	s := h.cur
	if s == nil {
		s = &session{
			ps:    h.c.Subscribe(context.WithoutCancel(ctx)),
			chans: make(map[string]*chanState),
			pings: make(map[string]func()),
			quit:  make(chan struct{}),
			done:  make(chan struct{}),
		}
		h.cur = s
		go s.run(h)
	}
	w := &waiter{h: h, s: s, ch: ch, id: id, wake: make(chan struct{}, 1)}
	cs := s.chans[ch]
	if cs == nil {
		cs = &chanState{waiters: make(map[*waiter]struct{}), byID: make(map[string]*waiter), ready: make(chan struct{})}
		s.chans[ch] = cs
		cs.add(w)
		ready := cs.ready
		id := h.pingIDLocked()
		s.pings[id] = func() { closeOnce(ready) }
		err := s.ps.Subscribe(ctx, ch)
		if err == nil {
			err = s.ps.Ping(ctx, id)
		}
		if err != nil {
			delete(s.pings, id)
			h.mu.Unlock()
			w.close()
			return nil, err
		}
	} else {
		cs.add(w)
		if cs.linger != nil {
			cs.linger.Stop() // a linger that already fired sees the waiter and does nothing
			cs.linger = nil
		}
	}
	ready := cs.ready
	h.mu.Unlock()

	select {
	case <-ready:
		return w, nil
	case <-ctx.Done():
		w.close()
		return nil, ctx.Err()
	}
}

// subscribed reports whether the server has channel ch subscribed on the
// hub's connection: a waiter on it, or one that left it within the linger.
func (h *hub) subscribed(ch string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		return false
	}
	cs := h.cur.chans[ch]
	if cs == nil {
		return false
	}
	select {
	case <-cs.ready:
		return true
	default:
		return false
	}
}

func (cs *chanState) add(w *waiter) {
	cs.waiters[w] = struct{}{}
	cs.byID[w.id] = w
}

func (cs *chanState) wakeAll() {
	for w := range cs.waiters {
		w.signal()
	}
}

// deliver dispatches a message published on the channel; under hub.mu.
func (h *hub) deliver(s *session, ch, payload string) {
	cs := s.chans[ch]
	if cs == nil {
		return
	}
	g, ok := parseGrant(payload)
	if !ok {
		if cs.stall != nil {
			cs.stall.Stop()
		}
		cs.wakeAll()
		return
	}
	if w := cs.byID[g.id]; w != nil {
		w.granted = &g
		w.signal()
	}
	d := g.lease + time.Millisecond
	if cs.stall == nil {
		cs.stall = time.AfterFunc(d, func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if s.chans[ch] == cs {
				cs.wakeAll()
			}
		})
	} else {
		cs.stall.Reset(d)
	}
}

// parseGrant decodes "granted <id> <grant-ms> [<score> <fence>]"
// (releaseSrc).
func parseGrant(payload string) (g grant, ok bool) {
	rest, ok := strings.CutPrefix(payload, "granted ")
	if !ok {
		return grant{}, false
	}
	f := strings.Split(rest, " ")
	if len(f) != 2 && len(f) != 4 {
		return grant{}, false
	}
	ms, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || ms < 0 || f[0] == "" {
		return grant{}, false
	}
	g = grant{id: f[0], lease: time.Duration(ms) * time.Millisecond}
	if len(f) == 4 {
		fence, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil || f[2] == "" {
			return grant{}, false
		}
		g.score, g.fence = f[2], fence
	}
	return g, true
}

// takeGrant returns the last grant to w's id that arrived since the last
// call (or since reset), or nil.
func (w *waiter) takeGrant() *grant {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	g := w.granted
	w.granted = nil
	return g
}

// reset forgets the wake-ups and the grant that arrived before now: a
// waiter's attempt sees for itself what they announced.
func (w *waiter) reset() {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	w.granted = nil
	turns.Drain(w.wake)
}

func (h *hub) pingIDLocked() string {
	h.seq++
	return "lockkit-sync-" + strconv.FormatUint(h.seq, 10)
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// setID makes a release's grant to id wake w, and no longer one to w's
// previous id: a name's subscription passes from one head of a Locker's
// local queue to the next (see turns), each with its own id.
func (w *waiter) setID(id string) {
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if cs := w.s.chans[w.ch]; cs != nil {
		if cs.byID[w.id] == w {
			delete(cs.byID, w.id)
		}
		cs.byID[id] = w
	}
	w.id = id
	w.granted = nil
}

// close unregisters the waiter. The last waiter on a channel leaves it
// subscribed for the hub's linger (unless the Locker is closed, or the
// session is), after which drop unsubscribes it; the last channel of all
// closes the connection and waits for the reader goroutine to end.
func (w *waiter) close() {
	h, s := w.h, w.s
	h.mu.Lock()
	cs := s.chans[w.ch]
	var last bool
	if cs != nil {
		delete(cs.waiters, w)
		if cs.byID[w.id] == w {
			delete(cs.byID, w.id)
		}
		if len(cs.waiters) == 0 {
			if h.closed || s.closed || h.linger <= 0 {
				last = h.dropLocked(s, w.ch, cs)
			} else {
				cs.idle++
				idle := cs.idle
				cs.linger = time.AfterFunc(h.linger, func() { h.lingered(s, w.ch, cs, idle) })
			}
		}
	}
	h.mu.Unlock()
	if last {
		<-s.done
	}
}

// lingered drops channel ch of s if nobody has waited on it since its
// last waiter left (the idle-th time).
func (h *hub) lingered(s *session, ch string, cs *chanState, idle uint64) {
	h.mu.Lock()
	var last bool
	if s.chans[ch] == cs && len(cs.waiters) == 0 && cs.idle == idle {
		last = h.dropLocked(s, ch, cs)
	}
	h.mu.Unlock()
	if last {
		<-s.done
	}
}

// dropLocked unsubscribes channel ch, which has no waiter, and closes the
// session when it was the last channel; under h.mu. It reports whether it
// closed the session: the caller then waits for s.done, after unlocking.
func (h *hub) dropLocked(s *session, ch string, cs *chanState) bool {
	if cs.stall != nil {
		cs.stall.Stop()
	}
	if cs.linger != nil {
		cs.linger.Stop()
		cs.linger = nil
	}
	delete(s.chans, ch)
	if len(s.chans) > 0 && !s.closed {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		// An error leaves a subscription nobody listens to; its
		// messages are dropped by run.
		_ = s.ps.Unsubscribe(ctx, ch)
		cancel()
	}
	if len(s.chans) > 0 || s.closed {
		return false
	}
	h.endLocked(s)
	return true
}

// endLocked closes session s; under h.mu.
func (h *hub) endLocked(s *session) {
	s.closed = true
	close(s.quit)
	if h.cur == s {
		h.cur = nil
	}
	for _, cs := range s.chans {
		if cs.linger != nil {
			cs.linger.Stop()
			cs.linger = nil
		}
	}
	_ = s.ps.Close()
}

// close ends the lingering: channels nobody waits on are dropped now, and
// from now on each channel is dropped when its last waiter leaves. It
// returns when the connection is closed, or at once if waiters are left
// on it (the last of them closes it).
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	s := h.cur
	var last bool
	if s != nil {
		for ch, cs := range s.chans {
			if len(cs.waiters) == 0 {
				last = h.dropLocked(s, ch, cs) || last
			}
		}
	}
	h.mu.Unlock()
	if last {
		<-s.done
	}
}

// run reads the pub/sub connection until the session is closed. A read
// error means the connection broke; go-redis reconnects and subscribes
// again on the next read or write, and messages published meanwhile are
// lost. So after an error run sends a PING, and when its PONG arrives (the
// subscriptions are back) every waiter is woken to try again, and every
// pending subscribe is confirmed.
func (s *session) run(h *hub) {
	defer close(s.done)
	defer func() {
		// The client was closed under the session: forget it, so that
		// the next waiter opens a new one (and fails on the closed client).
		h.mu.Lock()
		if !s.closed {
			h.endLocked(s)
		}
		h.mu.Unlock()
	}()
	errs := 0
	for {
		msg, err := s.ps.Receive(context.Background())
		if err != nil {
			h.mu.Lock()
			closed := s.closed
			if !closed && !s.broken {
				// Waiters asleep until a message would miss the
				// releases published until the resync is back: wake
				// them, and they retry every brokenRetry meanwhile.
				s.broken = true
				for _, cs := range s.chans {
					cs.wakeAll()
				}
			}
			h.mu.Unlock()
			if closed || errors.Is(err, redis.ErrClosed) {
				return
			}
			if errs > 0 {
				select {
				case <-time.After(100 * time.Millisecond):
				case <-s.quit:
					return
				}
			}
			errs++
			h.resync(s)
			continue
		}
		errs = 0
		switch m := msg.(type) {
		case *redis.Message:
			h.mu.Lock()
			h.deliver(s, m.Channel, m.Payload)
			h.mu.Unlock()
		case *redis.Pong:
			h.mu.Lock()
			if f := s.pings[m.Payload]; f != nil {
				delete(s.pings, m.Payload)
				f()
			}
			h.mu.Unlock()
		}
	}
}

// resync sends a PING after a connection error; its PONG wakes every waiter
// and confirms every subscription.
func (h *hub) resync(s *session) {
	h.mu.Lock()
	if s.closed {
		h.mu.Unlock()
		return
	}
	id := h.pingIDLocked()
	s.pings[id] = func() {
		s.broken = false
		for _, cs := range s.chans {
			closeOnce(cs.ready)
			cs.wakeAll()
		}
	}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.ps.Ping(ctx, id); err != nil {
		// The next Receive fails too and run tries again.
		h.mu.Lock()
		delete(s.pings, id)
		h.mu.Unlock()
	}
}
