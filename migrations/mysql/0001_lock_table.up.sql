-- lockkit lock table (MySQL 8.0+ / MariaDB 10.3+). One statement per file,
-- so the connection needs no multiStatements.
--
-- name is VARBINARY so that names compare byte for byte (no case folding, no
-- trailing-space padding). Timestamps are DATETIME(6) in UTC, always written
-- and compared with UTC_TIMESTAMP(6), so the session time_zone never
-- matters. Tokens: a takeover sets GREATEST(token + 1, server clock in
-- microseconds); a row is never deleted while its lease is live.
CREATE TABLE lockkit_locks (
    name        VARBINARY(255) NOT NULL,
    owner       VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    token       BIGINT NOT NULL,
    acquired_at DATETIME(6) NOT NULL,
    expires_at  DATETIME(6) NOT NULL,
    host        VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    pid         BIGINT NOT NULL DEFAULT 0,
    data        TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    PRIMARY KEY (name),
    KEY lockkit_locks_expires_at_idx (expires_at),
    CONSTRAINT lockkit_locks_name_check CHECK (name <> '')
) ENGINE=InnoDB
