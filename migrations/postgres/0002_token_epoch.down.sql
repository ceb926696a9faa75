-- Back to plain sequence values as tokens. The sequence first moves to
-- the current timeline's epoch plus its last value, which is at least
-- every token handed out so far, so tokens keep increasing.
SELECT setval('lockkit_locks_token_seq',
    pg_catalog.int8pl(pg_catalog.int8shl(pg_catalog.textcat('x', pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::pg_catalog.bit(32)::pg_catalog.int8, 40), last_value))
FROM lockkit_locks_token_seq;

ALTER TABLE lockkit_locks ALTER COLUMN token SET DEFAULT nextval('lockkit_locks_token_seq');
