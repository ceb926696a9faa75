package advisory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
)

var _ lockkit.Lister = (*Locker)(nil)

// lockkitMigrationsTable is the history table of lockkit's own migrations,
// migrations.DefaultMigrationsTable, whose golang-migrate lock List
// recognises. It is spelled out here because importing package migrations
// would make golang-migrate a dependency of advisory;
// TestListMigrationsTable pins the two equal.
const lockkitMigrationsTable = "lockkit_schema_migrations"

// RunAppPrefix is how the application_name of a `lockkit run NAME` session
// starts: "lockkit run NAME". [Locker.List] names a key held by such a
// session NAME when the key is NAME's.
const RunAppPrefix = "lockkit run "

// List implements [lockkit.Lister] from pg_locks and pg_stat_activity: the
// advisory locks granted in the current database to any session, whatever
// took them (session or transaction locks, lockkit or another program). A
// key held by several sessions in shared mode has an entry per session.
//
// PostgreSQL keeps keys, not names, so List names a key as follows:
//
//   - the key of one of names, under the Locker's namespace ([Locker.Key]);
//   - the key of NAME, when the holding session's application_name is
//     [RunAppPrefix] + NAME, as `lockkit run NAME` sets it;
//   - another tool's lock, with Tool saying which ([keyhash.Describe]):
//     golang-migrate's on this database (its default table or lockkit's
//     own migrations table, in the session's current schema or in
//     public), goose's, Prisma Migrate's, node-pg-migrate's, Rails' on
//     this database, pg-boss's (schema "pgboss" or the current one) and
//     Flyway's (default history table, current schema or public);
//   - otherwise "key " + the key.
//
// Without names it returns every granted advisory lock, ordered by name,
// followed by the held locks of the tools that lock a table row rather
// than a key, in any schema whose table the session may read: Knex's
// knex_migrations_lock, Liquibase's databasechangeloglock and River's
// river_leader (see keyhash.KnexLockTable). Their Key is "table " + the
// table, their Tool keyhash.ToolKnex, ToolLiquibase or ToolRiver, and
// their Holder what the table or the server tells: the session of a Knex
// migration's transaction, Liquibase's LOCKEDBY as Owner, River's leader
// id as Owner with Expires.
//
// With names it returns the entries of those names in the order given,
// one with Held false for a name nobody holds. An advisory lock's Key is
// the key's String(). Holder has the
// session's database user (Owner), application_name (App), client host
// name or address (Host), backend pid (PID) and, as Since, when the session
// last changed state: for a session that only holds its lock, as lockkit's
// do, when the lock was granted. A session the caller may not see in full
// (another user's, without pg_read_all_stats) has no Host or Since.
//
// An exclusive holder that took its lock through a [Locker.WithData] view
// has, from its record in the holders table, its fencing token (Token),
// data (Data) and the time it recorded them (Since); see WithData.
//
// A bad name returns an error matching lockkit.ErrInvalid before any I/O.
func (p *Locker) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	keys := make([]keyhash.Key, len(names))
	for i, n := range names {
		k, err := p.Key(n)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	pc, err := p.src.pin(ctx)
	if err != nil {
		return nil, fmt.Errorf("advisory: list: %w", err)
	}
	var (
		rows    []listRow
		targets []keyhash.MigrateTarget
		tables  []lockkit.LockInfo
	)
	err = pc.with(func(c *pgx.Conn) error {
		var err error
		rows, targets, tables, err = queryList(ctx, c, len(names) == 0)
		if err == nil {
			err = p.addHolders(ctx, c, rows)
		}
		return err
	})
	if err != nil {
		// The statement may have been cut off by ctx: the session's
		// state is unknown.
		pc.discard()
		return nil, fmt.Errorf("advisory: list: %w", err)
	}
	pc.release()

	if len(names) == 0 {
		out := make([]lockkit.LockInfo, len(rows))
		for i, r := range rows {
			out[i] = r.info
			out[i].Name, out[i].Tool = p.nameOf(r, targets)
		}
		out = append(out, tables...)
		slices.SortStableFunc(out, func(a, b lockkit.LockInfo) int { return strings.Compare(a.Name, b.Name) })
		return out, nil
	}
	var out []lockkit.LockInfo
	for i, n := range names {
		found := false
		for _, r := range rows {
			if keyhash.Compare(r.key, keys[i]) == 0 {
				info := r.info
				info.Name = n
				out = append(out, info)
				found = true
			}
		}
		if !found {
			out = append(out, lockkit.LockInfo{Name: n, Key: keys[i].String()})
		}
	}
	return out, nil
}

