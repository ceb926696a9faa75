package advisory

import (
	"slices"
	"strconv"
	"strings"

	"github.com/lockkit/lockkit/internal/pgepoch"
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

// The session marker. A session lock statement on a connection that may
// share its server session (see connKind) reads the custom setting
// markerGUC of its server session in the same statement that locks, and
// sets it to the lock's holder id when the lock is granted; the unlock
// statement unlocks only when the marker is that id and the session is the
// one that granted the lock, and clears it. A session that holds no lock
// taken this way has an empty marker (or none). A non-empty marker at
// acquire time means the server session already carries another lockkit
// handle's lock, which can only happen when the session is shared between
// client connections (a pooler in transaction or statement mode, or one
// that hands a session to a new client without resetting it): the
// statement then takes no lock at all. See the package doc, "Poolers and
// look-alike servers".
const markerGUC = "lockkit.holder"

// Why a session lock statement took no lock although it was not denied
// (the statements' "why" column or code).
const (
	gateOK         = 0 // the statement went on to lock
	gateMarked     = 1 // the session carries another lockkit handle's marker
	gateOwnKeyHeld = 2 // a pooled session already holds one of the keys itself
)

// markerEmpty is true when the session carries no marker.
const markerEmpty = "pg_catalog.texteq(coalesce(pg_catalog.current_setting('" + markerGUC + "', true), ''), '')"

// ownKeyHeld is true when the server session is not the one the connection
// was given at connect ({cpid}, pgconn's PID: a pooler or proxy makes pids
// up) and it already holds one of the keys (pg_locks, see ownIntKey): a
// client that is not lockkit shares the session and holds the key, and a
// lock would stack on its lock. The outer CASE keeps the pg_locks scan (a
// copy of the server's whole lock table) off a direct connection.
func ownKeyHeld(ownKeys string) string {
	return "CASE WHEN pg_catalog.int8eq(pg_catalog.pg_backend_pid()::bigint, {cpid}::bigint) THEN false" +
		" ELSE EXISTS (SELECT FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory'" +
		" AND l.pid = pg_catalog.pg_backend_pid() AND (" + ownKeys + ")) END"
}

// The pg_locks conditions that match the keys of a statement (see lockTag):
// a bigint key shows as classid = its high half and objid = its low half
// with objsubid 1, a pair as classid = a and objid = b (as oids, unsigned)
// with objsubid 2.
const (
	ownIntKey  = "l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = {k}::bigint"
	ownPairKey = "l.objsubid = 2 AND l.classid::bigint = ({a}::integer::bigint & 4294967295) AND l.objid::bigint = ({b}::integer::bigint & 4294967295)"
	ownKeys    = "(l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY ({ks}::bigint[]))" +
		" OR (l.objsubid = 2 AND EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest({as}::integer[]), pg_catalog.unnest({bs}::integer[])) AS u(a, b)" +
		" WHERE l.classid::bigint = (u.a::bigint & 4294967295) AND l.objid::bigint = (u.b::bigint & 4294967295)))"
)

// Key shapes of the session statements.
const (
	shapeInt   = 0 // one bigint key
	shapePair  = 1 // one int4 pair
	shapeMulti = 2 // any keys, as arrays (see splitKeys)
)

// stmtForm says what rows a session statement returns (see sessionLock and
// sessionUnlock).
type stmtForm int8

const (
	formLean  stmtForm = iota // one key, no marker: r, pid
	formOne                   // one key, with the marker: code, marker, pid
	formMulti                 // several keys, with the marker: one row per key
)

// sessionStmt is a session lock or unlock statement.
type sessionStmt struct {
	stmt
	form  stmtForm
	fence bool // draws a fencing token: one more column (see fenced)
}

// Which checks a session lock statement makes (see connKind).
type lockChecks int8

const (
	checksLean   lockChecks = iota // the pid only: a connection known to be direct
	checksMarker                   // the marker: a connection known to be pooled
	checksFirst                    // the marker, and pg_locks where pooled: the first statement on a connection
)

// sessionLock builds the statement that takes a session lock on keys
// (sorted, see sortKeys) with f, fnLock or fnTry, making checks.
//
// checksLean (one key on a connection known to reach its own server
// session, see connKind) is the lock call and the server session's pid; $1
// is the key ($1 $2 a pair):
//
//	SELECT pg_catalog.pg_try_advisory_lock($1::bigint), pg_catalog.pg_backend_pid()
//
// The others also check and set the session marker to id (the holder id),
// and refuse where the session is shared. Parameters: $1 id, then the
// keys: $2 (bigint), $2 $3 (pair), or $2 bigint[] $3 int4[] $4 int4[]
// (several keys); with checksFirst, then clientPID, the pid the connection
// was given when it connected (pgconn's PID). One key:
//
//	SELECT CASE WHEN NOT <markerEmpty> THEN 1
//	            [WHEN <ownKeyHeld> THEN 2]
//	            WHEN <lock> THEN CASE WHEN pg_catalog.set_config('lockkit.holder', $1, false) IS NOT NULL THEN 0 END
//	            ELSE 3 END,
//	       pg_catalog.current_setting('lockkit.holder', true), pg_catalog.pg_backend_pid()
//
// CASE tests its conditions in order and evaluates only the branch it
// takes, so the lock is attempted only on a session without a marker, and
// the marker is set only when the lock was granted. The code is 0 when
// granted, 1 or 2 when refused (gateMarked, gateOwnKeyHeld), 3 when not
// granted (a try that found the key held; for a wait, a lock function that
// returned NULL). The marker and pid columns are for messages.
//
// Several keys, one row per key: prev (the marker found, or NULL), pid, why
// (0, gateMarked or gateOwnKeyHeld), pair, k, a, b (the key), r (granted;
// NULL when why is not 0), undone (a try of several keys that did not get
// them all: whether the granted key's unlock succeeded, else NULL), marked
// (the marker was set to id: every key was granted):
//
//	WITH s AS MATERIALIZED (SELECT pg_catalog.current_setting('lockkit.holder', true) AS prev, pg_catalog.pg_backend_pid() AS pid),
//	g AS MATERIALIZED (SELECT s.prev, s.pid, CASE WHEN NOT <markerEmpty> THEN 1 [WHEN <ownKeyHeld> THEN 2] ELSE 0 END AS why FROM s),
//	t AS MATERIALIZED (SELECT false AS pair, k, 0 AS a, 0 AS b, CASE WHEN <why is 0> THEN <lock k> END AS r FROM g, unnest($2) AS k
//	                   UNION ALL SELECT true, 0, a, b, CASE ... <lock a, b> END FROM g, ROWS FROM (unnest($3), unnest($4)) AS u(a, b)),
//	o AS MATERIALIZED (SELECT pg_catalog.bool_and(t.r) AS ok FROM t),
//	m AS MATERIALIZED (SELECT CASE WHEN o.ok THEN pg_catalog.set_config('lockkit.holder', $1, false) END AS v FROM o)
//	SELECT g.prev, g.pid, g.why, t.pair, t.k, t.a, t.b, t.r,
//	       CASE WHEN t.r AND NOT o.ok THEN <unlock of the key> END, m.v IS NOT NULL
//	FROM g, t, o, m
//
// t runs the lock of every key in sorted order as multi does, o ANDs the
// results (so every lock has run before), m sets the marker when all were
// granted, and a try unlocks in the final SELECT the keys it got when it
// did not get them all. Every CTE is materialised, so each lock function
// runs once per key.
//
// A statement runs on one server session from start to end, even behind a
// transaction pooler: no other client runs on the session between the
// marker check and the lock.
func sessionLock(f pgFunc, m Mode, keys []keyhash.Key, id string, clientPID uint32, checks lockChecks) sessionStmt {
	if checks == checksLean && len(keys) == 1 {
		if keys[0].IsPair() {
			a, b := keys[0].Pair()
			return sessionStmt{stmt{leanLockSQL[f][m][shapePair], []any{a, b}}, formLean, false}
		}
		return sessionStmt{stmt{leanLockSQL[f][m][shapeInt], []any{keys[0].Int64()}}, formLean, false}
	}
	first := 0
	if checks == checksFirst {
		first = 1
	}
	args := make([]any, 1, 5)
	args[0] = id
	var st sessionStmt
	switch {
	case len(keys) == 1 && keys[0].IsPair():
		a, b := keys[0].Pair()
		st = sessionStmt{stmt{sessionLockSQL[first][f][m][shapePair], append(args, a, b)}, formOne, false}
	case len(keys) == 1:
		st = sessionStmt{stmt{sessionLockSQL[first][f][m][shapeInt], append(args, keys[0].Int64())}, formOne, false}
	default:
		ints, as, bs := splitKeys(keys)
		st = sessionStmt{stmt{sessionLockSQL[first][f][m][shapeMulti], append(args, ints, as, bs)}, formMulti, false}
	}
	if first == 1 {
		st.args = append(st.args, int64(clientPID))
	}
	return st
}

// lockCall is f's call on args, as a boolean: for the waiting functions,
// which return void, whether the void result is not NULL (true once
// granted; a void value is not NULL).
func lockCall(f pgFunc, m Mode, args string) string {
	c := f.name(m) + "(" + args + ")"
	if !f.returnsBool() {
		c = "(" + c + ") IS NOT NULL"
	}
	return c
}

// placeholders numbers the parameters of a session lock statement of
// shape: $1 the holder id, then the keys, then the client pid.
func placeholders(shape int) *strings.Replacer {
	switch shape {
	case shapeInt:
		return strings.NewReplacer("{k}", "$2", "{cpid}", "$3")
	case shapePair:
		return strings.NewReplacer("{a}", "$2", "{b}", "$3", "{cpid}", "$4")
	}
	return strings.NewReplacer("{ks}", "$2", "{as}", "$3", "{bs}", "$4", "{cpid}", "$5")
}

// leanLockSQL and sessionLockSQL hold the statements of sessionLock,
// indexed by function (fnLock, fnTry), mode and shape, and for
// sessionLockSQL first by whether the pg_locks check is in (checksFirst),
// built once.
var leanLockSQL, sessionLockSQL = func() (lean [fnTry + 1][Shared + 1][3]string, full [2][fnTry + 1][Shared + 1][3]string) {
	setMarker := "pg_catalog.set_config('" + markerGUC + "', $1, false)"
	for _, f := range []pgFunc{fnLock, fnTry} {
		for m := range lean[f] {
			mode := Mode(m)
			lean[f][m][shapeInt] = "SELECT " + lockCall(f, mode, "$1::bigint") + ", pg_catalog.pg_backend_pid()"
			lean[f][m][shapePair] = "SELECT " + lockCall(f, mode, "$1::integer, $2::integer") + ", pg_catalog.pg_backend_pid()"
			for first := range 2 {
				own := func(keys string) string {
					if first == 0 {
						return ""
					}
					return " WHEN " + ownKeyHeld(keys) + " THEN 2"
				}
				one := func(ownKey, args string) string {
					return "SELECT CASE WHEN NOT " + markerEmpty + " THEN 1" + own(ownKey) +
						" WHEN " + lockCall(f, mode, args) + " THEN CASE WHEN " + setMarker + " IS NOT NULL THEN 0 END" +
						" ELSE 3 END, pg_catalog.current_setting('" + markerGUC + "', true), pg_catalog.pg_backend_pid()"
				}
				full[first][f][m][shapeInt] = placeholders(shapeInt).Replace(one(ownIntKey, "{k}::bigint"))
				full[first][f][m][shapePair] = placeholders(shapePair).Replace(one(ownPairKey, "{a}::integer, {b}::integer"))
				call := func(args string) string {
					return "CASE WHEN pg_catalog.int4eq(g.why, 0) THEN " + lockCall(f, mode, args) + " END"
				}
				un := fnUnlock.name(mode)
				undo := "NULL::boolean"
				if f == fnTry {
					undo = "CASE WHEN t.r AND NOT o.ok THEN CASE WHEN t.pair THEN " + un + "(t.a, t.b) ELSE " + un + "(t.k) END END"
				}
				full[first][f][m][shapeMulti] = placeholders(shapeMulti).Replace(
					"WITH s AS MATERIALIZED (SELECT pg_catalog.current_setting('" + markerGUC + "', true) AS prev," +
						" pg_catalog.pg_backend_pid() AS pid)," +
						" g AS MATERIALIZED (SELECT s.prev, s.pid, CASE WHEN NOT " + markerEmpty + " THEN 1" +
						own(ownKeys) + " ELSE 0 END AS why FROM s)," +
						" t AS MATERIALIZED (SELECT false AS pair, k, 0::integer AS a, 0::integer AS b, " + call("k") + " AS r" +
						" FROM g, pg_catalog.unnest({ks}::bigint[]) AS k" +
						" UNION ALL SELECT true, 0::bigint, a, b, " + call("a, b") +
						" FROM g, ROWS FROM (pg_catalog.unnest({as}::integer[]), pg_catalog.unnest({bs}::integer[])) AS u(a, b))," +
						" o AS MATERIALIZED (SELECT pg_catalog.bool_and(t.r) AS ok FROM t)," +
						" m AS MATERIALIZED (SELECT CASE WHEN o.ok THEN " + setMarker + " END AS v FROM o)" +
						" SELECT g.prev, g.pid, g.why, t.pair, t.k, t.a, t.b, t.r, " + undo + ", m.v IS NOT NULL FROM g, t, o, m")
			}
		}
	}
	return lean, full
}()

// sessionUnlock builds the statement that gives back a session lock on keys
// taken on the server session pid, by a statement of the form taken (see
// sessionLock). It unlocks only on the session that granted the lock.
//
// Lean, the unlock if the pid is the lock's, and the pid; $1 pid, $2 the key
// ($2 $3 a pair):
//
//	SELECT CASE WHEN pg_catalog.int4eq(pg_catalog.pg_backend_pid(), $1::integer) THEN pg_catalog.pg_advisory_unlock($2::bigint) END,
//	       pg_catalog.pg_backend_pid()
//
// With the marker, it unlocks only when the marker is id, the lock's holder
// id, and the pid is the lock's, and then clears the marker. Parameters: $1
// id, $2 pid, then the keys as for sessionLock. One key:
//
//	SELECT CASE WHEN coalesce(pg_catalog.texteq(<marker>, $1) AND pg_catalog.int4eq(pg_catalog.pg_backend_pid(), $2), false)
//	            THEN CASE WHEN <unlock> THEN CASE WHEN pg_catalog.set_config('lockkit.holder', '', false) IS NOT NULL THEN 0 END ELSE 1 END
//	            ELSE 2 END,
//	       <marker>, pg_catalog.pg_backend_pid()
//
// The code is 0 when unlocked (and the marker cleared), 1 when the unlock
// returned false, 2 when the session is not the lock's. Several keys, one
// row per key: prev (the marker found), pid, mine (the marker and pid
// matched), pair, k, a, b, r (the unlock's result; NULL when not mine),
// cleared (every unlock returned true, and the marker was cleared).
func sessionUnlock(m Mode, keys []keyhash.Key, id string, pid int32, form stmtForm) sessionStmt {
	if form == formLean {
		if keys[0].IsPair() {
			a, b := keys[0].Pair()
			return sessionStmt{stmt{leanUnlockSQL[m][shapePair], []any{pid, a, b}}, formLean, false}
		}
		return sessionStmt{stmt{leanUnlockSQL[m][shapeInt], []any{pid, keys[0].Int64()}}, formLean, false}
	}
	args := make([]any, 2, 5)
	args[0], args[1] = id, pid
	switch {
	case len(keys) == 1 && keys[0].IsPair():
		a, b := keys[0].Pair()
		return sessionStmt{stmt{sessionUnlockSQL[m][shapePair], append(args, a, b)}, formOne, false}
	case len(keys) == 1:
		return sessionStmt{stmt{sessionUnlockSQL[m][shapeInt], append(args, keys[0].Int64())}, formOne, false}
	}
	ints, as, bs := splitKeys(keys)
	return sessionStmt{stmt{sessionUnlockSQL[m][shapeMulti], append(args, ints, as, bs)}, formMulti, false}
}

// leanUnlockSQL and sessionUnlockSQL hold the statements of sessionUnlock,
// indexed by mode and shape, built once.
var leanUnlockSQL, sessionUnlockSQL = func() (lean, full [Shared + 1][3]string) {
	marker := "pg_catalog.current_setting('" + markerGUC + "', true)"
	clear := "pg_catalog.set_config('" + markerGUC + "', '', false)"
	for m := range full {
		un := fnUnlock.name(Mode(m))
		lean[m][shapeInt] = "SELECT CASE WHEN pg_catalog.int4eq(pg_catalog.pg_backend_pid(), $1::integer) THEN " + un + "($2::bigint) END," +
			" pg_catalog.pg_backend_pid()"
		lean[m][shapePair] = "SELECT CASE WHEN pg_catalog.int4eq(pg_catalog.pg_backend_pid(), $1::integer) THEN " + un + "($2::integer, $3::integer) END," +
			" pg_catalog.pg_backend_pid()"
		one := func(args string) string {
			return "SELECT CASE WHEN coalesce(pg_catalog.texteq(" + marker + ", $1) AND pg_catalog.int4eq(pg_catalog.pg_backend_pid(), $2::integer), false)" +
				" THEN CASE WHEN " + un + "(" + args + ") THEN CASE WHEN " + clear + " IS NOT NULL THEN 0 END ELSE 1 END ELSE 2 END," +
				" " + marker + ", pg_catalog.pg_backend_pid()"
		}
		full[m][shapeInt] = one("$3::bigint")
		full[m][shapePair] = one("$3::integer, $4::integer")
		full[m][shapeMulti] = "WITH s AS MATERIALIZED (SELECT " + marker + " AS prev, pg_catalog.pg_backend_pid() AS pid)," +
			" g AS MATERIALIZED (SELECT s.prev, s.pid," +
			" coalesce(pg_catalog.texteq(s.prev, $1) AND pg_catalog.int4eq(s.pid, $2::integer), false) AS mine FROM s)," +
			" t AS MATERIALIZED (SELECT false AS pair, k, 0::integer AS a, 0::integer AS b, CASE WHEN g.mine THEN " + un + "(k) END AS r" +
			" FROM g, pg_catalog.unnest($3::bigint[]) AS k" +
			" UNION ALL SELECT true, 0::bigint, a, b, CASE WHEN g.mine THEN " + un + "(a, b) END" +
			" FROM g, ROWS FROM (pg_catalog.unnest($4::integer[]), pg_catalog.unnest($5::integer[])) AS u(a, b))," +
			" o AS MATERIALIZED (SELECT pg_catalog.bool_and(t.r) AS ok FROM t)," +
			" m AS MATERIALIZED (SELECT CASE WHEN o.ok THEN " + clear + " END AS v FROM o)" +
			" SELECT g.prev, g.pid, g.mine, t.pair, t.k, t.a, t.b, t.r, m.v IS NOT NULL FROM g, t, m"
	}
	return lean, full
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

// List reads where golang-migrate and the other tools would keep their
// tables on this session's database with toolTablesSQL (tooltables.go).

// Fencing tokens (Config.Fencing). An exclusive session lock statement
// draws the next value of the fencing sequence in the same statement, and
// only when every key was granted: the statement of sessionLock becomes the
// subquery of
//
//	SELECT s.*, CASE WHEN <granted> THEN <epoch> + pg_catalog.nextval($N::pg_catalog.int8::pg_catalog.oid::pg_catalog.regclass) END
//	FROM (<statement> OFFSET 0) AS s
//
// where <epoch> is the server's timeline shifted into the high bits
// (internal/pgepoch), so that tokens keep increasing across a failover;
// $N, one past the statement's parameters, is the sequence's oid
// (resolved once per Locker, see fenceSeq), and <granted> is s's result (lean),
// its code being 0 (one key with the marker). The several-key form gets a
// CTE of its own, n, that draws once from its one-row m (the marker set:
// every key granted). OFFSET 0 keeps the subquery from being flattened, so
// each lock function still runs once and before nextval.

// fencedSQL maps each sessionLock statement to its fenced form.
var fencedSQL = func() map[string]string {
	out := map[string]string{}
	fence := func(n int) string {
		return pgepoch.Token("$" + strconv.Itoa(n) + "::pg_catalog.int8::pg_catalog.oid::pg_catalog.regclass")
	}
	for f := range leanLockSQL {
		for m := range leanLockSQL[f] {
			for shape := shapeInt; shape <= shapePair; shape++ {
				q := leanLockSQL[f][m][shape]
				if q == "" {
					continue
				}
				n := maxParam(q) + 1
				out[q] = "SELECT s.r, s.pid, CASE WHEN s.r THEN " + fence(n) + " END FROM (" +
					strings.Replace(q, ", pg_catalog.pg_backend_pid()", " AS r, pg_catalog.pg_backend_pid() AS pid", 1) + " OFFSET 0) AS s"
			}
			for first := range sessionLockSQL {
				for shape := shapeInt; shape <= shapeMulti; shape++ {
					q := sessionLockSQL[first][f][m][shape]
					if q == "" {
						continue
					}
					n := maxParam(q) + 1
					if shape == shapeMulti {
						out[q] = strings.Replace(strings.Replace(q,
							" SELECT g.prev,", ", n AS MATERIALIZED (SELECT CASE WHEN m.v IS NOT NULL THEN "+fence(n)+" END AS tok FROM m) SELECT g.prev,", 1),
							" FROM g, t, o, m", ", n.tok FROM g, t, o, m, n", 1)
						continue
					}
					out[q] = "SELECT s.code, s.marker, s.pid, CASE WHEN pg_catalog.int4eq(s.code, 0) THEN " + fence(n) + " END FROM (" +
						strings.Replace(strings.Replace(q, " ELSE 3 END,", " ELSE 3 END AS code,", 1),
							"pg_catalog.current_setting('"+markerGUC+"', true), pg_catalog.pg_backend_pid()",
							"pg_catalog.current_setting('"+markerGUC+"', true) AS marker, pg_catalog.pg_backend_pid() AS pid", 1) +
						" OFFSET 0) AS s"
				}
			}
		}
	}
	return out
}()

// maxParam is the highest $n placeholder of q.
func maxParam(q string) int {
	hi := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '$' {
			continue
		}
		j := i + 1
		for j < len(q) && q[j] >= '0' && q[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(q[i+1 : j]); err == nil && n > hi {
			hi = n
		}
	}
	return hi
}

// fenced returns st drawing a fencing token from the sequence of oid seq
// when granted (see fencedSQL).
func fenced(st sessionStmt, seq int64) sessionStmt {
	st.sql = fencedSQL[st.sql]
	st.args = append(st.args, seq)
	st.fence = true
	return st
}

// fenceSeqSQL finds the fencing sequence: its oid, or NULL when there is no
// relation of that name ($1, resolved as regclass input is: through
// search_path unless schema-qualified).
const fenceSeqSQL = `SELECT c.oid::bigint, c.relkind::text FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)`
