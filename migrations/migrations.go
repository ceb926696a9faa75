package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	migratemysql "github.com/golang-migrate/migrate/v4/database/mysql"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/sqlconn"
)

// Dialect names the SQL dialect a migration set is written for.
type Dialect string

// The dialects lockkit ships migrations for.
const (
	// Postgres is PostgreSQL 12 or later.
	Postgres Dialect = "postgres"
	// MySQL is MySQL 8.0 or later, or MariaDB 10.3 or later.
	MySQL Dialect = "mysql"
)

// TableName is the lock table the migrations create.
const TableName = "lockkit_locks"

// DefaultMigrationsTable is the table in which [Up], [Down] and [Version]
// record which lockkit migrations ran. It is not golang-migrate's default
// schema_migrations, so lockkit's history never collides with the
// application's own.
const DefaultMigrationsTable = "lockkit_schema_migrations"

//go:embed postgres/*.sql mysql/*.sql
var files embed.FS

// FS returns the migration files of dialect as an fs.FS whose root holds
// NNNN_name.up.sql and NNNN_name.down.sql, ready for golang-migrate's iofs
// source. The same files are in the module's migrations/postgres and
// migrations/mysql directories for golang-migrate's CLI:
//
//	migrate -path migrations/postgres \
//	  -database 'postgres://...?x-migrations-table=lockkit_schema_migrations' up
func FS(dialect Dialect) (fs.FS, error) {
	switch dialect {
	case Postgres, MySQL:
		return fs.Sub(files, string(dialect))
	}
	return nil, invalid.Errorf("migrations: unknown dialect %q (want %q or %q)", dialect, Postgres, MySQL)
}

// Config tunes [Up], [Down] and [Version]. A nil *Config means the
// defaults.
type Config struct {
	// MigrationsTable is the history table, a plain identifier of at most
	// 63 characters. Default [DefaultMigrationsTable].
	MigrationsTable string
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func (c *Config) table() (string, error) {
	if c == nil || c.MigrationsTable == "" {
		return DefaultMigrationsTable, nil
	}
	if !identRE.MatchString(c.MigrationsTable) {
		return "", invalid.Errorf("migrations: MigrationsTable %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)", c.MigrationsTable)
	}
	return c.MigrationsTable, nil
}

// Up applies every lockkit migration not yet applied to db. It is safe to
// run from many processes at once: they serialise on a session lock and the
// later ones find nothing to do.
//
// db is the caller's: Up borrows one connection from it for the duration
// and never closes or reconfigures db. The borrowed connection is destroyed
// afterwards rather than returned to the pool, so no session state
// (advisory locks, settings) can leak into the application's queries.
//
// ctx bounds borrowing the connection and waiting for other migrators. Once
// migrations run, a cancelled ctx stops them between two migration files
// (golang-migrate runs each file to completion); Up then returns ctx's
// error. A database left "dirty" by a failed migration file must be fixed by
// hand, as with golang-migrate's CLI (migrate force).
func Up(ctx context.Context, db *sql.DB, dialect Dialect, cfg *Config) error {
	return run(ctx, db, dialect, cfg, func(m *migrate.Migrate) error { return m.Up() })
}

// Down reverts every lockkit migration, dropping the lock table and all
// locks recorded in it. The history table stays (empty), as with
// golang-migrate. See [Up] for how db and ctx are used.
func Down(ctx context.Context, db *sql.DB, dialect Dialect, cfg *Config) error {
	return run(ctx, db, dialect, cfg, func(m *migrate.Migrate) error { return m.Down() })
}

// Version reports the applied lockkit migration version: 0 when none has
// run, and whether the last run failed halfway (dirty).
func Version(ctx context.Context, db *sql.DB, dialect Dialect, cfg *Config) (version uint, dirty bool, err error) {
	err = run(ctx, db, dialect, cfg, func(m *migrate.Migrate) error {
		v, d, err := m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			return nil
		}
		version, dirty = v, d
		return err
	})
	return version, dirty, err
}

