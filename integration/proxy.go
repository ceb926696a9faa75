package integration

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy between a client and a server that can cut
// connections at chosen moments: the fault "the connection dropped right
// after the lock statement was sent", where the client cannot know whether
// the server took the lock.
//
// Point the client at [Proxy.Addr] instead of the server. Its methods are
// safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	pairs    map[*proxyPair]struct{}
	pattern  []byte        // armed by ResetAfter; nil when disarmed
	stmt     string        // armed by ResetAfterStatement; "" when disarmed
	fired    chan struct{} // closed when the armed fault fired
	stalled  chan struct{} // non-nil while stalled; closed by Unstall
	resets   int
	accepted int
	closed   bool

	wg sync.WaitGroup
}

type proxyPair struct {
	client, server net.Conn
	once           sync.Once
	closed         chan struct{} // closed by close

	clientSpoke atomic.Bool // the client sent a byte
	doomed      atomic.Bool // a fault fired: forward nothing more to the client
	serverFirst atomic.Bool // the server sent a byte before the client did
	tracker     statementTracker
}

// cut ends both sides: the client sees a connection reset (RST), the server
// an orderly end of stream after every byte forwarded so far, so that it
// runs what it was sent.
func (pp *proxyPair) cut() { pp.close(true) }

// close closes both sides once; reset makes the client side a reset rather
// than an orderly close.
func (pp *proxyPair) close(reset bool) {
	pp.once.Do(func() {
		close(pp.closed)
		if tc, ok := pp.client.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0)
		}
		_ = pp.client.Close()
		_ = pp.server.Close()
	})
}

// NewProxy starts a proxy on a free port of 127.0.0.1 that forwards to
// target (host:port). It is closed when t ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("integration: proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target, pairs: map[*proxyPair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address, 127.0.0.1:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port returns the proxy's TCP port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// ResetAfter arms a one-shot fault: the first chunk a client sends that
// contains pattern (also when the pattern straddles two chunks) is
// forwarded to the server, and then that connection is cut — reset towards
// the client, closed towards the server. The returned channel is closed when
// the fault has fired. A new call replaces an armed pattern that has not
// fired.
func (p *Proxy) ResetAfter(pattern []byte) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pattern, p.stmt = bytes.Clone(pattern), ""
	p.fired = make(chan struct{})
	return p.fired
}

// ResetAfterStatement arms a one-shot fault like ResetAfter, but for SQL:
// it fires after forwarding the packet that makes the server execute a
// statement whose text contains pattern — a simple query, or the execution
// of a statement prepared earlier on the connection (PostgreSQL's
// Parse/Bind/Execute, MySQL's COM_STMT_PREPARE/COM_STMT_EXECUTE, matched by
// statement name or id), even when the statement was prepared before the
// fault was armed. Preparing such a
// statement does not fire it: a driver may retry a failed prepare on a new
// connection, and nothing ran. The connection must not use TLS
// (sslmode=disable for PostgreSQL, the default for go-sql-driver/mysql).
func (p *Proxy) ResetAfterStatement(pattern string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pattern, p.stmt = nil, pattern
	p.fired = make(chan struct{})
	return p.fired
}

// CutAll cuts every open connection the way ResetAfter cuts one. New
// connections are still accepted.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	pairs := make([]*proxyPair, 0, len(p.pairs))
	for pp := range p.pairs {
		pairs = append(pairs, pp)
	}
	p.resets += len(pairs)
	p.mu.Unlock()
	for _, pp := range pairs {
		pp.cut()
	}
}

// Stall stops forwarding in both directions, on every connection, until
// Unstall: bytes sent meanwhile are held, not lost, and connections stay
// open, even when one side closes (the close reaches the other side after
// Unstall). To the client it looks like a network partition or a frozen
// server, while clients that do not go through the proxy still reach the
// server.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

// Unstall resumes forwarding, delivering what was held.
func (p *Proxy) Unstall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

