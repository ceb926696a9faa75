// Package migrations holds lockkit's lock table as golang-migrate migration
// files, one directory per SQL dialect, and a small helper that applies them.
//
// # The files
//
// postgres/ and mysql/ hold NNNN_name.up.sql and NNNN_name.down.sql files,
// embedded in the package and returned by [FS] as an fs.FS for
// golang-migrate's iofs source. They are plain files in the module too, so
// golang-migrate's CLI can run them; give it lockkit's history table so it
// does not mix with the application's schema_migrations:
//
//	migrate -path migrations/postgres \
//	  -database 'postgres://host/db?x-migrations-table=lockkit_schema_migrations' up
//
// The MySQL files hold one statement each, so the connection needs no
// multiStatements=true.
//
// # The helper
//
// [Up], [Down] and [Version] run the files against a *sql.DB (pgx's
// database/sql driver for PostgreSQL, go-sql-driver/mysql for MySQL and
// MariaDB) under the history table [DefaultMigrationsTable]. They borrow
// one connection from the caller's pool, never close or reconfigure the
// caller's *sql.DB, and destroy the borrowed connection afterwards. Many
// processes may call Up at once: they queue on a session lock, and every
// one of them returns once the schema is current.
//
// # The table
//
// The lock table is [TableName]: one row per lock name with the holder
// (owner, host, pid, free-form data), a fencing token, and the lease's
// acquired and expiry times with microsecond precision, measured on the
// database clock. A row outlives the leases held on it: release ends the
// lease but keeps the row, so a name's fencing token only grows. On
// PostgreSQL tokens come from a sequence (so they grow even across deleted
// rows), with the server's timeline in the high bits since migration 2
// (timeline << 40 plus the sequence value: a token drawn after a failover
// exceeds every token drawn before it, even when asynchronous replication
// lost the sequence's last values); on MySQL a takeover sets
// GREATEST(token + 1, server clock in microseconds). Package rowlock uses the table; applications that want a
// copy under another name can copy these files and change the name.
package migrations
