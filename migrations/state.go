package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Latest is the newest version among the bundled migrations of dialect,
// or 0 for an unknown dialect.
func Latest(dialect Dialect) uint {
	fsys, err := FS(dialect)
	if err != nil {
		return 0
	}
	var newest uint
	_ = fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".up.sql") {
			return nil
		}
		num, _, _ := strings.Cut(path, "_")
		if n, err := strconv.ParseUint(num, 10, 64); err == nil && uint(n) > newest {
			newest = uint(n)
		}
		return nil
	})
	return newest
}

// State is the lock table's migration state, read without changing the
// database (unlike Version, which takes the migrators' lock and creates
// the history table).
type State struct {
	Table   bool // the lock table (TableName) exists
	History bool // the history table (DefaultMigrationsTable) exists
	// Applied is false when the history table is empty; Version and
	// Dirty are its row.
	Applied bool
	Version uint
	Dirty   bool
}

// Inspect reads the migration state of the default lock table and
// history table in the database db reaches (the current schema search
// path on PostgreSQL, the current database on MySQL). An error reading
// the history names the history table.
func Inspect(ctx context.Context, db *sql.DB, dialect Dialect) (State, error) {
	var s State
	var exists string
	switch dialect {
	case Postgres:
		exists = "SELECT pg_catalog.to_regclass($1) IS NOT NULL, pg_catalog.to_regclass($2) IS NOT NULL"
	case MySQL:
		exists = "SELECT COUNT(CASE WHEN table_name = ? THEN 1 END) > 0, COUNT(CASE WHEN table_name = ? THEN 1 END) > 0 FROM information_schema.tables WHERE table_schema = DATABASE()"
	default:
		return s, fmt.Errorf("migrations: unknown dialect %q", dialect)
	}
	if err := db.QueryRowContext(ctx, exists, TableName, DefaultMigrationsTable).Scan(&s.Table, &s.History); err != nil {
		return s, err
	}
	if !s.History {
		return s, nil
	}
	var version int64
	err := db.QueryRowContext(ctx, "SELECT version, dirty FROM "+DefaultMigrationsTable+" LIMIT 1").Scan(&version, &s.Dirty)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return s, nil
	case err != nil:
		return s, fmt.Errorf("%s: %w", DefaultMigrationsTable, err)
	}
	s.Applied, s.Version = true, uint(version)
	return s, nil
}
