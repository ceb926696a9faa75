package advisory

import (
	"slices"
	"strconv"
	"strings"

	"github.com/lockkit/lockkit/keyhash"
)

// All PostgreSQL SQL of the package lives in this file. Statements are built
// from the constant fragments below only; every key is a bound parameter.

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
		s = "pg_advisory_lock"
	case fnTry:
		s = "pg_try_advisory_lock"
	case fnUnlock:
		s = "pg_advisory_unlock"
	case fnXact:
		s = "pg_advisory_xact_lock"
	case fnTryXact:
		s = "pg_try_advisory_xact_lock"
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
//	SELECT pg_try_advisory_lock($1::bigint)
//	SELECT pg_try_advisory_lock($1::int4, $2::int4)
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
			t[f][m][1] = "SELECT " + name + "($1::int4, $2::int4)"
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
//	SELECT false AS pair, k, 0 AS a, 0 AS b, f(k) AS r FROM unnest($1::bigint[]) AS k
//	UNION ALL
//	SELECT true, 0, a, b, f(a, b) FROM unnest($2::int4[], $3::int4[]) AS u(a, b)
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
		// The void result of the waiting functions, as a boolean.
		r = "(" + r + ") IS NULL"
		rp = "(" + rp + ") IS NULL"
	}
	sql := "SELECT false AS pair, k, 0::int4 AS a, 0::int4 AS b, " + r + " AS r FROM unnest($1::bigint[]) AS k" +
		" UNION ALL SELECT true, 0::bigint, a, b, " + rp + " FROM unnest($2::int4[], $3::int4[]) AS u(a, b)"
	return stmt{sql, []any{ints, as, bs}}
}

// tryAllOrNothing builds one statement that tries every key in sorted order
// and, unless every one was granted, unlocks in the same statement the ones
// that were. It returns one row per key: the key, whether it was granted,
// and the unlock result for a granted key when not all were (else NULL).
//
//	WITH t AS MATERIALIZED (<multi try>),
//	     s AS MATERIALIZED (SELECT bool_and(r) AS ok FROM t)
//	SELECT t.pair, t.k, t.a, t.b, t.r,
//	       CASE WHEN t.r AND NOT s.ok THEN <unlock of the key> END
//	FROM t CROSS JOIN s
//
// Both CTEs are materialised, so each try runs once; s needs every row of t,
// so every try has run before any unlock does.
func tryAllOrNothing(m Mode, keys []keyhash.Key) stmt {
	st := multi(fnTry, m, keys)
	un := fnUnlock.name(m)
	st.sql = "WITH t AS MATERIALIZED (" + st.sql + "), s AS MATERIALIZED (SELECT bool_and(r) AS ok FROM t)" +
		" SELECT t.pair, t.k, t.a, t.b, t.r, CASE WHEN t.r AND NOT s.ok THEN" +
		" CASE WHEN t.pair THEN " + un + "(t.a, t.b) ELSE " + un + "(t.k) END END FROM t CROSS JOIN s"
	return st
}

// holderSQL finds the session that holds an advisory lock in this database,
// for a conflict error: of the keys given as three parallel arrays ($1
// classid, $2 objid, $3 objsubid, as pg_locks shows them, see lockTag), the
// first that another session holds, an exclusive holder before a shared
// one. Since is, for an idle session (a lockkit holder between statements),
// when its last statement ended — normally the lock call; for a session in a
// transaction, the transaction's start; otherwise the session's start.
const holderSQL = `SELECT a.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''),
 coalesce(host(a.client_addr), ''),
 CASE WHEN a.state = 'idle' THEN a.state_change ELSE coalesce(a.xact_start, a.backend_start) END
FROM unnest($1::bigint[], $2::bigint[], $3::int2[]) WITH ORDINALITY AS q(c, o, s, n)
JOIN pg_locks l ON l.classid = q.c::oid AND l.objid = q.o::oid AND l.objsubid = q.s
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
 AND l.pid <> pg_backend_pid()
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
const listSQL = `SELECT l.classid::bigint, l.objid::bigint, l.objsubid::int2, l.mode,
 a.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''),
 coalesce(a.client_hostname, host(a.client_addr), ''), a.state_change
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY l.classid, l.objid, l.objsubid, a.pid`

// List reads where golang-migrate and the other tools would keep their
// tables on this session's database with toolTablesSQL (tooltables.go).
