package advisory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/pginterrupt"
	"github.com/lockkit/lockkit/internal/sqlconn"
	"github.com/lockkit/lockkit/keyhash"
)

// TxOptions configure [WithTxLock] and [WithTryTxLock]. A nil *TxOptions
// means the defaults: exclusive locks in a transaction with the database's
// default isolation.
type TxOptions struct {
	// Mode is Exclusive (the zero value) or Shared.
	Mode Mode

	// Tx is passed to BeginTx: isolation level and read-only. Nil means
	// the database's defaults.
	Tx *sql.TxOptions

	// LockTimeout, if positive, bounds the wait for the locks on the
	// server (SET LOCAL lock_timeout for the lock statement only; the
	// previous setting is restored for fn). When it expires the error
	// matches ErrLockTimeout and lockkit.ErrNotAcquired. Without it the
	// wait is bounded by ctx alone.
	LockTimeout time.Duration

	// Telemetry says where the metrics, spans and logs of the call go; nil
	// means OpenTelemetry's global providers and no logs. The locks count
	// as held while fn runs and the transaction ends.
	Telemetry *lockkit.Telemetry
}

func (o *TxOptions) mode() Mode {
	if o == nil {
		return Exclusive
	}
	return o.Mode
}

// WithTxLock runs fn in a transaction that holds transaction-scoped advisory
// locks (pg_advisory_xact_lock) on keys. It begins a transaction on db,
// takes the locks — sorted (keyhash.Compare), in one statement — waiting
// until they are granted or ctx ends, runs fn, and commits; it rolls back
// when fn returns an error or panics (and re-panics). The locks end with the
// transaction: there is no unlock, and nothing can leak.
//
// db must use pgx's database/sql driver. The transaction is bound to ctx:
// when ctx ends, database/sql rolls it back. WithTxLock returns fn's error,
// or the error of the lock, the commit or the rollback. A wait that ctx
// ended matches lockkit.ErrNotAcquired and ctx.Err(); a deadlock between
// transactions matches lockkit.ErrDeadlock; a full lock table
// ErrOutOfLockMemory.
//
// Round trips: BEGIN, the lock statement, then fn's own, then COMMIT.
// database/sql sends BEGIN on its own and waits for it, so the lock cannot be
// pipelined with it; the lock statement (with LockTimeout: the setting, the
// lock and the restore, pipelined as one batch) is one round trip whatever the
// number of keys.
func WithTxLock(ctx context.Context, db *sql.DB, keys []keyhash.Key, opts *TxOptions, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return withTxLock(ctx, db, keys, opts, false, fn)
}

// WithTryTxLock is [WithTxLock] with one attempt at the locks
// (pg_try_advisory_xact_lock), all or nothing: when any key is held
// elsewhere it rolls back, does not run fn, and returns a *lockkit.HeldError
// (matching lockkit.ErrNotAcquired) naming the holder.
func WithTryTxLock(ctx context.Context, db *sql.DB, keys []keyhash.Key, opts *TxOptions, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return withTxLock(ctx, db, keys, opts, true, fn)
}

