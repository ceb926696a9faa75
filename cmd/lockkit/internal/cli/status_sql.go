package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/mysqllock"
	"github.com/lockkit/lockkit/rowlock"
)

func (s *sqlBackend) list(ctx context.Context, names []string, table bool) ([]heldLock, error) {
	switch {
	case table:
		return s.listTable(ctx, names)
	case s.kind == kindPostgres:
		return s.listPostgres(ctx, names)
	default:
		return s.listMySQL(ctx, names)
	}
}

// listTable lists the live leases of the lock table.
func (s *sqlBackend) listTable(ctx context.Context, names []string) ([]heldLock, error) {
	l, err := rowlock.New(s.db, &rowlock.Config{})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	held, err := l.List(ctx)
	if err != nil {
		return nil, tableHint(err)
	}
	var all []heldLock
	for _, h := range held {
		hd := h.Holder
		all = append(all, heldLock{
			Name: h.Name, Held: true, Mode: "exclusive",
			Owner: hd.Owner, Host: hd.Host, PID: hd.PID, App: hd.App, Data: hd.Data,
			Since: timePtr(hd.Since), Expires: timePtr(hd.Expires), Token: hd.Token,
		})
	}
	return selectNames(all, names), nil
}

// selectNames keeps the locks called one of names, and adds a free entry
// for each name not held. Without names it returns all.
func selectNames(all []heldLock, names []string) []heldLock {
	if len(names) == 0 {
		return all
	}
	var out []heldLock
	for _, n := range names {
		found := false
		for _, h := range all {
			if h.Name == n {
				out = append(out, h)
				found = true
			}
		}
		if !found {
			out = append(out, heldLock{Name: n})
		}
	}
	return out
}

// pgAdvisorySQL lists the granted advisory locks of the current database
// with the holding session. state_change is when the session last finished
// a statement: for a session that only holds its lock (as lockkit's do), the
// moment the lock was granted.
const pgAdvisorySQL = `SELECT l.classid::bigint, l.objid::bigint, l.objsubid::int, l.mode,
	a.pid, coalesce(a.usename, ''), coalesce(a.application_name, ''),
	coalesce(a.client_hostname, host(a.client_addr), ''), a.state_change
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
	AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY l.classid, l.objid, l.objsubid, a.pid`

