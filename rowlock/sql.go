package rowlock

import "strings"

// statements holds every SQL statement of one dialect, for one table. The
// table name is validated and quoted; every value is bound. No statement
// reads the client's clock: leases are computed and compared with
// clock_timestamp() on PostgreSQL and UTC_TIMESTAMP(6) on MySQL (UTC, so
// the session time_zone does not matter), with durations bound as integer
// microseconds.
type statements struct {
	// acquire inserts the row or takes over an expired lease in one
	// statement. Args: name, owner, ttl µs, host, pid, data.
	// PostgreSQL returns the token (no row: held). MySQL reports the
	// token as LastInsertId (0: held).
	acquire string
	// acquireHolder (PostgreSQL only) is acquire that also reads the
	// holder when the lease is live elsewhere, so that a failed attempt
	// costs one round trip. Args: as acquire. One row: the new token
	// (0: held), then the holder's columns as holder (zero values when
	// acquired). No row: the row changed under the statement (a row
	// inserted by another transaction after the statement's snapshot).
	acquireHolder string
	// holder reads the row of a name. Args: name. Columns: owner, token,
	// acquired µs since the epoch, expires µs, host, pid, data, µs until
	// expiry (negative when expired).
	holder string
	// release ends a lease. Args: name, owner, token (PostgreSQL: and the
	// channel). PostgreSQL returns one count (1: released, and
	// notified); MySQL reports rows affected.
	release string
	// renew extends a live lease. Args: ttl µs, name, owner, token.
	// Rows affected: 1 renewed, 0 lost.
	renew string
	// resume checks a live lease. Args: name, owner, token. Returns the
	// µs until expiry; no row when the lease is gone.
	resume string
	// list reads every live lease. Columns: name, then as holder.
	list string
	// force ends any live lease on a name. Args: name (PostgreSQL: and
	// the channel). Like release.
	force string
	// cleanup deletes rows expired longer ago than the bound µs.
	cleanup string
	// seed inserts an unheld row for a name if there is none. Args: name.
	seed string
	// exists reads whether a name has a row and a live lease (MySQL,
	// before a transaction lock). Args: name.
	exists string
	// lockTx locks the row of a name inside a transaction. Args: name.
	// Columns: as holder. lockTxNowait fails at once when it is locked.
	lockTx, lockTxNowait string

	// The waiting room (see room.go).
	//
	// PostgreSQL: roomEnter takes the room, a session advisory lock on
	// two int4 keys, waiting for it at most lock_timeout, then makes the
	// attempt of acquireHolder; it gives the room back in the same
	// statement when it acquired without waiting. Args: as acquire, then
	// the two keys and lock_timeout (text). Columns: as acquireHolder,
	// then whether it waited for the room. Error 55P03: the room was busy
	// for lock_timeout; nothing was taken.
	//
	// MySQL: roomEnter takes the room, a user lock (GET_LOCK), waiting
	// for it at most the timeout; the attempt is acquire, a statement of
	// its own. Args: the room's name, twice, and the timeout in seconds.
	// Columns: whether the room was free just before (IS_FREE_LOCK),
	// GET_LOCK's answer (1 taken, 0 timed out, NULL killed or an error),
	// the connection's id.
	roomEnter string
	// roomRelease is release, then gives the room back once the lease
	// has ended. PostgreSQL: args as release, then the two keys; columns
	// the count, whether the room was given back. MySQL: args the room's
	// name, then as release; rows affected as release, and the
	// statement's LAST_INSERT_ID is 2 when the room was given back (0
	// when no row was ended, and the room was kept).
	roomRelease string
	// roomLeave gives the room back. Args: the two keys (MySQL: the
	// room's name). One column: true (MySQL: 1) when it was held.
	roomLeave string
}

