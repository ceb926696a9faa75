package integration

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// echoServer is a TCP server that writes back every line it reads; it
// stands for "the server" in tests of the proxy itself.
func echoServer(t *testing.T) (addr string, got chan string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got = make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if line != "" {
						got <- line
						_, _ = io.WriteString(c, line)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String(), got
}

func TestProxyResetAfterPattern(t *testing.T) {
	addr, got := echoServer(t)
	p := NewProxy(t, addr)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)

	// Disarmed: lines go through both ways.
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
	<-got

	fired := p.ResetAfter([]byte("LOCKIT"))
	// The pattern straddles two writes; the server still receives both.
	if _, err := io.WriteString(c, "please LO"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a separate chunk
	if _, err := io.WriteString(c, "CKIT now\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("the pattern did not fire")
	}
	select {
	case line := <-got:
		if line != "please LOCKIT now\n" {
			t.Errorf("server got %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not receive the statement that fired the fault")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = r.ReadString('\n')
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after the fault = %v, want a connection reset", err)
	}
	if p.Resets() != 1 || p.Accepted() != 1 {
		t.Errorf("Resets = %d, Accepted = %d, want 1 and 1", p.Resets(), p.Accepted())
	}

	// One-shot: a new connection with the same pattern goes through.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := io.WriteString(c2, "LOCKIT again\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c2).ReadString('\n'); err != nil || line != "LOCKIT again\n" {
		t.Errorf("after the fault fired: echo = %q, %v", line, err)
	}
	<-got
}

func TestProxyCutAll(t *testing.T) {
	t.Parallel()
	srv := StartRedis(t)
	p := NewProxy(t, srv.Addr())
	raw, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	r := bufio.NewReader(raw)
	if _, err := io.WriteString(raw, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING = %q, %v", line, err)
	}
	if p.Conns() != 1 {
		t.Fatalf("Conns = %d, want 1", p.Conns())
	}
	p.CutAll()
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on a cut connection = %v, want a reset", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Conns() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Conns() != 0 || p.Resets() != 1 {
		t.Errorf("after CutAll: Conns %d, Resets %d; want 0 and 1", p.Conns(), p.Resets())
	}
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(ctxFor(t, 10*time.Second)).Err(); err != nil {
		t.Errorf("a new connection after CutAll: %v", err)
	}
}

// TestProxyCutsMySQLStatement cuts GET_LOCK right after go-sql-driver/mysql
// sent its execution; MariaDB then ends the session and frees the lock.
func TestProxyCutsMySQLStatement(t *testing.T) {
	t.Parallel()
	srv := StartMariaDB(t)
	p := NewProxy(t, srv.Addr())
	viaProxy := openDB(t, "mysql", strings.Replace(srv.DSN(), srv.Addr(), p.Addr(), 1))
	direct := openDB(t, "mysql", srv.DSN())
	ctx := ctxFor(t, 30*time.Second)
	// The driver prepares the statement (no fault: nothing ran, and a
	// failed prepare is retried) and then executes it (the fault).
	if err := viaProxy.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	fired := p.ResetAfterStatement("GET_LOCK")
	_, err := viaProxy.ExecContext(ctx, "SELECT GET_LOCK(?, 5)", "lkt.proxy.cut")
	if err == nil {
		t.Fatal("GET_LOCK succeeded through a connection that was cut")
	}
	select {
	case <-fired:
	default:
		t.Fatalf("the fault did not fire; the statement failed by itself: %v", err)
	}
	waitFree := func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var holder sql.NullInt64
			if err := direct.QueryRowContext(ctx, "SELECT IS_USED_LOCK('lkt.proxy.cut')").Scan(&holder); err != nil {
				t.Fatal(err)
			}
			if !holder.Valid {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("user lock still held by session %d 5s after its connection was cut", holder.Int64)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFree()

	// Statements prepared once and executed later by id, with another
	// statement prepared in between: the fault fires on the execution of
	// the right one.
	conn, err := viaProxy.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lockStmt, err := conn.PrepareContext(ctx, "SELECT GET_LOCK(?, 5)")
	if err != nil {
		t.Fatal(err)
	}
	defer lockStmt.Close()
	otherStmt, err := conn.PrepareContext(ctx, "SELECT 1 + ?")
	if err != nil {
		t.Fatal(err)
	}
	defer otherStmt.Close()
	fired = p.ResetAfterStatement("GET_LOCK")
	if _, err := otherStmt.ExecContext(ctx, 1); err != nil {
		t.Fatalf("another prepared statement: %v", err)
	}
	if _, err := lockStmt.ExecContext(ctx, "lkt.proxy.cut"); err == nil {
		t.Fatal("GET_LOCK succeeded through a connection that was cut")
	}
	select {
	case <-fired:
	default:
		t.Fatal("the fault did not fire on the prepared GET_LOCK")
	}
	waitFree()
}

// TestProxyCutsLockStatement is the fault the reliability suite builds on:
// the lock statement reaches PostgreSQL, the client's connection is reset,
// and the server ends the session and its lock on its own.
func TestProxyCutsLockStatement(t *testing.T) {
	t.Parallel()
	srv := StartPostgres(t)
	p := NewProxy(t, srv.Addr())
	viaProxy := openDB(t, "pgx", strings.Replace(srv.DSN(), srv.Addr(), p.Addr(), 1))
	direct := openDB(t, "pgx", srv.DSN())
	ctx := ctxFor(t, 30*time.Second)
	if err := viaProxy.PingContext(ctx); err != nil {
		t.Fatal(err)
	}

	// Prepared first (the text goes in Parse), executed by name later:
	// the fault must fire on the execution.
	conn, err := viaProxy.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1), pg_advisory_unlock($1)", 990099); err != nil {
		t.Fatal(err)
	}
	fired := p.ResetAfterStatement("pg_advisory_lock")
	_, err = conn.ExecContext(ctx, "SELECT pg_advisory_lock($1), pg_advisory_unlock($1)", 990099)
	if err == nil {
		t.Fatal("a statement succeeded through a connection that was cut")
	}
	select {
	case <-fired:
	default:
		t.Fatalf("the fault did not fire; the statement failed by itself: %v", err)
	}
	fired = p.ResetAfterStatement("pg_advisory_lock")
	_, err = viaProxy.ExecContext(ctx, "SELECT pg_advisory_lock($1)", 990099)
	if err == nil {
		t.Fatal("the lock statement succeeded through a connection that was cut")
	}
	select {
	case <-fired:
	default:
		t.Fatalf("the fault did not fire; the statement failed by itself: %v", err)
	}
	const q = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 990099"
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := direct.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("advisory lock still held 5s after its connection was cut")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := viaProxy.PingContext(cctx); err != nil {
		t.Errorf("a new connection through the proxy: %v", err)
	}
}

func TestProxyStall(t *testing.T) {
	addr, got := echoServer(t)
	p := NewProxy(t, addr)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	p.Stall()
	if _, err := io.WriteString(c, "held\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-got:
		t.Fatalf("the server received %q through a stalled proxy", line)
	case <-time.After(200 * time.Millisecond):
	}
	p.Unstall()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || line != "held\n" {
		t.Errorf("after Unstall: echo = %q, %v", line, err)
	}
	<-got
	// A stalled connection can still be cut, and Close does not hang.
	p.Stall()
	p.CutAll()
	p.Close()
}
