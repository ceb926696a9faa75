package migrations

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"sync"
)

// golang-migrate's WithInstance drivers pin a connection of the *sql.DB they
// are given and close that *sql.DB in Close. They must never get the
// caller's. withPrivateDB gives them a private *sql.DB whose only
// connection is the caller's pinned driver connection, wrapped so that
// closing it does nothing; the private DB can then be closed freely.

var errShimBusy = errors.New("migrations: the pinned connection is already in use or broken")

// withPrivateDB runs fn with a private *sql.DB over conn's driver
// connection. It reports the connection bad to conn (so the caller's pool
// drops it) when the driver did.
func withPrivateDB(conn *sql.Conn, db *sql.DB, fn func(*sql.DB) error) error {
	var fnErr error
	rawErr := conn.Raw(func(dc any) error {
		c := &shimConnector{dc: dc.(driver.Conn), drv: db.Driver()}
		// No SetMaxOpenConns(1): a second connection request while the
		// driver has the one pinned fails at once (errShimBusy) instead
		// of waiting forever.
		private := sql.OpenDB(c)
		private.SetMaxIdleConns(1)
		fnErr = fn(private)
		_ = private.Close() // a no-op when fn's driver closed it already
		if c.isBad() {
			return driver.ErrBadConn
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if rawErr != nil && !errors.Is(rawErr, driver.ErrBadConn) {
		return rawErr
	}
	return nil
}

type shimConnector struct {
	dc  driver.Conn
	drv driver.Driver

	mu    sync.Mutex
	inUse bool
	bad   bool
}

func (c *shimConnector) Connect(context.Context) (driver.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inUse || c.bad {
		return nil, errShimBusy
	}
	c.inUse = true
	return &shimConn{c: c}, nil
}

func (c *shimConnector) Driver() driver.Driver { return c.drv }

func (c *shimConnector) isBad() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bad
}

// check records a driver.ErrBadConn from the wrapped connection.
func (c *shimConnector) check(err error) error {
	if errors.Is(err, driver.ErrBadConn) {
		c.mu.Lock()
		c.bad = true
		c.mu.Unlock()
	}
	return err
}

// shimConn forwards to the pinned driver connection, except Close.
type shimConn struct{ c *shimConnector }

var (
	_ driver.Conn               = (*shimConn)(nil)
	_ driver.ConnPrepareContext = (*shimConn)(nil)
	_ driver.ConnBeginTx        = (*shimConn)(nil)
	_ driver.ExecerContext      = (*shimConn)(nil)
	_ driver.QueryerContext     = (*shimConn)(nil)
	_ driver.Pinger             = (*shimConn)(nil)
	_ driver.NamedValueChecker  = (*shimConn)(nil)
	_ driver.SessionResetter    = (*shimConn)(nil)
	_ driver.Validator          = (*shimConn)(nil)
)

func (s *shimConn) Prepare(query string) (driver.Stmt, error) {
	st, err := s.c.dc.Prepare(query)
	return st, s.c.check(err)
}

func (s *shimConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := s.c.dc.(driver.ConnPrepareContext); ok {
		st, err := p.PrepareContext(ctx, query)
		return st, s.c.check(err)
	}
	return s.Prepare(query)
}

// Close releases the shim, not the connection: the connection belongs to
// the caller's pool.
func (s *shimConn) Close() error {
	s.c.mu.Lock()
	s.c.inUse = false
	s.c.mu.Unlock()
	return nil
}

func (s *shimConn) Begin() (driver.Tx, error) {
	//lint:ignore SA1019 forwarding the deprecated method is what a wrapper does.
	tx, err := s.c.dc.Begin() //nolint:staticcheck
	return tx, s.c.check(err)
}

func (s *shimConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := s.c.dc.(driver.ConnBeginTx); ok {
		tx, err := b.BeginTx(ctx, opts)
		return tx, s.c.check(err)
	}
	if opts.Isolation != 0 || opts.ReadOnly {
		return nil, errors.New("migrations: driver does not support transaction options")
	}
	return s.Begin()
}

func (s *shimConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := s.c.dc.(driver.ExecerContext); ok {
		r, err := e.ExecContext(ctx, query, args)
		return r, s.c.check(err)
	}
	return nil, driver.ErrSkip
}

func (s *shimConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := s.c.dc.(driver.QueryerContext); ok {
		r, err := q.QueryContext(ctx, query, args)
		return r, s.c.check(err)
	}
	return nil, driver.ErrSkip
}

func (s *shimConn) Ping(ctx context.Context) error {
	if p, ok := s.c.dc.(driver.Pinger); ok {
		return s.c.check(p.Ping(ctx))
	}
	return nil
}

func (s *shimConn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := s.c.dc.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (s *shimConn) ResetSession(ctx context.Context) error {
	if r, ok := s.c.dc.(driver.SessionResetter); ok {
		return s.c.check(r.ResetSession(ctx))
	}
	return nil
}

func (s *shimConn) IsValid() bool {
	if v, ok := s.c.dc.(driver.Validator); ok {
		return v.IsValid()
	}
	return !s.c.isBad()
}
