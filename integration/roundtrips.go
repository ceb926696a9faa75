package integration

import (
	"context"
	"database/sql"
	"net"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// RoundTrips counts a client's traffic to a server through the connections
// its Dial makes. Drivers such as pgx send each statement (or pipelined
// batch) in one write and then wait for the answer, so Writes are round
// trips. Exchanges counts reads that follow a write on the same
// connection: the round trips of a protocol that sends some messages
// without waiting for an answer (MySQL's COM_STMT_CLOSE).
type RoundTrips struct{ writes, exchanges atomic.Int64 }

// Writes returns the number of writes so far.
func (r *RoundTrips) Writes() int64 { return r.writes.Load() }

// Exchanges returns the number of write-then-read exchanges so far.
func (r *RoundTrips) Exchanges() int64 { return r.exchanges.Load() }

// Dial dials addr and counts the connection's traffic. Its signature fits
// pgx's DialFunc and go-sql-driver/mysql's DialFunc.
func (r *RoundTrips) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, r: r}, nil
}

type countingConn struct {
	net.Conn
	r     *RoundTrips
	wrote atomic.Bool // a write since the last read
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.r.writes.Add(1)
	c.wrote.Store(true)
	return c.Conn.Write(b)
}

func (c *countingConn) Read(b []byte) (int, error) {
	if c.wrote.Swap(false) {
		c.r.exchanges.Add(1)
	}
	return c.Conn.Read(b)
}

// MySQLPrepared opens a pool of size connections on the MySQL DSN dsn
// with the driver's defaults for arguments (no interpolateParams: a
// statement with arguments is prepared), its traffic counted by rt unless
// rt is nil. The pool is closed when the test ends.
func MySQLPrepared(t testing.TB, dsn string, rt *RoundTrips, size int) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if rt != nil {
		cfg.DialFunc = rt.Dial
	}
	cfg.InterpolateParams = false
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	t.Cleanup(func() { _ = db.Close() })
	return db
}
