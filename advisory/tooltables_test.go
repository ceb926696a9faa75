package advisory

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// TestListToolTables: the tables of Knex, Liquibase and River, created as
// those tools create them (knex 3.3.0 table-creator.js; Liquibase's
// DATABASECHANGELOGLOCK on PostgreSQL; River's migrations 002 and 004),
// in a schema of the test's own. List names each lock while its row says
// held, with the holder the row or the server gives, and not when free;
// WaitTool waits for Knex's transaction to end. interop's tests do the
// same with the real Knex and River.
func TestListToolTables(t *testing.T) {
	admin := pgAdmin(t)
	ctx := pgCtx(t, 30*time.Second)
	schema := "lkt_tt_" + strings.NewReplacer(".", "_", "-", "_", "/", "_").Replace(strings.ToLower(integration.Name(t)))
	sch := pgx.Identifier{schema}.Sanitize()
	rel := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
	exec := func(db interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}, q string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(admin, "CREATE SCHEMA "+sch)
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+sch+" CASCADE") })
	exec(admin, `CREATE TABLE `+sch+`.knex_migrations_lock ("index" serial PRIMARY KEY, is_locked integer);
		INSERT INTO `+sch+`.knex_migrations_lock (is_locked) VALUES (0);
		CREATE TABLE `+sch+`.databasechangeloglock (ID INTEGER NOT NULL, LOCKED BOOLEAN NOT NULL,
			LOCKGRANTED TIMESTAMP WITHOUT TIME ZONE, LOCKEDBY VARCHAR(255), CONSTRAINT databasechangeloglock_pkey PRIMARY KEY (ID));
		INSERT INTO `+sch+`.databasechangeloglock (ID, LOCKED) VALUES (1, FALSE);
		CREATE UNLOGGED TABLE `+sch+`.river_leader(elected_at timestamptz NOT NULL, expires_at timestamptz NOT NULL,
			leader_id text NOT NULL, name text PRIMARY KEY DEFAULT 'default',
			CONSTRAINT name_length CHECK (name = 'default'),
			CONSTRAINT leader_id_length CHECK (char_length(leader_id) > 0 AND char_length(leader_id) < 128))`)

	p, _ := newPG(t, 2, nil)
	mine := func() map[string]lockkit.LockInfo {
		t.Helper()
		locks, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]lockkit.LockInfo{}
		for _, l := range locks {
			if strings.Contains(l.Key, `"`+schema+`"`) {
				if _, dup := out[l.Tool]; dup {
					t.Fatalf("two entries for %s: %+v", l.Tool, locks)
				}
				out[l.Tool] = l
			}
		}
		return out
	}
	if got := mine(); len(got) != 0 {
		t.Fatalf("free tables listed: %+v", got)
	}

	// Knex with transactions: the UPDATE is not committed, the row lock is
	// the lock.
	knex, err := admin.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer knex.Close()
	var knexPID int
	if err := knex.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&knexPID); err != nil {
		t.Fatal(err)
	}
	exec(knex, "BEGIN")
	exec(knex, "UPDATE "+sch+".knex_migrations_lock SET is_locked = 1 WHERE is_locked = 0")
	l := mine()[keyhash.ToolKnex]
	wantKey := "table " + rel("knex_migrations_lock")
	if !l.Held || l.Key != wantKey || l.Holder.PID != knexPID || !strings.HasPrefix(l.Name, "knex: migration lock, table ") ||
		l.Holder.Data != "row locked by a migration transaction" || l.Holder.Since.IsZero() {
		t.Fatalf("Knex in a transaction (session %d): %+v", knexPID, l)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = p.WaitTool(short, keyhash.ToolKnex, 50*time.Millisecond)
	cancel()
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitTool while Knex holds = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.WaitTool(ctx, keyhash.ToolKnex, 20*time.Millisecond) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("WaitTool returned %v while Knex holds", err)
	default:
	}
	exec(knex, "UPDATE "+sch+".knex_migrations_lock SET is_locked = 0")
	exec(knex, "COMMIT")
	if err := <-done; err != nil {
		t.Fatalf("WaitTool after Knex committed: %v", err)
	}

	// Knex without transactions, or a run that died: a committed 1.
	exec(admin, "UPDATE "+sch+".knex_migrations_lock SET is_locked = 1")
	if l := mine()[keyhash.ToolKnex]; !l.Held || l.Holder.PID != 0 || l.Holder.Data != "is_locked = 1" {
		t.Fatalf("Knex committed lock: %+v", l)
	}
	exec(admin, "UPDATE "+sch+".knex_migrations_lock SET is_locked = 0")

	// Liquibase: LockDatabaseChangeLogGenerator's UPDATE.
	exec(admin, "UPDATE "+sch+".DATABASECHANGELOGLOCK SET LOCKED = TRUE, LOCKGRANTED = NOW(), LOCKEDBY = 'deploy-7 (10.0.0.7)' WHERE ID = 1 AND LOCKED = FALSE")
	l = mine()[keyhash.ToolLiquibase]
	if !l.Held || l.Holder.Owner != "deploy-7 (10.0.0.7)" || l.Key != "table "+rel("databasechangeloglock") ||
		time.Since(l.Holder.Since).Abs() > time.Hour {
		t.Fatalf("Liquibase: %+v", l)
	}
	exec(admin, "UPDATE "+sch+".DATABASECHANGELOGLOCK SET LOCKED = FALSE, LOCKEDBY = NULL, LOCKGRANTED = NULL WHERE ID = 1")

	// River: LeaderAttemptElect's INSERT; an expired row is no leader.
	exec(admin, "INSERT INTO "+sch+".river_leader (leader_id, elected_at, expires_at) VALUES ('lkt-client', now(), now() + interval '30 seconds')")
	l = mine()[keyhash.ToolRiver]
	if !l.Held || l.Holder.Owner != "lkt-client" || l.Holder.Expires.Before(l.Holder.Since) || l.Name != "river: leader, table "+rel("river_leader") {
		t.Fatalf("River: %+v", l)
	}
	exec(admin, "UPDATE "+sch+".river_leader SET expires_at = now() - interval '1 second'")
	if got := mine(); len(got) != 0 {
		t.Fatalf("free or expired rows listed: %+v", got)
	}
	if err := p.WaitTool(ctx, "", 0); !errors.Is(err, lockkit.ErrInvalid) {
		t.Fatalf("WaitTool with no tool = %v", err)
	}
}
