package rowlock

import (
	"errors"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoTable means the lock table does not exist: create it with package
// migrations (migrations.Up, or lockkit migrate up). A Locker's errors
// match it when the database says so (PostgreSQL's undefined_table,
// 42P01; MySQL's ER_NO_SUCH_TABLE, 1146); their text is the driver's.
var ErrNoTable = errors.New("rowlock: the lock table does not exist")

// noTableError is a driver error that says the lock table is missing.
type noTableError struct{ err error }

func (e *noTableError) Error() string        { return e.err.Error() }
func (e *noTableError) Unwrap() error        { return e.err }
func (e *noTableError) Is(target error) bool { return target == ErrNoTable }

// noTable makes err match ErrNoTable when it is the driver's error for a
// missing table; other errors are returned as they are.
func noTable(err error) error {
	if err == nil || errors.Is(err, ErrNoTable) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return &noTableError{err}
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == 1146 {
		return &noTableError{err}
	}
	return err
}
