package rowlock

import (
	"context"
	"database/sql/driver"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/changes"
	"github.com/lockkit/lockkit/internal/pgnotify"
	"github.com/lockkit/lockkit/internal/sqlconn"
)

var _ lockkit.Watcher = (*Locker)(nil)

// Changes implements lockkit.Watcher on PostgreSQL: a connection of its
// own from the pool LISTENs on the table's channel ("lockkit.<table>"),
// where every release and ForceRelease notifies (in the statement that
// deletes the row) and Announce notifies; LISTEN is active when Changes
// returns. A lease taken over after it ran out and a lock taken by a plain
// acquire notify nothing: the caller's poll sees those, unless whoever
// took the lock announces it, as package election does. The connection is
// closed, not returned to the pool, when ctx ends; a dropped one closes
// the channel. On MySQL, with a driver other than pgx's stdlib, and
// through a pooler that hides the session (PgBouncer), Changes returns an
// error matching lockkit.ErrUnsupported.
func (l *Locker) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, err
		}
	}
	if l.s.dialect != Postgres {
		return nil, fmt.Errorf("rowlock: %s has no notifications; readers poll: %w", l.s.dialect, lockkit.ErrUnsupported)
	}
	conn, err := l.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("rowlock: listen: %w", err)
	}
	onPgx := func(fn func(c *pgx.Conn) error) error {
		return conn.Raw(func(dc any) error {
			sc, ok := dc.(*stdlib.Conn)
			if !ok {
				return fmt.Errorf("rowlock: the database/sql driver is not pgx's stdlib, which alone can wait for notifications: %w", lockkit.ErrUnsupported)
			}
			err := fn(sc.Conn())
			if err != nil && sc.Conn().IsClosed() {
				return driver.ErrBadConn
			}
			return err
		})
	}
	if err := onPgx(func(c *pgx.Conn) error { return pgnotify.Listen(ctx, c, l.s.channel) }); err != nil {
		sqlconn.Discard(conn)
		return nil, fmt.Errorf("rowlock: listen: %w", err)
	}
	want := pgnotify.Names(names)
	recv := func(ctx context.Context) (wake bool, err error) {
		err = onPgx(func(c *pgx.Conn) error {
			wake, err = pgnotify.Wait(ctx, c, l.s.channel, want)
			return err
		})
		return wake, err
	}
	// The session LISTENs: it never goes back to the pool.
	return changes.Feed(ctx, recv, func() { sqlconn.Discard(conn) }), nil
}

// Announce implements lockkit.Watcher: on PostgreSQL it notifies the
// table's channel with the name, one statement; on MySQL it does nothing.
func (l *Locker) Announce(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if l.s.dialect != Postgres {
		return nil
	}
	if _, err := l.db.ExecContext(ctx, pgnotify.NotifySQL, l.s.channel, name); err != nil {
		return fmt.Errorf("rowlock: announce %q: %w", name, err)
	}
	return nil
}
