// Package advisory provides session- and transaction-scoped advisory locks
// on PostgreSQL (pg_advisory_lock and friends) and MySQL/MariaDB user locks
// (GET_LOCK).
package advisory