// listRow is one granted advisory lock as listSQL reads it.
type listRow struct {
	key  keyhash.Key
	info lockkit.LockInfo // without Name and Tool
}

// queryList runs listSQL on c. With withTargets (the unnamed listing) it
// first reads where golang-migrate and the other tools Describe knows
// would keep their tables on this session's database, and which of the
// tables of the tools that lock a row exist; it then reads those rows.
func queryList(ctx context.Context, c *pgx.Conn, withTargets bool) (rows []listRow, targets []keyhash.MigrateTarget, tables []lockkit.LockInfo, err error) {
	if withTargets {
		var (
			db, schema      string
			oids            []int64
			schemas, tnames []string
		)
		if err := c.QueryRow(ctx, toolTablesSQL).Scan(&db, &schema, &oids, &schemas, &tnames); err != nil {
			return nil, nil, nil, err
		}
		targets = migrateTargets(db, schema)
		found := make([]toolTable, 0, len(oids))
		for i := range oids {
			if i < len(schemas) && i < len(tnames) {
				found = append(found, toolTable{oid: oids[i], schema: schemas[i], table: tnames[i]})
			}
		}
		if tables, err = queryToolTables(ctx, c, found); err != nil {
			return nil, nil, nil, err
		}
	}
	rs, err := c.Query(ctx, listSQL)
	if err != nil {
		return nil, nil, nil, err
	}
	defer rs.Close()
	for rs.Next() {
		var (
			classid, objid       int64
			objsubid             int16
			mode, user, app, hst string
			pid                  int32
			since                *time.Time
		)
		if err := rs.Scan(&classid, &objid, &objsubid, &mode, &pid, &user, &app, &hst, &since); err != nil {
			return nil, nil, nil, err
		}
		k, ok := keyFromTag(uint32(classid), uint32(objid), objsubid)
		if !ok {
			continue // not a tag pg_advisory_lock makes
		}
		r := listRow{key: k, info: lockkit.LockInfo{
			Held: true,
			Mode: pgMode(mode),
			Key:  k.String(),
			Holder: lockkit.Holder{
				Owner: user,
				App:   app,
				Host:  hst,
				PID:   int(pid),
			},
		}}
		if since != nil {
			r.info.Holder.Since = *since
		}
		rows = append(rows, r)
	}
	return rows, targets, tables, rs.Err()
}

// migrateTargets are the places golang-migrate may keep its table on
// database db whose current schema is schema: its default table and
// lockkit's, in schema and, when schema is another, in public.
func migrateTargets(db, schema string) []keyhash.MigrateTarget {
	t := []keyhash.MigrateTarget{
		{Database: db, Schema: schema},
		{Database: db, Schema: schema, Table: lockkitMigrationsTable},
	}
	if schema != "public" {
		t = append(t, keyhash.MigrateTarget{Database: db}, keyhash.MigrateTarget{Database: db, Table: lockkitMigrationsTable})
	}
	return t
}

// nameOf names a lock of the unnamed listing, and says which tool's it is.
func (p *Locker) nameOf(r listRow, targets []keyhash.MigrateTarget) (name, tool string) {
	if n, ok := strings.CutPrefix(r.info.Holder.App, RunAppPrefix); ok && n != "" {
		if k, err := p.Key(n); err == nil && keyhash.Compare(k, r.key) == 0 {
			return n, ""
		}
	}
	if tool, detail, ok := keyhash.Describe(r.key, targets...); ok {
		if !strings.Contains(detail, tool) {
			detail = tool + ": " + detail
		}
		return detail, tool
	}
	return "key " + r.key.String(), ""
}

// pgMode converts pg_locks' mode of an advisory lock.
func pgMode(mode string) lockkit.Mode {
	if mode == "ShareLock" {
		return Shared
	}
	return Exclusive // "ExclusiveLock"
}