func withTxLock(ctx context.Context, db *sql.DB, keys []keyhash.Key, opts *TxOptions, try bool, fn func(ctx context.Context, tx *sql.Tx) error) (err error) {
	if db == nil {
		return invalid.Errorf("advisory: WithTxLock: nil *sql.DB")
	}
	if fn == nil {
		return invalid.Errorf("advisory: WithTxLock: nil fn")
	}
	if opts != nil && opts.LockTimeout < 0 {
		return invalid.Errorf("advisory: WithTxLock: negative LockTimeout %v", opts.LockTimeout)
	}
	sorted, mode, err := checkKeys(keys, &Options{Mode: opts.mode()})
	if err != nil {
		return err
	}
	name := keysName(sorted)
	ctx, tt := startTxTelemetry(ctx, opts, name, try)
	defer func() { tt.end(ctx, err) }()
	fn = tt.wrap(fn)
	if ctx.Err() != nil {
		return notStarted(ctx, name)
	}
	var sqlOpts *sql.TxOptions
	var lockTimeout time.Duration
	if opts != nil {
		sqlOpts, lockTimeout = opts.Tx, opts.LockTimeout
	}

	// A pinned session, so that the lock statement can run on its
	// *pgx.Conn and be interrupted with a cancel request (see
	// pginterrupt.Run) rather than by pgx closing the socket.
	conn, err := db.Conn(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return noConnection(ctx, name)
		}
		return fmt.Errorf("advisory: lock %q: %w", name, err)
	}
	tx, err := conn.BeginTx(ctx, sqlOpts)
	if err != nil {
		sqlconn.Discard(conn)
		if ctx.Err() != nil {
			return &lockkit.HeldError{Name: name, Cause: fmt.Errorf("begin: %w", ctx.Err())}
		}
		return fmt.Errorf("advisory: lock %q: begin: %w", name, err)
	}
	clean := false // the session is known to be back outside any transaction
	defer func() {
		if clean {
			_ = conn.Close()
		} else {
			sqlconn.Discard(conn)
		}
	}()

	var (
		res         lockResult
		stErr       error
		interrupted bool
		holder      *lockkit.Holder
	)
	rawErr := conn.Raw(func(dc any) error {
		c, err := pgxConn(dc)
		if err != nil {
			return err
		}
		stErr, interrupted = pginterrupt.Run(ctx, 0, c, func() (err error) {
			res, err = runXactLock(c, mode, sorted, try, lockTimeout)
			return err
		})
		if stErr == nil && !interrupted && !res.granted {
			holder, _ = findHolder(c, []keyhash.Key{res.denied})
		}
		return nil
	})
	if rawErr != nil {
		_ = tx.Rollback()
		if errors.Is(rawErr, errNotPgx) {
			return invalid.Errorf("%v", rawErr)
		}
		return fmt.Errorf("advisory: lock %q: %w", name, rawErr)
	}
	if interrupted || stErr != nil {
		rbErr := tx.Rollback()
		if !interrupted && rbErr == nil && pgCode(stErr) == codeLockNotAvailable {
			clean = true
			_ = conn.Raw(func(dc any) error {
				if c, err := pgxConn(dc); err == nil {
					holder, clean = findHolder(c, sorted)
				}
				return nil
			})
		}
		return classify(ctx, name, holder, stErr, interrupted)
	}
	if !res.granted {
		clean = tx.Rollback() == nil
		return &lockkit.HeldError{Name: name, Holder: holder}
	}

	panicked := true
	defer func() {
		if panicked {
			_ = tx.Rollback() // then the deferred Discard; the panic goes on
		}
	}()
	fnErr := fn(ctx, tx)
	panicked = false
	if fnErr != nil {
		rbErr := tx.Rollback()
		clean = rbErr == nil
		if rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			return errors.Join(fnErr, fmt.Errorf("advisory: rollback: %w", rbErr))
		}
		return fnErr
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("advisory: commit: %w", err)
	}
	clean = true
	return nil
}

// pgxConn returns the *pgx.Conn of a database/sql driver connection.
func pgxConn(dc any) (*pgx.Conn, error) {
	type pgxDriverConn interface{ Conn() *pgx.Conn }
	if c, ok := dc.(pgxDriverConn); ok {
		return c.Conn(), nil
	}
	return nil, errNotPgx
}

