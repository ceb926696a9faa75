// Package election is leader election over any [lockkit.Locker]: one
// leader per election name at a time, a fencing term per leadership, the
// leader's value for others to read, and a view of who leads.
//
//	e, err := election.New(locker, nil) // rowlock, redislock with Fencing, memlock, ...
//	err = election.Lead(ctx, e, "scheduler", "10.0.0.7:8080", func(ctx context.Context, term int64) error {
//		return runScheduler(ctx, term) // ctx is cancelled when leadership is lost
//	})
//
// An election is a lock: the leader of "scheduler" is whoever holds the lock
// named "scheduler", and a candidate campaigns by waiting for it. So every
// backend gives the same API, with its own bounds: a leader that dies is
// succeeded as soon as its lock is free again (a killed database session at
// once, a lease when it runs out), and a leader learns that it was deposed
// as soon as its lock reports the loss (its Done channel), within the
// backend's documented loss bound.
//
// # Terms, and what they guarantee
//
// A leadership's term ([Leadership.Term]) is its lock's fencing token
// ([lockkit.Lock.Token]). Every leadership of a name gets a term strictly
// greater than the terms of every earlier leadership of that name on the
// same lock space (the same table, key prefix, lock directory or in-memory
// Locker). A Locker whose locks carry no token (Token is 0: advisory,
// mysqllock, filelock and redislock without Config.Fencing) cannot give
// terms, and
// [Elector.Campaign] refuses it with an error matching
// lockkit.ErrUnsupported. Terms are as strong as the backend's tokens: on
// rowlock they come from a sequence (PostgreSQL) or from the database clock
// when a row is made anew (MySQL, after CleanupExpired); on redislock from a
// counter key with the server's clock as a floor, so that they keep
// increasing if the counter is lost; on filelock from a counter in the lock
// file with the system clock as a floor; on advisory from a sequence
// (strictly increasing across all names; pg_locks shows no token, so a
// candidate records its term and value in a holders table that List
// reads); on mysqllock from a counter row per name; on etcdlock from the
// revision that created the leader's key; see those packages.
//
// What a term does not guarantee is that only one process acts as leader at
// any instant. No lock can: a leader paused past its lease (a GC pause, a
// stopped VM), or cut off from the database, runs on believing it leads
// until its lock reports the loss, and by then a successor with a greater
// term may have been working for a while. Kubernetes' client-go leader
// election has this split brain and says so. The fix is fencing at the
// resource: pass the term with every write the leader makes, and have the
// resource refuse a term lower than the highest it has accepted (a
// conditional UPDATE ... WHERE term <= $1, a compare-and-set on a version
// key, a header the downstream service checks). Then once the successor has
// written, nothing the deposed leader sends is accepted, however late it
// arrives; writes of the deposed leader that the resource accepted before
// the successor's first write are ordered before it. The package's tests
// show this with a deposed leader that ignores its cancelled context.
//
// # The leader's value
//
// A candidate campaigns with a value, such as its address, for others to
// read through [Elector.Leader] and [Elector.Observe]. The value travels as
// the lock holder's Data ([lockkit.Holder]), so it needs a Locker that
// stores holder data per acquire, a [lockkit.DataLocker] (memlock, rowlock,
// redislock, filelock, advisory, mysqllock); with another Locker
// (etcdlock), campaign with an empty value. On a DataLocker, Campaign
// always acquires through a WithData view, also with an empty value. Reading the
// leader needs a [lockkit.Lister]. A Locker without one still elects; only
// Leader and Observe report lockkit.ErrUnsupported.
//
// # Observing
//
// [Elector.Observe] yields the leader, then each change: a new term, or a
// vacancy. On a Locker that pushes changes, a [lockkit.Watcher] (filelock
// by inotify, etcdlock by a watch, redislock by pub/sub, rowlock on
// PostgreSQL and advisory by LISTEN/NOTIFY), it subscribes and reads the
// leader again whenever it is woken, so a change is seen about a round
// trip after it happened. The push only wakes it: what it yields is read
// through the Locker's lockkit.Lister, so a lost or spurious wake-up costs
// latency or a read, never a wrong answer. The Elector announces what
// the backend would not push by itself ([lockkit.Watcher.Announce]): a
// leader taking office, resigning, and a loss its lock reported. It also
// reads every Config.PollInterval (one second by default), the safety net
// for changes nobody announced, such as a crashed leader's lease running
// out with no successor; where nothing pushes (mysqllock, rowlock on
// MySQL, memlock) that poll is the bound on how late a change is seen. A
// leadership that begins and ends between two reads is not seen at all.
// Terms are yielded in increasing order.
package election
