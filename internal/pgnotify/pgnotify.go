// Package pgnotify is the PostgreSQL side of lockkit.Watcher that the
// advisory and rowlock backends share: LISTEN on a session of its own,
// notifications turned into wake-ups by payload (the lock's name), and the
// statement that announces a change.
package pgnotify

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/lockkit/lockkit"
)

// NotifySQL announces a change of the lock $2 on the channel $1.
const NotifySQL = "SELECT pg_catalog.pg_notify($1, $2)"

// Listen executes LISTEN channel on c. A session that is not the one c
// connected to (a pooler or proxy makes the pid up, and a LISTEN may stay
// with a server session that serves other clients) is refused with an
// error matching lockkit.ErrUnsupported: notifications would not arrive.
func Listen(ctx context.Context, c *pgx.Conn, channel string) error {
	var pid int32
	if err := c.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&pid); err != nil {
		return err
	}
	if uint32(pid) != c.PgConn().PID() {
		return fmt.Errorf("the connection goes through a pooler, where LISTEN does not work: %w", lockkit.ErrUnsupported)
	}
	_, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	return err
}

// Wait waits on c, which LISTENs on channel, for the next notification and
// reports whether it is about one of names (nil: any name).
func Wait(ctx context.Context, c *pgx.Conn, channel string, names map[string]bool) (bool, error) {
	n, err := c.WaitForNotification(ctx)
	if err != nil {
		return false, err
	}
	return n.Channel == channel && (names == nil || names[n.Payload]), nil
}

// Names is the set of names a subscription wants; nil for every name.
func Names(names []string) map[string]bool {
	if len(names) == 0 {
		return nil
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
