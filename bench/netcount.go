package main

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Round trips are counted, not estimated, by wrapping every connection a
// variant's driver dials (pgx's DialFunc, go-sql-driver's
// RegisterDialContext, go-redis's Options.Dialer). An etcd client is the
// exception: its requests are counted by gRPC interceptors instead, as one
// connection carries every worker's calls at once (backend_etcd.go).
//
// The unit is the "flight": one or more client writes followed by the first
// bytes the server sends back. Each connection remembers whether it has
// written since it last read; the first successful Read after a Write
// counts one flight. So
//
//   - a query and its reply is one flight, however many packets either side
//     took (pgx's Parse/Bind/Describe/Execute/Sync go out together);
//   - pipelined statements sent before reading count once;
//   - a message that needs no reply (MySQL's COM_STMT_CLOSE, PostgreSQL's
//     Terminate) merges into the next flight instead of counting alone;
//   - data the server pushes unasked (NOTIFY, pub/sub messages, the FATAL of
//     a terminated backend) counts nothing.
//
// A flight is what the caller waits for: one network latency. Dials are
// counted apart (each TCP/handshake costs several round trips that a pool
// pays once).

// netCounter counts the traffic of every connection one variant dials.
type netCounter struct {
	// rpc: the connections count no flights; the client's gRPC
	// interceptors count its requests in flights instead (backend_etcd.go).
	rpc bool

	flights atomic.Int64
	dials   atomic.Int64
	open    atomic.Int64
	maxOpen atomic.Int64
	wbytes  atomic.Int64
	rbytes  atomic.Int64
}

// snapshot is a copy of the counters at one moment.
type snapshot struct {
	Flights, Dials, Open, WBytes, RBytes int64
}

func (c *netCounter) snap() snapshot {
	return snapshot{
		Flights: c.flights.Load(),
		Dials:   c.dials.Load(),
		Open:    c.open.Load(),
		WBytes:  c.wbytes.Load(),
		RBytes:  c.rbytes.Load(),
	}
}

// dial is a DialContext that counts.
func (c *netCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.dials.Add(1)
	n := c.open.Add(1)
	for {
		m := c.maxOpen.Load()
		if n <= m || c.maxOpen.CompareAndSwap(m, n) {
			break
		}
	}
	return &countingConn{Conn: nc, c: c}, nil
}

// countingConn counts the flights of one connection.
type countingConn struct {
	net.Conn
	c *netCounter

	mu     sync.Mutex
	wrote  bool
	closed bool
}

func (cc *countingConn) Write(b []byte) (int, error) {
	n, err := cc.Conn.Write(b)
	if n > 0 {
		cc.c.wbytes.Add(int64(n))
		cc.mu.Lock()
		cc.wrote = true
		cc.mu.Unlock()
	}
	return n, err
}

func (cc *countingConn) Read(b []byte) (int, error) {
	n, err := cc.Conn.Read(b)
	if n > 0 {
		cc.c.rbytes.Add(int64(n))
		cc.mu.Lock()
		if cc.wrote && !cc.c.rpc {
			cc.wrote = false
			cc.c.flights.Add(1)
		}
		cc.mu.Unlock()
	}
	return n, err
}

func (cc *countingConn) Close() error {
	cc.mu.Lock()
	first := !cc.closed
	cc.closed = true
	cc.mu.Unlock()
	if first {
		cc.c.open.Add(-1)
	}
	return cc.Conn.Close()
}
