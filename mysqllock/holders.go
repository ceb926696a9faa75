package mysqllock

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
)

// The server keeps no holder data with a user lock. So a lock taken
// through a WithData view records its holder in a small table, the fencing
// table's name followed by "_holders" (lockkit_fence_holders by default):
// one row per GET_LOCK name, the holding connection's id, the data and
// when, written right after the lock was granted (and, before a Locker's
// first view lock of a name, an empty row for it, so that the first
// holder too is not listed with a token but without its data). List trusts a row only
// when its connection id is the holder's, so a row left by a session that
// died or let go is ignored. A name that has a row which is not its
// holder's is listed without a token: its holder either took the lock
// without a view, or is a view's holder one statement away from recording
// (its counter bumped, its data not yet written), and List does not show a
// term without the value that goes with it. Package election, whose
// candidates all record, reads again until the row is there.

// MaxDataLen is the longest holder data a WithData view records, in bytes.
const MaxDataLen = 4096

var _ lockkit.DataLocker = (*Locker)(nil)

// WithData implements lockkit.DataLocker: the view's acquires record data
// and the connection id in the holders table (created on first use) with
// one more statement on the lock's own connection, where
// [Locker.List] (and so package election's Leader and Observe, and package
// semaphore's check of the number of permits) reads it, and so does a
// refused acquire's *lockkit.HeldError. Without the view, locks record
// nothing and cost nothing more. A record that fails releases the lock and
// fails the acquire; data longer than [MaxDataLen], not valid UTF-8 or with
// a NUL byte is refused with lockkit.ErrInvalid before any I/O. The table
// keeps one row per name ever recorded, like the fencing counters.
func (m *Locker) WithData(data string) lockkit.Locker { return dataView{m: m, data: data} }

type dataView struct {
	m    *Locker
	data string
}

func (v dataView) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return v.acquire(ctx, name, v.m.Lock)
}

func (v dataView) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return v.acquire(ctx, name, v.m.TryLock)
}

func (v dataView) acquire(ctx context.Context, name string, lock func(context.Context, string) (*Lock, error)) (lockkit.Lock, error) {
	switch {
	case len(v.data) > MaxDataLen:
		return nil, invalid.Errorf("mysqllock: holder data is %d bytes, longer than %d", len(v.data), MaxDataLen)
	case !utf8.ValidString(v.data) || strings.IndexByte(v.data, 0) >= 0:
		return nil, invalid.Errorf("mysqllock: holder data is not valid UTF-8 without NUL bytes")
	}
	server, err := v.m.UserLockName(name)
	if err != nil {
		return nil, err
	}
	if err := v.m.ensureRow(ctx, server); err != nil {
		if ctx.Err() != nil { // the acquire's wait ended before it began
			return nil, &lockkit.HeldError{Name: name, Cause: ctx.Err()}
		}
		return nil, fmt.Errorf("mysqllock: acquire %q: record the holder: %w", name, err)
	}
	lk, err := lock(ctx, name)
	if err != nil {
		v.m.addHeldData(ctx, server, err)
		return nil, err
	}
	if err := v.m.record(ctx, lk, server, v.data); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockkit.ReleaseTimeout)
		defer cancel()
		return nil, errors.Join(fmt.Errorf("mysqllock: acquire %q: record the holder: %w", name, err), lk.Release(rctx))
	}
	return lk, nil
}

// setHolders sets the holders table's statements, on the quoted table q.
func (m *Locker) setHolders(q string) {
	m.holdersWrite = "INSERT INTO " + q + " (name, conn, data, at) VALUES (?, ?, ?, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED))" +
		" ON DUPLICATE KEY UPDATE conn = VALUES(conn), data = VALUES(data), at = VALUES(at)"
	m.holdersCreate = "CREATE TABLE IF NOT EXISTS " + q +
		" (name VARBINARY(255) NOT NULL PRIMARY KEY, conn BIGINT NOT NULL, data TEXT CHARACTER SET utf8mb4 NOT NULL, at BIGINT NOT NULL) ENGINE=InnoDB"
	m.holdersRead = "SELECT conn, data FROM " + q + " WHERE name = ?"
	m.holdersEnsure = "INSERT INTO " + q + " (name, conn, data, at) VALUES (?, 0, '', 0) ON DUPLICATE KEY UPDATE name = name"
}

// ensureRow makes sure server has a holders row before a view's first
// lock of it, an empty one if need be (connection 0, which no holder has),
// so that List never shows the view's token before its data: a name with
// a row that is not its holder's is listed without a token. A Locker does
// this once per name.
func (m *Locker) ensureRow(ctx context.Context, server string) error {
	if _, ok := m.rowMade.Load(server); ok || m.holdersWrite == "" {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := m.execHolders(func(q string, args ...any) error {
		_, err := m.db.ExecContext(ctx, q, args...)
		return err
	}, m.holdersEnsure, server)
	if err == nil {
		m.rowMade.Store(server, struct{}{})
	}
	return err
}

// record writes the holder row of lk, a lock on the GET_LOCK name server,
// creating the table when it is missing. It runs on the lock's own
// connection, as a cached statement (see queryRow), under the lock's mutex
// so that no probe runs meanwhile: an acquire needs no second connection
// of the pool.
func (m *Locker) record(ctx context.Context, lk *Lock, server string, data string) error {
	if m.holdersWrite == "" {
		return fmt.Errorf("Config.FencingTable is too long to name its holders table (the name followed by \"_holders\"): %w", lockkit.ErrUnsupported)
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return m.execHolders(func(q string, args ...any) error {
		_, err := m.conns.Exec(ctx, lk.conn, q, args)
		return err
	}, m.holdersWrite, server, lk.connID, data)
}

// execHolders runs a statement on the holders table through run, creating
// the table when it is missing.
func (m *Locker) execHolders(run func(q string, args ...any) error, q string, args ...any) error {
	err := run(q, args...)
	if isNoTable(err) {
		if cerr := run(m.holdersCreate); cerr != nil {
			return fmt.Errorf("create the holders table (it needs the CREATE privilege; or create it beforehand, %s, and grant INSERT, UPDATE and SELECT on it): %w", m.holdersCreate, cerr)
		}
		err = run(q, args...)
	}
	return err
}

func isNoTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1146
}

// readData reads the holders row of server: the data recorded there when
// the row is the connection connID's (mine), and whether the row exists at
// all (there is no row, or no table: found false).
func (m *Locker) readData(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, server string, connID int) (data string, found, mine bool, err error) {
	if m.holdersRead == "" {
		return "", false, false, nil
	}
	var conn int64
	err = q.QueryRowContext(ctx, m.holdersRead, server).Scan(&conn, &data)
	switch {
	case errors.Is(err, sql.ErrNoRows) || isNoTable(err):
		return "", false, false, nil
	case err != nil:
		return "", false, false, err
	case conn != int64(connID):
		return "", true, false, nil
	}
	return data, true, true, nil
}

// addHeldData adds the holder's recorded data to the holder of a
// *lockkit.HeldError from a view's acquire, so that a refused caller sees
// it as on other backends. It costs a statement on a refusal only; when it
// fails, the error goes without the data.
func (m *Locker) addHeldData(ctx context.Context, server string, err error) {
	var he *lockkit.HeldError
	if !errors.As(err, &he) || he.Holder == nil || he.Holder.PID == 0 || ctx.Err() != nil {
		return
	}
	if data, _, mine, rerr := m.readData(ctx, m.db, server, he.Holder.PID); rerr == nil && mine {
		h := *he.Holder
		h.Data = data
		he.Holder = &h
	}
}
