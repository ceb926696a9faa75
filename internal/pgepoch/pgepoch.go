// Package pgepoch puts PostgreSQL's timeline into fencing tokens, so that a
// token drawn after a failover is greater than every token drawn before
// it, even when asynchronous replication lost the last values of the
// sequence the tokens come from.
//
// A token is timeline << [Shift] + the next value of a sequence. Every
// promotion of a standby starts a new, higher timeline, and the promoted
// server can only draw tokens once it writes on that timeline, so its
// tokens exceed every token of the timelines before it as long as fewer
// than 2^Shift sequence values were lost in the failover. The timeline is
// read from the name of the WAL segment being written
// (pg_walfile_name(pg_current_wal_lsn())), which follows the timeline the
// server inserts WAL on; pg_control_checkpoint()'s timeline_id would only
// change with the first checkpoint after a promotion, which runs in the
// background. Both functions are callable by any role by default.
//
// The timeline starts again at 1 in a cluster made anew (initdb followed by
// a restore of a dump, pg_upgrade); there the sequence must be moved past
// the highest token handed out (setval), as after any restore.
package pgepoch

// Shift is how far the timeline is shifted into a token: a token is
// timeline<<Shift + sequence value. Timelines up to 2^23-1 fit an int64.
const Shift = 40

// SQL is a PostgreSQL expression for timeline<<Shift, the epoch a token
// adds to a sequence value. Every function is schema-qualified and called
// by name, so that search_path cannot redirect it.
const SQL = `pg_catalog.int8shl(pg_catalog.textcat('x', pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::pg_catalog.bit(32)::pg_catalog.int8, 40)`

// Token returns the token expression that draws from the sequence
// expression seq (a regclass, such as 'lockkit_locks_token_seq' or a
// bound oid cast to regclass): SQL plus pg_catalog.nextval(seq).
func Token(seq string) string {
	return `pg_catalog.int8pl(` + SQL + `, pg_catalog.nextval(` + seq + `))`
}

// Timeline returns the timeline a token was drawn on.
func Timeline(token int64) int64 { return token >> Shift }
