// Package keyhash turns lock names and (table, record) ids into PostgreSQL
// advisory lock keys, and reproduces the keys other tools lock so that lockkit
// can share their locks.
//
// # Key spaces
//
// PostgreSQL has two advisory key spaces that never collide:
// pg_advisory_lock(bigint) and pg_advisory_lock(int, int). A [Key] is one of
// them: [Int64] makes a bigint key, [Pair] a two-int key. In pg_locks a bigint
// key shows as classid = its high 32 bits, objid = its low 32 bits and
// objsubid = 1; a pair as classid = first, objid = second, objsubid = 2
// ([Key.Pair] returns those two numbers for either kind).
//
// # Records
//
// For "one editor per row", pick a form and use it everywhere:
//
//   - [Record](table, record) packs table*1_000_000 + record into a bigint
//     key; a [Packer] with another Base packs table*Base + record. Pack
//     refuses what would collide silently — a record id ≥ Base, a negative
//     id, an int64 overflow — with an error matching lockkit.ErrInvalid.
//     [Unpack] inverts it.
//   - [PairRecord](table, record) uses the two-int key space, for ids that
//     fit in int32. It needs no base and cannot collide with packed keys or
//     name keys.
//
// # Names
//
// [Name] hashes a lock name to a bigint key: the first 8 bytes of the SHA-256
// digest of the name's UTF-8 bytes, read big-endian as a two's-complement
// int64 ([HashName], [Hash64]). [NamespacedName] hashes namespace + "\x00" +
// name the same way, so applications sharing a database can keep their names
// apart. Names are validated by [ValidateName] (not empty, at most 1024
// bytes, valid UTF-8, no NUL byte); backends call it before any I/O.
//
// Any language can compute the same key. Inside PostgreSQL (11 or later) it
// is [NameKeySQL]:
//
//	SELECT pg_advisory_lock(('x' || left(encode(sha256(convert_to('my-job', 'UTF8')), 'hex'), 16))::bit(64)::bigint);
//
// which, from psql, takes the same lock as a Go program locking
// keyhash.Name("my-job"). [NamespacedNameKeySQL] does the same for a
// namespaced name.
//
// A 64-bit hash makes accidental collisions negligible (about 3·10⁻⁸ for a
// million names), unlike the 32-bit CRC keys of several older tools, which
// collide with even odds at about 77,000 names.
//
// # Other tools
//
// These functions reproduce, from each tool's own source, the key it locks:
//
//   - golang-migrate: [MigrateLockID], [MigratePostgresLockID] (database,
//     schema, migrations table), [MigrateMySQLLockName];
//   - goose: [Goose] ([GooseLockID]); [GooseLegacy] for goose v3.16.0–v3.25.0;
//   - Rails with_advisory_lock: [WithAdvisoryLock] (PostgreSQL pair key) and
//     [WithAdvisoryLockMySQL] (GET_LOCK name);
//   - django-pglocks: [DjangoPGLocks] (2.x, equal to [Name]),
//     [DjangoPGLocksV1] (1.x, CRC-32) and [DjangoPGLocksPair];
//   - Symfony Lock's PostgreSqlStore: [Symfony];
//   - Rails (ActiveRecord) migrations: [Rails] (PostgreSQL),
//     [RailsMySQLLockName] (GET_LOCK name);
//   - Prisma Migrate: [Prisma] ([PrismaLockID]);
//   - node-pg-migrate: [NodePGMigrate] ([NodePGMigrateLockID]);
//   - pg-boss: [PgBoss] (database, schema, lock name);
//   - Flyway: [Flyway] (PostgreSQL), [FlywayMySQLLockName].
//
// Knex, Liquibase and River lock a table row instead of a key: their
// tables are [KnexLockTable], [LiquibaseLockTable] and [RiverLeaderTable],
// whose comment states how each locks. graphile-worker takes no lock: two
// workers migrating at once collide on the primary key of its migrations
// table, and the loser skips the migration the other ran.
//
// [Describe] recognises the keys of goose, golang-migrate, Rails, Prisma,
// node-pg-migrate, pg-boss and Flyway, so that a status display can name
// the tool holding a lock.
//
// # Which form to use
//
// Use [Name] (or [NamespacedName]) for named jobs and anything scripts or
// other languages must lock too; [PairRecord] for rows whose ids fit in
// int32; [Record] or a [Packer] when rows need bigint ids or an existing
// application already packs keys this way; a preset when the lock belongs to
// another tool.
package keyhash
