// Package advisory provides PostgreSQL advisory locks, which live in the
// database session or transaction (pg_advisory_lock and friends, [Locker],
// [WithTxLock]). It imports pgx and no other driver; MySQL and MariaDB user
// locks (GET_LOCK) are in package mysqllock.
//
// # Scopes
//
// A session-scoped lock ([Locker.Lock], [Locker.LockKey],
// [Locker.LockKeys]) is held by one server session until it is
// released or the session ends. lockkit pins one pool connection per held
// [Lock] and gives it back to the pool only after the server confirmed the
// unlock. Use it for critical sections that span several transactions, or
// none.
//
// A transaction-scoped lock ([WithTxLock], [WithTryTxLock], [LockTx],
// [TryLockTx], and on a pgxpool [WithPgxTxLock], [WithTryPgxTxLock]) is taken with pg_advisory_xact_lock and ends with the
// transaction, at COMMIT or ROLLBACK; there is no unlock and nothing can
// leak. Use it for "one editor per record" inside the transaction that does
// the edit. Note the asymmetry PostgreSQL keeps: a session-level lock taken
// inside a transaction that rolls back stays held; only the xact functions
// end with the transaction.
//
// Waiting happens in the server (pg_advisory_lock blocks until granted) and
// is bounded by the context: when it ends, lockkit sends the server a
// cancel request, which stops the wait at once, and closes the session, so
// that a grant that raced with the cancellation ends with it. Exclusive and
// shared modes are both available ([Options], [TxOptions]).
//
// # Keys
//
// PostgreSQL locks 64-bit keys in two spaces that never collide: a bigint,
// and a pair of int4 ([keyhash.Key]). A name is hashed to a bigint with
// [keyhash.NamespacedName] (the first 8 bytes of SHA-256; any language and
// PostgreSQL itself can compute it, see [keyhash.NameKeySQL]) under the
// [Config.Namespace]. For records, use [keyhash.Record] (table ×
// 1,000,000 + id, refusing ids that would collide) or [keyhash.PairRecord].
//
// Several keys are taken by one statement, in one round trip, sorted with
// [keyhash.Compare], so two callers locking overlapping sets cannot deadlock
// each other. A key listed twice is taken once. [Locker.TryLockKeys] is
// all or nothing: if any key is held elsewhere, the same statement unlocks
// the keys it got. [KeysStatements] returns these statements and their
// release, for tools that must send exactly what lockkit sends.
//
// PostgreSQL stacks a lock taken twice by one session (one unlock then does
// not free it). lockkit never does that: two [Lock] values never share a
// session, and a second acquire of a held key waits, or fails for a try,
// like any other contender.
//
// # Connections and pool sizing
//
// Every held session lock pins a connection, so N held locks on an
// N-connection pool starve everything else that needs the pool. Give locks
// a pool of their own (a second *sql.DB or pgxpool.Pool on the same DSN),
// sized for the number of locks held at once plus one, and keep deadlines
// on all work. Transaction-scoped locks use the transaction's own
// connection and pin nothing extra.
//
// [New] takes a *sql.DB that uses pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib); [NewPool] takes a
// *pgxpool.Pool. Both run the same code on the pinned session's *pgx.Conn.
// A connection whose state is in any doubt — an acquire interrupted by its
// context, an unlock that failed, returned false or was not confirmed within
// [Config.ReleaseTimeout] — is destroyed rather than pooled: closing
// the session ends every lock it held.
//
// Round trips: a try or a blocking acquire is one, a release one, whatever
// the number of keys; the first lock a [Locker] gets costs one more (the
// check in pg_locks, see below). [WithTxLock] through database/sql is three (BEGIN, the
// lock, COMMIT) plus fn's own: database/sql sends BEGIN by itself and waits
// for it, so the lock cannot be pipelined with it. [WithPgxTxLock] sends
// BEGIN and the lock as one query: two round trips (BEGIN+lock, COMMIT)
// plus fn's. [TxOptions.LockTimeout] rides along with the lock and costs no
// extra round trip.
//
// # Poolers and look-alike servers
//
// A session lock excludes only if its server session belongs to one client
// for as long as the lock is held, and the server really locks. A pooler in
// transaction or statement mode (PgBouncer pool_mode=transaction,
// Supavisor's transaction port, Neon's pooled endpoint) hands each
// transaction to whichever server session is free: a second client's lock
// statement can run on the session that holds the lock and be granted again
// (PostgreSQL stacks it), and an unlock can run on another session. A
// PostgreSQL look-alike can return true from pg_try_advisory_lock and lock
// nothing (CockroachDB does). lockkit refuses rather than hand out such a
// lock: the acquire fails with an error matching [ErrSharedSession] or
// [ErrLockNotEnforced], and [lockkit.ErrUnsupported], that says what was
// seen and what to use instead — transaction-scoped locks ([WithTxLock],
// [LockTx]), the lock table (package rowlock), or a direct or session-mode
// connection. After such a refusal the [Locker] refuses every session lock
// (the one exception is noted below). The checks, what each catches, and
// what it cannot:
//
//   - Schema-qualified calls. Every function, view and type the statements
//     name is pg_catalog's (pg_catalog.pg_advisory_lock, pg_catalog.pg_locks,
//     integer rather than int4), and the lock statements compare with
//     functions (pg_catalog.texteq), not operators: look-alike functions in
//     a schema before pg_catalog in search_path (options=-c
//     search_path=stubs,pg_catalog) are never called. It cannot help when
//     pg_catalog's own functions are the fakes; the next check is for
//     that. The queries behind holder information and List use ordinary
//     operators.
//   - The first grant of every Locker is checked in pg_locks, by a second
//     statement on the same connection (one extra round trip and one scan
//     of the server's lock table, once per Locker): the server session must
//     be the one that granted the lock, still carry the marker (below), and
//     show every key held. It catches a server whose lock functions lock
//     nothing ([ErrLockNotEnforced], naming the server's version()), a
//     pooler that resets the session after every transaction
//     (server_reset_query_always, whose DISCARD ALL also drops the lock),
//     and a connection handed to another server session between two
//     statements. A waiting lock function that returns NULL is refused the
//     same way. It cannot catch a server that lies in pg_locks too, or one
//     that changes after the first grant. Whether a grant is checked is
//     decided when the server grants it: acquires that waited behind the
//     first grant find it checked, so a new Locker under contention makes
//     the check once, not once per waiter while holding the lock. Grants
//     made while the first check is still running (other keys) are
//     checked too.
//   - The server session's pid. Every lock statement returns
//     pg_backend_pid(), and [Lock.PID] is that pid. A connection whose
//     server pid equals the pid the connection was given when it connected
//     reaches its own server session; poolers make pids up (PgBouncer,
//     Supavisor, pgcat and Odyssey all answer with cancel keys of their
//     own, in every pool mode), so their connections show another pid.
//     After one such statement a connection is known to be direct or
//     pooled. Direct connections run lean statements: the lock call and the
//     pid, and an unlock that runs only on the lock's pid. A lean statement
//     that finds another pid is refused. The one assumption: a pooler that
//     gave its clients the real pid of a server session it shares with
//     other clients would pass as direct; none is known to (its clients'
//     cancel requests would cancel each other's queries).
//   - The session marker, on pooled connections and on the first statement
//     of every connection: the lock statement reads the custom setting
//     lockkit.holder of its server session, locks only when it is empty,
//     and sets it to the lock's holder id (the client's process id and a
//     random id) when granted, all in one statement; the unlock unlocks
//     only when the marker is the lock's and the pid is the lock's, and
//     clears it. A second lockkit client on a server session that carries a
//     lockkit lock is refused before it locks anything (transaction and
//     statement pooling, or a session pool that hands a session to a new
//     client without resetting it). An unlock routed to another server
//     session unlocks nothing there (not even another client's shared lock
//     on the key), and Release reports the lock lost with [ErrSharedSession]:
//     never success. The marker cannot catch a client that is not lockkit
//     taking the key on the shared session after lockkit did, or a RESET
//     ALL or DISCARD ALL another client runs on the session (DISCARD ALL
//     also drops the lock).
//   - The first lock statement on a connection, where its server session's
//     pid turns out not to be the connection's (a pooler), also looks in
//     pg_locks for the keys its server session holds, and refuses when it
//     finds one: a client that is not lockkit holds the key on the shared
//     session (or left it on a session a pooler handed on without a
//     reset), and the grant would stack on its lock. This refusal is about
//     one key, not the pool: the Locker goes on taking other keys. It
//     costs a scan of the server's whole lock table (measured +25–80 µs on
//     this project's loaded loopback server; it grows with the number of
//     locks), so it runs once per pooled connection, not per acquire: a
//     key that another client takes on a shared session later is not seen.
//
// What no check can fix through a transaction pooler: a lock that is
// granted (before a second client shares its session) lives on a server
// session the pooler keeps, so closing lockkit's connection does not end
// it. An unlock routed elsewhere, or an acquire interrupted by its context
// after the server granted it, leaves the lock with that server session
// until the pooler closes it; the loss watcher watches the connection to
// the pooler, so a terminated server session is not noticed. Hence the
// refusal.
//
// Costs, on a direct connection: the lock statement returns one more
// column and the unlock checks the pid, in the same round trip as before
// (BenchmarkPostgresSessionCheckCost/direct: within 1% of the bare
// statements); the first statement on a connection reads the marker, and
// the first acquire of a Locker adds one round trip. Through a pooler every
// acquire also reads and sets the marker (…/marker: about 1.18× the bare
// statements), and the first statement on each connection scans pg_locks.
// On a direct connection whose pgx exec mode is the default
// (cache_statement), the one-key lock and unlock statements are prepared
// once per connection and run through pgconn, their parameters and row
// encoded and checked by the package (5–10 µs less CPU per acquire and
// release than through pgx's Query); with another exec mode they run as
// that mode says.
//
// Through PgBouncer in transaction mode, also use pgx's
// default_query_exec_mode=exec or simple_protocol (PgBouncer before 1.21
// does not keep named prepared statements across transactions).
//
// # Loss detection
//
// While a session lock is held, a watcher blocks in a read on its pinned
// connection (pgconn's WaitForNotification). When the server ends the
// session — pg_terminate_backend, a shutdown or restart, idle_session_timeout
// — it sends a FATAL error and closes the socket; when it crashes, its
// kernel closes the socket. Either way the read returns at once: Done closes
// and Err wraps [lockkit.ErrLost] with the cause, and the connection is
// destroyed. No polling is involved. The watch starts 10 ms after the
// grant, so critical sections shorter than that cost no extra goroutine
// (their unlock statement confirms the session was alive), and a session
// that ends within those 10 ms is reported when the watch starts; one
// timer per [Locker] starts the watches of all its locks granted in that
// time (a timer armed per lock would cost each lock a cross-thread
// wake-up of the Go runtime's netpoller; under a stream of grants the
// timer fires about once per 10 ms).
//
// The documented bound: Done closes within one second of the server ending
// the session (RELIABILITY.md at the repository root has the measured
// latencies). A terminated backend reports its end a moment before it
// releases its locks, so a TryAcquire elsewhere right after Done can still
// fail for that moment; a waiter blocked in Acquire gets the lock as soon
// as it is released. A network that silently drops packets sends no
// signal; the OS notices only through TCP
// keepalives or tcp_user_timeout (pgx's connect config), so set them where
// that matters. A lock can always be lost while its holder runs on: use
// fencing tokens (below, or the rowlock package) where the guarded
// resource can check a token.
//
// # Fencing tokens
//
// PostgreSQL advisory locks have no token of their own: [Lock.Token] is 0
// unless Config.Fencing is set. With it, every exclusive session lock gets
// a fencing token, the next value of a sequence, so that a package such as
// election can use advisory locks. The lock statement draws it itself —
// pg_catalog.nextval on the sequence's oid, in a CASE that runs only when
// every key was granted — so it costs no extra round trip; a try that
// finds the key held draws nothing. It does cost server time: nextval
// writes WAL once every 32 values, and that statement's commit then
// waits for the WAL flush. Measured here on a loaded machine
// (BenchmarkPostgresTryRelease, pgxpool and pgxpool-fencing: a try and a
// release, 2 round trips either way), about 80µs without and 100–240µs
// with Fencing; the spread is the machine's. Tokens strictly increase across every
// name and key of the database, not only per name (one sequence serves
// them all). The sequence is Config.FencingSequence, [DefaultFencingSequence]
// ("lockkit_fence") when empty, looked up once per Locker at its first
// fenced lock (to_regclass: through search_path unless schema-qualified)
// and created then (CREATE SEQUENCE IF NOT EXISTS, in the first schema of
// search_path) when it is missing. The lookup is one round trip per Locker;
// creating needs CREATE on the schema — where the locking role lacks it,
// create the sequence beforehand and grant it USAGE. A fenced lock that
// cannot draw (no USAGE on the sequence) fails, and its session is closed,
// which drops the lock. Shared locks get no token (0). Transaction-scoped
// locks ([WithTxLock]) get none either.
//
// A sequence never goes back on its server, across restarts and crashes:
// nextval logs values ahead (32 at a time) in WAL, and the statement that
// logs them waits for the WAL flush at its commit (with
// synchronous_commit off it does not, and a crash can repeat tokens). A
// failover can set the sequence back where the promoted replica missed the
// last WAL (asynchronous replication), so a token is the server's timeline
// shifted left by 40 bits plus the sequence's value: every promotion
// starts a higher timeline, and tokens keep increasing across it (the
// first token is therefore above 2^40). A restore of an older backup, a
// dump loaded elsewhere or pg_upgrade (both start again on timeline 1),
// and ALTER SEQUENCE … RESTART set tokens back; after one, move the
// sequence past the highest token the guarded resources have seen
// (SELECT setval('lockkit_fence', N)). Every held advisory lock is lost in
// a failover (the sessions end with the primary). A hot standby grants
// advisory locks of its own, which exclude nobody on the primary: a
// session lock on a connection whose server reports in_hot_standby on
// (PostgreSQL 14 and later) is refused with [ErrStandby]. Point the Locker
// at the primary only (target_session_attrs=read-write in a multi-host
// DSN). List reads pg_locks, which shows no
// token: Holder.Token is 0 there, so election's Leader and Observe cannot
// read an advisory leader's term (Campaign, Term and Lead work).
//
// Unlock runs detached from the caller's context's cancellation and is
// bounded by [Config.ReleaseTimeout] (when it expires the session
// is closed, which ends the lock too), so a cancelled caller still gives
// the lock back and Release returns within the bound; its result is checked, and pg_advisory_unlock
// returning false ends in an error matching [lockkit.ErrLost].
//
// # Errors
//
//   - Held elsewhere: a *[lockkit.HeldError] (matches [lockkit.ErrNotAcquired])
//     with the holder from pg_locks joined with pg_stat_activity: pid,
//     application_name, client address, user, and Since (for an idle
//     holder, such as a lockkit session between statements, when its last
//     statement ended — normally the lock call; for a holder inside a
//     transaction, the transaction's start; otherwise the session's start).
//     Other users' details need pg_read_all_stats or superuser. Holder info
//     is fetched only on a conflict, by a try or after lock_timeout; a wait
//     that its context ended reports no holder, to return at once.
//   - A wait ended by its context: matches [lockkit.ErrNotAcquired] and
//     ctx.Err().
//   - lock_timeout (SQLSTATE 55P03): a *[lockkit.HeldError] that matches
//     [ErrLockTimeout] too.
//   - Deadlock between transactions (40P01): matches [lockkit.ErrDeadlock].
//     PostgreSQL detects deadlocks between sessions; one goroutine holding
//     one lockkit session lock while waiting for another is invisible to
//     it, so take related keys in one [Locker.LockKeys] call.
//   - Out of shared memory (53200): matches [ErrOutOfLockMemory]. Advisory
//     locks share the lock table of max_locks_per_transaction ×
//     (max_connections + max_prepared_transactions) entries with all other
//     locks. While it is full even new connections can fail.
//   - The connection reached a hot standby: matches [ErrStandby] and
//     [lockkit.ErrUnsupported], before any lock statement.
//   - Bad input (an empty or invalid name, no keys, a nil database, an
//     unknown mode): matches [lockkit.ErrInvalid], before any I/O.
package advisory