// gate waits while the proxy is stalled; it reports false when the pair was
// closed meanwhile.
func (p *Proxy) gate(pp *proxyPair) bool {
	p.mu.Lock()
	st := p.stalled
	p.mu.Unlock()
	if st == nil {
		return true
	}
	select {
	case <-st:
		return true
	case <-pp.closed:
		return false
	}
}

// Resets returns how many connections the proxy has cut.
func (p *Proxy) Resets() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resets
}

// Accepted returns how many client connections the proxy has accepted.
// A test can show that a call did no I/O: the count did not move.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Conns returns how many client connections are open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

// Close stops the proxy, cuts every connection and waits for its
// goroutines. It is safe to call more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	if !already {
		_ = p.ln.Close()
		p.CutAll()
		p.Unstall()
	}
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		p.mu.Unlock()
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pp := &proxyPair{client: c, server: s, closed: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			pp.cut()
			return
		}
		p.pairs[pp] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.upstream(pp)
		go p.downstream(pp)
	}
}

// upstream copies client to server, watching for the armed pattern.
func (p *Proxy) upstream(pp *proxyPair) {
	defer p.wg.Done()
	defer p.drop(pp)
	buf := make([]byte, 32<<10)
	var tail []byte // the end of the previous chunk, for patterns that straddle two
	for {
		n, err := pp.client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			pp.clientSpoke.Store(true)
			executed := pp.tracker.feed(chunk, pp.serverFirst.Load())
			if !p.gate(pp) {
				return
			}
			// Decide before forwarding, so that the server's answer to
			// the chunk that fires the fault can never reach the client.
			hit := p.match(tail, chunk, executed)
			if hit {
				pp.doomed.Store(true)
			}
			if _, werr := pp.server.Write(chunk); werr != nil {
				return
			}
			if hit {
				pp.cut()
				return
			}
			tail = append(tail[:0], chunk[max(0, n-256):]...)
		}
		if err != nil {
			p.gate(pp) // a stalled link does not carry the close either
			return
		}
	}
}

// match reports whether the armed fault fires on tail+chunk, or on the
// statements the chunk executes, and if so disarms it and counts the reset.
func (p *Proxy) match(tail, chunk []byte, executed []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.pattern != nil:
		hay := chunk
		if len(tail) > 0 {
			k := min(len(tail), len(p.pattern)-1)
			hay = append(bytes.Clone(tail[len(tail)-k:]), chunk...)
		}
		if !bytes.Contains(hay, p.pattern) {
			return false
		}
	case p.stmt != "":
		if !slices.ContainsFunc(executed, func(q string) bool { return strings.Contains(q, p.stmt) }) {
			return false
		}
	default:
		return false
	}
	p.pattern, p.stmt = nil, ""
	p.resets++
	close(p.fired)
	return true
}

// downstream copies server to client.
func (p *Proxy) downstream(pp *proxyPair) {
	defer p.wg.Done()
	defer p.drop(pp)
	buf := make([]byte, 32<<10)
	for {
		n, err := pp.server.Read(buf)
		if n > 0 {
			if pp.doomed.Load() {
				return // the fault fired: nothing more reaches the client
			}
			if !pp.clientSpoke.Load() {
				pp.serverFirst.Store(true) // before the client can answer
			}
			if pp.serverFirst.Load() {
				pp.tracker.feedServer(buf[:n])
			}
			if !p.gate(pp) {
				return
			}
			if _, werr := pp.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			p.gate(pp)
			return
		}
	}
}

// drop closes a pair that ended by itself (either side closed) in order,
// or, when a fault fired on it, with the reset the fault promises: the
// copier that notices the fault first may get here before the cut.
func (p *Proxy) drop(pp *proxyPair) {
	pp.close(pp.doomed.Load())
	p.mu.Lock()
	delete(p.pairs, pp)
	p.mu.Unlock()
}
