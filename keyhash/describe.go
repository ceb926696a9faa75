package keyhash

import "fmt"

// Tool names [Describe] returns.
const (
	ToolGoose   = "goose"
	ToolMigrate = "golang-migrate"

	ToolRails         = "rails"           // ActiveRecord migrations
	ToolPrisma        = "prisma"          // Prisma Migrate
	ToolNodePGMigrate = "node-pg-migrate" // node-pg-migrate
	ToolPgBoss        = "pg-boss"         // pg-boss's installation, migrations and maintenance
	ToolFlyway        = "flyway"          // Flyway migrations

	// Tools whose lock is a table row, not an advisory key: Describe never
	// returns them; a listing that reads their tables does (see
	// [KnexLockTable]).
	ToolKnex      = "knex"
	ToolLiquibase = "liquibase"
	ToolRiver     = "river"
)

// MigrateTarget names one place golang-migrate may keep its migrations table,
// for [Describe] to recognise its lock. Empty Schema means "public"; empty
// Table means [MigrateDefaultTable].
type MigrateTarget struct {
	Database, Schema, Table string
}

// Describe reports whether k is the advisory key of a known tool, and which:
//
//   - fixed keys: goose's ([GooseLockID], or [GooseLegacyLockID] of goose
//     v3.16.0 through v3.25.0), Prisma Migrate's ([PrismaLockID]) and
//     node-pg-migrate's default ([NodePGMigrateLockID]);
//   - keys derived from where the tool runs, tried for each target: Rails
//     migrations on the target's database ([Rails]); pg-boss's locks in
//     schema "pgboss" or the target's schema ([PgBoss], the schema-wide
//     lock and pg-boss's fixed named locks); Flyway's default history table
//     in the target's schema, or "public" when it is empty ([Flyway]); and
//     golang-migrate's lock for the target's table, with both spellings of
//     the database name that migrate uses: "test" (WithInstance,
//     CURRENT_DATABASE()) and "/test" (opened through a URL).
//
// detail says what the lock guards, for example
//
//	migrations of database "test", table "public"."schema_migrations"
//
// Keys of other tools (with_advisory_lock, django-pglocks, Symfony) hash
// application-chosen names and cannot be recognised without them; Knex,
// Liquibase and River lock table rows, not keys.
func Describe(k Key, migrate ...MigrateTarget) (tool, detail string, ok bool) {
	if k.IsPair() {
		return "", "", false
	}
	switch k.Int64() {
	case GooseLockID:
		return ToolGoose, "goose migration lock", true
	case GooseLegacyLockID:
		return ToolGoose, "goose migration lock (goose before v3.26.0)", true
	case PrismaLockID:
		return ToolPrisma, "migration lock (Prisma Migrate)", true
	case NodePGMigrateLockID:
		return ToolNodePGMigrate, "migration lock", true
	}
	if tool, detail, ok := describeDerived(k, migrate); ok {
		return tool, detail, true
	}
	for _, t := range migrate {
		schema, table := t.Schema, t.Table
		if schema == "" {
			schema = "public"
		}
		if table == "" {
			table = MigrateDefaultTable
		}
		for _, db := range []string{t.Database, "/" + t.Database} {
			if MigratePostgresLockID(db, schema, table) == k {
				return ToolMigrate, fmt.Sprintf("migrations of database %q, table %q.%q", db, schema, table), true
			}
		}
	}
	return "", "", false
}

// describeDerived tries the keys that depend on the database and schema
// of each target: Rails', pg-boss's and Flyway's.
func describeDerived(k Key, targets []MigrateTarget) (tool, detail string, ok bool) {
	for _, t := range targets {
		if Rails(t.Database) == k {
			return ToolRails, fmt.Sprintf("migrations of database %q (ActiveRecord)", t.Database), true
		}
		schema := t.Schema
		if schema == "" {
			schema = "public"
		}
		if Flyway(schema, "") == k {
			return ToolFlyway, fmt.Sprintf("migrations, table %q.%q", schema, FlywayDefaultTable), true
		}
		for _, s := range []string{PgBossDefaultSchema, schema} {
			for _, name := range pgBossKeys {
				if PgBoss(t.Database, s, name) == k {
					what := "installation, migrations and maintenance"
					if name != "" {
						what = name
					}
					return ToolPgBoss, fmt.Sprintf("schema %q (%s)", s, what), true
				}
			}
		}
	}
	return "", "", false
}
