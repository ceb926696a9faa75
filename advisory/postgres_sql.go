package advisory

import (
	"slices"
	"strconv"
	"strings"

	"github.com/lockkit/lockkit/keyhash"
)

// All PostgreSQL SQL of the package lives in this file. Statements are built
// from the constant fragments below only; every key is a bound parameter.
//
// Every function, view and type the statements name is schema-qualified
// (pg_catalog.pg_advisory_lock, pg_catalog.pg_locks, integer rather than
// int4), and the lock statements' own logic compares with functions
// (pg_catalog.texteq) rather than operators: a schema placed before
// pg_catalog in search_path cannot put look-alike functions in the place of
// the server's lock functions.

// pgFunc is one of PostgreSQL's advisory lock functions.
type pgFunc int

const (
	fnLock    pgFunc = iota // pg_advisory_lock: wait, session scope
	fnTry                   // pg_try_advisory_lock
	fnUnlock                // pg_advisory_unlock
	fnXact                  // pg_advisory_xact_lock: wait, transaction scope
	fnTryXact               // pg_try_advisory_xact_lock
)

// name returns the function's name for mode m.
func (f pgFunc) name(m Mode) string {
	var s string
	switch f {
	case fnLock:
		s = "pg_catalog.pg_advisory_lock"
	case fnTry:
		s = "pg_catalog.pg_try_advisory_lock"
	case fnUnlock:
		s = "pg_catalog.pg_advisory_unlock"
	case fnXact:
		s = "pg_catalog.pg_advisory_xact_lock"
	case fnTryXact:
		s = "pg_catalog.pg_try_advisory_xact_lock"
	}
	if m == Shared {
		s += "_shared"
	}
	return s
}

// returnsBool reports whether the function returns a boolean (the try and
// unlock functions) rather than void.
func (f pgFunc) returnsBool() bool { return f == fnTry || f == fnUnlock || f == fnTryXact }

// stmt is one statement with its arguments.
type stmt struct {
	sql  string
	args []any
}

// single builds the statement calling f on one key:
//
//	SELECT pg_catalog.pg_try_advisory_lock($1::bigint)
//	SELECT pg_catalog.pg_try_advisory_lock($1::integer, $2::integer)
func single(f pgFunc, m Mode, k keyhash.Key) stmt {
	if k.IsPair() {
		a, b := k.Pair()
		return stmt{singleSQL[f][m][1], []any{a, b}}
	}
	return stmt{singleSQL[f][m][0], []any{k.Int64()}}
}

// singleSQL holds the single-key statements, indexed by function, mode and
// key kind (0 bigint, 1 pair), built once.
var singleSQL = func() (t [fnTryXact + 1][Shared + 1][2]string) {
	for f := range t {
		for m := range t[f] {
			name := pgFunc(f).name(Mode(m))
			t[f][m][0] = "SELECT " + name + "($1::bigint)"
			t[f][m][1] = "SELECT " + name + "($1::integer, $2::integer)"
		}
	}
	return t
}()

// splitKeys returns the bigint keys and the two halves of the pair keys of
// keys, which are sorted (bigint keys first, see keyhash.Compare).
func splitKeys(keys []keyhash.Key) (ints []int64, as, bs []int32) {
	ints, as, bs = []int64{}, []int32{}, []int32{}
	for _, k := range keys {
		if k.IsPair() {
			a, b := k.Pair()
			as = append(as, a)
			bs = append(bs, b)
		} else {
			ints = append(ints, k.Int64())
		}
	}
	return ints, as, bs
}

