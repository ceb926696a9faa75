package advisory

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lockkit/lockkit"
)

// PostgreSQL errors a lock call can end in, besides a conflict.
var (
	// ErrLockTimeout means PostgreSQL's lock_timeout setting ended a wait
	// for a lock (SQLSTATE 55P03, lock_not_available). The error is a
	// *lockkit.HeldError, so it matches lockkit.ErrNotAcquired too, and
	// it wraps the server's *pgconn.PgError.
	ErrLockTimeout = errors.New("advisory: lock_timeout expired while waiting for the lock")

	// ErrOutOfLockMemory means the server's shared lock table is full
	// (SQLSTATE 53200, "out of shared memory"). Advisory locks share it
	// with every other lock; its size is max_locks_per_transaction ×
	// (max_connections + max_prepared_transactions). Take fewer keys at a
	// time, release locks sooner, or raise max_locks_per_transaction.
	ErrOutOfLockMemory = errors.New("advisory: out of shared memory for locks (raise max_locks_per_transaction)")
)

// SQLSTATE codes the package maps.
const (
	codeLockNotAvailable = "55P03"
	codeDeadlock         = "40P01"
	codeOutOfMemory      = "53200"
	codeQueryCanceled    = "57014"
)

// pgCode returns the SQLSTATE of a server error in err's chain, or "".
func pgCode(err error) string {
	if err == nil {
		return ""
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// classify turns the error of a lock statement into the error a caller
// branches on. ctx is the caller's context: a statement interrupted because
// it ended reports the context's error.
func classify(ctx context.Context, name string, holder *lockkit.Holder, err error, interrupted bool) error {
	if interrupted || (ctx.Err() != nil && pgCode(err) == codeQueryCanceled) {
		return &lockkit.HeldError{Name: name, Cause: ctx.Err()}
	}
	switch pgCode(err) {
	case codeLockNotAvailable:
		return &lockkit.HeldError{Name: name, Holder: holder, Cause: fmt.Errorf("%w: %w", ErrLockTimeout, err)}
	case codeDeadlock:
		return fmt.Errorf("advisory: lock %q: %w: %w", name, lockkit.ErrDeadlock, err)
	case codeOutOfMemory:
		return fmt.Errorf("advisory: lock %q: %w: %w", name, ErrOutOfLockMemory, err)
	}
	return fmt.Errorf("advisory: lock %q: %w", name, err)
}

// notStarted is the error of an acquire that did not start because ctx had
// ended: it matches lockkit.ErrNotAcquired and ctx.Err().
func notStarted(ctx context.Context, name string) error {
	return &lockkit.HeldError{Name: name, Cause: ctx.Err()}
}

// noConnection is the error of an acquire whose context ended while it
// waited for a pool connection.
func noConnection(ctx context.Context, name string) error {
	return &lockkit.HeldError{Name: name, Cause: fmt.Errorf("waiting for a connection: %w", ctx.Err())}
}
