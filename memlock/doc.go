// Package memlock is an in-memory [lockkit.Locker] for testing code written
// against lockkit.Locker without a lock server: no PostgreSQL, Redis or lock
// directory, no goroutines, nothing to clean up.
//
//	l := memlock.New()
//	err := myapp.RunNightly(ctx, l) // code that takes lockkit.Locker
//
// It is for tests, not production: its locks exclude only the goroutines of
// one process that share one [Locker]. Two Lockers from two calls to [New]
// are separate lock spaces, so to stand in for several processes, give them
// all the same Locker. Within it, two handles on one name exclude each
// other, even from the same goroutine: a lock is not re-entrant.
//
// # Behaviour
//
// memlock keeps the lockkit.Locker contract (it passes the locktest
// conformance suite), with the behaviour of a fair backend that has fencing
// tokens and holder information:
//
//   - Waiting is first come, first served per name: a release hands the
//     lock straight to the longest waiter, and a newcomer queues behind
//     the waiters. Waiters block on channels; nothing polls.
//   - When the context of an acquire ends while it waits, or had ended
//     before the call, the error is a *lockkit.HeldError whose Cause is
//     ctx.Err(), so it matches both lockkit.ErrNotAcquired and the context
//     error, and the call has left the queue; its Holder is the current
//     holder, or nil when the name was free. A try on a held name returns
//     a *lockkit.HeldError naming the holder.
//   - Every lock has a fencing token, non-zero and strictly increasing per
//     name across holders (one counter per Locker).
//   - The holder of a lock is described as lockkit.Holder{Owner: "memlock",
//     Since: when it was taken, Token: its token, Data: the data of
//     [Locker.WithData], if any}.
//   - Names are checked by the rules of keyhash.ValidateName (not empty, at
//     most 1024 bytes, valid UTF-8, no NUL byte); a bad name is refused
//     with an error matching lockkit.ErrInvalid before anything else.
//
// # Simulating a loss
//
// A real lock can be lost while its holder runs: a killed database session,
// an expired lease taken over by another process. [Locker.Lose] makes that
// happen on demand, so a test can check the code's loss handling: the
// holder's Done channel closes, its Err is a *lockkit.LostError wrapping
// lockkit.ErrLost and the given cause, and the name passes at once to the
// next waiter, as when another process takes over a lease. Under
// [lockkit.Do], the function's context is cancelled with the loss error as
// its cause, and Do returns an error matching lockkit.ErrLost. The lost
// holder's Release returns its loss error and leaves the new holder alone.
//
// [Locker.Held] and [Locker.List] (memlock's [lockkit.Lister]) let a test
// assert which names are held, for example that the code under test
// released every lock it took.
package memlock