// multi builds one statement that calls f on every key, in the order of
// keys (sorted by keyhash.Compare: every bigint key, then every pair), one
// result row per key:
//
//	SELECT false AS pair, k, 0 AS a, 0 AS b, f(k) AS r FROM pg_catalog.unnest($1::bigint[]) AS k
//	UNION ALL
//	SELECT true, 0, a, b, f(a, b) FROM ROWS FROM (pg_catalog.unnest($2::integer[]), pg_catalog.unnest($3::integer[])) AS u(a, b)
//
// A function scan yields the array's elements in order and an Append runs
// its branches in order, so the locks are requested in sorted order; there
// is no filter, LIMIT or ORDER BY, so each lock function runs exactly once
// per key.
func multi(f pgFunc, m Mode, keys []keyhash.Key) stmt {
	ints, as, bs := splitKeys(keys)
	r := f.name(m) + "(k)"
	rp := f.name(m) + "(a, b)"
	if !f.returnsBool() {
		// The void result of the waiting functions, as a boolean (a void
		// value is not NULL: true once granted).
		r = "(" + r + ") IS NOT NULL"
		rp = "(" + rp + ") IS NOT NULL"
	}
	sql := "SELECT false AS pair, k, 0::integer AS a, 0::integer AS b, " + r + " AS r FROM pg_catalog.unnest($1::bigint[]) AS k" +
		" UNION ALL SELECT true, 0::bigint, a, b, " + rp + " FROM ROWS FROM (pg_catalog.unnest($2::integer[]), pg_catalog.unnest($3::integer[])) AS u(a, b)"
	return stmt{sql, []any{ints, as, bs}}
}

// The session marker. Every session lock statement reads the custom setting
// markerGUC of its server session in the same statement that locks, and
// sets it to the lock's holder id when the lock is granted; the unlock
// statement unlocks only when the marker is that id and the session is the
// one that granted the lock, and clears it. A lockkit session that holds no
// lock has an empty marker (or none). A non-empty marker at acquire time
// means the server session already carries another lockkit handle's lock,
// which can only happen when the session is shared between client
// connections (a pooler in transaction or statement mode, or one that hands
// a session to a new client without resetting it): the statement then takes
// no lock at all. See the package doc, "Poolers and look-alike servers".
const markerGUC = "lockkit.holder"

// Why a session lock statement took no lock although it was not denied
// (the statements' "why" column).
const (
	gateOK         = 0 // the statement went on to lock
	gateMarked     = 1 // the session carries another lockkit handle's marker
	gateOwnKeyHeld = 2 // a pooled session already holds one of the keys itself
)

// gateOpen is the condition under which a session lock statement locks.
const gateOpen = "pg_catalog.int4eq(g.why, 0)"

// sessionPrefix opens every session lock statement: the server session's
// marker and pid (CTE s), and whether to lock (CTE g, column why):
//
//   - 1 when the marker is set: another lockkit handle holds a lock on this
//     very server session;
//   - else 0 when the server's pid is the one the connection was given at
//     connect ($2): no pooler in between, nothing more to check;
//   - else (a pooler or proxy hands out pids of its own) 2 when this server
//     session already holds one of the keys (pg_locks, ownKeys): a client
//     that is not lockkit shares the session and holds the key, and a lock
//     would stack on its lock;
//   - else 0.
//
// CASE evaluates its conditions in order and stops at the first true one,
// so the pg_locks scan runs only behind a pooler.
func sessionPrefix(ownKeys string) string {
	return "WITH s AS MATERIALIZED (SELECT pg_catalog.current_setting('" + markerGUC + "', true) AS prev," +
		" pg_catalog.pg_backend_pid() AS pid)," +
		" g AS MATERIALIZED (SELECT s.prev, s.pid, CASE" +
		" WHEN NOT (s.prev IS NULL OR pg_catalog.texteq(s.prev, '')) THEN 1" +
		" WHEN pg_catalog.int8eq(s.pid::bigint, $2::bigint) THEN 0" +
		" WHEN EXISTS (SELECT FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory' AND l.pid = s.pid AND (" + ownKeys + ")) THEN 2" +
		" ELSE 0 END AS why FROM s)"
}

// The pg_locks conditions that match the keys of a statement (see lockTag):
// a bigint key shows as classid = its high half and objid = its low half
// with objsubid 1, a pair as classid = a and objid = b (as oids, unsigned)
// with objsubid 2.
const (
	ownIntKey  = "l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = $3::bigint"
	ownPairKey = "l.objsubid = 2 AND l.classid::bigint = ($3::integer::bigint & 4294967295) AND l.objid::bigint = ($4::integer::bigint & 4294967295)"
	ownKeys    = "(l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY ($3::bigint[]))" +
		" OR (l.objsubid = 2 AND EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest($4::integer[]), pg_catalog.unnest($5::integer[])) AS u(a, b)" +
		" WHERE l.classid::bigint = (u.a::bigint & 4294967295) AND l.objid::bigint = (u.b::bigint & 4294967295)))"
)

