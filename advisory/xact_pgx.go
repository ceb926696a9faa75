package advisory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/pginterrupt"
	"github.com/lockkit/lockkit/keyhash"
)

// WithPgxTxLock is [WithTxLock] on a pgxpool: it runs fn in a pgx
// transaction that holds transaction-scoped advisory locks on keys.
//
// It takes two round trips besides fn's own: BEGIN and the lock statement
// travel together as one simple-protocol query (pgx's TxOptions.BeginQuery),
// then COMMIT. The keys are written into that query as SQL literals, which
// is safe because they are integers rendered by strconv, never strings from
// the caller. The transaction is not bound to ctx beyond the lock wait: pgx
// leaves it to fn and to the commit.
func WithPgxTxLock(ctx context.Context, pool *pgxpool.Pool, keys []keyhash.Key, opts *TxOptions, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return withPgxTxLock(ctx, pool, keys, opts, false, fn)
}

// WithTryPgxTxLock is [WithTryTxLock] on a pgxpool: one attempt at the
// locks, all or nothing; when any key is held elsewhere it rolls back, does
// not run fn, and returns a *lockkit.HeldError. It takes three round trips
// besides fn's (BEGIN, the try, COMMIT): the try's answer is needed before
// fn runs, and a BeginQuery cannot return it.
func WithTryPgxTxLock(ctx context.Context, pool *pgxpool.Pool, keys []keyhash.Key, opts *TxOptions, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return withPgxTxLock(ctx, pool, keys, opts, true, fn)
}

func withPgxTxLock(ctx context.Context, pool *pgxpool.Pool, keys []keyhash.Key, opts *TxOptions, try bool, fn func(ctx context.Context, tx pgx.Tx) error) (err error) {
	if pool == nil {
		return invalid.Errorf("advisory: WithPgxTxLock: nil *pgxpool.Pool")
	}
	if fn == nil {
		return invalid.Errorf("advisory: WithPgxTxLock: nil fn")
	}
	if opts != nil && opts.LockTimeout < 0 {
		return invalid.Errorf("advisory: WithPgxTxLock: negative LockTimeout %v", opts.LockTimeout)
	}
	sorted, mode, err := checkKeys(keys, &Options{Mode: opts.mode()})
	if err != nil {
		return err
	}
	var txOpts pgx.TxOptions
	var lockTimeout time.Duration
	if opts != nil {
		lockTimeout = opts.LockTimeout
		if txOpts, err = pgxTxOptions(opts.Tx); err != nil {
			return err
		}
	}
	name := keysName(sorted)
	if ctx.Err() != nil {
		return notStarted(ctx, name)
	}

	pc, err := pool.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return noConnection(ctx, name)
		}
		return fmt.Errorf("advisory: lock %q: %w", name, err)
	}
	pinned := &poolPinned{c: pc}
	c := pc.Conn()
	clean := false
	defer func() {
		if clean {
			pinned.release()
		} else {
			pinned.discard()
		}
	}()

	var (
		tx          pgx.Tx
		res         lockResult
		stErr       error
		interrupted bool
		holder      *lockkit.Holder
	)
	bg := context.Background()
	if !try {
		txOpts.BeginQuery = beginLockSQL(txOpts, mode, sorted, lockTimeout)
		stErr, interrupted = pginterrupt.Run(ctx, 0, c, func() (err error) {
			tx, err = c.BeginTx(bg, txOpts)
			return err
		})
		res.granted = stErr == nil
	} else {
		if tx, err = c.BeginTx(ctx, txOpts); err != nil {
			return fmt.Errorf("advisory: lock %q: begin: %w", name, err)
		}
		stErr, interrupted = pginterrupt.Run(ctx, 0, c, func() (err error) {
			res, err = runXactLock(c, mode, sorted, true, lockTimeout)
			return err
		})
		if stErr == nil && !interrupted && !res.granted {
			holder, _ = findHolder(c, []keyhash.Key{res.denied})
		}
	}
	if interrupted || stErr != nil || !res.granted {
		// End the transaction, whether pgx made a Tx or the session sits
		// in a failed BEGIN block; then the session is clean.
		if !interrupted && !c.IsClosed() {
			_, rbErr := c.Exec(bg, "ROLLBACK")
			clean = rbErr == nil
		}
		if interrupted || stErr != nil {
			if clean && pgCode(stErr) == codeLockNotAvailable {
				holder, clean = findHolder(c, sorted)
			}
			return classify(ctx, name, holder, stErr, interrupted)
		}
		return &lockkit.HeldError{Name: name, Holder: holder}
	}

	panicked := true
	defer func() {
		if panicked {
			_ = tx.Rollback(bg) // then the deferred discard; the panic goes on
		}
	}()
	fnErr := fn(ctx, tx)
	panicked = false
	if fnErr != nil {
		rbErr := tx.Rollback(bg)
		clean = rbErr == nil
		if rbErr != nil {
			return errors.Join(fnErr, fmt.Errorf("advisory: rollback: %w", rbErr))
		}
		return fnErr
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("advisory: commit: %w", err)
	}
	clean = true
	return nil
}

