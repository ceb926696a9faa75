package migrations_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/migrations"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// isolated returns a function that opens a new *sql.DB on a schema
// (PostgreSQL) or database (MySQL) private to the test, so that Down never
// drops a table another test uses.
func isolated(t *testing.T, dialect migrations.Dialect) (open func() *sql.DB) {
	t.Helper()
	driver, dsn := isolatedDSN(t, dialect)
	return func() *sql.DB { return openDB(t, driver, dsn) }
}

// openDB opens a *sql.DB closed when the test ends.
func openDB(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// isolatedDSN creates the test's private schema or database and returns
// the database/sql driver name and DSN that reach it.
func isolatedDSN(t *testing.T, dialect migrations.Dialect) (driver, dsn string) {
	t.Helper()
	name := "lkt_mig_" + randHex(6)
	switch dialect {
	case migrations.Postgres:
		admin := integration.Postgres(t)
		if _, err := admin.Exec("CREATE SCHEMA " + name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := admin.Exec("DROP SCHEMA " + name + " CASCADE"); err != nil {
				t.Errorf("drop schema: %v", err)
			}
		})
		base := integration.PostgresDSN(t)
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		driver, dsn = "pgx", base+sep+"search_path="+name
	case migrations.MySQL:
		admin := integration.MySQL(t)
		if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := admin.Exec("DROP DATABASE " + name); err != nil {
				t.Errorf("drop database: %v", err)
			}
		})
		cfg, err := mysql.ParseDSN(integration.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName = name
		driver, dsn = "mysql", cfg.FormatDSN()
	}
	return driver, dsn
}

var dialects = []migrations.Dialect{migrations.Postgres, migrations.MySQL}

func TestFS(t *testing.T) {
	for _, d := range dialects {
		fsys, err := migrations.FS(d)
		if err != nil {
			t.Fatalf("FS(%s): %v", d, err)
		}
		names, err := fs.Glob(fsys, "*.sql")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"0001_lock_table.down.sql", "0001_lock_table.up.sql"}
		if d == migrations.Postgres {
			want = append(want, "0002_token_epoch.down.sql", "0002_token_epoch.up.sql")
		}
		if !slices.Equal(names, want) {
			t.Errorf("FS(%s) files = %v, want %v", d, names, want)
		}
		up, err := fs.ReadFile(fsys, "0001_lock_table.up.sql")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(up), "CREATE TABLE "+migrations.TableName+" (") {
			t.Errorf("%s up migration does not create %s", d, migrations.TableName)
		}
	}
	if _, err := migrations.FS("sqlite"); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("FS(sqlite) = %v, want ErrInvalid", err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := ctxT(t, 5*time.Second)
	// A *sql.DB that cannot connect: any I/O would fail with a
	// connection error, not ErrInvalid.
	db, err := sql.Open("pgx", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		name    string
		db      *sql.DB
		dialect migrations.Dialect
		cfg     *migrations.Config
	}{
		{"nil db", nil, migrations.Postgres, nil},
		{"unknown dialect", db, "oracle", nil},
		{"quoted table", db, migrations.Postgres, &migrations.Config{MigrationsTable: `x"; DROP TABLE y; --`}},
		{"dotted table", db, migrations.MySQL, &migrations.Config{MigrationsTable: "a.b"}},
		{"long table", db, migrations.Postgres, &migrations.Config{MigrationsTable: strings.Repeat("t", 64)}},
	} {
		if err := migrations.Up(ctx, tc.db, tc.dialect, tc.cfg); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("%s: Up = %v, want ErrInvalid", tc.name, err)
		}
	}
}

// columns lists the lock table's columns in the connection's current
// schema or database.
func columns(t *testing.T, db *sql.DB, dialect migrations.Dialect) []string {
	t.Helper()
	q := `SELECT column_name FROM information_schema.columns
	      WHERE table_schema = current_schema() AND table_name = $1 ORDER BY column_name`
	if dialect == migrations.MySQL {
		q = `SELECT column_name FROM information_schema.columns
		     WHERE table_schema = DATABASE() AND table_name = ? ORDER BY column_name`
	}
	rows, err := db.Query(q, migrations.TableName)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, strings.ToLower(c))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return cols
}

var wantColumns = []string{"acquired_at", "data", "expires_at", "host", "name", "owner", "pid", "token"}

func wantVersion(t *testing.T, db *sql.DB, d migrations.Dialect, cfg *migrations.Config, want uint) {
	t.Helper()
	v, dirty, err := migrations.Version(ctxT(t, 30*time.Second), db, d, cfg)
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v != want || dirty {
		t.Fatalf("Version = %d dirty=%v, want %d clean", v, dirty, want)
	}
}