// Key shapes of the session statements.
const (
	shapeInt   = 0 // one bigint key
	shapePair  = 1 // one int4 pair
	shapeMulti = 2 // any keys, as arrays (see splitKeys)
)

// sessionLock builds the statement that takes a session lock on keys
// (sorted, see sortKeys) with f, fnLock or fnTry, for the holder id (the
// marker value). clientPID is the pid the connection was given when it
// connected (pgconn's PID), which a pooler makes up. Parameters: $1 id,
// $2 client pid, then the keys: $3 (bigint), $3 $4 (pair), or $3 bigint[]
// $4 int4[] $5 int4[] (several keys).
//
// Its rows, one per key, are: prev (the marker found, or NULL), pid (the
// server session's), why (see sessionPrefix), pair, k, a, b (the key), r
// (granted; NULL when why is not 0), undone (a try of several keys that
// did not get them all: whether the granted key's unlock succeeded, else
// NULL), marked (the marker was set to id: every key was granted).
//
// One key:
//
//	<sessionPrefix>,
//	t AS MATERIALIZED (SELECT g.prev, g.pid, g.why, <key>, CASE WHEN <why is 0> THEN <lock> END AS r FROM g)
//	SELECT t.*, NULL, CASE WHEN t.r THEN pg_catalog.set_config('lockkit.holder', $1, false) END IS NOT NULL FROM t
//
// Several keys: t runs the lock of every key in sorted order as multi does
// (one CTE row per key), o ANDs the results (so every lock has run before),
// m sets the marker when all were granted, and a try unlocks in the final
// SELECT the keys it got when it did not get them all, as one statement
// and one round trip:
//
//	<sessionPrefix>,
//	t AS MATERIALIZED (SELECT false AS pair, k, 0 AS a, 0 AS b, CASE WHEN <why is 0> THEN <lock k> END AS r FROM g, unnest($3) AS k
//	                   UNION ALL SELECT true, 0, a, b, CASE ... <lock a, b> END FROM g, unnest($4, $5) AS u(a, b)),
//	o AS MATERIALIZED (SELECT pg_catalog.bool_and(t.r) AS ok FROM t),
//	m AS MATERIALIZED (SELECT CASE WHEN o.ok THEN pg_catalog.set_config('lockkit.holder', $1, false) END AS v FROM o)
//	SELECT g.prev, g.pid, g.why, t.pair, t.k, t.a, t.b, t.r,
//	       CASE WHEN t.r AND NOT o.ok THEN <unlock of the key> END, m.v IS NOT NULL
//	FROM g, t, o, m
//
// Every CTE is materialised, so each lock function runs once per key; the
// session is one client's for the length of the statement even behind a
// transaction pooler, so no other client runs on it between the marker
// check and the lock.
func sessionLock(f pgFunc, m Mode, keys []keyhash.Key, id string, clientPID uint32) stmt {
	args := make([]any, 2, 5)
	args[0], args[1] = id, int64(clientPID)
	switch {
	case len(keys) == 1 && keys[0].IsPair():
		a, b := keys[0].Pair()
		return stmt{sessionLockSQL[f][m][shapePair], append(args, a, b)}
	case len(keys) == 1:
		return stmt{sessionLockSQL[f][m][shapeInt], append(args, keys[0].Int64())}
	}
	ints, as, bs := splitKeys(keys)
	return stmt{sessionLockSQL[f][m][shapeMulti], append(args, ints, as, bs)}
}

