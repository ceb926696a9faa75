package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/keyhash"
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