func run(ctx context.Context, db *sql.DB, dialect Dialect, cfg *Config, fn func(*migrate.Migrate) error) error {
	if db == nil {
		return invalid.Errorf("migrations: nil *sql.DB")
	}
	src, err := FS(dialect)
	if err != nil {
		return err
	}
	table, err := cfg.table()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	// The session may hold locks or settings from the migrations; it is
	// never returned to the caller's pool.
	defer sqlconn.Discard(conn)

	// A session lock of our own, taken under ctx, serialises concurrent
	// migrators before golang-migrate's own lock (which waits without a
	// context on PostgreSQL and gives up after 10s on MySQL).
	unlock, err := sessionLock(ctx, conn, dialect, table)
	if err != nil {
		return fmt.Errorf("migrations: waiting for other migrators: %w", err)
	}

	err = withPrivateDB(conn, db, func(private *sql.DB) error {
		var drv database.Driver
		var err error
		switch dialect {
		case Postgres:
			drv, err = migratepgx.WithInstance(private, &migratepgx.Config{MigrationsTable: table})
		case MySQL:
			drv, err = migratemysql.WithInstance(private, &migratemysql.Config{MigrationsTable: table})
		}
		if err != nil {
			return err
		}
		source, err := iofs.New(src, ".")
		if err != nil {
			_ = drv.Close()
			return err
		}
		m, err := migrate.NewWithInstance("iofs", source, string(dialect), drv)
		if err != nil {
			_ = source.Close()
			_ = drv.Close()
			return err
		}
		// Our session lock makes golang-migrate's lock uncontended
		// except against its CLI; give that case a generous bound.
		m.LockTimeout = 5 * time.Minute
		stop := context.AfterFunc(ctx, func() {
			select {
			case m.GracefulStop <- true:
			default:
			}
		})
		err = fn(m)
		stop()
		srcErr, dbErr := m.Close() // closes the private DB, never db
		if errors.Is(err, migrate.ErrNoChange) {
			err = nil
		}
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		return errors.Join(err, srcErr, dbErr)
	})
	if uerr := unlock(); err == nil && uerr != nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("migrations: %s: %w", dialect, err)
	}
	return nil
}

// unlockTimeout bounds giving back the migrators' session lock; the
// connection is destroyed afterwards in any case, which ends the lock too.
const unlockTimeout = 10 * time.Second

// pgLockKey is the advisory lock key of the migrators of history table
// table (PostgreSQL).
func pgLockKey(table string) int64 {
	h := fnv.New64a()
	h.Write([]byte("lockkit.migrations." + table))
	return int64(h.Sum64())
}

// querier is what mysqlLockName needs of a connection or a pool.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// mysqlLockName is the GET_LOCK name of the migrators of history table
// table in the current database (MySQL). GET_LOCK names are at most 64
// characters; the table name is at most 63, so the database name and
// the table are hashed.
func mysqlLockName(ctx context.Context, q querier, table string) (string, error) {
	var dbName sql.NullString
	if err := q.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName); err != nil {
		return "", err
	}
	h := fnv.New64a()
	h.Write([]byte(dbName.String + "." + table))
	return fmt.Sprintf("lockkit.migrations.%016x", h.Sum64()), nil
}

// sessionLock takes a session-level lock named after the history table on
// conn, waiting until ctx ends.
func sessionLock(ctx context.Context, conn *sql.Conn, dialect Dialect, table string) (unlock func() error, err error) {
	switch dialect {
	case Postgres:
		key := pgLockKey(table)
		// pgx cancels the wait when ctx ends; the connection is
		// discarded by the caller in every case.
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			return nil, err
		}
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
			defer cancel()
			var ok bool
			if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", key).Scan(&ok); err != nil {
				return err
			}
			if !ok {
				return errors.New("pg_advisory_unlock returned false")
			}
			return nil
		}, nil
	default:
		lockName, err := mysqlLockName(ctx, conn, table)
		if err != nil {
			return nil, err
		}
		for {
			// Wait in one-second slices so that ctx bounds the wait
			// without killing the statement.
			var got sql.NullInt64
			if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 1)", lockName).Scan(&got); err != nil {
				return nil, err
			}
			if !got.Valid {
				return nil, errors.New("GET_LOCK returned NULL")
			}
			if got.Int64 == 1 {
				break
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
			defer cancel()
			var res sql.NullInt64
			if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", lockName).Scan(&res); err != nil {
				return err
			}
			if res.Int64 != 1 {
				return fmt.Errorf("RELEASE_LOCK returned %v", res)
			}
			return nil
		}, nil
	}
}