// sessionLockSQL holds the statements of sessionLock, indexed by function
// (fnLock, fnTry), mode and shape, built once.
var sessionLockSQL = func() (t [fnTry + 1][Shared + 1][3]string) {
	for _, f := range []pgFunc{fnLock, fnTry} {
		for m := range t[f] {
			mode := Mode(m)
			call := func(args string) string {
				c := f.name(mode) + "(" + args + ")"
				if !f.returnsBool() {
					c = "(" + c + ") IS NOT NULL" // the void result, as a boolean: true once granted
				}
				return "CASE WHEN " + gateOpen + " THEN " + c + " END"
			}
			setMarker := "pg_catalog.set_config('" + markerGUC + "', $1, false)"
			one := func(ownKey, key, args string) string {
				return sessionPrefix(ownKey) +
					", t AS MATERIALIZED (SELECT g.prev, g.pid, g.why, " + key + ", " + call(args) + " AS r FROM g)" +
					" SELECT t.prev, t.pid, t.why, t.pair, t.k, t.a, t.b, t.r, NULL::boolean," +
					" CASE WHEN t.r THEN " + setMarker + " END IS NOT NULL FROM t"
			}
			t[f][m][shapeInt] = one(ownIntKey, "false AS pair, $3::bigint AS k, 0::integer AS a, 0::integer AS b", "$3::bigint")
			t[f][m][shapePair] = one(ownPairKey, "true AS pair, 0::bigint AS k, $3::integer AS a, $4::integer AS b", "$3::integer, $4::integer")
			un := fnUnlock.name(mode)
			undo := "NULL::boolean"
			if f == fnTry {
				undo = "CASE WHEN t.r AND NOT o.ok THEN CASE WHEN t.pair THEN " + un + "(t.a, t.b) ELSE " + un + "(t.k) END END"
			}
			t[f][m][shapeMulti] = sessionPrefix(ownKeys) +
				", t AS MATERIALIZED (SELECT false AS pair, k, 0::integer AS a, 0::integer AS b, " + call("k") + " AS r" +
				" FROM g, pg_catalog.unnest($3::bigint[]) AS k" +
				" UNION ALL SELECT true, 0::bigint, a, b, " + call("a, b") +
				" FROM g, ROWS FROM (pg_catalog.unnest($4::integer[]), pg_catalog.unnest($5::integer[])) AS u(a, b))," +
				" o AS MATERIALIZED (SELECT pg_catalog.bool_and(t.r) AS ok FROM t)," +
				" m AS MATERIALIZED (SELECT CASE WHEN o.ok THEN " + setMarker + " END AS v FROM o)" +
				" SELECT g.prev, g.pid, g.why, t.pair, t.k, t.a, t.b, t.r, " + undo + ", m.v IS NOT NULL FROM g, t, o, m"
		}
	}
	return t
}()

// sessionUnlock builds the statement that gives back a session lock on keys
// taken by the holder id on the server session pid. It unlocks only when
// the session's marker is id and its pid is pid — the session that granted
// the lock — and then clears the marker. Parameters: $1 id, $2 pid, then
// the keys as for sessionLock.
//
// Its rows, one per key: prev (the marker found), pid (the server
// session's), mine (the marker and pid matched), pair, k, a, b, r (the
// unlock's result; NULL when not mine), cleared (the marker was cleared:
// every unlock returned true).
//
//	WITH s AS MATERIALIZED (SELECT <marker> AS prev, pg_catalog.pg_backend_pid() AS pid),
//	g AS MATERIALIZED (SELECT s.prev, s.pid, coalesce(pg_catalog.texteq(s.prev, $1) AND pg_catalog.int4eq(s.pid, $2), false) AS mine FROM s),
//	t AS MATERIALIZED (<one row per key: CASE WHEN g.mine THEN <unlock> END AS r>),
//	o, m AS <as in sessionLock, clearing the marker when every unlock returned true>
//	SELECT g.prev, g.pid, g.mine, t.pair, t.k, t.a, t.b, t.r, m.v IS NOT NULL FROM g, t, m
func sessionUnlock(m Mode, keys []keyhash.Key, id string, pid int32) stmt {
	args := make([]any, 2, 5)
	args[0], args[1] = id, pid
	switch {
	case len(keys) == 1 && keys[0].IsPair():
		a, b := keys[0].Pair()
		return stmt{sessionUnlockSQL[m][shapePair], append(args, a, b)}
	case len(keys) == 1:
		return stmt{sessionUnlockSQL[m][shapeInt], append(args, keys[0].Int64())}
	}
	ints, as, bs := splitKeys(keys)
	return stmt{sessionUnlockSQL[m][shapeMulti], append(args, ints, as, bs)}
}

