-- Fencing tokens that survive a failover (PostgreSQL). A token becomes
-- timeline << 40 plus the next value of lockkit_locks_token_seq, where
-- timeline is the server's current timeline (the first 8 hex digits of the
-- WAL segment being written). Every promotion of a standby starts a higher
-- timeline, so a token drawn after a failover is greater than every token
-- drawn before it even when asynchronous replication lost the sequence's
-- last values with the old primary. Tokens drawn before this migration are
-- plain sequence values, below 2^40: the next token is still greater.
--
-- The acquire statement sets token = DEFAULT, so the statements do not
-- change and every client of the table, whatever its lockkit version,
-- draws tokens the same way.
--
-- The timeline starts again at 1 in a cluster made anew (a dump restored
-- after initdb, pg_upgrade): there, move the sequence past the highest
-- token handed out, as after any restore:
--   SELECT setval('lockkit_locks_token_seq', <highest token>);
ALTER TABLE lockkit_locks ALTER COLUMN token SET DEFAULT
    pg_catalog.int8pl(pg_catalog.int8shl(pg_catalog.textcat('x', pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::pg_catalog.bit(32)::pg_catalog.int8, 40), pg_catalog.nextval('lockkit_locks_token_seq'));