// listPostgres lists advisory locks from pg_locks. Keys are named when
// they are the key of a given NAME (lockkit's keyhash.Name, also
// django-pglocks 2.x), golang-migrate's lock for this database (with its
// default table, or lockkit's own migrations table), or goose's.
func (s *sqlBackend) listPostgres(ctx context.Context, names []string) ([]heldLock, error) {
	var dbName, schema string
	if err := s.db.QueryRowContext(ctx, "SELECT current_database(), coalesce(current_schema(), 'public')").Scan(&dbName, &schema); err != nil {
		return nil, err
	}
	byKey := map[keyhash.Key]string{}
	for _, n := range names {
		if err := keyhash.ValidateName(n); err != nil {
			return nil, err
		}
		byKey[keyhash.Name(n)] = n
	}
	targets := []keyhash.MigrateTarget{
		{Database: dbName, Schema: schema},
		{Database: dbName, Schema: schema, Table: migrations.DefaultMigrationsTable},
	}
	if schema != "public" {
		targets = append(targets, keyhash.MigrateTarget{Database: dbName}, keyhash.MigrateTarget{Database: dbName, Table: migrations.DefaultMigrationsTable})
	}

	rows, err := s.db.QueryContext(ctx, pgAdvisorySQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var all []heldLock
	for rows.Next() {
		var (
			classid, objid  int64
			objsubid, pid   int
			mode, user, app string
			host            string
			stateChange     sql.NullTime
		)
		if err := rows.Scan(&classid, &objid, &objsubid, &mode, &pid, &user, &app, &host, &stateChange); err != nil {
			return nil, err
		}
		k := pgKey(classid, objid, objsubid)
		h := heldLock{Held: true, Key: k.String(), Mode: pgMode(mode), Owner: user, App: app, Host: host, PID: pid}
		if stateChange.Valid {
			h.Since = timePtr(stateChange.Time)
		}
		switch n, ok := byKey[k]; {
		case ok:
			h.Name = n
		case runName(app, k) != "":
			h.Name = runName(app, k)
		default:
			if tool, detail, ok := keyhash.Describe(k, targets...); ok {
				h.Scheme = tool
				h.Name = detail
				if !strings.Contains(detail, tool) {
					h.Name = tool + ": " + detail
				}
			} else {
				h.Name = "key " + k.String()
			}
		}
		all = append(all, h)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return all, nil
	}
	return selectNames(all, names), nil
}

// pgKey rebuilds the advisory key from pg_locks: a bigint key is classid
// (high 32 bits) and objid (low 32 bits) with objsubid 1; a pair is
// (classid, objid) with objsubid 2.
func pgKey(classid, objid int64, objsubid int) keyhash.Key {
	if objsubid == 2 {
		return keyhash.Pair(int32(uint32(classid)), int32(uint32(objid)))
	}
	return keyhash.Int64(int64(uint64(uint32(classid))<<32 | uint64(uint32(objid))))
}

func pgMode(mode string) string {
	switch mode {
	case "ExclusiveLock":
		return "exclusive"
	case "ShareLock":
		return "shared"
	}
	return mode
}

// mysqlHolderSQL finds the session that holds a user lock.
const mysqlHolderSQL = `SELECT u.id, coalesce(p.USER, ''), coalesce(p.HOST, '')
FROM (SELECT IS_USED_LOCK(?) AS id) u
LEFT JOIN information_schema.PROCESSLIST p ON p.ID = u.id`

// mysqlListSQL lists user locks where the server can: MySQL's
// performance_schema (on by default in MySQL 8), else MariaDB's
// metadata_lock_info plugin.
var mysqlListSQL = []struct{ check, query string }{
	{
		check: `SELECT @@performance_schema = 1 AND EXISTS (SELECT 1 FROM performance_schema.setup_instruments
			WHERE NAME = 'wait/lock/metadata/sql/mdl' AND ENABLED = 'YES')`,
		query: `SELECT m.OBJECT_NAME, coalesce(t.PROCESSLIST_ID, 0), coalesce(t.PROCESSLIST_USER, ''), coalesce(t.PROCESSLIST_HOST, '')
			FROM performance_schema.metadata_locks m
			LEFT JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID
			WHERE m.OBJECT_TYPE = 'USER LEVEL LOCK' AND m.LOCK_STATUS = 'GRANTED'`,
	},
	{
		check: `SELECT COUNT(*) > 0 FROM information_schema.PLUGINS
			WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'`,
		query: `SELECT m.TABLE_SCHEMA, m.THREAD_ID, coalesce(p.USER, ''), coalesce(p.HOST, '')
			FROM information_schema.METADATA_LOCK_INFO m
			LEFT JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID
			WHERE m.LOCK_TYPE = 'User lock'`,
	},
}

// errNoMySQLListing says why user locks cannot be listed.
var errNoMySQLListing = errors.New("this server cannot list user locks: it needs performance_schema with the " +
	"wait/lock/metadata/sql/mdl instrument (MySQL 8's default) or MariaDB's metadata_lock_info plugin; " +
	"name the locks to check them with IS_USED_LOCK (lockkit status NAME...)")

// listMySQL lists user locks. Given NAMEs it asks IS_USED_LOCK for each;
// otherwise it needs a server that exposes its metadata locks. Lock names
// of this database's namespace are shown without the namespace.
func (s *sqlBackend) listMySQL(ctx context.Context, names []string) ([]heldLock, error) {
	prefix := s.dbName + "."
	if len(names) > 0 {
		out := make([]heldLock, 0, len(names))
		for _, n := range names {
			lockName, err := mysqllock.UserLockName(s.dbName, n)
			if err != nil {
				return nil, err
			}
			var (
				id         sql.NullInt64
				user, host string
			)
			if err := s.db.QueryRowContext(ctx, mysqlHolderSQL, lockName).Scan(&id, &user, &host); err != nil {
				return nil, err
			}
			h := heldLock{Name: n}
			if id.Valid {
				h.Held, h.Mode, h.PID, h.Owner, h.Host = true, "exclusive", int(id.Int64), user, host
			}
			out = append(out, h)
		}
		return out, nil
	}
	for _, l := range mysqlListSQL {
		var ok sql.NullBool
		if err := s.db.QueryRowContext(ctx, l.check).Scan(&ok); err != nil || !ok.Bool {
			continue
		}
		rows, err := s.db.QueryContext(ctx, l.query)
		if err != nil {
			return nil, fmt.Errorf("listing user locks: %w", err)
		}
		var out []heldLock
		for rows.Next() {
			var (
				name, user, host string
				id               int64
			)
			if err := rows.Scan(&name, &id, &user, &host); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, heldLock{Name: strings.TrimPrefix(name, prefix), Held: true, Mode: "exclusive", PID: int(id), Owner: user, Host: host})
		}
		err = rows.Err()
		rows.Close()
		return out, err
	}
	return nil, errNoMySQLListing
}

// runName returns the lock name of a `lockkit run` session whose
// application_name is "lockkit run NAME" when key is that name's key; "".
func runName(app string, k keyhash.Key) string {
	name, ok := strings.CutPrefix(app, "lockkit run ")
	if !ok || name == "" {
		return ""
	}
	if keyhash.ValidateName(name) == nil && keyhash.Name(name) == k {
		return name
	}
	return ""
}
