// Package integration hands tests a real server: PostgreSQL, MySQL/MariaDB
// or Redis.
//
// A server comes from an environment variable first ([EnvPostgres],
// [EnvMySQL], [EnvRedis]); else from a Testcontainers container where a
// Docker engine answers; else the test is skipped with a message naming the
// variable to set — unless [EnvRequire] is "1", when it fails instead.
//
// Containers run the registry's postgres:16-alpine, mariadb:11 and
// redis:7-alpine by default; [EnvImages]=local picks the images that
// integration/images/build.sh builds from Debian's packages, for an engine
// that reaches no registry; [EnvPostgresImage], [EnvMySQLImage] and
// [EnvRedisImage] name one server's image. A container publishes its port
// on 127.0.0.1 only, and the tests dial it there.
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

	// EnvImages chooses the set of container images: unset or "registry"
	// for the registry's official images, "local" for the ones that
	// integration/images/build.sh builds (lockkit-test/postgres:15,
	// lockkit-test/mariadb:10.11, lockkit-test/redis:7).
	EnvImages = "LOCKKIT_TEST_IMAGES"
	// EnvPostgresImage names the PostgreSQL container's image, over
	// [EnvImages]. It must follow the official postgres image's
	// conventions (POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD, the ready line
	// logged twice on a first start).
	EnvPostgresImage = "LOCKKIT_TEST_POSTGRES_IMAGE"
	// EnvMySQLImage names the MySQL or MariaDB container's image, over
	// [EnvImages], following the official mariadb or mysql image's
	// conventions.
	EnvMySQLImage = "LOCKKIT_TEST_MYSQL_IMAGE"
	// EnvRedisImage names the Redis container's image, over [EnvImages].
	EnvRedisImage = "LOCKKIT_TEST_REDIS_IMAGE"
	// EnvRun, when set, labels every container dev.lockkit.run=VALUE
	// (beside dev.lockkit.test=integration and Testcontainers' own
	// labels), so that a CI run can find and remove what it started.
	EnvRun = "LOCKKIT_TEST_RUN"
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
	env      string
	image    string // the registry's
	local    string // integration/images/build.sh's
	imageEnv string // names another
	port     string
	envs     map[string]string
	// ready is a log line the server prints twice when ready (the
	// entrypoint restarts it once after initialising); "" to wait for the
	// port only.
	ready string
	// url renders the connection string for a container's host and port.
	url func(host, port string) string
}

var (
	postgresSpec = spec{
		env: EnvPostgres, image: "postgres:16-alpine", local: "lockkit-test/postgres:15",
		imageEnv: EnvPostgresImage, port: "5432/tcp",
		envs:  map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test"},
		ready: "database system is ready to accept connections",
		url: func(h, p string) string {
			return fmt.Sprintf("postgres://postgres@%s:%s/test?sslmode=disable", h, p)
		},
	}
	mysqlSpec = spec{
		env: EnvMySQL, image: "mariadb:11", local: "lockkit-test/mariadb:10.11",
		imageEnv: EnvMySQLImage, port: "3306/tcp",
		// The MYSQL_ names for a mysql image; mariadb's read either.
		envs: map[string]string{
			"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1", "MARIADB_DATABASE": "test",
			"MYSQL_ALLOW_EMPTY_PASSWORD": "1", "MYSQL_DATABASE": "test",
		},
		ready: "ready for connections",
		url:   func(h, p string) string { return fmt.Sprintf("root@tcp(%s:%s)/test", h, p) },
	}
	redisSpec = spec{
		env: EnvRedis, image: "redis:7-alpine", local: "lockkit-test/redis:7",
		imageEnv: EnvRedisImage, port: "6379/tcp",
		url: func(h, p string) string { return fmt.Sprintf("redis://%s:%s/0", h, p) },
	}
)

// imageOf returns the image to run for s.
func imageOf(s spec) (string, error) {
	if v := strings.TrimSpace(os.Getenv(s.imageEnv)); v != "" {
		return v, nil
	}
	switch v := strings.TrimSpace(os.Getenv(EnvImages)); v {
	case "", "registry":
		return s.image, nil
	case "local":
		return s.local, nil
	default:
		return "", fmt.Errorf("%s=%q: want registry or local", EnvImages, v)
	}
}

// labels returns the labels of a container.
func labels() map[string]string {
	l := map[string]string{"dev.lockkit.test": "integration"}
	if v := strings.TrimSpace(os.Getenv(EnvRun)); v != "" {
		l["dev.lockkit.run"] = v
	}
	return l
}

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
