package mysqllock_test

import (
	"database/sql"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/mysqllock"
)

// partitionProxy forwards TCP connections to the MySQL server and can cut
// the ones open at a moment the way a network partition does: nothing gets
// through any more, in either direction, and neither end sees the other
// close. Connections opened later pass normally.
type partitionProxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[*proxiedConn]bool
}

type proxiedConn struct {
	client, server net.Conn
	mu             sync.Mutex
	cut            bool
}

func (c *proxiedConn) isCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}

func startPartitionProxy(t *testing.T, upstream string) *partitionProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &partitionProxy{ln: ln, upstream: upstream, conns: map[*proxiedConn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *partitionProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = c.Close()
			continue
		}
		pc := &proxiedConn{client: c, server: s}
		p.mu.Lock()
		p.conns[pc] = true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pc, c, s)
		go p.pipe(pc, s, c)
	}
}

// pipe copies src to dst until src fails. While the connection is cut it
// drops what it reads and, when src closes, leaves dst open: the far end
// never learns of it.
func (p *partitionProxy) pipe(pc *proxiedConn, src, dst net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pc.isCut() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !pc.isCut() {
				_ = dst.Close()
			}
			return
		}
	}
}

// cutAll partitions every connection open now.
func (p *partitionProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.conns {
		pc.mu.Lock()
		pc.cut = true
		pc.mu.Unlock()
	}
}

func (p *partitionProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for pc := range p.conns {
		_ = pc.client.Close()
		_ = pc.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestMySQLPartitionedHolder: the holder's connection stops answering
// without closing (a network partition). The probe times out, Done closes
// within ProbeInterval + ProbeTimeout, and lockkit KILLs the holder's
// session through a new connection, so the server frees the lock now
// rather than when it would notice the dead peer (hours, by wait_timeout).
// partitionedLocker returns a Locker with cfg whose connections pass
// through a partition proxy, and the proxy.
func partitionedLocker(t *testing.T, cfg *mysqllock.Config) (*mysqllock.Locker, *partitionProxy) {
	t.Helper()
	dsn, err := mysql.ParseDSN(integration.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	if dsn.Net != "tcp" {
		t.Skipf("the partition proxy needs a TCP DSN, have %q", dsn.Net)
	}
	proxy := startPartitionProxy(t, dsn.Addr)
	dsn.Addr = proxy.ln.Addr().String()
	db, err := sql.Open("mysql", dsn.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	m, err := mysqllock.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, proxy
}

func TestMySQLPartitionedHolder(t *testing.T) {
	const interval, timeout = 100 * time.Millisecond, 500 * time.Millisecond
	m, proxy := partitionedLocker(t, &mysqllock.Config{ProbeInterval: interval, ProbeTimeout: timeout})
	admin := integration.MySQL(t) // direct, not through the proxy
	name := integration.Name(t)
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	server := lockName(t, m, name)
	id := lk.(*mysqllock.Lock).ConnID()

	proxy.cutAll()
	start := time.Now()
	select {
	case <-lk.Done():
		t.Logf("partition detected %v after the cut (bound %v)", time.Since(start).Round(time.Millisecond), interval+timeout)
	case <-time.After(interval + timeout + time.Second):
		t.Fatalf("Done not closed within %v of the partition", interval+timeout+time.Second)
	}
	if err := lk.Err(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Err() = %v, want ErrLost", err)
	}
	if !eventually(5*time.Second, func() bool { return !usedBy(t, admin, server).Valid }) {
		t.Fatalf("the partitioned holder's session %d still holds the lock", id)
	}
	if sessionAlive(t, admin, id) {
		t.Errorf("the partitioned holder's session %d is still on the server", id)
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release = %v, want ErrLost", err)
	}
	lk2, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatalf("TryAcquire after the partition: %v", err)
	}
	if err := lk2.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestMySQLPartitionedRelease: the holder's connection stops answering
// just before Release, whose context can be cancelled. RELEASE_LOCK ends
// within ReleaseTimeout (the release's own bound, detached from the
// caller's context) with an error wrapping ErrLost, and lockkit KILLs the
// session, so that the server frees the lock now.
func TestMySQLPartitionedRelease(t *testing.T) {
	const releaseTimeout = 300 * time.Millisecond
	m, proxy := partitionedLocker(t, &mysqllock.Config{ProbeInterval: time.Hour, ReleaseTimeout: releaseTimeout})
	admin := integration.MySQL(t)
	name := integration.Name(t)
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	server := lockName(t, m, name)
	proxy.cutAll()
	start := time.Now()
	err = lk.Release(ctxT(t, time.Minute))
	took := time.Since(start)
	if !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release through a partition = %v, want ErrLost", err)
	}
	// The release's bound, then the KILL and the wait for the session to
	// leave the processlist (mysqlKillTimeout at most).
	if took < releaseTimeout || took > releaseTimeout+6*time.Second {
		t.Errorf("Release took %v, want ReleaseTimeout (%v) and the KILL", took, releaseTimeout)
	}
	t.Logf("Release through a partition returned after %v (ReleaseTimeout %v)", took.Round(time.Millisecond), releaseTimeout)
	if !eventually(5*time.Second, func() bool { return !usedBy(t, admin, server).Valid }) {
		t.Fatal("the partitioned holder's session still holds the lock")
	}
}
