package rowlock_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/rowlock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leakOptions...) }

// leakOptions ignore the per-connection goroutine go-sql-driver/mysql keeps
// while a pooled connection is open; the pools close when each test ends.
var leakOptions = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/go-sql-driver/mysql.(*mysqlConn).startWatcher.func1"),
	// A connection of the package's shared pool, which outlives the
	// check (a CI run saw one).
	integration.IgnorePgxBackgroundReader,
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// env is a lock table private to one test: a PostgreSQL schema or a MySQL
// database of its own, migrated with package migrations and dropped when
// the test ends.
type env struct {
	dialect rowlock.Dialect
	driver  string
	// dsn returns the connection string for the private schema, with
	// extra session settings (PostgreSQL runtime parameters, MySQL system
	// variables).
	dsn func(settings map[string]string) string
	db  *sql.DB // the test's pool on the private schema
}

// open returns a new pool on the private schema, closed when the test ends.
func (e *env) open(t testing.TB, settings map[string]string) *sql.DB {
	t.Helper()
	db, err := sql.Open(e.driver, e.dsn(settings))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// locker returns a Locker on the private lock table, closed when the test
// ends.
func (e *env) locker(t testing.TB, cfg *rowlock.Config) *rowlock.Locker {
	t.Helper()
	return e.lockerOn(t, e.db, cfg)
}

func (e *env) lockerOn(t testing.TB, db *sql.DB, cfg *rowlock.Config) *rowlock.Locker {
	t.Helper()
	if cfg == nil {
		cfg = &rowlock.Config{}
	}
	l, err := rowlock.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func (e *env) name(t testing.TB) string { return integration.Name(t) }

// ph returns the n-th placeholder of the dialect.
func (e *env) ph(n int) string {
	if e.dialect == rowlock.Postgres {
		return "$" + string(rune('0'+n))
	}
	return "?"
}

// live counts unexpired leases among names.
func (e *env) live(t testing.TB, names []string) int {
	t.Helper()
	now := "clock_timestamp()"
	if e.dialect == rowlock.MySQL {
		now = "UTC_TIMESTAMP(6)"
	}
	n := 0
	for _, name := range names {
		var c int
		q := "SELECT count(*) FROM lockkit_locks WHERE name = " + e.ph(1) + " AND expires_at > " + now
		if err := e.db.QueryRow(q, name).Scan(&c); err != nil {
			t.Fatal(err)
		}
		n += c
		if c > 0 {
			var owner string
			var token int64
			_ = e.db.QueryRow("SELECT owner, token FROM lockkit_locks WHERE name = "+e.ph(1), name).Scan(&owner, &token)
			t.Logf("live lease left on %q: owner %q token %d", name, owner, token)
		}
	}
	return n
}

func setup(t testing.TB, d rowlock.Dialect) *env {
	t.Helper()
	schema := "lkt_rl_" + randHex(6)
	e := &env{dialect: d}
	switch d {
	case rowlock.Postgres:
		admin := integration.Postgres(t)
		if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
				t.Errorf("drop schema: %v", err)
			}
		})
		base := integration.PostgresDSN(t)
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		e.driver = "pgx"
		e.dsn = func(settings map[string]string) string {
			s := base + sep + "search_path=" + schema
			for k, v := range settings {
				s += "&" + k + "=" + v
			}
			return s
		}
	case rowlock.MySQL:
		admin := integration.MySQL(t)
		if _, err := admin.Exec("CREATE DATABASE " + schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := admin.Exec("DROP DATABASE " + schema); err != nil {
				t.Errorf("drop database: %v", err)
			}
		})
		cfg, err := mysql.ParseDSN(integration.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName = schema
		e.driver = "mysql"
		e.dsn = func(settings map[string]string) string {
			c := cfg.Clone()
			if len(settings) > 0 {
				c.Params = map[string]string{}
				for k, v := range settings {
					c.Params[k] = v
				}
			}
			return c.FormatDSN()
		}
	}
	e.db = e.open(t, nil)
	e.db.SetMaxOpenConns(16)
	if err := migrations.Up(ctxT(t, time.Minute), e.db, migrations.Dialect(d), nil); err != nil {
		t.Fatal(err)
	}
	return e
}

var dialects = []rowlock.Dialect{rowlock.Postgres, rowlock.MySQL}

// both runs fn against each dialect, in parallel subtests.
func both(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			fn(t, setup(t, d))
		})
	}
}
