package interop

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/mysqllock"
)

// TestRailsMigrationLockInterop: ActiveRecord (Debian's ruby-activerecord
// 6.1) migrates with testdata/ruby/rails_migrate.rb, as `rails db:migrate`
// does. While its migration runs, lockkit's TryLockKey with
// keyhash.Rails(database) says busy and names the migrator's session, and
// List names Rails. While lockkit holds the key, the migrator fails with
// ConcurrentMigrationError (Rails tries, never waits); after lockkit
// releases, it migrates.
func TestRailsMigrationLockInterop(t *testing.T) {
	rubyRails(t)
	dbName, _ := currentDB(t)
	app := uniq("lkt-rails-")
	script, err := filepath.Abs(filepath.Join("testdata", "ruby", "rails_migrate.rb"))
	if err != nil {
		t.Fatal(err)
	}
	mig, err := os.ReadFile(filepath.Join("testdata", "ruby", "1_lkt_hold.rb"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "1_lkt_hold.rb"), mig, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(hold bool) *toolProc {
		table := uniq("lkt_rails_")
		t.Cleanup(func() {
			execSQL(t, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()+", "+pgx.Identifier{table + "_meta"}.Sanitize())
		})
		env := []string{"LKT_URL=" + toolURL(t, app), "LKT_DIR=" + dir, "LKT_TABLE=" + table, "LKT_HOLD=0"}
		if hold {
			env[len(env)-1] = "LKT_HOLD=1"
		}
		return startTool(t, dir, env, "ruby", script)
	}
	p, err := advisory.New(newDB(t, 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	key := keyhash.Rails(dbName)

	proc := run(true)
	proc.expect(t, "holding", time.Minute)
	assertToolHolds(t, p, key, app, keyhash.ToolRails)
	proc.release(t)
	if err := proc.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	l, err := p.TryLockKey(ctxT(t, 10*time.Second), key, nil)
	if err != nil {
		t.Fatalf("TryLockKey after Rails finished: %v", err)
	}
	err = run(false).wait(t, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "ConcurrentMigrationError") {
		t.Fatalf("Rails migrating while lockkit holds its key: %v", err)
	}
	if err := l.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := run(false).wait(t, time.Minute); err != nil {
		t.Fatalf("Rails after lockkit released: %v", err)
	}
}

// TestRailsMySQLMigrationLockInterop: the same on MySQL/MariaDB, where
// Rails takes GET_LOCK(keyhash.RailsMySQLLockName(database), 0): an
// mysqllock.Locker with NoNamespace is refused while Rails migrates, and
// Rails fails with ConcurrentMigrationError while lockkit holds the name.
func TestRailsMySQLMigrationLockInterop(t *testing.T) {
	rubyRails(t)
	if out, err := exec.Command("ruby", "-e", `require "mysql2"`).CombinedOutput(); err != nil {
		unavailable(t, "ruby cannot load mysql2 (Debian: ruby-mysql2): %v\n%s", err, out)
	}
	db := integration.MySQL(t)
	cfg, err := mysql.ParseDSN(integration.MySQLDSN(t))
	if err != nil || cfg.Net != "tcp" {
		t.Fatalf("%s must be a tcp DSN for the Rails test: %v", integration.EnvMySQL, err)
	}
	var dbName string
	if err := db.QueryRowContext(ctxT(t, 10*time.Second), "SELECT DATABASE()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "mysql2", Host: cfg.Addr, Path: "/" + cfg.DBName}
	if cfg.Passwd != "" {
		u.User = url.UserPassword(cfg.User, cfg.Passwd)
	} else {
		u.User = url.User(cfg.User)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "ruby", "rails_migrate.rb"))
	if err != nil {
		t.Fatal(err)
	}
	mig, err := os.ReadFile(filepath.Join("testdata", "ruby", "1_lkt_hold.rb"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "1_lkt_hold.rb"), mig, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(hold string) *toolProc {
		table := uniq("lkt_rails_")
		t.Cleanup(func() {
			_, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS `"+table+"`, `"+table+"_meta`")
		})
		return startTool(t, dir, []string{"LKT_URL=" + u.String(), "LKT_DIR=" + dir, "LKT_TABLE=" + table, "LKT_HOLD=" + hold}, "ruby", script)
	}
	m, err := mysqllock.New(db, &mysqllock.Config{NoNamespace: true})
	if err != nil {
		t.Fatal(err)
	}
	name := keyhash.RailsMySQLLockName(dbName)

	proc := run("1")
	proc.expect(t, "holding", time.Minute)
	l, err := m.TryLock(ctxT(t, 10*time.Second), name)
	if err == nil {
		_ = l.Release(context.Background())
		t.Fatalf("lockkit took GET_LOCK %q while Rails migrates", name)
	}
	var held *lockkit.HeldError
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.As(err, &held) {
		t.Fatalf("TryLock(%q) while Rails migrates = %v, want a HeldError", name, err)
	}
	proc.release(t)
	if err := proc.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	if l, err = m.TryLock(ctxT(t, 10*time.Second), name); err != nil {
		t.Fatalf("TryLock after Rails finished: %v", err)
	}
	err = run("0").wait(t, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "ConcurrentMigrationError") {
		t.Fatalf("Rails migrating while lockkit holds its GET_LOCK name: %v", err)
	}
	if err := l.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := run("0").wait(t, time.Minute); err != nil {
		t.Fatalf("Rails after lockkit released: %v", err)
	}
}