// pgxTxOptions maps database/sql transaction options to pgx's.
func pgxTxOptions(o *sql.TxOptions) (pgx.TxOptions, error) {
	var p pgx.TxOptions
	if o == nil {
		return p, nil
	}
	switch o.Isolation {
	case sql.LevelDefault:
	case sql.LevelReadUncommitted:
		p.IsoLevel = pgx.ReadUncommitted
	case sql.LevelReadCommitted:
		p.IsoLevel = pgx.ReadCommitted
	case sql.LevelRepeatableRead, sql.LevelSnapshot:
		p.IsoLevel = pgx.RepeatableRead
	case sql.LevelSerializable:
		p.IsoLevel = pgx.Serializable
	default:
		return p, invalid.Errorf("advisory: unsupported isolation level %v", o.Isolation)
	}
	if o.ReadOnly {
		p.AccessMode = pgx.ReadOnly
	}
	return p, nil
}

// beginLockSQL returns one simple-protocol query that begins a transaction
// and takes the transaction-scoped locks, for pgx's TxOptions.BeginQuery:
//
//	BEGIN ISOLATION LEVEL ...; [save and set lock_timeout;] SELECT pg_advisory_xact_lock(...); [restore]
//
// Only constants and integers rendered by strconv go into it.
func beginLockSQL(o pgx.TxOptions, mode Mode, keys []keyhash.Key, lockTimeout time.Duration) string {
	var b strings.Builder
	b.WriteString("BEGIN")
	if o.IsoLevel != "" {
		b.WriteString(" ISOLATION LEVEL ")
		b.WriteString(string(o.IsoLevel)) // one of pgx's constants
	}
	if o.AccessMode != "" {
		b.WriteString(" ")
		b.WriteString(string(o.AccessMode))
	}
	b.WriteString("; ")
	if lockTimeout > 0 {
		b.WriteString(strings.Replace(saveLockTimeoutSQL, "$1", "'"+strconv.FormatInt(max(1, lockTimeout.Milliseconds()), 10)+"ms'", 1))
		b.WriteString("; ")
	}
	if len(keys) == 1 {
		b.WriteString(literalStmt(single(fnXact, mode, keys[0])))
	} else {
		b.WriteString(literalStmt(multi(fnXact, mode, keys)))
	}
	if lockTimeout > 0 {
		b.WriteString("; ")
		b.WriteString(restoreLockTimeoutSQL)
	}
	return b.String()
}

// literalStmt writes st's integer arguments into its SQL as quoted
// literals: $1 of an int64 becomes '42', of an []int64 '{1,2}'. Only the
// statements of single and multi, whose arguments are integers, are passed.
func literalStmt(st stmt) string {
	s := st.sql
	for i := len(st.args) - 1; i >= 0; i-- { // $3 before $1, so $1 never matches $10
		var lit string
		switch v := st.args[i].(type) {
		case int64:
			lit = strconv.FormatInt(v, 10)
		case int32:
			lit = strconv.FormatInt(int64(v), 10)
		case []int64:
			lit = intArray(v)
		case []int32:
			lit = intArray(v)
		default:
			panic(fmt.Sprintf("advisory: literalStmt: argument of type %T", v))
		}
		s = strings.ReplaceAll(s, "$"+strconv.Itoa(i+1), "'"+lit+"'")
	}
	return s
}

func intArray[T int32 | int64](v []T) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, x := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(int64(x), 10))
	}
	b.WriteByte('}')
	return b.String()
}
