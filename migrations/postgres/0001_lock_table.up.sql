-- lockkit lock table (PostgreSQL). One row per lock name; a row outlives
-- its leases, so the fencing token of a name only ever grows.
--
-- token comes from a sequence through the column default: an insert and a
-- takeover (UPDATE ... SET token = DEFAULT) both draw a fresh value, so
-- tokens strictly increase per name even after rows are deleted.
-- Leases are measured on the server clock: clock_timestamp().
CREATE SEQUENCE lockkit_locks_token_seq AS bigint;

CREATE TABLE lockkit_locks (
    name        varchar(255) NOT NULL,
    owner       varchar(255) NOT NULL,
    token       bigint       NOT NULL DEFAULT nextval('lockkit_locks_token_seq'),
    acquired_at timestamptz  NOT NULL,
    expires_at  timestamptz  NOT NULL,
    host        varchar(255) NOT NULL DEFAULT '',
    pid         bigint       NOT NULL DEFAULT 0,
    data        text         NOT NULL DEFAULT '',
    CONSTRAINT lockkit_locks_pkey PRIMARY KEY (name),
    CONSTRAINT lockkit_locks_name_check CHECK (name <> '')
);

ALTER SEQUENCE lockkit_locks_token_seq OWNED BY lockkit_locks.token;

-- Listing live leases and deleting long-expired rows.
CREATE INDEX lockkit_locks_expires_at_idx ON lockkit_locks (expires_at);
