// Package lockkit defines the contracts every lockkit backend meets: a
// [Locker] that acquires named locks, the [Lock] handle it returns, the errors
// a caller can branch on, the optional [Lister], and the [Do] and [TryDo]
// helpers that run a function under a lock.
//
// The backends live in their own packages, each depending on this package and
// on its own driver only:
//
//   - filelock: flock(2) on a file in a lock directory; no server
//   - advisory: PostgreSQL advisory locks, session and transaction scope
//   - mysqllock: MySQL/MariaDB user locks (GET_LOCK)
//   - rowlock: a lock table with leases, fencing tokens and holder info
//   - redislock: Redis SET NX PX with owner-checked release
//   - etcdlock: keys on an etcd cluster under a lease, replicated by raft
//   - memlock: in memory, for unit tests of code written against Locker
//
// # Choosing a backend
//
// Use a file lock for processes on one host; an advisory lock when the lock
// should live exactly as long as a database session or transaction; the lock
// table when it must outlive a connection (an edit lock held across HTTP
// requests, a job lease another host may take over) or when the holder must
// be shown to people; Redis for fast leases where Redis already runs; etcd
// when a lock must survive the loss of a server.
//
// # One shape for every backend
//
// Every backend package has the same shape:
//
//   - New makes a Locker from the backend's client and a *Config, where a
//     nil *Config means the defaults (memlock.New takes neither;
//     memlock.NewWithConfig takes a *Config). Bad configuration is an error
//     matching [ErrInvalid], returned before any I/O.
//   - Every Config has a Telemetry field, a *[Telemetry]: where the
//     Locker's metrics, spans and logs go. Every backend records the same
//     instruments, with the same attributes.
//   - Locker.Acquire and Locker.TryAcquire implement [Locker] and return a
//     [Lock].
//   - Locker.Lock and Locker.TryLock are the same acquires returning the
//     backend's own *Lock, with its extras (a lease's expiry and renewal,
//     a mode, keys). Where the backend has per-call settings (a shared mode,
//     a lease's owner and TTL) they take a trailing *Options, nil for the
//     defaults. Multi-key backends add LockKeys and TryLockKeys.
//   - A Lock's methods are those of [Lock] plus the backend's extras, and
//     nothing else: no state of a handle can be changed from outside.
//   - Lockers that can see every holder on their server implement [Lister].
//
// Errors have one shape everywhere: a lock held elsewhere, and a wait that
// its context ended, are a [*HeldError] matching [ErrNotAcquired] (and, for
// the context, ctx.Err()); a lock that was held and no longer is reports a
// [*LostError] matching [ErrLost]. The locktest package checks all of it.
//
// # The rules every backend keeps
//
// A [Lock] reports "held" only while the server agrees. Any doubt — an error
// during acquire or release, a dropped connection, a lease that could not be
// renewed — ends in the lock being reported lost (its Done channel closes and
// Err wraps [ErrLost]) or in the backend's connection being destroyed, never
// in a lock left behind silently.
//
// A lock can always be lost while its holder runs on: a paused process, a
// cut network, an expired lease. Where the guarded resource can check it,
// pass the lock's fencing token ([Lock.Token]) along with every write and
// have the resource reject tokens older than the newest it has seen.
package lockkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Locker acquires named locks on one backend.
//
// A Locker is safe for concurrent use. Every handle it returns is a lock of
// its own: two Acquire calls for the same name exclude each other even inside
// one process and one Locker, like two goroutines on a [sync.Mutex]. A lock
// is never re-entrant; a goroutine that acquires a name it already holds
// waits for itself until its context ends.
type Locker interface {
	// Acquire waits until the named lock is held, or ctx ends. When ctx
	// ends first the error matches both ErrNotAcquired and ctx.Err()
	// with errors.Is, and nothing is left held.
	Acquire(ctx context.Context, name string) (Lock, error)

	// TryAcquire makes one attempt and returns at once. When the lock is
	// held elsewhere the error is a *HeldError, which matches
	// ErrNotAcquired.
	TryAcquire(ctx context.Context, name string) (Lock, error)
}

