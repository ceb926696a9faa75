package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/migrations"
)

// doctorJSON runs lockkit doctor --json on backend and decodes the report.
func doctorJSON(t *testing.T, backend string, args ...string) (report, result) {
	t.Helper()
	res := runCLI(t, nil, append([]string{"doctor", "--json", "-b", backend}, args...)...)
	var r report
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
		t.Fatalf("doctor --json printed no JSON report (exit %d): %v\nstdout: %s\nstderr: %s", res.code, err, res.stdout, res.stderr)
	}
	return r, res
}

// statuses maps each check's name to its status.
func statuses(r report) map[string]string {
	m := map[string]string{}
	for _, c := range r.Checks {
		m[c.Name] = c.Status
	}
	return m
}

// wantChecks fails t unless r has exactly the given checks with the given
// statuses, and the exit status code.
func wantChecks(t *testing.T, r report, res result, code int, want map[string]string) {
	t.Helper()
	got := statuses(r)
	for name, st := range want {
		if got[name] != st {
			t.Errorf("check %q: %q, want %q", name, got[name], st)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected check %q (%s)", name, got[name])
		}
	}
	if res.code != code {
		t.Errorf("exit %d, want %d", res.code, code)
	}
	if t.Failed() {
		t.Logf("report: %+v\nstderr: %s", r, res.stderr)
	}
}

// pgURL turns the test server's DSN into a URL lockkit takes.
func pgURL(t *testing.T) string {
	t.Helper()
	return integration.PostgresDSN(t)
}

// mysqlURL turns the test server's go-sql-driver DSN into a mysql:// URL.
func mysqlURL(t *testing.T) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(integration.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName}
	if cfg.Passwd != "" {
		u.User = url.UserPassword(cfg.User, cfg.Passwd)
	} else {
		u.User = url.User(cfg.User)
	}
	return u.String()
}

func TestDoctorPostgres(t *testing.T) {
	t.Parallel()
	r, res := doctorJSON(t, pgURL(t))
	// The lock table may or may not exist on the shared server, depending
	// on other tests: ok or info, never a warning.
	table := statuses(r)["lock table"]
	if table != statusOK && table != statusInfo {
		t.Errorf("lock table: %s", table)
	}
	wantChecks(t, r, res, ExitOK, map[string]string{
		"connect": statusOK, "server": statusOK, "pooler": statusOK, "session locks": statusOK,
		"xact locks": statusOK, "lock table": table, "notify": statusOK, "clock": statusOK, "connections": statusOK,
	})
	if r.Kind != kindPostgres || r.Status != "ok" {
		t.Errorf("kind %q, status %q", r.Kind, r.Status)
	}
	// The text form says the same.
	text := runCLI(t, nil, "doctor", "-b", pgURL(t))
	if text.code != ExitOK || !strings.Contains(text.stdout, "session locks") || !strings.Contains(text.stdout, "Everything this backend promises holds here.") {
		t.Errorf("text form: exit %d\n%s%s", text.code, text.stdout, text.stderr)
	}
}