// runXactLock takes transaction-scoped locks on keys on c, whose session is
// inside a transaction. With lockTimeout, the setting, the lock statement
// and the restore of the previous setting are sent as one pipelined batch:
// one round trip.
func runXactLock(c *pgx.Conn, mode Mode, keys []keyhash.Key, try bool, lockTimeout time.Duration) (res lockResult, err error) {
	f := fnXact
	if try {
		f = fnTryXact
	}
	var st stmt
	if len(keys) == 1 {
		st = single(f, mode, keys[0])
	} else {
		st = multi(f, mode, keys)
	}
	bg := context.Background()
	var rows pgx.Rows
	if lockTimeout > 0 {
		b := &pgx.Batch{}
		b.Queue(saveLockTimeoutSQL, fmt.Sprintf("%dms", max(1, lockTimeout.Milliseconds())))
		b.Queue(st.sql, st.args...)
		b.Queue(restoreLockTimeoutSQL)
		br := c.SendBatch(bg, b)
		defer func() {
			if cerr := br.Close(); err == nil && cerr != nil {
				res, err = lockResult{}, cerr
			}
		}()
		if _, err := br.Exec(); err != nil {
			return lockResult{}, err
		}
		rows, err = br.Query()
	} else {
		rows, err = c.Query(bg, st.sql, st.args...)
	}
	if err != nil {
		return lockResult{}, err
	}
	res = lockResult{granted: true}
	first := true
	for rows.Next() {
		if !try {
			continue // the waiting functions return void
		}
		var (
			k   keyhash.Key
			got bool
		)
		if len(keys) == 1 {
			k = keys[0]
			err = rows.Scan(&got)
		} else {
			var (
				pair bool
				v    int64
				a, b int32
			)
			err = rows.Scan(&pair, &v, &a, &b, &got)
			k = keyhash.Int64(v)
			if pair {
				k = keyhash.Pair(a, b)
			}
		}
		if err != nil {
			rows.Close()
			return lockResult{}, err
		}
		if !got {
			res.granted = false
			if first || keyhash.Compare(k, res.denied) < 0 {
				res.denied, first = k, false
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return lockResult{}, err
	}
	return res, nil
}

// The lock_timeout dance of TxOptions.LockTimeout: save the setting in a
// transaction-local custom setting, set it, and restore it after the lock.
const (
	saveLockTimeoutSQL = `SELECT pg_catalog.set_config('lockkit.saved_lock_timeout', pg_catalog.current_setting('lock_timeout'), true),
 pg_catalog.set_config('lock_timeout', $1, true)`
	restoreLockTimeoutSQL = `SELECT pg_catalog.set_config('lock_timeout', pg_catalog.current_setting('lockkit.saved_lock_timeout'), true)`
)

// LockTx takes exclusive transaction-scoped advisory locks on keys
// (pg_advisory_xact_lock) inside tx, a transaction on PostgreSQL through
// pgx's database/sql driver, waiting until they are granted or ctx ends. The
// keys are sorted and taken in one statement. The locks end when tx commits
// or rolls back.
//
// When ctx ends during the wait, pgx closes tx's connection (tx is then
// unusable and must be rolled back, which database/sql does). The server
// notices the closed socket only when it next writes to it (unless
// client_connection_check_interval is set), so the orphaned session stays
// in the lock's queue until it is granted, and then ends at once, freeing
// the lock; meanwhile it delays those queued behind it. Use [WithTxLock]
// where the wait itself should be cancelled on the server.
func LockTx(ctx context.Context, tx *sql.Tx, keys ...keyhash.Key) error {
	return lockTx(ctx, tx, Exclusive, keys)
}

// LockTxShared is [LockTx] in shared mode (pg_advisory_xact_lock_shared).
func LockTxShared(ctx context.Context, tx *sql.Tx, keys ...keyhash.Key) error {
	return lockTx(ctx, tx, Shared, keys)
}

func lockTx(ctx context.Context, tx *sql.Tx, mode Mode, keys []keyhash.Key) error {
	if tx == nil {
		return invalid.Errorf("advisory: LockTx: nil *sql.Tx")
	}
	sorted, _, err := checkKeys(keys, &Options{Mode: mode})
	if err != nil {
		return err
	}
	name := keysName(sorted)
	if ctx.Err() != nil {
		return notStarted(ctx, name)
	}
	var st stmt
	if len(sorted) == 1 {
		st = single(fnXact, mode, sorted[0])
	} else {
		st = multi(fnXact, mode, sorted)
	}
	rows, err := tx.QueryContext(ctx, st.sql, st.args...)
	if err == nil {
		for rows.Next() {
		}
		err = cmpErr(rows.Close(), rows.Err())
	}
	if err != nil {
		if ctx.Err() != nil {
			return &lockkit.HeldError{Name: name, Cause: ctx.Err()}
		}
		return classify(ctx, name, nil, err, false)
	}
	return nil
}

func cmpErr(a, b error) error {
	if b != nil {
		return b
	}
	return a
}

// TryLockTx makes one attempt at exclusive transaction-scoped advisory locks
// on keys (pg_try_advisory_xact_lock) inside tx, all or nothing. It reports
// whether every key was granted. For several keys it brackets the attempt
// with a savepoint and rolls back to it when not every key was granted, so
// that no key stays held (three round trips; one for a single key).
func TryLockTx(ctx context.Context, tx *sql.Tx, keys ...keyhash.Key) (bool, error) {
	return tryLockTx(ctx, tx, Exclusive, keys)
}

// TryLockTxShared is [TryLockTx] in shared mode.
func TryLockTxShared(ctx context.Context, tx *sql.Tx, keys ...keyhash.Key) (bool, error) {
	return tryLockTx(ctx, tx, Shared, keys)
}

const trySavepoint = "lockkit_try_lock"

func tryLockTx(ctx context.Context, tx *sql.Tx, mode Mode, keys []keyhash.Key) (bool, error) {
	if tx == nil {
		return false, invalid.Errorf("advisory: TryLockTx: nil *sql.Tx")
	}
	sorted, _, err := checkKeys(keys, &Options{Mode: mode})
	if err != nil {
		return false, err
	}
	name := keysName(sorted)
	if ctx.Err() != nil {
		return false, notStarted(ctx, name)
	}
	if len(sorted) == 1 {
		st := single(fnTryXact, mode, sorted[0])
		var ok bool
		if err := tx.QueryRowContext(ctx, st.sql, st.args...).Scan(&ok); err != nil {
			return false, classify(ctx, name, nil, err, false)
		}
		return ok, nil
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+trySavepoint); err != nil {
		return false, classify(ctx, name, nil, err, false)
	}
	st := multi(fnTryXact, mode, sorted)
	st.sql = "SELECT coalesce(bool_and(r), false) FROM (" + st.sql + ") AS l"
	var all bool
	if err := tx.QueryRowContext(ctx, st.sql, st.args...).Scan(&all); err != nil {
		return false, classify(ctx, name, nil, err, false)
	}
	end := "RELEASE SAVEPOINT " + trySavepoint
	if !all {
		end = "ROLLBACK TO SAVEPOINT " + trySavepoint + "; " + end
	}
	if _, err := tx.ExecContext(ctx, end); err != nil {
		return false, classify(ctx, name, nil, err, false)
	}
	return all, nil
}
