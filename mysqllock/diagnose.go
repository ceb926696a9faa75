package mysqllock

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
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

// The queries that read a global variable or status value by name:
// information_schema's tables on MariaDB (and MySQL 5.x), then
// performance_schema's on MySQL 5.7 and later, which refuse or lack the
// former. SHOW ... LIKE cannot take a bound name.
var (
	variableQueries = []string{
		"SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = ?",
		"SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = ?",
	}
	statusQueries = []string{
		"SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = ?",
		"SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = ?",
	}
)

// queryRower is a *sql.DB or a *sql.Conn.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// globalValue returns the named value through the first of queries that
// answers; no row is "" and no error.
func globalValue(ctx context.Context, db queryRower, queries []string, name string) (string, error) {
	var err error
	for _, q := range queries {
		var v sql.NullString
		err = db.QueryRowContext(ctx, q, name).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		if err == nil {
			return v.String, nil
		}
	}
	return "", err
}

// globalVariable returns a global variable's value, or "" when it is not
// set or cannot be read.
func globalVariable(ctx context.Context, db *sql.DB, name string) string {
	v, _ := globalValue(ctx, db, variableQueries, name)
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
	v, err := globalValue(ctx, db, statusQueries, "threads_connected")
	if err != nil {
		return 0, 0, err
	}
	if used, err = strconv.Atoi(v); err != nil {
		return 0, 0, fmt.Errorf("Threads_connected %q: %w", v, err)
	}
	return max, used, nil
}
