// Package sqlconn holds the database/sql chores that session-scoped locks
// share: destroying a pinned connection instead of returning it to the pool.
package sqlconn

import (
	"database/sql"
	"database/sql/driver"
)

// Discard closes conn and makes database/sql destroy the underlying driver
// connection rather than return it to the pool. Closing the session ends
// every lock it held, so this is the way out of any state where a lock may
// still be held on conn. It is safe to call on a conn that is already
// closed.
func Discard(conn *sql.Conn) {
	// A Raw callback returning driver.ErrBadConn marks the driver
	// connection bad; database/sql then closes it instead of pooling it.
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}
