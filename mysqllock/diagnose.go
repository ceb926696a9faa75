package mysqllock

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lockkit/lockkit/internal/mysqlconn"
)

// ServerInfo is what a MySQL or MariaDB server says about itself.
type ServerInfo struct {
	Version        string // VERSION()
	VersionComment string // @@version_comment
	// Galera is true when wsrep_on is ON, where user locks (GET_LOCK) are
	// not replicated and recent versions reject them.
	Galera bool
	// GroupReplication is the Group Replication group's name, or "" when
	// the server is not in one.
	GroupReplication string
}

// Vitess and ProxySQL say whether the version looks like one of them.
func (s ServerInfo) Vitess() bool   { return s.has("vitess") }
func (s ServerInfo) ProxySQL() bool { return s.has("proxysql") }

func (s ServerInfo) has(word string) bool {
	return strings.Contains(strings.ToLower(s.Version+" "+s.VersionComment), word)
}

// Diagnose asks the server db reaches for its version and whether it is
// in a Galera cluster or a Group Replication group. A cluster variable
// that cannot be read counts as unset; the error is the version's, and
// the cluster fields are filled in either way.
func Diagnose(ctx context.Context, db *sql.DB) (ServerInfo, error) {
	var s ServerInfo
	var err error
	if verr := db.QueryRowContext(ctx, "SELECT VERSION(), @@version_comment").Scan(&s.Version, &s.VersionComment); verr != nil {
		err = fmt.Errorf("SELECT VERSION(): %w", verr)
	}
	s.Galera = strings.EqualFold(globalVariable(ctx, db, "wsrep_on"), "ON")
	s.GroupReplication = globalVariable(ctx, db, "group_replication_group_name")
	return s, err
}

// globalVariable returns a global variable's value, or "" when it is not
// set or cannot be read.
func globalVariable(ctx context.Context, db *sql.DB, name string) string {
	v, _ := mysqlconn.GlobalValue(ctx, db, mysqlconn.VariableQueries, name)
	return v
}

// ServerTime returns the server's clock (NOW(6)).
func ServerTime(ctx context.Context, db *sql.DB) (time.Time, error) {
	var micros int64
	if err := db.QueryRowContext(ctx, "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)").Scan(&micros); err != nil {
		return time.Time{}, err
	}
	return time.UnixMicro(micros), nil
}

// Connections returns the server's max_connections and the connections in
// use (Threads_connected).
func Connections(ctx context.Context, db *sql.DB) (max, used int, err error) {
	if err := db.QueryRowContext(ctx, "SELECT @@max_connections").Scan(&max); err != nil {
		return 0, 0, err
	}
	v, err := mysqlconn.GlobalValue(ctx, db, mysqlconn.StatusQueries, "threads_connected")
	if err != nil {
		return 0, 0, err
	}
	if used, err = strconv.Atoi(v); err != nil {
		return 0, 0, fmt.Errorf("Threads_connected %q: %w", v, err)
	}
	return max, used, nil
}
