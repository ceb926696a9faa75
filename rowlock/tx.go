package rowlock

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
)

// LockTx locks name inside the caller's transaction, waiting while another
// transaction holds it: SELECT ... FOR UPDATE on the name's row, which is
// inserted first (in a statement of its own, outside tx) if the name has
// none. The lock ends when tx commits or rolls back; there is no unlock.
// This is the transaction-scoped lock MySQL has no advisory form of.
//
// A transaction lock and a lease on the same name exclude each other: when
// a lease on name is live, LockTx returns a *lockkit.HeldError naming its
// holder at once rather than wait inside the transaction (roll tx back
// then: the row lock it may hold would hold up the lease's renewal and
// release until tx ends); and lease operations on the name wait while a
// transaction holds it. A lease acquire whose context ends during such a
// wait has already been sent: the server may still run it when the
// transaction ends, leaving a lease no handle knows of, which expires
// after its TTL. Avoid mixing the two on one name.
//
// The wait is bounded by ctx and by the server's lock timeout
// (lock_timeout on PostgreSQL, innodb_lock_wait_timeout on MySQL); both
// end in a *lockkit.HeldError. When ctx ends, the driver abandons the
// statement and the transaction is no longer usable. A deadlock between
// transactions gives an error matching lockkit.ErrDeadlock; lock several
// names in sorted order to avoid it.
func (l *Locker) LockTx(ctx context.Context, tx *sql.Tx, name string) error {
	return l.lockTx(ctx, tx, name, false)
}

// TryLockTx is LockTx without waiting (FOR UPDATE NOWAIT): when another
// transaction holds name it returns a *lockkit.HeldError at once.
func (l *Locker) TryLockTx(ctx context.Context, tx *sql.Tx, name string) error {
	return l.lockTx(ctx, tx, name, true)
}

func (l *Locker) lockTx(ctx context.Context, tx *sql.Tx, name string, nowait bool) error {
	if tx == nil {
		return invalid.Errorf("rowlock: nil *sql.Tx")
	}
	if err := checkName(name); err != nil {
		return err
	}
	// The lock ends with tx, which lockkit does not see: the acquire is
	// recorded, the hold is not.
	ctx, op := l.tel.StartAcquire(ctx, name, !nowait)
	err := l.lockTxChecked(ctx, tx, name, nowait)
	op.End(ctx, err)
	return err
}

func (l *Locker) lockTxChecked(ctx context.Context, tx *sql.Tx, name string, nowait bool) error {
	if err := ctx.Err(); err != nil {
		return &lockkit.HeldError{Name: name, Cause: err}
	}
	query := l.q.lockTx
	if nowait {
		query = l.q.lockTxNowait
	}
	if l.s.dialect == MySQL {
		// A locking read of a missing row takes a gap lock in tx, and a
		// seed from another session would then wait for tx itself. So
		// look first, without locking and outside tx.
		var live bool
		err := l.queryRow(ctx, l.q.exists, name).Scan(&live)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := l.exec(ctx, l.q.seed, name); err != nil {
				return l.txError(ctx, name, err)
			}
		case err != nil:
			return l.txError(ctx, name, err)
		case live:
			h, err := l.holder(ctx, name)
			if err != nil {
				return l.txError(ctx, name, err)
			}
			if h != nil && h.remaining > 0 {
				return &lockkit.HeldError{Name: name, Holder: h.public()}
			}
		}
	}
	for attempt := range 3 {
		h, err := scanHolder(tx.QueryRowContext(ctx, query, name))
		if err == nil {
			if h.remaining > 0 {
				return &lockkit.HeldError{Name: name, Holder: h.public()}
			}
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return l.txError(ctx, name, err)
		}
		if attempt == 0 && l.s.dialect == Postgres {
			// No row yet. A locking read on PostgreSQL takes no gap
			// lock, so seed outside tx (tx then holds no insert lock
			// that a concurrent try would wait for) and lock again.
			if _, err := l.exec(ctx, l.q.seed, name); err != nil {
				return l.txError(ctx, name, err)
			}
			continue
		}
		// Deleted by a concurrent cleanup, or (PostgreSQL, REPEATABLE
		// READ or SERIALIZABLE) committed after tx's snapshot: insert
		// within tx. In the second case PostgreSQL reports a
		// serialization failure, which a retry of the transaction
		// resolves.
		if _, err := tx.ExecContext(ctx, l.q.seed, name); err != nil {
			return l.txError(ctx, name, err)
		}
	}
	return fmt.Errorf("rowlock: lock %q in transaction: its row keeps disappearing", name)
}

// txError maps the errors of a transaction lock: a lock that is not
// available at once, a lock timeout, a deadlock, the end of ctx.
func (l *Locker) txError(ctx context.Context, name string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return &lockkit.HeldError{Name: name, Cause: errors.Join(cerr, err)}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "55P03": // lock_not_available: NOWAIT, lock_timeout
			return &lockkit.HeldError{Name: name, Cause: err}
		case "40P01": // deadlock_detected
			return fmt.Errorf("rowlock: lock %q in transaction: %w: %w", name, lockkit.ErrDeadlock, err)
		}
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1205, 3572: // lock wait timeout (MariaDB's NOWAIT too); MySQL's NOWAIT
			return &lockkit.HeldError{Name: name, Cause: err}
		case 1213: // deadlock
			return fmt.Errorf("rowlock: lock %q in transaction: %w: %w", name, lockkit.ErrDeadlock, err)
		}
	}
	return fmt.Errorf("rowlock: lock %q in transaction: %w", name, noTable(err))
}