func TestUpDownUp(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db := isolated(t, d)()
			// One connection: Up must give it back (destroyed and
			// replaced), or the Version calls below would hang.
			db.SetMaxOpenConns(1)
			ctx := ctxT(t, time.Minute)
			wantVersion(t, db, d, nil, 0)
			latest := migrations.Latest(d)
			for i, step := range []struct {
				fn      func(context.Context, *sql.DB, migrations.Dialect, *migrations.Config) error
				version uint
				cols    []string
			}{
				{migrations.Up, latest, wantColumns},
				{migrations.Up, latest, wantColumns}, // nothing to do
				{migrations.Down, 0, nil},
				{migrations.Up, latest, wantColumns},
			} {
				if err := step.fn(ctx, db, d, nil); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				wantVersion(t, db, d, nil, step.version)
				if got := columns(t, db, d); !slices.Equal(got, step.cols) {
					t.Fatalf("step %d: columns = %v, want %v", i, got, step.cols)
				}
			}
			// The history is in lockkit's own table, not schema_migrations.
			var n int
			q := "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
			if d == migrations.MySQL {
				q = "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?"
			}
			for table, want := range map[string]int{migrations.DefaultMigrationsTable: 1, "schema_migrations": 0} {
				if err := db.QueryRow(q, table).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != want {
					t.Errorf("%d tables named %s, want %d", n, table, want)
				}
			}
			// The caller's *sql.DB is still open and usable.
			if err := db.PingContext(ctx); err != nil {
				t.Errorf("caller's *sql.DB after migrations: %v", err)
			}
		})
	}
}

// TestOwnHistory shows lockkit's history next to an application's own
// golang-migrate history in the same schema: neither disturbs the other.
func TestOwnHistory(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db := isolated(t, d)()
			ctx := ctxT(t, time.Minute)
			// The application's history at version 42.
			if _, err := db.Exec("CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("INSERT INTO schema_migrations (version, dirty) VALUES (42, false)"); err != nil {
				t.Fatal(err)
			}
			custom := &migrations.Config{MigrationsTable: "my_lock_history"}
			if err := migrations.Up(ctx, db, d, custom); err != nil {
				t.Fatal(err)
			}
			wantVersion(t, db, d, custom, migrations.Latest(d))
			wantVersion(t, db, d, nil, 0) // the default history table is another one
			var v int
			if err := db.QueryRow("SELECT version FROM schema_migrations").Scan(&v); err != nil || v != 42 {
				t.Errorf("application's schema_migrations version = %d, %v; want 42", v, err)
			}
		})
	}
}

// TestConcurrentUp runs ten migrators at once, each with its own *sql.DB
// (its own sessions, as ten processes would have): all succeed and the
// schema ends up migrated once.
func TestConcurrentUp(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			open := isolated(t, d)
			ctx := ctxT(t, time.Minute)
			const n = 10
			dbs := make([]*sql.DB, n)
			for i := range dbs {
				dbs[i] = open()
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					errs[i] = migrations.Up(ctx, dbs[i], d, nil)
				}()
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("migrator %d: %v", i, err)
				}
			}
			wantVersion(t, dbs[0], d, nil, migrations.Latest(d))
			if got := columns(t, dbs[0], d); !slices.Equal(got, wantColumns) {
				t.Errorf("columns = %v, want %v", got, wantColumns)
			}
			var rows int
			if err := dbs[0].QueryRow("SELECT count(*) FROM " + migrations.DefaultMigrationsTable).Scan(&rows); err != nil || rows != 1 {
				t.Errorf("history rows = %d, %v; want 1", rows, err)
			}
		})
	}
}

// TestCancelWhileWaiting holds the migrators' session lock elsewhere: Up
// waits for it, and returns with ctx's error when its context ends.
func TestCancelWhileWaiting(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			open := isolated(t, d)
			a, b := open(), open()
			ctx := ctxT(t, time.Minute)
			conn, err := a.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			unlock, err := migrations.SessionLock(ctx, conn, d, migrations.DefaultMigrationsTable)
			if err != nil {
				t.Fatal(err)
			}
			short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = migrations.Up(short, b, d, nil)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Up while another migrator holds the lock = %v, want DeadlineExceeded", err)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("Up returned %v after its 300ms context ended", el)
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			wantVersion(t, a, d, nil, 0) // the cancelled Up ran nothing
			if err := migrations.Up(ctx, b, d, nil); err != nil {
				t.Fatal(err)
			}
			wantVersion(t, a, d, nil, migrations.Latest(d))
		})
	}
}
