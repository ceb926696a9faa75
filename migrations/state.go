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
	// Migrating: Dirty, and the migrators' lock is held, so a migration
	// is most likely running now (a migration is dirty while it runs)
	// rather than failed halfway.
	Migrating bool
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
	if s.Dirty {
		s.Migrating, err = migrating(ctx, db, dialect)
	}
	return s, err
}

// migrating reports whether the migrators' lock of the default history
// table is held, without taking it.
func migrating(ctx context.Context, db *sql.DB, dialect Dialect) (bool, error) {
	var held bool
	var err error
	switch dialect {
	case Postgres:
		// A bigint advisory key shows in pg_locks as its high and low
		// 32 bits (classid, objid) with objsubid 1.
		key := uint64(pgLockKey(DefaultMigrationsTable))
		err = db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks
			WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND classid = $1 AND objid = $2
			AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))`,
			int64(key>>32), int64(key&0xffffffff)).Scan(&held)
	default:
		var name string
		if name, err = mysqlLockName(ctx, db, DefaultMigrationsTable); err == nil {
			err = db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) IS NOT NULL", name).Scan(&held)
		}
	}
	if err != nil {
		return false, fmt.Errorf("migrations: the migrators' lock: %w", err)
	}
	return held, nil
}