// Lock is one held lock. Its methods are safe for concurrent use.
type Lock interface {
	// Name is the name the lock was acquired under.
	Name() string

	// Token is the lock's fencing token: strictly increasing per name
	// across successive holders. It is 0 where the backend has none.
	Token() int64

	// Done is closed when the lock is no longer held: released, or lost.
	Done() <-chan struct{}

	// Err is nil while the lock is held. Afterwards it is ErrReleased, or
	// an error wrapping ErrLost that says why the lock was lost.
	Err() error

	// Release gives the lock up. It returns nil when the backend confirmed
	// the release. A lock already released returns an error matching
	// ErrReleased; a lock that was lost returns its loss error (matching
	// ErrLost). In every case the lock's resources (a pinned connection, a
	// file descriptor, a renewal goroutine) are freed. Release is not bound
	// to ctx alone: a cancelled ctx still frees local resources, and a
	// release the backend could not confirm ends with the lock reported
	// lost and its connection destroyed.
	Release(ctx context.Context) error
}

// Lister is implemented by Lockers that can report which locks are held on
// their backend, by any process. lockkit status is built on it, so that the
// backend alone knows how its locks are stored.
type Lister interface {
	// List reports locks. Without names it returns the locks held now,
	// ordered by name. With names it returns an entry for each name, in
	// the order given, with Held false for a name that is free; a name
	// held in shared mode by several holders has an entry per holder.
	List(ctx context.Context, names ...string) ([]LockInfo, error)
}

// LockInfo describes one lock as a [Lister] found it.
type LockInfo struct {
	// Name is the lock's name. Where the backend cannot recover the name
	// (an advisory key taken by another program) it is a description,
	// such as "key 42" or "goose: public".
	Name string
	// Held reports whether the lock is held.
	Held bool
	// Mode is the mode the holder took the lock in.
	Mode Mode
	// Key is where the backend keeps the lock, where that differs from
	// the name: the advisory key, the Redis key, the lock file's path.
	Key string
	// Tool names the program the lock belongs to, where the backend
	// recognised another tool's lock, such as "golang-migrate".
	Tool string
	// Holder is who holds the lock, as far as the backend knows; zero when
	// the lock is free.
	Holder Holder
}

// Sentinel errors. Backends return typed errors carrying detail that match
// these with errors.Is.
var (
	// ErrNotAcquired means the lock is held elsewhere: a try failed, or a
	// wait ended by its context.
	ErrNotAcquired = errors.New("lockkit: not acquired")

	// ErrLost means a lock that was held is held no longer: its session
	// died, its lease expired or was taken over, or its release could not
	// be confirmed.
	ErrLost = errors.New("lockkit: lock lost")

	// ErrReleased is what Err reports after a successful Release, and what
	// a second Release returns.
	ErrReleased = errors.New("lockkit: lock released")

	// ErrInvalid wraps every bad-input error (an empty name, a
	// non-positive TTL, a key that would collide). It is returned before
	// any I/O.
	ErrInvalid = errors.New("lockkit: invalid argument")

	// ErrUnsupported means the backend cannot do what was asked of it, and
	// says why.
	ErrUnsupported = errors.New("lockkit: not supported by this backend")

	// ErrDeadlock means the server chose this acquire as a deadlock victim.
	// Acquire several locks in one call (which sorts them) to avoid it.
	ErrDeadlock = errors.New("lockkit: deadlock detected")
)

// Holder describes who holds a lock, as far as the backend knows. Fields the
// backend does not know are zero.
type Holder struct {
	Owner   string    // the owner string the holder gave, or the database user
	Host    string    // host name or client address
	PID     int       // process id, or the database session id
	App     string    // application name, where the backend records it
	Since   time.Time // when the lock was taken
	Expires time.Time // when a lease ends unless renewed; zero without a lease
	Token   int64     // the holder's fencing token; 0 without one
	Data    string    // free-form holder metadata, such as a user name
}

