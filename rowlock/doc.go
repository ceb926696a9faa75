// Package rowlock implements lockkit's lock table: leases with fencing
// tokens and holder information, in one row per lock name, on PostgreSQL and
// MySQL/MariaDB. Create the table with package migrations.
//
// # When to choose the lock table over advisory locks
//
// An advisory lock (package advisory) lives exactly as long as a database
// session or transaction. It is the cheapest exclusion there is and frees
// itself when its holder's connection dies, but it pins a connection for as
// long as it is held, cannot be shown to a person ("edited by alice since
// 10:02"), hands out no fencing token, and cannot outlive the process.
//
// Choose the lock table when a lock must
//
//   - outlive a connection or a request: an edit lock a user holds across
//     several HTTP requests ([Locker.Resume]);
//   - be taken over after a crash: a job lease another host may take once
//     it expires;
//   - name its holder: [lockkit.HeldError] carries owner, data, host, pid,
//     since, expiry and token, and [Locker.List] shows every live lease;
//   - fence a resource: every new holder of a name gets a strictly larger
//     token ([Lock.Token]) to pass along with its writes;
//   - hold many names without pinning a connection for each.
//
// The price: a lease is only as good as its renewals. A holder that stalls
// past its TTL loses the lock to the next acquirer and learns it at its
// next renewal, so writes guarded by a lease should carry its fencing token.
//
// # Leases
//
// Acquire and TryAcquire take a lease of Config.TTL in one atomic
// statement that inserts the row or takes over an expired lease and draws
// a new fencing token: INSERT ... ON CONFLICT ... DO UPDATE ... WHERE
// expired RETURNING on PostgreSQL, INSERT ... ON DUPLICATE KEY UPDATE with
// a conditional takeover on MySQL. Leases are measured on the database
// clock (clock_timestamp(), UTC_TIMESTAMP(6)) with microsecond precision,
// never on the client's. Renew and Release match name, owner and token and
// check the rows affected: a lease that expired or was taken over reports
// lost (lockkit.ErrLost), never success. A lock from Acquire renews itself
// every Config.RenewInterval (TTL/3 by default) on a context of its own;
// its Done channel closes when a renewal finds the lease gone — so within
// one RenewInterval plus a round trip of a takeover or a
// [Locker.ForceRelease] — or when the lease runs out locally before a
// renewal was confirmed.
//
// Release keeps the row and ends the lease (its expiry becomes now; on
// MySQL its acquisition time, see [Locker.CleanupExpired]), so a
// name's fencing token only grows. [Locker.CleanupExpired] deletes rows
// whose lease ended long ago; see it for what keeps tokens increasing then.
//
// On PostgreSQL a token is the server's timeline shifted left by 40 bits
// plus the next value of a sequence (the column default of the bundled
// migrations), so tokens keep increasing across a failover to a standby,
// even an asynchronous one that lost the last leases and sequence values:
// every promotion starts a higher timeline. With a synchronous standby a
// lease survives the failover, and a Lock renews and releases it on the
// promoted standby once its *sql.DB reaches it (a DSN naming every host
// with target_session_attrs=read-write does that). See RELIABILITY.md,
// "Replicated servers and failover", for what it costs and its limits.
//
// # Waiting
//
// The waiters of one name in one Locker form a FIFO queue, and only its
// head attempts and waits on the database; the others wait in-process
// for their turn, which passes to the next waiter when the head
// acquires, fails or its context ends. So a release costs one attempt
// per Locker, not one per waiter, and a Locker's waiters get a name in
// the order they asked for it.
//
// On PostgreSQL through pgx's stdlib driver, on a connection that reaches
// the server directly (checked once per Locker: the session's pid is the
// one the connection was given at connect), the heads of different
// Lockers and processes also queue for a name, in the server, in a
// waiting room: a session advisory lock on two int4 keys derived from the
// table and the name (pg_advisory_lock(k1, k2), a key space apart from
// the one-key form). A head's attempt is one statement, on a pool
// connection it keeps while it waits: take the room, waiting behind the
// heads that asked before, then attempt. Acquired without waiting: the
// statement gives the room back and the connection returns to the pool,
// so an uncontended Lock is still one round trip. Otherwise the head
// holds the room and alone attempts on releases and at the holder's
// expiry; the others wait in the server. A head that waited keeps the
// room, and its connection, for at most 50ms after it acquires; a Release
// within that time gives the room back in the release statement, after
// the lease has ended, and the next head's statement, which the server
// answers then, takes the lease: a handoff in the server, two round
// trips per contended acquisition (the attempt and the release) and the
// heads served in the order they came. After 50ms the room is given back
// (one more round trip) and the next head waits for the release as above.
// The room only orders the attempts: the row decides who holds the lease.
//
// Each wait for the room is bounded by the time left to the lease it
// last saw, plus 50ms (one second when it saw none): a room that a
// stopped process keeps, or that another lock on the same two keys takes,
// delays the heads by at most that, after which they attempt without it.
// A head whose room session is killed waits on without the room. A
// cancelled wait is cancelled in the server (a cancel request), and the
// room and its connection are given back in the background.
//
// A head waits without a room when its pool (a MaxOpenConns set) could
// not spare the room's connection besides the listener's and one more
// for other statements, such as the release it waits for.
//
// On MySQL and MariaDB the heads of different Lockers and processes queue
// in a waiting room too, for names this Locker saw contended within the
// last 5s (an attempt that found the lease held, or a room found taken): a
// user lock named "lockkit.rowlock.room:" and 40 hex digits of a digest of
// the table and the name (61 characters, within MySQL's 64). A head takes
// the room with a GET_LOCK statement of its own on a pool connection it
// keeps while it waits, then attempts through the pool as any attempt
// does; a head on a name not contended lately attempts first, as before,
// so an uncontended Lock is still one round trip. A head keeps the room
// for at most 1s after it acquires (a head that got the room before the
// release would find the lease held and poll), and a Release within that
// time gives the room back inside its UPDATE (RELEASE_LOCK in an
// assignment, so only when the lease was ended), which the next head's
// GET_LOCK answers: three round trips per contended acquisition (the room,
// the attempt, the release) and the heads served in the order they came.
// The room is a statement of its own because a statement that waited for
// the room and then attempted would judge leases by UTC_TIMESTAMP(6) from
// before its wait, and hold the table's metadata lock while it waited.
// Each wait for the room is bounded as on PostgreSQL (GET_LOCK's timeout);
// a cancelled wait is ended in the server by KILL QUERY from another pool
// connection, so the pool needs two connections to spare here too. A room
// whose session is killed is free at once for the next head; its holder's
// release then runs through the pool. There is no room on a Galera node
// (wsrep_on, asked once per Locker), where GET_LOCK is granted by one node
// only: heads poll there.
//
// On PostgreSQL with pgx's stdlib driver, Release and ForceRelease send
// pg_notify in the same statement, and the head that holds the room (or,
// without a room, every head) sleeps until a notification for its name
// arrives or the holder's lease runs out. Each Locker keeps one LISTEN
// connection from the pool open while anyone waits (and two seconds
// after). On MySQL (the head that holds the room, or without one every
// head), on PostgreSQL through other drivers, and through a
// pooler or proxy (a connection whose server session's pid is not the one
// it was given at connect, as with PgBouncer, where LISTEN and session
// locks do not survive transaction pooling; there is no room there), the
// heads poll: exponential backoff from 2ms with jitter (each pause
// uniform in [d/2, d]) up to Config.MaxPoll (100ms by default), and never
// past the holder's expiry. A polling head notices a release elsewhere
// within MaxPoll plus one round trip; a release through the same Locker
// wakes its head at once. Without a room there is no order across Lockers
// and processes: each Locker's head competes with the others. The context
// bounds every wait, in the queue too.
//
// On PostgreSQL a failed attempt is one round trip: the acquire statement
// also returns the holder's row. On MySQL it is two (the acquire
// statement, then a read of the holder).
//
// # Transactions
//
// [Locker.LockTx] and [Locker.TryLockTx] lock a name inside the caller's
// *sql.Tx with SELECT ... FOR UPDATE (NOWAIT for the try), released at
// commit or rollback: a transaction-scoped lock on both dialects.
//
// # MySQL specifics
//
// The acquire statement is INSERT ... ON DUPLICATE KEY UPDATE, where every
// column is assigned IF(expired, new, old) and expires_at last (MySQL
// assigns left to right, and later assignments see earlier ones). The new
// token is reported through LAST_INSERT_ID(expr), so one round trip decides
// the outcome, whatever the clientFoundRows setting. The seed pattern
// INSERT IGNORE was measured and rejected: it turns every error into a
// warning (a NULL, a truncation), cannot take over an expired lease by
// itself, and needs a second statement (SHOW WARNINGS, or a read back by
// token) to be correct — see BenchmarkMySQLAcquireStrategies. Names,
// owners, hosts and data are checked against the column sizes before any
// I/O, so nothing is truncated even without a strict sql_mode (which the
// servers' defaults have, and which we recommend keeping). Statements are
// prepared once per Locker, so each call is one round trip.
//
// An acquire statement that the server rolls back with ER_LOCK_DEADLOCK
// (1213) took nothing: InnoDB chose it as a deadlock victim, or, on a
// Galera cluster, a conflicting write of another node was certified first.
// The attempt then reads the holder as for a live lease: TryLock reports
// not acquired, Lock waits on. So the lock table works across the nodes of
// a Galera cluster, with Lockers on different nodes (see RELIABILITY.md,
// "Replicated servers and failover"). Keep the TTL well above the time the
// cluster takes to evict a dead node (evs.suspect_timeout, 5 s by default),
// during which the other nodes' commits wait, and run the migrations from
// one place: they serialise concurrent migrators with GET_LOCK, which is
// not replicated.
//
// # Connections
//
// A lease holds no connection: statements borrow one from the pool for one
// round trip. The PostgreSQL listener holds one connection while anyone
// waits, and each name's waiting head one more (its waiting room, also on
// MySQL), which a lease that waited (on MySQL, every lease taken in the
// room) keeps for at most 50ms (on MySQL 1s) after it is acquired. On
// MySQL the room's statements are prepared once per connection, and the
// connection's id is read once (SELECT CONNECTION_ID()), as package
// mysqllock does. A Locker never closes or reconfigures the *sql.DB.
//
// An acquire whose context ends while its statement runs returns at once;
// the statement runs on, and a lease it takes is given back as soon as it
// answers ([Locker.Close] waits for that). An acquire whose connection
// fails after the statement was sent may still have taken the lease on the
// server without this process learning its token. Nobody holds such a
// lease; it keeps the name from others until its TTL runs out. Keep TTLs
// as short as the renewal interval allows where that matters.
package rowlock
