package advisory

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/changes"
	"github.com/lockkit/lockkit/internal/pgnotify"
)

// NotifyChannel is the PostgreSQL notification channel of advisory locks'
// changes: [Locker.Announce] notifies it with the lock's name, and
// [Locker.Changes] listens on it.
const NotifyChannel = "lockkit.advisory"

var _ lockkit.Watcher = (*Locker)(nil)

// Changes implements lockkit.Watcher: a session of its own from the pool
// LISTENs on [NotifyChannel], active when Changes returns, and wakes the
// channel for every announcement of one of names (no names: of any name).
// Advisory locks themselves notify nothing (a NOTIFY in every lock and
// unlock statement would serialise their commits on the server's
// notification queue): only what [Locker.Announce] tells arrives, which
// package election does when a leader takes office, resigns or learns of
// its loss. Everything else, such as a session killed with no successor
// to announce, is seen by the caller's poll. The session is closed, not
// returned to the pool, when ctx ends; a dropped one closes the channel.
// Through a pooler that hides the session (PgBouncer) Changes returns an
// error matching lockkit.ErrUnsupported.
func (p *Locker) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	for _, n := range names {
		if _, err := p.Key(n); err != nil {
			return nil, err
		}
	}
	pc, err := p.src.pin(ctx)
	if err != nil {
		return nil, fmt.Errorf("advisory: listen: %w", err)
	}
	if err := pc.with(func(c *pgx.Conn) error { return pgnotify.Listen(ctx, c, NotifyChannel) }); err != nil {
		pc.discard()
		return nil, fmt.Errorf("advisory: listen: %w", err)
	}
	want := pgnotify.Names(names)
	recv := func(ctx context.Context) (wake bool, err error) {
		err = pc.with(func(c *pgx.Conn) error {
			wake, err = pgnotify.Wait(ctx, c, NotifyChannel, want)
			return err
		})
		return wake, err
	}
	// The session LISTENs: it never goes back to the pool.
	return changes.Feed(ctx, recv, pc.discard), nil
}

// Announce implements lockkit.Watcher: it notifies [NotifyChannel] with
// name, one statement on a session of the pool (about 0.13 ms on
// loopback; its commit goes through the server's notification queue).
func (p *Locker) Announce(ctx context.Context, name string) error {
	if _, err := p.Key(name); err != nil {
		return err
	}
	pc, err := p.src.pin(ctx)
	if err != nil {
		return fmt.Errorf("advisory: announce %q: %w", name, err)
	}
	err = pc.with(func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, pgnotify.NotifySQL, NotifyChannel, name)
		return err
	})
	if err != nil {
		pc.discard()
		return fmt.Errorf("advisory: announce %q: %w", name, err)
	}
	pc.release()
	return nil
}