// sessionUnlockSQL holds the statements of sessionUnlock, indexed by mode
// and shape, built once.
var sessionUnlockSQL = func() (t [Shared + 1][3]string) {
	for m := range t {
		un := fnUnlock.name(Mode(m))
		prefix := "WITH s AS MATERIALIZED (SELECT pg_catalog.current_setting('" + markerGUC + "', true) AS prev," +
			" pg_catalog.pg_backend_pid() AS pid)," +
			" g AS MATERIALIZED (SELECT s.prev, s.pid," +
			" coalesce(pg_catalog.texteq(s.prev, $1) AND pg_catalog.int4eq(s.pid, $2::integer), false) AS mine FROM s)"
		clear := "pg_catalog.set_config('" + markerGUC + "', '', false)"
		one := func(key, args string) string {
			return prefix +
				", t AS MATERIALIZED (SELECT g.prev, g.pid, g.mine, " + key + ", CASE WHEN g.mine THEN " + un + "(" + args + ") END AS r FROM g)" +
				" SELECT t.prev, t.pid, t.mine, t.pair, t.k, t.a, t.b, t.r, CASE WHEN t.r THEN " + clear + " END IS NOT NULL FROM t"
		}
		t[m][shapeInt] = one("false AS pair, $3::bigint AS k, 0::integer AS a, 0::integer AS b", "$3::bigint")
		t[m][shapePair] = one("true AS pair, 0::bigint AS k, $3::integer AS a, $4::integer AS b", "$3::integer, $4::integer")
		t[m][shapeMulti] = prefix +
			", t AS MATERIALIZED (SELECT false AS pair, k, 0::integer AS a, 0::integer AS b, CASE WHEN g.mine THEN " + un + "(k) END AS r" +
			" FROM g, pg_catalog.unnest($3::bigint[]) AS k" +
			" UNION ALL SELECT true, 0::bigint, a, b, CASE WHEN g.mine THEN " + un + "(a, b) END" +
			" FROM g, ROWS FROM (pg_catalog.unnest($4::integer[]), pg_catalog.unnest($5::integer[])) AS u(a, b))," +
			" o AS MATERIALIZED (SELECT pg_catalog.bool_and(t.r) AS ok FROM t)," +
			" m AS MATERIALIZED (SELECT CASE WHEN o.ok THEN " + clear + " END AS v FROM o)" +
			" SELECT g.prev, g.pid, g.mine, t.pair, t.k, t.a, t.b, t.r, m.v IS NOT NULL FROM g, t, m"
	}
	return t
}()

// verifySQL checks, once per Locker, that the server really holds a lock
// it granted: the server session's pid and marker, the server's version
// (to name it in an error), and how many of the keys ($2 bigint[], $3
// int4[], $4 int4[]) pg_locks shows this session holding in mode $1
// ('ExclusiveLock' or 'ShareLock'). A server whose advisory functions
// return true and lock nothing (CockroachDB's) shows none.
const verifySQL = `SELECT pg_catalog.pg_backend_pid(), pg_catalog.current_setting('` + markerGUC + `', true), pg_catalog.version(),
 (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l
  WHERE l.locktype = 'advisory' AND l.granted AND l.pid = pg_catalog.pg_backend_pid() AND l.mode = $1
  AND ((l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY ($2::bigint[]))
   OR (l.objsubid = 2 AND EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest($3::integer[]), pg_catalog.unnest($4::integer[])) AS u(a, b)
    WHERE l.classid::bigint = (u.a::bigint & 4294967295) AND l.objid::bigint = (u.b::bigint & 4294967295)))))`

// pgLockMode is how pg_locks names an advisory lock's mode.
func pgLockMode(m Mode) string {
	if m == Shared {
		return "ShareLock"
	}
	return "ExclusiveLock"
}

