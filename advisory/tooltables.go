package advisory

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/keyhash"
)

// Other tools' locks that are table rows rather than advisory keys (see
// keyhash.KnexLockTable): List's unnamed listing reads them too.

// toolTablesSQL finds, in every schema, the tables of Knex, Liquibase and
// River that this session may read and that have the columns List reads,
// with the current database and schema (where golang-migrate and the
// other tools Describe knows keep their tables), in one round trip.
const toolTablesSQL = `SELECT current_database(), coalesce(current_schema(), 'public'),
 ARRAY(SELECT c.oid::int8 FROM pg_class c WHERE ` + toolTableCond + ` ORDER BY c.oid),
 ARRAY(SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + toolTableCond + ` ORDER BY c.oid),
 ARRAY(SELECT c.relname::text FROM pg_class c WHERE ` + toolTableCond + ` ORDER BY c.oid)`

const toolTableCond = `c.relkind IN ('r', 'p') AND has_table_privilege(c.oid, 'SELECT') AND (
 (c.relname = 'knex_migrations_lock' AND (SELECT count(*) FROM pg_attribute a
   WHERE a.attrelid = c.oid AND NOT a.attisdropped AND a.attname = 'is_locked') = 1)
 OR (c.relname = 'databasechangeloglock' AND (SELECT count(*) FROM pg_attribute a
   WHERE a.attrelid = c.oid AND NOT a.attisdropped AND a.attname IN ('id', 'locked', 'lockedby', 'lockgranted')) = 4)
 OR (c.relname = 'river_leader' AND (SELECT count(*) FROM pg_attribute a
   WHERE a.attrelid = c.oid AND NOT a.attisdropped AND a.attname IN ('leader_id', 'elected_at', 'expires_at')) = 3))`

// toolTable is one table toolTablesSQL found.
type toolTable struct {
	oid           int64
	schema, table string
}

// toolTableLockSQL returns the statement that reads whether t's lock is
// held, with the columns
//
//	pid, user, application_name, client host, owner, data, since, expires
//
// and one row per held lock (none when free).
//
//   - Knex: held when is_locked is 1 (committed: a run without
//     transactions, or one that died) or when another session holds
//     RowExclusiveLock on the table: on PostgreSQL Knex's UPDATE runs in
//     the migration's transaction, so the committed value stays 0 and the
//     lock is that transaction's row lock. The holder is that session,
//     since its transaction began; for a committed 1 with no such session
//     the holder is unknown.
//   - Liquibase: held when LOCKED is true in row ID 1; the holder is
//     LOCKEDBY ("host (address)"), since LOCKGRANTED.
//   - River: the row of an unexpired leader: leader_id, since elected_at,
//     until expires_at.
func toolTableLockSQL(t toolTable) string {
	rel := pgx.Identifier{t.schema, t.table}.Sanitize()
	switch t.table {
	case keyhash.KnexLockTable:
		return fmt.Sprintf(`SELECT coalesce(a.pid, 0), coalesce(a.usename::text, ''), coalesce(a.application_name, ''),
 coalesce(a.client_hostname, host(a.client_addr), ''), '',
 CASE WHEN k.is_locked <> 0 THEN 'is_locked = 1' ELSE 'row locked by a migration transaction' END,
 coalesce(a.xact_start, a.state_change), NULL::timestamptz
FROM (SELECT coalesce(max(is_locked), 0) AS is_locked FROM %s) k
LEFT JOIN LATERAL (SELECT l.pid FROM pg_locks l WHERE l.locktype = 'relation' AND l.relation = %d::oid
 AND l.mode = 'RowExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid() ORDER BY l.pid LIMIT 1) h ON true
LEFT JOIN pg_stat_activity a ON a.pid = h.pid
WHERE k.is_locked <> 0 OR h.pid IS NOT NULL`, rel, t.oid)
	case keyhash.LiquibaseLockTable:
		return fmt.Sprintf(`SELECT 0, '', '', '', coalesce(lockedby::text, ''), '', lockgranted::timestamptz, NULL::timestamptz
FROM %s WHERE id = 1 AND locked`, rel)
	default: // keyhash.RiverLeaderTable
		return fmt.Sprintf(`SELECT 0, '', '', '', leader_id::text, '', elected_at::timestamptz, expires_at::timestamptz
FROM %s WHERE expires_at > now()`, rel)
	}
}

// toolOfTable is the keyhash tool name and what its lock guards.
func toolOfTable(table string) (tool, what string) {
	switch table {
	case keyhash.KnexLockTable:
		return keyhash.ToolKnex, "migration lock"
	case keyhash.LiquibaseLockTable:
		return keyhash.ToolLiquibase, "changelog lock"
	default:
		return keyhash.ToolRiver, "leader"
	}
}

// queryToolTables reads the held locks of the tables found, in one
// statement.
func queryToolTables(ctx context.Context, c *pgx.Conn, tables []toolTable) ([]lockkit.LockInfo, error) {
	if len(tables) == 0 {
		return nil, nil
	}
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = fmt.Sprintf("SELECT %d AS i, * FROM (%s) t%d", i, toolTableLockSQL(t), i)
	}
	rs, err := c.Query(ctx, strings.Join(parts, "\nUNION ALL\n"))
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []lockkit.LockInfo
	for rs.Next() {
		var (
			i                            int
			pid                          int32
			user, app, host, owner, data string
			since, expires               *time.Time
		)
		if err := rs.Scan(&i, &pid, &user, &app, &host, &owner, &data, &since, &expires); err != nil {
			return nil, err
		}
		t := tables[i]
		tool, what := toolOfTable(t.table)
		rel := pgx.Identifier{t.schema, t.table}.Sanitize()
		li := lockkit.LockInfo{
			Name: fmt.Sprintf("%s: %s, table %s", tool, what, rel),
			Held: true,
			Mode: Exclusive,
			Key:  "table " + rel,
			Tool: tool,
			Holder: lockkit.Holder{
				Owner: owner, Host: host, PID: int(pid), App: app, Data: data,
			},
		}
		if user != "" {
			li.Holder.Owner = user
		}
		if since != nil {
			li.Holder.Since = *since
		}
		if expires != nil {
			li.Holder.Expires = *expires
		}
		out = append(out, li)
	}
	return out, rs.Err()
}

// DefaultToolPoll is how often [Locker.WaitTool] looks again.
const DefaultToolPoll = 250 * time.Millisecond

// WaitTool waits until no lock that [Locker.List] attributes to tool (a
// keyhash Tool name such as keyhash.ToolKnex or keyhash.ToolRails) is
// held on this database, looking every poll (DefaultToolPoll when poll
// is 0). It takes nothing: another run of the tool may start right after
// it returns. For a tool whose lock is an advisory key, taking that key
// with LockKey waits without polling and keeps the tool out.
//
// When ctx ends first it returns an error matching lockkit.ErrNotAcquired
// and ctx's error.
func (p *Locker) WaitTool(ctx context.Context, tool string, poll time.Duration) error {
	if tool == "" {
		return invalid.Errorf("advisory: WaitTool: empty tool name")
	}
	if poll <= 0 {
		poll = DefaultToolPoll
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("advisory: wait for %s: %w (%w)", tool, lockkit.ErrNotAcquired, ctx.Err())
		case <-t.C:
		}
		locks, err := p.List(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("advisory: wait for %s: %w (%w)", tool, lockkit.ErrNotAcquired, ctx.Err())
			}
			return err
		}
		held := false
		for _, l := range locks {
			if l.Held && l.Tool == tool {
				held = true
				break
			}
		}
		if !held {
			return nil
		}
		t.Reset(poll)
	}
}
