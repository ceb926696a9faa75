// Package integration hands tests a real server: PostgreSQL, MySQL/MariaDB
// or Redis.
//
// A server comes from an environment variable first ([EnvPostgres],
// [EnvMySQL], [EnvRedis]); else from a Testcontainers container where a
// Docker engine answers; else the test is skipped with a message naming the
// variable to set — unless [EnvRequire] is "1", when it fails instead.
//
// Only tests import this package.
package integration

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/redis/go-redis/v9"
)

// The environment variables that name the test servers.
const (
	// EnvPostgres is a pgx connection string, such as
	// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
	EnvPostgres = "LOCKKIT_TEST_POSTGRES"
	// EnvMySQL is a go-sql-driver/mysql DSN, such as
	// root@tcp(127.0.0.1:3306)/test.
	EnvMySQL = "LOCKKIT_TEST_MYSQL"
	// EnvRedis is a Redis URL, such as redis://127.0.0.1:6379/0.
	EnvRedis = "LOCKKIT_TEST_REDIS"
	// EnvRequire, set to "1", turns a missing server into a test failure.
	EnvRequire = "LOCKKIT_TEST_REQUIRE"
)

// PostgresDSN returns the connection string of a PostgreSQL server.
func PostgresDSN(t testing.TB) string { t.Helper(); return dsn(t, postgresSpec) }

// MySQLDSN returns the go-sql-driver/mysql DSN of a MySQL or MariaDB server.
func MySQLDSN(t testing.TB) string { t.Helper(); return dsn(t, mysqlSpec) }

// RedisURL returns the URL of a Redis server.
func RedisURL(t testing.TB) string { t.Helper(); return dsn(t, redisSpec) }

// Postgres opens a *sql.DB on PostgreSQL through pgx's database/sql driver.
// It is closed when the test ends.
func Postgres(t testing.TB) *sql.DB {
	t.Helper()
	return openSQL(t, "pgx", PostgresDSN(t))
}

// PgxPool opens a pgxpool.Pool on PostgreSQL, closed when the test ends.
func PgxPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), PostgresDSN(t))
	if err != nil {
		t.Fatalf("integration: pgxpool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// MySQL opens a *sql.DB on MySQL or MariaDB, closed when the test ends.
func MySQL(t testing.TB) *sql.DB {
	t.Helper()
	return openSQL(t, "mysql", MySQLDSN(t))
}

// Redis opens a Redis client, closed when the test ends.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(RedisURL(t))
	if err != nil {
		t.Fatalf("integration: %s: %v", EnvRedis, err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func openSQL(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("integration: open %s: %v", driver, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		t.Fatalf("integration: ping %s: %v", driver, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// Name returns a lock name unique to this test and this run, so that tests
// running in parallel, or leftovers of an earlier run, never share a lock.
// It is at most 48 bytes long.
func Name(t testing.TB) string {
	base := unsafeChars.ReplaceAllString(t.Name(), "_")
	if len(base) > 31 {
		base = base[len(base)-31:]
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "lkt." + base + "." + hex.EncodeToString(b[:])[:12]
}

type spec struct {
	env   string
	image string
	port  string
	envs  map[string]string
	// ready is a log line the server prints twice when ready (the
	// entrypoint restarts it once after initialising); "" to wait for the
	// port only.
	ready string
	// url renders the connection string for a container's host and port.
	url func(host, port string) string
}

var (
	postgresSpec = spec{
		env: EnvPostgres, image: "postgres:16-alpine", port: "5432/tcp",
		envs:  map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test"},
		ready: "database system is ready to accept connections",
		url: func(h, p string) string {
			return fmt.Sprintf("postgres://postgres@%s:%s/test?sslmode=disable", h, p)
		},
	}
	mysqlSpec = spec{
		env: EnvMySQL, image: "mariadb:11", port: "3306/tcp",
		envs:  map[string]string{"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1", "MARIADB_DATABASE": "test"},
		ready: "ready for connections",
		url:   func(h, p string) string { return fmt.Sprintf("root@tcp(%s:%s)/test", h, p) },
	}
	redisSpec = spec{
		env: EnvRedis, image: "redis:7-alpine", port: "6379/tcp",
		url: func(h, p string) string { return fmt.Sprintf("redis://%s:%s/0", h, p) },
	}
)

var (
	containersMu sync.Mutex
	containers   = map[string]result{}
)

type result struct {
	url string
	err error
}

func dsn(t testing.TB, s spec) string {
	t.Helper()
	if v := strings.TrimSpace(os.Getenv(s.env)); v != "" {
		return v
	}
	containersMu.Lock()
	r, ok := containers[s.env]
	if !ok {
		r.url, r.err = startContainer(s)
		containers[s.env] = r
	}
	containersMu.Unlock()
	if r.err == nil {
		return r.url
	}
	msg := fmt.Sprintf("integration: no server: set %s (%v)", s.env, r.err)
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
