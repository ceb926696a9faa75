package integration

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func openDB(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// exerciseSQL runs the life cycle every private SQL server supports: data
// survives a clean restart and a kill, a pause makes queries hang until
// resumed, and a session's locks end with the server.
func exerciseSQL(t *testing.T, srv *Server, driver, create, lockSQL, heldSQL string) {
	db := openDB(t, driver, srv.DSN())
	db.SetMaxIdleConns(0) // every query on a fresh connection: no stale ones after restarts
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctxFor(t, 10*time.Second), q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	count := func() int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(ctxFor(t, 10*time.Second), "SELECT count(*) FROM kv").Scan(&n); err != nil {
			t.Fatalf("count: %v", err)
		}
		return n
	}
	held := func() int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(ctxFor(t, 10*time.Second), heldSQL).Scan(&n); err != nil {
			t.Fatalf("%s: %v", heldSQL, err)
		}
		return n
	}
	exec(create)
	exec("INSERT INTO kv VALUES (1)")
	pid := srv.PID()
	if pid == 0 || !srv.Running() {
		t.Fatal("server not running after start")
	}

	// A session lock, held by a pinned connection, ends with the server.
	lockConn, err := db.Conn(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockConn.ExecContext(ctxFor(t, 10*time.Second), lockSQL); err != nil {
		t.Fatalf("%s: %v", lockSQL, err)
	}
	if n := held(); n != 1 {
		t.Fatalf("%d locks held before the restart, want 1", n)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.PID() == pid {
		t.Error("Restart kept the same process")
	}
	if err := lockConn.PingContext(ctxFor(t, 5*time.Second)); err == nil {
		t.Error("the lock connection survived a server restart")
	}
	_ = lockConn.Close()
	if n := held(); n != 0 {
		t.Errorf("%d locks held after the restart, want 0", n)
	}
	if n := count(); n != 1 {
		t.Errorf("%d rows after a clean restart, want 1", n)
	}

	// Pause: a query neither succeeds nor fails until the deadline.
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	err = db.PingContext(ctx)
	cancel()
	if err == nil || time.Since(start) < 250*time.Millisecond {
		t.Errorf("ping of a paused server = %v after %v, want a timeout", err, time.Since(start))
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	exec("INSERT INTO kv VALUES (2)")

	// Kill: nothing answers, then a start recovers the committed data.
	pid = srv.PID()
	procs := append(descendants(pid), pid)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if srv.Running() {
		t.Error("server still running after Kill")
	}
	for _, p := range procs {
		if processAlive(p) {
			t.Errorf("process %d of the killed server is alive", p)
		}
	}
	if err := db.PingContext(ctxFor(t, 2*time.Second)); err == nil {
		t.Error("ping of a killed server succeeded")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err == nil {
		t.Error("Start of a running server succeeded")
	}
	if n := count(); n != 2 {
		t.Errorf("%d rows after kill and start, want 2", n)
	}
	_ = db.Close()

	dir := srv.Dir()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s behind: %v", dir, err)
	}
	if err := srv.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestPrivatePostgres(t *testing.T) {
	t.Parallel()
	srv := StartPostgres(t)
	if !strings.HasPrefix(srv.DSN(), "postgres://") || srv.Kind() != "postgres" {
		t.Fatalf("DSN %q, kind %q", srv.DSN(), srv.Kind())
	}
	exerciseSQL(t, srv, "pgx",
		"CREATE TABLE kv (k int)",
		"SELECT pg_advisory_lock(4242)",
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted")
}

func TestPrivateMariaDB(t *testing.T) {
	t.Parallel()
	srv := StartMariaDB(t)
	if srv.Kind() != "mariadb" {
		t.Fatalf("kind %q", srv.Kind())
	}
	exerciseSQL(t, srv, "mysql",
		"CREATE TABLE kv (k int) ENGINE=InnoDB",
		"SELECT GET_LOCK('lkt.private', 5)",
		"SELECT IS_USED_LOCK('lkt.private') IS NOT NULL")
}

func TestPrivateRedis(t *testing.T) {
	t.Parallel()
	srv := StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()
	ctx := ctxFor(t, 30*time.Second)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(srv.DSN())
	if err != nil || opts.Addr != srv.Addr() {
		t.Fatalf("DSN %q: %v", srv.DSN(), err)
	}

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = c.Get(pctx, "k").Err()
	cancel()
	if err == nil {
		t.Error("GET on a paused server succeeded")
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	// The paused request's connection may be poisoned; a fresh client.
	c2 := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c2.Close()
	if v, err := c2.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Errorf("after resume GET = %q, %v", v, err)
	}

	// No persistence: a restart, clean or not, loses every key.
	for _, fault := range []struct {
		name string
		fn   func() error
	}{{"restart", srv.Restart}, {"kill", func() error {
		if err := srv.Kill(); err != nil {
			return err
		}
		return srv.Start()
	}}} {
		before := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
		err := before.Set(ctx, "k", "v", 0).Err()
		_ = before.Close()
		if err != nil {
			t.Fatalf("%s: %v", fault.name, err)
		}
		if err := fault.fn(); err != nil {
			t.Fatalf("%s: %v", fault.name, err)
		}
		after := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
		if err := after.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("after %s GET = %v, want redis.Nil (no persistence)", fault.name, err)
		}
		_ = after.Close()
	}
}

func TestPrivateFakeTime(t *testing.T) {
	if _, err := os.Stat(FakeTimeLib); err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("libfaketime missing (apt-get install faketime): %v", err)
		}
		t.Skipf("libfaketime missing (apt-get install faketime): %v", err)
	}
	const offset = time.Hour
	near := func(t *testing.T, what string, got time.Time) {
		t.Helper()
		if skew := got.Sub(time.Now()) - offset; skew < -time.Minute || skew > time.Minute {
			t.Errorf("%s clock = %v, want about an hour ahead of %v", what, got, time.Now())
		}
	}
	t.Run("postgres", func(t *testing.T) {
		srv := StartPostgres(t, WithFakeTime("+1h"), WithServerArgs("-c", "TimeZone=UTC"))
		db := openDB(t, "pgx", srv.DSN())
		var now time.Time
		if err := db.QueryRowContext(ctxFor(t, 10*time.Second), "SELECT clock_timestamp()").Scan(&now); err != nil {
			t.Fatal(err)
		}
		near(t, "postgres", now)
	})
}
