package keyhash

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"strconv"
	"strings"
	"unicode/utf16"
)

// The presets in this file reproduce the migration and job-queue tools of
// other ecosystems that share a PostgreSQL (or MySQL) database with a Go
// service. Each comment names the file and the version its algorithm was
// read from. Tools whose lock is a table row rather than an advisory key
// (Knex, Liquibase, River) have a table name here and a statement of how
// they lock, for a status display to read; see [KnexLockTable].

// RailsMigratorSalt is ActiveRecord::Migrator::MIGRATOR_SALT.
const RailsMigratorSalt = 2053462845

// Rails returns the bigint key Rails (ActiveRecord) migrations lock on
// PostgreSQL for the database named database, reproducing
// generate_migrator_advisory_lock_id in activerecord's
// lib/active_record/migration.rb (read in activerecord 6.1.7.10, Debian's
// ruby-activerecord; the same two lines in Rails 7.x):
//
//	MIGRATOR_SALT = 2053462845
//	def generate_migrator_advisory_lock_id
//	  db_name_hash = Zlib.crc32(Base.connection.current_database)
//	  MIGRATOR_SALT * db_name_hash
//	end
//
// with_advisory_lock then runs pg_try_advisory_lock(id) on a connection of
// its own and raises ConcurrentMigrationError when it fails: Rails never
// waits. database is what SELECT current_database() returns. The product is
// below 2⁶³, so Ruby's Integer and the bigint agree.
func Rails(database string) Key {
	return Int64(int64(uint64(RailsMigratorSalt) * uint64(crc32.ChecksumIEEE([]byte(database)))))
}

// RailsMySQLLockName returns the GET_LOCK name Rails migrations take on
// MySQL and MariaDB: the decimal string of the same id, since the adapter's
// get_advisory_lock runs GET_LOCK(#{quote(lock_name.to_s)}, 0)
// (lib/active_record/connection_adapters/abstract_mysql_adapter.rb, 6.1.7.10),
// and current_database there is SELECT database(). Take it with an
// mysqllock.Locker with NoNamespace.
func RailsMySQLLockName(database string) string {
	return strconv.FormatInt(Rails(database).Int64(), 10)
}

// PrismaLockID is the advisory key Prisma Migrate locks on PostgreSQL,
// whatever the database: the schema engine runs
//
//	SELECT pg_advisory_lock(72707369)
//
// (prisma-engines, schema-engine/connectors/sql-schema-connector/src/flavour/postgres.rs;
// the statement and its timeout message "Timed out trying to acquire a
// postgres advisory lock (SELECT pg_advisory_lock(72707369))" are in the
// schema engine shipped with the npm packages prisma 6.19.3 and 7.10.1,
// build/schema_engine_bg.wasm). It waits up to 10 s, then fails. Setting
// PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK turns the lock off.
const PrismaLockID int64 = 72707369

// Prisma returns Prisma Migrate's key, [PrismaLockID].
func Prisma() Key { return Int64(PrismaLockID) }

// NodePGMigrateLockID is the advisory key node-pg-migrate locks while
// migrating: PG_MIGRATE_LOCK_ID in its runner (dist/legacy/runner.js of the
// npm package node-pg-migrate 9.0.0; the same constant in 6.2.2, 7.9.1 and
// 8.0.3):
//
//	const PG_MIGRATE_LOCK_ID = 7241865325823964;
//	await db.select(`SELECT pg_try_advisory_lock(${lockValue}) AS "lockObtained"`);
//	if (!result.lockObtained) throw new Error("Another migration is already running...")
//
// The application may pass another value as the runner's lockValue
// option; 9.x can also wait (advisoryLockMode "wait": pg_advisory_lock).
const NodePGMigrateLockID int64 = 7241865325823964

// NodePGMigrate returns node-pg-migrate's default key, [NodePGMigrateLockID].
func NodePGMigrate() Key { return Int64(NodePGMigrateLockID) }

// PgBossDefaultSchema is pg-boss's default schema, "pgboss".
const PgBossDefaultSchema = "pgboss"

// PgBoss returns the bigint key pg-boss locks with pg_advisory_xact_lock
// around its installation, migrations and maintenance, reproducing
// advisoryLock in src/plans.js of the npm package pg-boss 10.4.2
// (advisoryLockKey in dist/plans.js of 12.38.1 is the same expression):
//
//	SELECT pg_advisory_xact_lock(
//	  ('x' || encode(sha224((current_database() || '.pgboss.${schema}${key || ''}')::bytea), 'hex'))::bit(64)::bigint
//	)
//
// that is, the first 8 bytes of the SHA-224 digest of database +
// ".pgboss." + schema + key, big-endian, as a signed bigint. key is ""
// for the schema-wide lock (installation and migrations; in 10.x also
// maintenance); pg-boss 11 and later add named locks such as
// "create-queue", "delete-queue" or a table name followed by "deletion".
// An empty schema means [PgBossDefaultSchema]. pg-boss 12 drops the
// quotes of a schema configured as '"name"' before hashing.
func PgBoss(database, schema, key string) Key {
	if schema == "" {
		schema = PgBossDefaultSchema
	}
	sum := sha256.Sum224([]byte(database + ".pgboss." + schema + key))
	return Int64(int64(binary.BigEndian.Uint64(sum[:8])))
}

