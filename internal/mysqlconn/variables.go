package mysqlconn

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// VariableQueries and StatusQueries read a global variable or status value
// by name: information_schema's tables on MariaDB (and MySQL 5.x), then
// performance_schema's on MySQL 5.7 and later, which refuse or lack the
// former. SHOW ... LIKE cannot take a bound name.
var (
	VariableQueries = []string{
		"SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = ?",
		"SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = ?",
	}
	StatusQueries = []string{
		"SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = ?",
		"SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = ?",
	}
)

// QueryRower is a *sql.DB or a *sql.Conn.
type QueryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// GlobalValue returns the named value through the first of queries that
// answers; no row is "" and no error.
func GlobalValue(ctx context.Context, db QueryRower, queries []string, name string) (string, error) {
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

// Seconds renders d as GET_LOCK's timeout: seconds with microseconds
// (rounded up), which MariaDB honours; MySQL rounds to whole seconds.
func Seconds(d time.Duration) float64 {
	us := (d + time.Microsecond - 1) / time.Microsecond
	return float64(us) / 1e6
}
