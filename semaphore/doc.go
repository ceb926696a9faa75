// Package semaphore is a counting semaphore over any [lockkit.Locker]: at
// most N holders of a name at a time, across processes and hosts, with one
// API on every backend.
//
//	s, err := semaphore.New(locker, nil) // advisory, mysqllock, rowlock, redislock, etcdlock, filelock, memlock
//	p, err := s.Acquire(ctx, "payments", 3)  // one of 3 permits
//	defer p.Release(ctx)
//	callPaymentAPI(ctx, p.Token())          // p.Done() closes if the permit is lost
//
// # Permits are locks
//
// The N permits of the semaphore "payments" are N locks, its slots, named
// "payments#0" to "payments#N-1" ([SlotName], [Sep]), and a permit is the
// lock of one slot: [Permit] is a thin wrapper over it, and implements
// lockkit.Lock itself. So a semaphore has every property of its backend's
// locks: a holder that crashes frees its permit as its slot lock ends (at
// once where the server ends the session or the kernel the flock; when
// the lease runs out on rowlock, redislock and etcdlock), a permit reports its loss
// through Done and Err within the backend's loss bound, and
// [Permit.Token] is the slot lock's fencing token (0 where the backend
// has none): strictly increasing across the holders of one slot, not
// across slots. A lock taken under a slot's name by other code counts as
// a held permit; do not name mutexes like slots.
//
// # Acquiring and waiting
//
// [Semaphore.TryAcquire] tries each slot once, starting at a random slot,
// and takes the first that is free; when all are held it fails with a
// *lockkit.HeldError naming the semaphore and one holder. A try costs up to
// N attempts on the backend; the random start spreads callers over the
// slots.
//
// [Semaphore.Acquire] makes the same round of tries, then waits without
// polling the backend in a loop, in one of two ways ([Config.Wait]):
//
//   - [WaitOne] (the default) waits on one slot, with one Acquire of the
//     Locker: the slot with the fewest waiters of this Semaphore (ties go
//     round-robin), so that a process's waiters spread evenly over the
//     slots and a permit that frees up is handed by the backend to a
//     waiter already queued on it. The slots none of them waits on may be
//     free with nobody waiting: a waiter tries them at once when its
//     Semaphore releases a permit of such a slot, and otherwise with a
//     jittered pause that doubles from Config.MinBackoff to
//     Config.MaxBackoff (20 ms to 1 s by default), so a permit freed by
//     another process on a slot nobody here waits on is taken within
//     MaxBackoff plus the tries. While the Semaphore has a waiter on every
//     slot, Acquire skips its round of tries and queues: the tries would
//     fail, or jump the queue. It costs one backend wait per waiting
//     caller, like a mutex; a wait is cancelled (which ends the session
//     on advisory and is a KILL on mysqllock) only when a try of another
//     slot wins. Waiters are served in order per slot at best, not per
//     semaphore: a waiter behind a long holder waits until that slot
//     frees (or a try finds an unwaited slot free), while later waiters
//     on other slots go first. The spreading works within one Semaphore:
//     share one between the goroutines of a process.
//   - [WaitAll] waits on all N slots at once, with an
//     Acquire of the Locker per slot, takes the first slot granted, and
//     gives back any grant that raced with it, before Acquire returns:
//     no grant is left held. Each waiter is in the queue of every slot,
//     so where the backend serves the waiters of a lock first come, first
//     served, the oldest waiter is at the head of every queue and the
//     semaphore's waiters are served in about the order they started
//     waiting ("about": the N waits of one caller are queued by N
//     goroutines). It costs N backend waits per waiting caller, N-1 of
//     them cancelled at every grant: tolerable on memlock, filelock,
//     rowlock and redislock, whose Lockers send one waiter per lock name
//     to the server and queue the others in-process, and on etcdlock a
//     key and a watch per wait; ruinous on advisory and mysqllock, where
//     each wait holds a database session (size the pool for it) and each
//     cancelled wait ends its session (advisory) or is KILLed
//     (mysqllock). It admits fewer permits per second than WaitOne on
//     every backend lockkit measured (bench/RESULTS.md, "Semaphore"); use
//     it where the semaphore-wide order matters more than throughput.
//
// What "first come, first served where the backend can" means per backend,
// for WaitAll (and for the waiters of one slot with WaitOne):
//
//   - memlock, and redislock and etcdlock across processes: the lock goes
//     to the longest waiter, so the semaphore is about FIFO;
//   - advisory: PostgreSQL queues the waiters of a lock in order and
//     grants them in turn, so it is about FIFO;
//   - mysqllock: the server's order of GET_LOCK waiters, which lockkit
//     does not control;
//   - rowlock and filelock: FIFO among the waiters of one Locker; across
//     Lockers and processes no order, as for their mutexes.
//
// On every backend a caller's round of tries, when it makes one, takes a
// slot that is free: where a release hands the lock to a waiter (memlock, redislock,
// etcdlock, advisory) a slot with waiters is never free, elsewhere a newcomer can
// win a freed slot before a waiter of another Locker does.
//
// When ctx ends before a permit is held, Acquire returns a
// *lockkit.HeldError for the semaphore's name whose Cause is ctx.Err(),
// and nothing is held. Its Holder is one the tries were told of, nil when
// the caller queued without tries or the backend named none.
//
// # Callers that disagree on N
//
// Nothing stops two callers from using one name with different numbers of
// permits, and with plain slot names a caller of 2 and a caller of 4 would
// together admit more than 2. So where the Locker stores per-acquire
// holder data (a [lockkit.DataLocker]: memlock, rowlock, redislock,
// filelock), a permit records "n=N" as its holder's Data ([PermitsOf]; plus
// Config.Data), and a caller that sees a holder that recorded another N
// fails with a [*MismatchError] naming both numbers, which matches
// lockkit.ErrInvalid, and holds nothing. It sees the holders of the slots
// it tries (a held slot's conflict error names the holder), and, where the
// Locker is also a lockkit.Lister, after it got a slot it lists slots 0 to
// N (one more than its own) and gives the slot back if one of them
// recorded another N; that is one more round trip per acquire on those
// backends. So of two callers that hold permits at once, the later is
// refused when the earlier holds a slot in its range: a caller with more
// permits is refused whenever one with fewer holds any, and one with fewer
// whenever one with more holds a slot it lists. What is missed: a caller
// with more permits whose slot is numbered above the smaller N (slot N + 1
// or higher, which callers of the smaller N do not list), taken while
// nobody with the smaller N held a permit; callers of the smaller N are
// then admitted beside it until its next acquire, which is refused.
// On filelock the listing takes each free slot's flock for an instant, so
// a try elsewhere at that very instant may fail on that slot.
//
// Lockers without holder data (advisory, mysqllock, etcdlock) cannot tell: every
// caller of a semaphore must give it the same N there, and a disagreement
// over-admits silently. Keep N in one place (a constant, a shared config).
//
// # Listing
//
// [Semaphore.Status] lists the holders of a semaphore's N slots and says
// how many permits are free, through the Locker's lockkit.Lister; each
// holder comes with the N it recorded, where the backend keeps data.
package semaphore
