package mysqllock

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/sqlconn"
)

var _ lockkit.Lister = (*Locker)(nil)

// ErrListUnsupported is the error of [Locker.List] without names on a
// server that does not show its user locks. It matches
// lockkit.ErrUnsupported.
var ErrListUnsupported error = listUnsupported{}

type listUnsupported struct{}

func (listUnsupported) Error() string {
	return "mysqllock: this server cannot list user locks: it needs performance_schema with the " +
		"wait/lock/metadata/sql/mdl instrument (MySQL 8's default) or MariaDB's metadata_lock_info plugin; " +
		"name the locks to check them with IS_USED_LOCK"
}

func (listUnsupported) Is(target error) bool { return target == lockkit.ErrUnsupported }

// listSources are the ways a server shows its user locks, tried in order:
// MySQL's performance_schema (on by default in MySQL 8; MariaDB has it off
// by default), else MariaDB's metadata_lock_info plugin. check answers
// whether the source is available; query returns the GET_LOCK name, the
// holding connection's id, user and host of every granted user lock.
var listSources = []struct{ check, query string }{
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

// List implements [lockkit.Lister].
//
// With names it asks IS_USED_LOCK about each name's GET_LOCK name
// ([Locker.UserLockName]), on one connection, and
// information_schema.PROCESSLIST about the holding session: an entry per
// name in the order given, Held false for a free one.
//
// Without names it lists every user lock granted on the server, to any
// session and in any namespace, ordered by name, from
// performance_schema.metadata_locks (MySQL 8's default) or MariaDB's
// metadata_lock_info plugin. A server with neither returns
// [ErrListUnsupported]. Names of the Locker's namespace are shown without
// the namespace; other GET_LOCK names (other namespaces, keys
// "namespace#key", names another tool took) as the server has them, and a
// name hashed for its length ([UserLockName]) in its hashed form.
//
// Key is the GET_LOCK name. Mode is always lockkit.Exclusive. Holder has
// the holding connection's id (PID), user (Owner) and host, where the
// caller may see that session (another user's needs the PROCESS
// privilege). Since is zero: the server keeps no acquisition time for user
// locks, and a session's last command, which a conflict error reports, is
// for a lockkit holder its last probe. With Config.Fencing, List with
// names also reads each held name's fencing counter: Holder.Token is the
// holder's token and Since when it drew it (see Fencing tokens in the
// package documentation). A holder that took its lock through a
// [Locker.WithData] view has its data (Holder.Data), with names; a holder
// of a name whose recorded holder is another has no token (see WithData).
// A bad name
// returns an error matching lockkit.ErrInvalid before any I/O.
func (m *Locker) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	if len(names) == 0 {
		return m.listAll(ctx)
	}
	out := make([]lockkit.LockInfo, len(names))
	for i, n := range names {
		server, err := m.UserLockName(n)
		if err != nil {
			return nil, err
		}
		out[i] = lockkit.LockInfo{Name: n, Key: server}
	}
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("mysqllock: list: %w", err)
	}
	for i := range out {
		h, err := m.holderOf(ctx, conn, out[i].Key)
		if err != nil {
			sqlconn.Discard(conn)
			return nil, fmt.Errorf("mysqllock: list %q: %w", out[i].Name, err)
		}
		if h != nil {
			h.Since = time.Time{} // the holder's last command; see above
			if m.fenceRead != "" {
				if h.Token, h.Since, err = m.readToken(ctx, conn, out[i].Key); err != nil {
					sqlconn.Discard(conn)
					return nil, fmt.Errorf("mysqllock: list %q: %w", out[i].Name, err)
				}
			}
			data, found, mine, err := m.readData(ctx, conn, out[i].Key, h.PID)
			if err != nil {
				sqlconn.Discard(conn)
				return nil, fmt.Errorf("mysqllock: list %q: %w", out[i].Name, err)
			}
			if found && !mine { // see WithData
				h.Token, h.Since = 0, time.Time{}
			}
			h.Data = data
			out[i].Held, out[i].Holder = true, *h
		}
	}
	_ = conn.Close()
	return out, nil
}

// readToken reads the fencing counter of the GET_LOCK name server, and
// when it was last bumped: the token of its last holder with
// Config.Fencing, and when that holder took the lock; 0 when there is none.
func (m *Locker) readToken(ctx context.Context, conn *sql.Conn, server string) (int64, time.Time, error) {
	var n, at int64
	err := conn.QueryRowContext(ctx, m.fenceRead, server).Scan(&n, &at)
	var me *mysql.MySQLError
	if errors.Is(err, sql.ErrNoRows) || errors.As(err, &me) && me.Number == 1146 {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	return n, time.UnixMicro(at), nil
}

// listAll lists every granted user lock from the first source the server
// offers.
func (m *Locker) listAll(ctx context.Context) ([]lockkit.LockInfo, error) {
	for _, src := range listSources {
		var ok sql.NullBool
		if err := m.db.QueryRowContext(ctx, src.check).Scan(&ok); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("mysqllock: list: %w", err)
			}
			continue // a server without the source's tables
		}
		if !ok.Bool {
			continue
		}
		out, err := m.scanLocks(ctx, src.query)
		if err != nil {
			return nil, fmt.Errorf("mysqllock: list: %w", err)
		}
		return out, nil
	}
	return nil, ErrListUnsupported
}

func (m *Locker) scanLocks(ctx context.Context, query string) ([]lockkit.LockInfo, error) {
	rows, err := m.db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	prefix := ""
	if m.namespace != "" {
		prefix = m.namespace + mysqlNameSep
	}
	var out []lockkit.LockInfo
	for rows.Next() {
		var (
			server, user, host string
			id                 int64
		)
		if err := rows.Scan(&server, &id, &user, &host); err != nil {
			return nil, err
		}
		name := server
		if prefix != "" {
			name = strings.TrimPrefix(server, prefix)
		}
		out = append(out, lockkit.LockInfo{
			Name: name, Held: true, Mode: lockkit.Exclusive, Key: server,
			Holder: lockkit.Holder{PID: int(id), Owner: user, Host: host},
		})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b lockkit.LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