func newStatements(d Dialect, qtable string) *statements {
	r := strings.NewReplacer("{t}", qtable)
	if d == Postgres {
		acquire := r.Replace(`INSERT INTO {t} AS t (name, owner, acquired_at, expires_at, host, pid, data)
VALUES ($1, $2, clock_timestamp(), clock_timestamp() + $3::bigint * interval '1 microsecond', $4, $5, $6)
ON CONFLICT (name) DO UPDATE SET
  owner = EXCLUDED.owner, token = DEFAULT,
  acquired_at = clock_timestamp(), expires_at = clock_timestamp() + $3::bigint * interval '1 microsecond',
  host = EXCLUDED.host, pid = EXCLUDED.pid, data = EXCLUDED.data
WHERE t.expires_at <= clock_timestamp()
RETURNING token`)
		// The room is taken (waiting at most lock_timeout, which then goes
		// back to 0 so that the insert's own row waits are not bounded
		// by it), then the insert reads it, so the attempt comes after;
		// OFFSET 0 keeps each step a subquery evaluated in that order.
		room := `WITH room AS MATERIALIZED (
  SELECT w.waited, set_config('lock_timeout', '0', true) AS lt FROM (
    SELECT CASE WHEN pg_try_advisory_lock($7::int, $8::int) THEN false
      ELSE pg_advisory_lock($7::int, $8::int)::text = '' END AS waited
    FROM (SELECT set_config('lock_timeout', $9, true) AS lt) c OFFSET 0) w),
a AS (` + strings.Replace(acquire, "VALUES ($1, $2, clock_timestamp(), clock_timestamp() + $3::bigint * interval '1 microsecond', $4, $5, $6)",
			"SELECT $1, $2, clock_timestamp(), clock_timestamp() + $3::bigint * interval '1 microsecond', $4, $5, $6 FROM room", 1) + `)
SELECT a.token, '', 0::bigint, 0::bigint, 0::bigint, '', 0, '', 0::bigint, r.waited,
  CASE WHEN r.waited THEN false ELSE pg_advisory_unlock($7::int, $8::int) END
FROM a, room r
UNION ALL
SELECT 0, h.*, r.waited, false FROM room r, (` + r.Replace(pgHolderCols+` FROM {t} WHERE name = $1 FOR SHARE`) + `) h
WHERE NOT EXISTS (SELECT 1 FROM a)`
		const ended = `WITH r AS (
  UPDATE {t} SET expires_at = clock_timestamp()
  WHERE name = $1 AND owner = $2 AND token = $3 AND expires_at > clock_timestamp()
  RETURNING name)`
		release := r.Replace(ended + `
SELECT count(pg_notify($4, name)) FROM r`)
		return &statements{
			roomEnter: room,
			// The count is taken (and the lease ended) before the room
			// is given back.
			roomRelease: r.Replace(ended + `,
c AS MATERIALIZED (SELECT count(pg_notify($4, name)) AS n FROM r)
SELECT n, pg_advisory_unlock($5::int, $6::int) FROM c`),
			roomLeave: `SELECT pg_advisory_unlock($1::int, $2::int)`,
			acquire:   acquire,
			// The holder is read only when the insert returned nothing
			// (a one-time filter: no scan after a success). ON CONFLICT
			// has locked the live row; FOR SHARE makes the read return
			// that row's latest version rather than the statement's
			// snapshot, which may predate a takeover.
			acquireHolder: `WITH a AS (` + acquire + `)
SELECT token, '', 0::bigint, 0::bigint, 0::bigint, '', 0, '', 0::bigint FROM a
UNION ALL
SELECT 0, h.* FROM (` + r.Replace(pgHolderCols+` FROM {t} WHERE name = $1 FOR SHARE`) + `) h
WHERE NOT EXISTS (SELECT 1 FROM a)`,
			holder:  r.Replace(pgHolderCols + ` FROM {t} WHERE name = $1`),
			release: release,
			renew: r.Replace(`UPDATE {t} SET expires_at = clock_timestamp() + $1::bigint * interval '1 microsecond'
WHERE name = $2 AND owner = $3 AND token = $4 AND expires_at > clock_timestamp()`),
			resume: r.Replace(`SELECT ` + pgRemaining + ` FROM {t}
WHERE name = $1 AND owner = $2 AND token = $3 AND expires_at > clock_timestamp()`),
			list: r.Replace(`SELECT name, ` + strings.TrimPrefix(pgHolderCols, "SELECT ") + ` FROM {t}
WHERE expires_at > clock_timestamp() ORDER BY name`),
			force: r.Replace(`WITH r AS (
  UPDATE {t} SET expires_at = clock_timestamp()
  WHERE name = $1 AND expires_at > clock_timestamp()
  RETURNING name)
SELECT count(pg_notify($2, name)) FROM r`),
			cleanup: r.Replace(`DELETE FROM {t} WHERE expires_at < clock_timestamp() - $1::bigint * interval '1 microsecond'`),
			seed: r.Replace(`INSERT INTO {t} (name, owner, acquired_at, expires_at)
VALUES ($1, '', 'epoch', 'epoch') ON CONFLICT (name) DO NOTHING`),
			lockTx:       r.Replace(pgHolderCols + ` FROM {t} WHERE name = $1 FOR UPDATE`),
			lockTxNowait: r.Replace(pgHolderCols + ` FROM {t} WHERE name = $1 FOR UPDATE NOWAIT`),
		}
	}
	// MySQL. In ON DUPLICATE KEY UPDATE, assignments run left to right
	// and later ones see the new values, so every column tests the old
	// expires_at and expires_at is assigned last. LAST_INSERT_ID(expr)
	// reports the new token to the client in the OK packet (0 when the
	// lease is live), so the outcome needs no read back and does not
	// depend on the clientFoundRows setting.
	const (
		expired = `expires_at <= UTC_TIMESTAMP(6)`
		myEnded = `LEAST(acquired_at, UTC_TIMESTAMP(6))`
	)
	return &statements{
		acquire: r.Replace(`INSERT INTO {t} (name, owner, token, acquired_at, expires_at, host, pid, data)
VALUES (?, ?, LAST_INSERT_ID(` + myNowMicros + `), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?, ?, ?)
ON DUPLICATE KEY UPDATE
  token = IF(` + expired + `, LAST_INSERT_ID(GREATEST(token + 1, ` + myNowMicros + `)), token + LAST_INSERT_ID(0)),
  owner = IF(` + expired + `, ?, owner),
  acquired_at = IF(` + expired + `, UTC_TIMESTAMP(6), acquired_at),
  host = IF(` + expired + `, ?, host),
  pid = IF(` + expired + `, ?, pid),
  data = IF(` + expired + `, ?, data),
  expires_at = IF(` + expired + `, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, expires_at)`),
		holder: r.Replace(myHolderCols + ` FROM {t} WHERE name = ?`),
		// A MySQL statement reads UTC_TIMESTAMP() once, when it starts,
		// so a statement that waited for the row lock compares
		// expires_at with a time from before it waited. Ending a lease
		// at "now" would let a renewal queued behind the release (or a
		// force-release) find it live and extend it again. An ended
		// lease therefore gets expires_at = acquired_at: no statement
		// on that lease can have started earlier, and a takeover queued
		// behind the release sees it ended at once.
		release: r.Replace(`UPDATE {t} SET expires_at = ` + myEnded + ` WHERE name = ? AND owner = ? AND token = ? AND expires_at > UTC_TIMESTAMP(6)`),
		// The room's lock is taken in a statement of its own: one
		// statement that waited for it and then attempted would judge
		// the lease by UTC_TIMESTAMP(6) from before the wait, and hold
		// the table's metadata lock while it waited.
		roomEnter: `SELECT IS_FREE_LOCK(?), GET_LOCK(?, ?), CONNECTION_ID()`,
		// The room is given back while the row is being updated (the
		// assignment runs only on a row the WHERE matched), before the
		// update commits: the next head's attempt then waits for the
		// row's lock and finds the lease ended, as a takeover queued
		// behind a release does (see release).
		roomRelease: r.Replace(`UPDATE {t} SET expires_at = ` + myEnded + ` + INTERVAL 0 * LAST_INSERT_ID(COALESCE(RELEASE_LOCK(?), 0) + 1) MICROSECOND
WHERE name = ? AND owner = ? AND token = ? AND expires_at > UTC_TIMESTAMP(6)`),
		roomLeave: `SELECT RELEASE_LOCK(?)`,
		renew: r.Replace(`UPDATE {t} SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
WHERE name = ? AND owner = ? AND token = ? AND expires_at > UTC_TIMESTAMP(6)`),
		resume: r.Replace(`SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at) FROM {t}
WHERE name = ? AND owner = ? AND token = ? AND expires_at > UTC_TIMESTAMP(6)`),
		list: r.Replace(`SELECT name, ` + strings.TrimPrefix(myHolderCols, "SELECT ") + ` FROM {t}
WHERE expires_at > UTC_TIMESTAMP(6) ORDER BY name`),
		force:   r.Replace(`UPDATE {t} SET expires_at = ` + myEnded + ` WHERE name = ? AND expires_at > UTC_TIMESTAMP(6)`),
		cleanup: r.Replace(`DELETE FROM {t} WHERE expires_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND`),
		// The no-op update keeps an existing row as it is; the token of a
		// new row follows the clock like a takeover's.
		seed: r.Replace(`INSERT INTO {t} (name, owner, token, acquired_at, expires_at, host, pid, data)
VALUES (?, '', ` + myNowMicros + `, '1970-01-01', '1970-01-01', '', 0, '')
ON DUPLICATE KEY UPDATE name = name`),
		exists:       r.Replace(`SELECT expires_at > UTC_TIMESTAMP(6) FROM {t} WHERE name = ?`),
		lockTx:       r.Replace(myHolderCols + ` FROM {t} WHERE name = ? FOR UPDATE`),
		lockTxNowait: r.Replace(myHolderCols + ` FROM {t} WHERE name = ? FOR UPDATE NOWAIT`),
	}
}

const (
	pgRemaining  = `(extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint`
	pgHolderCols = `SELECT owner, token,
  (extract(epoch FROM acquired_at) * 1000000)::bigint, (extract(epoch FROM expires_at) * 1000000)::bigint,
  host, pid, data, ` + pgRemaining
	myNowMicros  = `TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))`
	myHolderCols = `SELECT owner, token,
  TIMESTAMPDIFF(MICROSECOND, '1970-01-01', acquired_at), TIMESTAMPDIFF(MICROSECOND, '1970-01-01', expires_at),
  host, pid, data, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at)`
)
