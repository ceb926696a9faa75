// Package mysqllock provides MySQL and MariaDB user locks (GET_LOCK) through
// go-sql-driver/mysql, and imports no other driver. A [Locker] implements
// [lockkit.Locker]; [Locker.LockNames] takes several names at once and
// [Locker.LockKey] takes the keyhash keys the PostgreSQL advisory locker
// takes. [New] makes one. A Locker is safe for concurrent use; it never
// closes or reconfigures the *sql.DB.
//
// Names. The server has one user-lock namespace for all its databases, so
// every name gets a namespace: by default the current database's name, as
// in "test.nightly-report"; keys render as "test#42" and "test#(1,2)". A
// name longer than 64 characters (or 192 bytes) is hashed to 64 characters:
// its first 31, "~", and 32 hex digits of its SHA-256 ([UserLockName] has
// the exact rule and the SQL that computes it). [Locker.UserLockName] tells the
// GET_LOCK name to look for in IS_USED_LOCK or to share with another tool;
// Config.NoNamespace drops the namespace for that. Names must be valid
// UTF-8 and the connection's character set utf8mb4 (the driver's default),
// so that the server sees the same characters lockkit hashed.
//
// Connections. Every lock pins one connection of the pool for as long as it
// is held: size the pool (SetMaxOpenConns) for the locks held at once plus
// the work done meanwhile, or give the locker a *sql.DB of its own. Each
// handle has its own session, so a second handle for a held name waits like
// anyone else: the server's stacking of a name taken twice by one session is
// never exposed. For the same reason, do not share the *sql.DB with code
// that leaves user locks on pooled connections. A connection whose release
// is not confirmed (RELEASE_LOCK not 1, an error, a cancelled wait) is
// destroyed, never pooled: ending the session frees every lock it held.
//
// Galera. User locks are not replicated: on a node of a Galera cluster
// (MariaDB Galera Cluster, Percona XtraDB Cluster; wsrep_on=ON) GET_LOCK
// is granted by the node that runs it, so clients of two nodes hold the
// same name at once (MariaDB 10.11.19 grants it, MDEV-31325; some earlier
// versions reject it, MDEV-30473). A Locker's first acquire reads wsrep_on on its connection
// (one statement, once per Locker) and refuses a Galera node with
// [ErrGalera], which matches lockkit.ErrUnsupported: use the lock table
// (package rowlock) there, whose rows replicate to every node.
//
// Waiting. Acquire is one server-side GET_LOCK wait whose timeout is the
// context's deadline, with microseconds; at the deadline the server answers
// 0 and the connection stays clean. A context cancelled without a deadline
// makes the driver close the connection; the server would not notice that
// until the wait ended, and would grant the lock to the dead session, so
// lockkit also KILLs the waiting session (from another connection of the
// pool) and waits until it has ended, within 5s, before Acquire returns.
// The KILL needs the session's connection id before the wait blocks:
// lockkit keeps the id of each of the pool's connections a Locker has used
// (every lock statement reads CONNECTION_ID() along), so a wait is one
// statement; on a connection no Locker has used yet, a SELECT
// CONNECTION_ID() comes first, once. TryAcquire is GET_LOCK(name, 0).
//
// Several names are taken by one statement on one connection, a GET_LOCK
// per name in the select list, in the sorted order of their GET_LOCK
// names: the server evaluates the list left to right, so a waiting
// statement holds the names before the one it waits for, and none after,
// exactly as one statement per name would, and two lockers taking
// overlapping sets cannot deadlock each other. Each name's timeout is what
// is left of the deadline when the server reaches it, computed by the
// server: the first name's timeout less the time since the statement
// began, TIMESTAMPDIFF(MICROSECOND, NOW(6), SYSDATE(6)), never below 0; so
// the statement ends at the deadline. When a name is not granted (a try
// that finds it held, a wait that reaches its deadline) the names the
// statement took are given back by one more statement, and every
// RELEASE_LOCK must answer 1, or the connection is destroyed. A
// server-detected deadlock (with another session taking names in another
// order) fails the statement with the names before it still held; the
// connection is destroyed, which frees them, and the error matches
// lockkit.ErrDeadlock. A cancelled multi-name wait is killed like a single
// one, which frees everything it held.
//
// Round trips and the DSN. With the driver's defaults (no
// interpolateParams), go-sql-driver/mysql runs a statement that has
// arguments as a prepare and an execute, two round trips (and a close that
// needs no answer). lockkit keeps its statements on one name — the try,
// the wait, the release, the probe, the holder query, the fencing bump
// and the WithData record — prepared on each connection of the pool
// instead, and executes them from then on: one round trip each, the
// values still bound. So an uncontended try and release take two round
// trips, and so does a contended acquisition and its release, once the
// connection has run each statement once (its first use prepares it: one
// more round trip). A connection keeps at most those seven statements on
// the server, shared by every Locker on the *sql.DB; they end with its
// session, whether the pool closes it (SetConnMaxLifetime,
// SetConnMaxIdleTime, a broken connection, db.Close) or lockkit destroys
// it. Mind the server's max_prepared_stmt_count (16382 by default, for
// all sessions together): seven per pool connection that has taken locks.
// To forget the connections the pool has closed, lockkit reads the
// server's session list (SELECT ID FROM information_schema.PROCESSLIST) in
// the background, each time the number of connections it knows of has
// doubled. The statements on several names (LockNames, LockKeys) are
// prepared each time: two round trips each. With interpolateParams=true
// in the DSN the driver
// sends every statement at once with its arguments inlined, one round trip
// whatever the number of names, and prepares nothing (bench/RESULTS.md has
// the measured latencies). It is safe for lockkit's statements: the
// arguments are names and numbers, and the driver still escapes every
// string value (honouring NO_BACKSLASH_ESCAPES); it refuses the setting
// with the collations of the multi-byte character sets where escaping is
// unsafe (big5, cp932, gbk, sjis), and lockkit requires utf8mb4 anyway. The
// setting belongs to the *sql.DB, so it applies to the application's own
// queries on it too; a *sql.DB of its own for the locker keeps it apart.
//
// Lost locks. While a lock is held, a probe runs on its connection every
// ProbeInterval (default 500ms): SELECT IS_USED_LOCK(name) <=> CONNECTION_ID()
// for every name. When it fails or answers false — the session was killed,
// the server restarted, the connection broke — Done closes, Err wraps
// lockkit.ErrLost with the cause, and the connection is destroyed. Done thus
// closes within ProbeInterval plus one round trip of a KILL, and within
// ProbeInterval plus ProbeTimeout (default 2s) when the connection stops
// answering (RELIABILITY.md has the measured bounds). A server that cannot
// see a connection die would keep its locks until wait_timeout (8 hours by
// default), so when a probe or a release gets no answer in time, lockkit
// also KILLs the session through another connection of the pool. Each held
// lock costs the server one cheap query per ProbeInterval. The probe and Release are serialised by a mutex, so a probe
// never sees its own lock's release.
//
// Holder info. A conflict (a failed try, a wait that timed out) returns a
// *lockkit.HeldError whose Holder has the holding session's connection id
// (PID, from IS_USED_LOCK), user (Owner) and host from
// information_schema.PROCESSLIST, and Since: when that session's current
// command or idle period began, by the server's clock. The server keeps no
// acquisition time for user locks, so for a lockkit holder, whose probe runs
// every ProbeInterval, Since is its last sign of life, not when it took the
// lock. Without the PROCESS privilege only the connection id of another
// user's session is known.
//
// Not offered: shared locks (GET_LOCK has no shared mode) and
// transaction-scoped locks: GET_LOCK ignores transactions.
//
// # Fencing tokens
//
// GET_LOCK has no token of its own: [Lock.Token] is 0 unless Config.Fencing
// is set. With it, every lock on one name gets a fencing token, strictly
// increasing per name, so that a package such as election can use GET_LOCK.
// Right after GET_LOCK grants the name, the lock's connection bumps the
// name's counter in the table Config.FencingTable ([DefaultFencingTable],
// "lockkit_fence", when empty), keyed by the GET_LOCK name (namespace
// included), with one autocommitted statement, the name bound:
//
//	INSERT INTO `lockkit_fence` (name, n, at) VALUES (?, LAST_INSERT_ID(1), <now µs>)
//	ON DUPLICATE KEY UPDATE n = LAST_INSERT_ID(n + 1), at = <now µs>
//
// LAST_INSERT_ID(expr) puts the new counter in the statement's OK packet,
// so no SELECT follows. The cost: one more round trip on every fenced
// acquire, and an InnoDB commit (a redo log flush where
// innodb_flush_log_at_trx_commit is 1): a try and a release took 0.28ms
// without and 0.77ms with Fencing here, on MariaDB on a loaded machine
// (BenchmarkMySQLTryRelease and BenchmarkMySQLTryReleaseFencing). Only the holder of the name bumps
// its row, so bumps never wait on each other. The first bump that finds
// the table missing creates it (CREATE TABLE IF NOT EXISTS, in the
// connection's database unless FencingTable names one) and retries; that
// needs the CREATE privilege — where the locking user lacks it, create the
// table beforehand and grant INSERT, UPDATE and SELECT on it. An acquire
// whose bump fails ends its session, which drops the lock, and returns the
// error. Locks on several names (LockNames, LockKeys) get no token (0).
// The counter goes back only when its row does: a restore of an older
// backup, the row deleted, a crash where innodb_flush_log_at_trx_commit is
// not 1, or a failover to a replica that missed the last bumps
// (asynchronous replication); then raise n past the highest token the
// guarded resources have seen. [Locker.List] with names reports the
// holder's token (the name's counter) and, as Since, when it was bumped,
// which election's Leader needs; right after GET_LOCK grants a name and
// before the bump, List still shows the previous holder's token.
//
// MySQL 8 and MariaDB differ. The MariaDB column is what MariaDB 10.11
// does, and TestMySQLServerBehaviour pins each row; the MySQL column is what
// MySQL 8.0/8.4 documents or its source shows, not tested here:
//
//	behaviour                        MariaDB 10.11 (tested)           MySQL 8 (untested)
//	longest name                     192 bytes (error 1059)           64 characters (error 3057)
//	empty name                       GET_LOCK returns NULL            error 3057
//	names differing only in case     two locks (its KB says one)      one lock (lower-cased)
//	negative timeout                 NULL and warning 1411            waits forever
//	fractional timeout               honoured to the microsecond      may round to whole seconds
//	user-lock deadlock               error 1213; the victim is the    error 3058
//	                                 session that closed the cycle    (ER_USER_LOCK_DEADLOCK)
//	KILL QUERY on a waiter           GET_LOCK returns NULL            GET_LOCK returns NULL
//	RELEASE_LOCK by another session  0; the lock stays held           0; the lock stays held
//	waiter whose client went away    keeps waiting, is granted the    aborts the wait (the MDL
//	                                 lock, frees it when it notices   checks the connection)
//	information_schema.PROCESSLIST   present                          present, deprecated
//
// lockkit makes these differences invisible where it can: it caps names at
// 64 characters and 192 bytes on both, refuses empty names before any I/O,
// never sends a negative timeout (a wait without a deadline asks for one
// year and ends by its context), copes with a server that rounds a timeout
// (it never spins, and a wait then ends at most about a second after its
// deadline), maps both deadlock errors to lockkit.ErrDeadlock, and kills an
// abandoned waiter. Case is the server's: use one spelling for a name.
package mysqllock
