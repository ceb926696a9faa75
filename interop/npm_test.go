package interop

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/keyhash"
)

// holdMigration is a migration (CommonJS, for node-pg-migrate and Knex)
// that holds while the script set globalThis.lktHold (LKT_HOLD=1).
const holdMigration = `exports.up = async () => { if (globalThis.lktHold) await globalThis.lktHold(); };
exports.down = async () => {};
`

func migrationDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "1_lkt_hold.cjs"), []byte(holdMigration), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestNodePGMigrateLockInterop: node-pg-migrate 9.0.0's runner holds its
// lock while a migration runs: lockkit's TryLockKey with
// keyhash.NodePGMigrate says busy and names the runner's session, and List
// names node-pg-migrate. While lockkit holds the key, the runner fails
// with "Another migration is already running"; after lockkit releases, it
// migrates.
func TestNodePGMigrateLockInterop(t *testing.T) {
	tools := nodeTools(t)
	app, table := uniq("lkt-npm-"), uniq("lkt_npm_")
	t.Cleanup(func() { execSQL(t, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()) })
	env := []string{"LKT_URL=" + toolURL(t, app), "LKT_DIR=" + migrationDir(t), "LKT_TABLE=" + table}
	p, err := advisory.New(newDB(t, 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	key := keyhash.NodePGMigrate()

	proc := startTool(t, tools, append(env, "LKT_HOLD=1"), "node", "node-pg-migrate.mjs")
	proc.expect(t, "holding", time.Minute)
	assertToolHolds(t, p, key, app, keyhash.ToolNodePGMigrate)
	proc.release(t)
	if err := proc.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	l, err := p.TryLockKey(ctxT(t, 10*time.Second), key, nil)
	if err != nil {
		t.Fatalf("TryLockKey after node-pg-migrate finished: %v", err)
	}
	err = startTool(t, tools, env, "node", "node-pg-migrate.mjs").wait(t, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "Another migration is already running") {
		t.Fatalf("node-pg-migrate while lockkit holds its key: %v", err)
	}
	if err := l.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := startTool(t, tools, env, "node", "node-pg-migrate.mjs").wait(t, time.Minute); err != nil {
		t.Fatalf("node-pg-migrate after lockkit released: %v", err)
	}
}

// TestPgBossLockInterop: pg-boss 10.4.2 installs itself into a schema
// under pg_advisory_xact_lock of keyhash.PgBoss(database, schema, "").
// The test installs it into schema "pgboss", pg-boss's default, which
// List names (into one of its own if the database has that schema
// already). To keep pg-boss inside that transaction, another session has created the
// schema without committing: pg-boss's CREATE SCHEMA IF NOT EXISTS waits
// for it while pg-boss holds its lock, and lockkit's TryLockKey says busy
// and names pg-boss's session. The other way round, while lockkit holds
// the key of a second schema, pg-boss waits for it (seen waiting in
// pg_locks) and installs once lockkit releases.
func TestPgBossLockInterop(t *testing.T) {
	tools := nodeTools(t)
	dbName, _ := currentDB(t)
	app := uniq("lkt-boss-")
	p, err := advisory.New(newDB(t, 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	run := func(schema string) *toolProc {
		t.Cleanup(func() { execSQL(t, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE") })
		return startTool(t, tools, []string{"LKT_URL=" + toolURL(t, app), "LKT_SCHEMA=" + schema, "LKT_APP=" + app}, "node", "pg-boss.mjs")
	}

	// pg-boss's default schema, which List recognises, unless the test
	// database has one already.
	schema, listed := keyhash.PgBossDefaultSchema, true
	var exists bool
	if err := newDB(t, 1).QueryRowContext(ctxT(t, 10*time.Second), "SELECT to_regnamespace($1) IS NOT NULL", schema).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Logf("schema %q exists: using a schema of the test's own, which List does not name", schema)
		schema, listed = uniq("lkt_boss_"), false
	}
	blocker, err := newDB(t, 1).Conn(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	for _, q := range []string{"BEGIN", "CREATE SCHEMA " + pgx.Identifier{schema}.Sanitize()} {
		if _, err := blocker.ExecContext(ctxT(t, 10*time.Second), q); err != nil {
			t.Fatal(err)
		}
	}
	key := keyhash.PgBoss(dbName, schema, "")
	proc := run(schema)
	waitAdvisory(t, key, app, true, proc)
	if listed {
		assertToolHolds(t, p, key, app, keyhash.ToolPgBoss)
	} else {
		assertToolHolds(t, p, key, app, "")
	}
	if _, err := blocker.ExecContext(ctxT(t, 10*time.Second), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	proc.expect(t, "started", time.Minute)
	if err := proc.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	schema2 := uniq("lkt_boss_")
	key2 := keyhash.PgBoss(dbName, schema2, "")
	l, err := p.TryLockKey(ctxT(t, 10*time.Second), key2, nil)
	if err != nil {
		t.Fatal(err)
	}
	proc = run(schema2)
	waitAdvisory(t, key2, app, false, proc)
	if err := l.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	proc.expect(t, "started", time.Minute)
	if err := proc.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestKnexLockInterop: Knex 3.3.0 migrates in schema s of the test's own;
// while its migration runs, its lock is the row of s.knex_migrations_lock
// that its transaction updated. lockkit's List names Knex with its session,
// WaitTool waits, and returns once Knex commits.
func TestKnexLockInterop(t *testing.T) {
	tools := nodeTools(t)
	app, schema := uniq("lkt-knex-"), uniq("lkt_knex_")
	sch := pgx.Identifier{schema}.Sanitize()
	execSQL(t, "CREATE SCHEMA "+sch)
	t.Cleanup(func() { execSQL(t, "DROP SCHEMA IF EXISTS "+sch+" CASCADE") })
	p, err := advisory.New(newDB(t, 2), nil)
	if err != nil {
		t.Fatal(err)
	}

	proc := startTool(t, tools, []string{"LKT_URL=" + toolURL(t, app), "LKT_DIR=" + migrationDir(t), "LKT_SCHEMA=" + schema, "LKT_HOLD=1"}, "node", "knex.mjs")
	proc.expect(t, "holding", time.Minute)
	locks, err := p.List(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantKey := "table " + pgx.Identifier{schema, keyhash.KnexLockTable}.Sanitize()
	found := false
	for _, l := range locks {
		if l.Key == wantKey {
			found = true
			if !l.Held || l.Tool != keyhash.ToolKnex || l.Holder.App != app {
				t.Errorf("List shows Knex's lock as %+v, want tool knex held by %s", l, app)
			}
			t.Logf("lockkit status: %s held by %s (pid %d)", l.Name, l.Holder.App, l.Holder.PID)
		}
	}
	if !found {
		t.Fatalf("List does not show Knex's lock %s: %+v", wantKey, locks)
	}
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = p.WaitTool(short, keyhash.ToolKnex, 50*time.Millisecond)
	cancel()
	if !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("WaitTool while Knex migrates = %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- p.WaitTool(ctxT(t, time.Minute), keyhash.ToolKnex, 50*time.Millisecond) }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-waited:
		t.Fatalf("WaitTool returned (%v) while Knex migrates", err)
	default:
	}
	proc.release(t)
	if err := <-waited; err != nil {
		t.Fatalf("WaitTool after Knex finished: %v", err)
	}
	if err := proc.wait(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
