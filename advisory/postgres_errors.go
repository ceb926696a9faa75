package advisory

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

	// ErrSharedSession means a session lock was refused, or its release
	// failed, because the server session is shared with other clients or
	// was reset under the lock: a pooler in transaction or statement mode
	// (PgBouncer, Supavisor, a pooled endpoint) stands between lockkit and
	// PostgreSQL, where a session lock excludes nothing. The error matches
	// lockkit.ErrUnsupported too, and says what was seen and what to use
	// instead. After it, the Locker refuses every session lock.
	ErrSharedSession = errors.New("advisory: the server session is shared with other clients")

	// ErrLockNotEnforced means the server granted a session lock that it
	// does not hold: its advisory lock functions return true and lock
	// nothing, as CockroachDB's do. The error matches
	// lockkit.ErrUnsupported too and names the server. After it, the
	// Locker refuses every session lock.
	ErrLockNotEnforced = errors.New("advisory: the server does not enforce advisory locks")

	// ErrStandby means a session lock was refused because its connection
	// reached a hot standby (the server reported in_hot_standby on, which
	// PostgreSQL 14 and later do): a standby grants advisory locks of its
	// own, which exclude nobody on the primary. No lock statement was
	// sent, and the connection was closed. The error matches
	// lockkit.ErrUnsupported too. Connect locks to the primary: with
	// several hosts in a DSN, add target_session_attrs=read-write. Unlike
	// the other refusals it is not remembered: the next lock tries again,
	// on a new connection.
	ErrStandby = errors.New("advisory: the server is a hot standby")
)

// The advice a refusal gives.
const (
	sharedAdvice = "session locks need a server session of their own for as long as they are held;" +
		" through a pooler in transaction or statement mode (PgBouncer pool_mode=transaction," +
		" Supavisor's transaction port, a pooled endpoint) they exclude nothing." +
		" Use transaction-scoped locks (advisory.WithTxLock, LockTx), the lock table (package rowlock)," +
		" or connect locks to PostgreSQL directly or through a session-mode pool"
	notEnforcedAdvice = "use the lock table (package rowlock) on this server, or PostgreSQL"
	standbyAdvice     = "connect locks to the primary (with several hosts in the DSN, add target_session_attrs=read-write)"
)

// refusedError refuses session locks: what was seen, and what to do. It
// matches its kind (ErrSharedSession, ErrLockNotEnforced or ErrStandby) and
// lockkit.ErrUnsupported.
type refusedError struct {
	kind     error
	evidence string
}

func (e *refusedError) Error() string {
	advice := sharedAdvice
	switch e.kind {
	case ErrLockNotEnforced:
		advice = notEnforcedAdvice
	case ErrStandby:
		advice = standbyAdvice
	}
	return strings.TrimPrefix(e.kind.Error(), "advisory: ") + ": " + e.evidence + "; " + advice
}

func (e *refusedError) Is(target error) bool {
	return target == e.kind || target == lockkit.ErrUnsupported
}

func sharedSession(format string, args ...any) *refusedError {
	return &refusedError{kind: ErrSharedSession, evidence: fmt.Sprintf(format, args...)}
}

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