// holderSQL finds the session that holds an advisory lock in this database,
// for a conflict error: of the keys given as three parallel arrays ($1
// classid, $2 objid, $3 objsubid, as pg_locks shows them, see lockTag), the
// first that another session holds, an exclusive holder before a shared
// one. Since is, for an idle session (a lockkit holder between statements),
// when its last statement ended — normally the lock call; for a session in a
// transaction, the transaction's start; otherwise the session's start.
const holderSQL = `SELECT a.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''),
 coalesce(pg_catalog.host(a.client_addr), ''),
 CASE WHEN a.state = 'idle' THEN a.state_change ELSE coalesce(a.xact_start, a.backend_start) END
FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::bigint[]), pg_catalog.unnest($3::smallint[])) WITH ORDINALITY AS q(c, o, s, n)
JOIN pg_catalog.pg_locks l ON l.classid = q.c::oid AND l.objid = q.o::oid AND l.objsubid = q.s
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
 AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
 AND l.pid <> pg_catalog.pg_backend_pid()
ORDER BY q.n, (l.mode = 'ExclusiveLock') DESC, a.backend_start
LIMIT 1`

// lockTag returns how pg_locks shows key k: a bigint key as classid = its
// high 32 bits, objid = its low 32 bits, objsubid = 1; a pair (a, b) as
// classid = a, objid = b, objsubid = 2. classid and objid are oids (unsigned).
func lockTag(k keyhash.Key) (classid, objid uint32, objsubid int16) {
	a, b := k.Pair()
	if k.IsPair() {
		return uint32(a), uint32(b), 2
	}
	return uint32(a), uint32(b), 1
}

// keyFromTag is the inverse of lockTag.
func keyFromTag(classid, objid uint32, objsubid int16) (keyhash.Key, bool) {
	switch objsubid {
	case 1:
		return keyhash.Int64(int64(uint64(classid)<<32 | uint64(objid))), true
	case 2:
		return keyhash.Pair(int32(classid), int32(objid)), true
	}
	return keyhash.Key{}, false
}

// sortKeys returns a sorted copy of keys without duplicates. Locking the
// same key twice in one session would stack it (one unlock would not free
// it), so a key is taken once however often it is listed.
func sortKeys(keys []keyhash.Key) []keyhash.Key {
	s := slices.Clone(keys)
	slices.SortFunc(s, keyhash.Compare)
	return slices.CompactFunc(s, func(a, b keyhash.Key) bool { return keyhash.Compare(a, b) == 0 })
}

// keysName renders keys as a lock name: "42", "(1,2)", "42+(1,2)". More
// than maxNamedKeys keys are abbreviated: "1+2+3+…+5000 (5000 keys)".
func keysName(keys []keyhash.Key) string {
	if len(keys) == 1 {
		return keys[0].String()
	}
	var b strings.Builder
	shown := keys
	if len(keys) > maxNamedKeys {
		shown = keys[:maxNamedKeys-1]
	}
	for i, k := range shown {
		if i > 0 {
			b.WriteByte('+')
		}
		b.WriteString(k.String())
	}
	if len(keys) > maxNamedKeys {
		b.WriteString("+…+")
		b.WriteString(keys[len(keys)-1].String())
		b.WriteString(" (")
		b.WriteString(strconv.Itoa(len(keys)))
		b.WriteString(" keys)")
	}
	return b.String()
}

// maxNamedKeys is how many keys a lock name lists in full.
const maxNamedKeys = 8

// listSQL lists the advisory locks granted in the current database, to any
// session, with the holding session, for List: the lock tag (see lockTag),
// the mode, then the session's pid, user, application name, client host
// (its name where log_hostname resolves it, else its address) and
// state_change. state_change is when the session last finished a statement:
// for a session that only holds its lock, as lockkit's do, the moment the
// lock was granted. It is NULL for a session that cannot be seen (another
// user's, without pg_read_all_stats).
const listSQL = `SELECT l.classid::bigint, l.objid::bigint, l.objsubid::smallint, l.mode,
 a.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''),
 coalesce(a.client_hostname, pg_catalog.host(a.client_addr), ''), a.state_change
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
 AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
ORDER BY l.classid, l.objid, l.objsubid, a.pid`

// listTargetsSQL reads where golang-migrate would keep its table when run
// on this session's database, for List to recognise its lock.
const listTargetsSQL = `SELECT pg_catalog.current_database(), coalesce(pg_catalog.current_schema(), 'public')`
