package integration

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync"
)

// MySQLStmts keeps statements prepared per driver connection of a
// go-sql-driver/mysql pool, as mysqllock keeps its own, for the floors
// that benchmarks compare mysqllock with: without interpolateParams the
// driver would otherwise prepare, execute and close a statement with
// arguments every time (2 round trips instead of 1). The zero value is
// ready; it is safe for concurrent use.
type MySQLStmts struct {
	mu sync.Mutex
	m  map[any]map[string]driver.Stmt // driver connection → query → statement
}

// Query runs q, which returns one row of cols integer columns, with args
// on conn, through the statement kept for conn's driver connection
// (prepared the first time). NULL columns are not Valid.
func (s *MySQLStmts) Query(ctx context.Context, conn *sql.Conn, cols int, q string, args ...any) ([]sql.NullInt64, error) {
	var got []sql.NullInt64
	err := conn.Raw(func(dc any) error {
		s.mu.Lock()
		st := s.m[dc][q]
		s.mu.Unlock()
		if st == nil {
			p, err := dc.(driver.ConnPrepareContext).PrepareContext(ctx, q)
			if err != nil {
				return err
			}
			st = p
			s.mu.Lock()
			if s.m == nil {
				s.m = map[any]map[string]driver.Stmt{}
			}
			if s.m[dc] == nil {
				s.m[dc] = map[string]driver.Stmt{}
			}
			s.m[dc][q] = st
			s.mu.Unlock()
		}
		nv := make([]driver.NamedValue, len(args))
		for i, a := range args {
			nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
		}
		rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, nv)
		if err != nil {
			return err
		}
		defer rows.Close()
		row := make([]driver.Value, len(rows.Columns()))
		if err := rows.Next(row); err != nil {
			return err
		}
		if len(row) != cols {
			return fmt.Errorf("%s: %d columns, want %d", q, len(row), cols)
		}
		for _, v := range row {
			switch v := v.(type) {
			case nil:
				got = append(got, sql.NullInt64{})
			case int64:
				got = append(got, sql.NullInt64{Int64: v, Valid: true})
			default:
				return fmt.Errorf("%s: a column of type %T", q, v)
			}
		}
		return nil
	})
	return got, err
}
