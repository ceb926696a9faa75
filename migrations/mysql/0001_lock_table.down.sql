DROP TABLE lockkit_locks
