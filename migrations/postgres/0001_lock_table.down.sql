-- Drops the lock table; its token sequence is owned by the table and goes
-- with it.
DROP TABLE lockkit_locks;
