package rowlock

import "github.com/lockkit/lockkit/internal/invalid"

// SQL is the text of the statements a [Locker] sends to take, renew and
// end leases, for one dialect and table: for an audit, for a service in
// another language that takes and ends the same leases, and for a
// benchmark that runs them through the raw driver. Placeholders are $n on
// PostgreSQL and ? on MySQL; every value is bound; durations are integer
// microseconds. Each field says its arguments and result.
//
// The statements belong to the lockkit version that returns them and may
// change between versions (a release statement did, to fix a race), so a
// service that sends them itself must take them from the same version as
// the Lockers it shares leases with.
type SQL struct {
	// Acquire inserts the lease or takes over an expired one, in one
	// statement.
	//
	// PostgreSQL: args name, owner, ttl µs, host, pid, data. One row:
	// the new token (0 when the lease is live elsewhere), then the
	// holder's columns as Holder's (zero values when acquired). No row:
	// the row changed under the statement; try again.
	//
	// MySQL: args name, owner, ttl µs, host, pid, data, owner, host, pid,
	// data, ttl µs. The new token is the statement's LAST_INSERT_ID (0
	// when the lease is live elsewhere); then read the holder with Holder.
	Acquire string
	// Holder reads the row of a name. Args: name. Columns: owner, token,
	// acquired and expires (µs since the epoch), host, pid, data, µs
	// until expiry (negative once expired).
	Holder string
	// Renew extends a live lease to ttl from now. Args: ttl µs, name,
	// owner, token. One row affected: renewed; none: the lease is gone.
	Renew string
	// Release ends a lease by owner and token. Args: name, owner, token,
	// and on PostgreSQL the notification channel (Channel). PostgreSQL
	// returns one count, MySQL reports rows affected: 1 released, 0 the
	// lease was no longer this holder's.
	Release string
	// Channel is the PostgreSQL channel Release notifies, on which
	// waiting Lockers LISTEN; empty on MySQL.
	Channel string
}

// Statements returns the statements a Locker with Config{Dialect: d,
// Table: table} sends; an empty table means [DefaultTable]. A bad dialect
// or table returns an error matching lockkit.ErrInvalid.
func Statements(d Dialect, table string) (*SQL, error) {
	if table == "" {
		table = DefaultTable
	}
	if !identRE.MatchString(table) {
		return nil, invalid.Errorf("rowlock: table %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)", table)
	}
	switch d {
	case Postgres:
		q := newStatements(d, `"`+table+`"`)
		return &SQL{Acquire: q.acquireHolder, Holder: q.holder, Renew: q.renew, Release: q.release, Channel: notifyChannel(table)}, nil
	case MySQL:
		q := newStatements(d, "`"+table+"`")
		return &SQL{Acquire: q.acquire, Holder: q.holder, Renew: q.renew, Release: q.release}, nil
	}
	return nil, invalid.Errorf("rowlock: unknown dialect %q (want %q or %q)", d, Postgres, MySQL)
}