// pgBossKeys are the fixed names pg-boss 12.38.1 (dist/plans.js) passes to
// locked(), "" being the schema-wide lock; the per-table ones are shown for
// the default table "job".
var pgBossKeys = []string{"", "create-queue", "delete-queue", "queue-stats-insert", "bamClaim",
	"jobfailJobsByTimeout", "jobfailJobsByHeartbeat", "jobdeletion", "jobcleanupDependencies"}

// FlywayDefaultTable is Flyway's default schema history table.
const FlywayDefaultTable = "flyway_schema_history"

// flywayMagic is LOCK_MAGIC_NUM of Flyway's PostgreSQLAdvisoryLockTemplate:
// the bytes of "Flyway" as a 48-bit number.
const flywayMagic int64 = 0x46<<40 + 0x6C<<32 + 0x79<<24 + 0x77<<16 + 0x61<<8 + 0x79

// Flyway returns the bigint key Flyway locks on PostgreSQL while it
// migrates the history table schema.table (empty table:
// [FlywayDefaultTable]), reproducing, from github.com/flyway/flyway,
// flyway-database/flyway-database-postgresql/.../PostgreSQLAdvisoryLockTemplate.java
// (main in 2026, Flyway 11) and PostgreSQLConnection.lock:
//
//	LOCK_MAGIC_NUM = (0x46L << 40) + (0x6CL << 32) + (0x79L << 24) + (0x77 << 16) + (0x61 << 8) + 0x79;
//	new PostgreSQLAdvisoryLockTemplate(configuration, jdbcTemplate, table.toString().hashCode())
//	this.lockNum = LOCK_MAGIC_NUM + discriminator;
//
// where table.toString() is the quoted "schema"."table" (double quotes
// doubled inside) and hashCode is Java's String.hashCode over UTF-16 code
// units. By default (postgresql.transactional.lock true) Flyway retries
// pg_try_advisory_xact_lock(lockNum) inside a transaction; otherwise
// pg_try_advisory_lock(lockNum).
func Flyway(schema, table string) Key {
	if table == "" {
		table = FlywayDefaultTable
	}
	return Int64(flywayMagic + int64(javaHashCode(quoteIdent(schema, '"')+"."+quoteIdent(table, '"'))))
}

// FlywayMySQLLockName returns the GET_LOCK name Flyway takes on MySQL and
// MariaDB: "Flyway-" + the Java hash code of `database`.`table`
// (flyway-mysql's MySQLNamedLockTemplate and MySQLConnection.lock; MySQL
// quotes with backticks). Take it with an mysqllock.Locker with
// NoNamespace.
func FlywayMySQLLockName(database, table string) string {
	if table == "" {
		table = FlywayDefaultTable
	}
	return "Flyway-" + strconv.Itoa(int(javaHashCode(quoteIdent(database, '`')+"."+quoteIdent(table, '`'))))
}

func quoteIdent(s string, q byte) string {
	qs := string(q)
	return qs + strings.ReplaceAll(s, qs, qs+qs) + qs
}

// javaHashCode is java.lang.String.hashCode: s[0]*31^(n-1) + ... + s[n-1]
// over UTF-16 code units, wrapping at 32 bits.
func javaHashCode(s string) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(s)) {
		h = 31*h + int32(u)
	}
	return h
}

// Tables of the tools that lock with a row rather than an advisory key.
// No key reproduces them; a status display reads the row.
//
// Knex (npm knex 3.3.0, lib/migrations/migrate/Migrator.js and
// table-creator.js): the table knex_migrations_lock (the migrations table's
// name + "_lock"), columns index and is_locked, one row. _lockMigrations
// runs
//
//	UPDATE knex_migrations_lock SET is_locked = 1 WHERE is_locked = 0
//
// and fails with "Migration table is already locked" unless one row
// changed; _freeLock sets is_locked = 0. With transactions (the default on
// PostgreSQL) both run inside the migration's transaction: the committed
// value stays 0, and the lock is the row lock the UPDATE holds until
// commit, so a second Knex waits on the row. Without transactions the 1
// is committed, and a crashed run leaves it set until `knex migrate:unlock`.
//
// Liquibase (github.com/liquibase/liquibase, liquibase-standard,
// sqlgenerator/core/LockDatabaseChangeLogGenerator.java): the table
// DATABASECHANGELOGLOCK (databasechangeloglock on PostgreSQL), row ID = 1,
// set by a committed
//
//	UPDATE DATABASECHANGELOGLOCK SET LOCKED = TRUE, LOCKGRANTED = <now>,
//	    LOCKEDBY = '<hostname> (<address>)' WHERE ID = 1 AND LOCKED = FALSE
//
// and cleared by the release; a killed run leaves it set until
// `liquibase release-locks`.
//
// River (Go module github.com/riverqueue/river v0.51.2; the SQL in
// riverdriver/riverpgxv5, internal/dbsqlc/river_leader.sql): leader
// election, not migrations, through the unlogged table river_leader, one
// row (name = 'default') with leader_id (the client's id), elected_at and
// expires_at. A client becomes leader by INSERT ... ON CONFLICT (name) DO
// NOTHING, stays leader by extending expires_at, and resigns by deleting
// the row; an expired row is deleted by the next candidate. River's
// migrations (rivermigrate) take no lock. River takes advisory locks only
// for the deprecated unique-job path (Config.AdvisoryLockPrefix), on keys
// hashed from each job's arguments.
const (
	KnexLockTable      = "knex_migrations_lock"
	LiquibaseLockTable = "databasechangeloglock"
	RiverLeaderTable   = "river_leader"
)