// A dirty migration history is a migration running now while the
// migrators' lock is held (info), and one that failed halfway once it is
// free (a warning). The history is made by hand in a schema of its own;
// the lock is taken on its key, written out here so that a change of the
// key (which old and new migrators must share) fails this test too.
func TestDoctorDirtyMigration(t *testing.T) {
	t.Parallel()
	admin := integration.Postgres(t)
	schema := fmt.Sprintf("lkt_doctor_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	for _, q := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + "." + migrations.DefaultMigrationsTable + " (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)",
		fmt.Sprintf("INSERT INTO %s.%s VALUES (%d, TRUE)", schema, migrations.DefaultMigrationsTable, migrations.Latest(migrations.Postgres)),
	} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
	u, err := url.Parse(pgURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	backend := u.String()
	lockTable := func() check {
		t.Helper()
		r, _ := doctorJSON(t, backend)
		for _, c := range r.Checks {
			if c.Name == "lock table" {
				return c
			}
		}
		t.Fatalf("no lock table check: %+v", r)
		return check{}
	}

	// fnv-1a 64 of "lockkit.migrations.lockkit_schema_migrations", held
	// through lockkit's own advisory Locker.
	const migratorsKey = int64(0x4fc6862e3c9d6e50)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	locker, err := advisory.New(admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	held, err := locker.LockKey(ctx, keyhash.Int64(migratorsKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := lockTable(); c.Status != statusInfo || !strings.Contains(c.Detail, "is running now") {
		t.Errorf("dirty, the migrators' lock held: %s: %s", c.Status, c.Detail)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Another test's migration in the same database takes the same key
	// for a moment now and then: look again for a while.
	var c check
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c = lockTable(); c.Status == statusWarn {
			break
		}
	}
	if c.Status != statusWarn || !strings.Contains(c.Detail, "failed halfway") {
		t.Errorf("dirty, the migrators' lock free: %s: %s", c.Status, c.Detail)
	}
}

// A server whose advisory lock functions lock nothing, as CockroachDB's
// do: simulated on a private PostgreSQL by replacing pg_catalog's
// functions with SQL stubs. The session-lock probe fails with lockkit's
// refusal; transaction-scoped locks still work (their functions are real).
func TestDoctorLookAlikeServer(t *testing.T) {
	t.Parallel()
	srv := integration.StartPostgres(t)
	admin, err := sql.Open("pgx", srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, f := range []string{
		`CREATE OR REPLACE FUNCTION pg_catalog.pg_try_advisory_lock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
		`CREATE OR REPLACE FUNCTION pg_catalog.pg_advisory_unlock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
	} {
		if _, err := admin.Exec(f); err != nil {
			t.Fatal(err)
		}
	}
	r, res := doctorJSON(t, srv.DSN())
	wantChecks(t, r, res, 1, map[string]string{
		"connect": statusOK, "server": statusOK, "pooler": statusOK, "session locks": statusFail,
		"xact locks": statusOK, "lock table": statusInfo, "notify": statusOK, "clock": statusOK, "connections": statusOK,
	})
	for _, c := range r.Checks {
		if c.Name == "session locks" && !strings.Contains(c.Detail, "does not enforce advisory locks") {
			t.Errorf("session locks: %s", c.Detail)
		}
	}
}

// Through PgBouncer in transaction mode: the pooler is caught sharing
// server sessions, session locks are refused, transaction-scoped locks work,
// NOTIFY does not reach a listener; exit 1. In session mode everything
// holds; the pooler is reported as a fact.
func TestDoctorPgBouncer(t *testing.T) {
	t.Parallel()
	t.Run("transaction", func(t *testing.T) {
		t.Parallel()
		pgb := integration.StartPgBouncer(t, "transaction")
		// The URL lockkit users would write: no exec mode of their own.
		u := "postgres://postgres@" + pgb.Addr() + "/trio?sslmode=disable"
		r, res := doctorJSON(t, u)
		wantChecks(t, r, res, 1, map[string]string{
			"connect": statusOK, "server": statusOK, "pooler": statusFail, "session locks": statusFail,
			"xact locks": statusOK, "lock table": statuses(r)["lock table"], "notify": statusWarn, "clock": statusOK, "connections": statusOK,
		})
		for _, c := range r.Checks {
			if c.Name == "pooler" && !strings.Contains(c.Detail, "transaction or statement pooling") {
				t.Errorf("pooler: %s", c.Detail)
			}
		}
	})
	t.Run("session", func(t *testing.T) {
		t.Parallel()
		pgb := integration.StartPgBouncer(t, "session")
		u := "postgres://postgres@" + pgb.Addr() + "/many?sslmode=disable"
		r, res := doctorJSON(t, u)
		table := statuses(r)["lock table"]
		wantChecks(t, r, res, ExitOK, map[string]string{
			"connect": statusOK, "server": statusOK, "pooler": statusInfo, "session locks": statusOK,
			"xact locks": statusOK, "lock table": table, "notify": statusOK, "clock": statusOK, "connections": statusOK,
		})
	})
}

func TestDoctorMySQL(t *testing.T) {
	t.Parallel()
	r, res := doctorJSON(t, mysqlURL(t))
	table := statuses(r)["lock table"]
	if table != statusOK && table != statusInfo {
		t.Errorf("lock table: %s", table)
	}
	wantChecks(t, r, res, ExitOK, map[string]string{
		"connect": statusOK, "server": statusOK, "cluster": statusOK, "session locks": statusOK,
		"lock table": table, "clock": statusOK, "connections": statusOK,
	})
}

func TestDoctorRedis(t *testing.T) {
	t.Parallel()
	t.Run("shared server", func(t *testing.T) {
		t.Parallel()
		// The test server runs without persistence: the one warning.
		r, res := doctorJSON(t, integration.RedisURL(t))
		persistence := statuses(r)["persistence"]
		code := ExitOK
		if persistence == statusWarn {
			code = 1
		}
		wantChecks(t, r, res, code, map[string]string{
			"connect": statusOK, "server": statusOK, "role": statusOK, "persistence": persistence,
			"locks": statusOK, "clock": statusOK, "connections": statusOK,
		})
	})
	t.Run("AOF", func(t *testing.T) {
		t.Parallel()
		srv := integration.StartRedis(t, integration.WithServerArgs("--appendonly", "yes"))
		r, res := doctorJSON(t, srv.DSN())
		wantChecks(t, r, res, ExitOK, map[string]string{
			"connect": statusOK, "server": statusOK, "role": statusOK, "persistence": statusOK,
			"locks": statusOK, "clock": statusOK, "connections": statusOK,
		})
	})
	t.Run("replica", func(t *testing.T) {
		t.Parallel()
		primary := integration.StartRedis(t)
		replica := integration.StartRedis(t, integration.WithServerArgs("--replicaof", "127.0.0.1", strconv.Itoa(primary.Port())))
		r, res := doctorJSON(t, replica.DSN())
		wantChecks(t, r, res, 1, map[string]string{
			"connect": statusOK, "server": statusOK, "role": statusFail, "persistence": statusWarn,
			"locks": statusFail, "clock": statusOK, "connections": statusOK,
		})
		for _, c := range r.Checks {
			if c.Name == "role" && !strings.Contains(c.Detail, "replica of 127.0.0.1:"+strconv.Itoa(primary.Port())) {
				t.Errorf("role: %s", c.Detail)
			}
		}
	})
}

func TestDoctorFile(t *testing.T) {
	t.Parallel()
	t.Run("healthy", func(t *testing.T) {
		dir := t.TempDir()
		r, res := doctorJSON(t, "file://"+dir)
		wantChecks(t, r, res, ExitOK, map[string]string{
			"directory": statusOK, "file system": statusOK, "permissions": statusOK, "locks": statusOK,
		})
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("the probe left %d files in the lock directory", len(left))
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "not", "yet")
		r, res := doctorJSON(t, "file://"+dir)
		wantChecks(t, r, res, ExitOK, map[string]string{"directory": statusInfo, "file system": statusOK})
		if _, err := os.Stat(dir); err == nil {
			t.Error("doctor created the lock directory")
		}
	})
	t.Run("world-writable", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		r, res := doctorJSON(t, "file://"+dir)
		wantChecks(t, r, res, 1, map[string]string{"directory": statusOK, "file system": statusOK, "permissions": statusFail})
	})
}

func TestDoctorUnreachable(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"postgres://postgres:doctor-secret-1@127.0.0.1:1/x?sslmode=disable&connect_timeout=2",
		"mysql://root:doctor-secret-1@127.0.0.1:1/x?timeout=2s",
		"redis://:doctor-secret-1@127.0.0.1:1/0",
	} {
		r, res := doctorJSON(t, u)
		if res.code != ExitUnavailable || r.Status != "unreachable" || statuses(r)["connect"] != statusFail {
			t.Errorf("%s: exit %d, report %+v", r.Kind, res.code, r)
		}
		if strings.Contains(res.stdout+res.stderr, "doctor-secret-1") {
			t.Errorf("%s: the password was printed:\n%s%s", r.Kind, res.stdout, res.stderr)
		}
	}
}

// A password reaches no output: not the text form, not JSON, not stderr,
// on a server that ignores it (PostgreSQL with trust authentication) and
// one that rejects it (Redis without a password).
func TestDoctorNeverPrintsPasswords(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(pgURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "doctor-secret-2")
	for _, args := range [][]string{{"doctor", "-b", u.String()}, {"doctor", "--json", "-b", u.String()}} {
		res := runCLI(t, nil, args...)
		if strings.Contains(res.stdout+res.stderr, "doctor-secret-2") {
			t.Errorf("%v: the password was printed:\n%s%s", args, res.stdout, res.stderr)
		}
		if !strings.Contains(res.stdout, "xxxxx") {
			t.Errorf("%v: the backend URL is not shown redacted:\n%s", args, res.stdout)
		}
	}
	ru, err := url.Parse(integration.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	ru.User = url.UserPassword("", "doctor-secret-3")
	res := runCLI(t, nil, "doctor", "-b", ru.String())
	if strings.Contains(res.stdout+res.stderr, "doctor-secret-3") {
		t.Errorf("redis: the password was printed:\n%s%s", res.stdout, res.stderr)
	}
}

func TestDoctorUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"doctor", "extra"},
		{"doctor", "--locks", "0", "-b", "file:///tmp"},
		{"doctor", "--nope"},
		{"doctor", "-b", "ftp://host/x"},
		{"doctor", "-b", "file:///tmp/x?allow_network_fs=maybe"},
	} {
		res := runCLI(t, nil, args...)
		if res.code != ExitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, res.code, ExitUsage, res.stderr)
		}
	}
	res := runCLI(t, nil, "doctor", "-h")
	if res.code != ExitOK || !strings.HasPrefix(res.stdout, "Usage: lockkit doctor") {
		t.Errorf("doctor -h: exit %d\n%s", res.code, res.stdout)
	}
}