// String renders the holder for a log line or a user interface, for
// example "alice on web-3 (pid 4121) since 10:02:11".
func (h *Holder) String() string {
	if h == nil {
		return "unknown holder"
	}
	var b strings.Builder
	switch {
	case h.Owner != "":
		b.WriteString(h.Owner)
	case h.App != "":
		b.WriteString(h.App)
	default:
		b.WriteString("unknown holder")
	}
	if h.Data != "" {
		fmt.Fprintf(&b, " [%s]", h.Data)
	}
	if h.Host != "" {
		fmt.Fprintf(&b, " on %s", h.Host)
	}
	if h.PID != 0 {
		fmt.Fprintf(&b, " (pid %d)", h.PID)
	}
	if !h.Since.IsZero() {
		fmt.Fprintf(&b, " since %s", h.Since.Format(time.DateTime))
	}
	if !h.Expires.IsZero() {
		fmt.Fprintf(&b, ", lease until %s", h.Expires.Format("15:04:05.000"))
	}
	return b.String()
}

// HeldError reports that a lock was not acquired: it is held elsewhere, or
// the acquire's context ended first. It matches ErrNotAcquired, and also the
// context error when the context ended. Every backend returns this type for
// both, so a caller can rely on errors.As as well as errors.Is.
type HeldError struct {
	Name   string  // the lock's name
	Holder *Holder // who holds it; nil when the backend could not tell
	Cause  error   // ctx.Err() when a wait ended by its context; else nil
}

// Error says which lock was not acquired, who holds it where known, and
// why the wait ended.
func (e *HeldError) Error() string {
	msg := fmt.Sprintf("lockkit: not acquired: %q is held", e.Name)
	if e.Holder != nil {
		msg += " by " + e.Holder.String()
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Is reports whether target is ErrNotAcquired.
func (e *HeldError) Is(target error) bool { return target == ErrNotAcquired }

// Unwrap returns the cause, such as context.DeadlineExceeded.
func (e *HeldError) Unwrap() error { return e.Cause }

// LostError reports that a held lock was lost, and why. It matches ErrLost.
type LostError struct {
	Name  string // the lock's name
	Cause error  // why: a closed connection, a lease taken over, ...
}

// Error says which lock was lost and why.
func (e *LostError) Error() string {
	if e.Cause == nil {
		return fmt.Sprintf("lockkit: lock lost: %q", e.Name)
	}
	return fmt.Sprintf("lockkit: lock lost: %q: %v", e.Name, e.Cause)
}

// Is reports whether target is ErrLost.
func (e *LostError) Is(target error) bool { return target == ErrLost }

// Unwrap returns the cause of the loss.
func (e *LostError) Unwrap() error { return e.Cause }

// ReleaseTimeout bounds the release that [Do] and [TryDo] run after fn
// returns, on a context that is no longer cancelled with the caller's.
const ReleaseTimeout = 10 * time.Second

// Do acquires the named lock, waiting until ctx ends, runs fn and releases
// the lock.
//
// The context passed to fn is cancelled, with the loss error as its cause,
// when the lock is lost while fn runs; fn should stop when it is. If the lock
// was lost before fn returned, Do's error matches ErrLost even when fn
// succeeded, because the work may not have been exclusive. The release runs
// on a context detached from ctx's cancellation and bounded by
// [ReleaseTimeout], so a cancelled caller still gives the lock back.
func Do(ctx context.Context, l Locker, name string, fn func(ctx context.Context) error) error {
	return do(ctx, l.Acquire, name, fn)
}

// TryDo is [Do] with a single attempt: when the lock is held elsewhere it
// returns an error matching ErrNotAcquired without running fn.
func TryDo(ctx context.Context, l Locker, name string, fn func(ctx context.Context) error) error {
	return do(ctx, l.TryAcquire, name, fn)
}

func do(ctx context.Context, acquire func(context.Context, string) (Lock, error), name string, fn func(ctx context.Context) error) (err error) {
	lock, err := acquire(ctx, name)
	if err != nil {
		return err
	}
	fnCtx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(doneContext{lock}, func() { cancel(lock.Err()) })
	defer func() {
		stop()
		cancel(nil)
		relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), ReleaseTimeout)
		defer relCancel()
		relErr := lock.Release(relCtx) // on loss this is the loss error
		err = errors.Join(err, relErr)
	}()
	return fn(fnCtx)
}

// doneContext is a context that is done when the lock is.
type doneContext struct{ l Lock }

func (c doneContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c doneContext) Done() <-chan struct{}       { return c.l.Done() }
func (c doneContext) Err() error {
	select {
	case <-c.l.Done():
		return context.Canceled
	default:
		return nil
	}
}
func (c doneContext) Value(any) any { return nil }
