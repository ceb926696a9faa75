package keyhash

import "fmt"

// Tool names [Describe] returns.
const (
	ToolGoose   = "goose"
	ToolMigrate = "golang-migrate"
)

// MigrateTarget names one place golang-migrate may keep its migrations table,
// for [Describe] to recognise its lock. Empty Schema means "public"; empty
// Table means [MigrateDefaultTable].
type MigrateTarget struct {
	Database, Schema, Table string
}

// Describe reports whether k is the advisory key of a known tool, and which:
// goose's fixed id ([GooseLockID], or [GooseLegacyLockID] of goose v3.16.0
// through v3.25.0), or golang-migrate's lock for one of the
// given targets. For each target both spellings of the database name that
// migrate uses are tried: "test" (WithInstance, CURRENT_DATABASE()) and
// "/test" (opened through a URL). detail says what the lock guards, for
// example
//
//	migrations of database "test", table "public"."schema_migrations"
//
// Keys of other tools (with_advisory_lock, django-pglocks, Symfony) hash
// application-chosen names and cannot be recognised without them.
func Describe(k Key, migrate ...MigrateTarget) (tool, detail string, ok bool) {
	if k.IsPair() {
		return "", "", false
	}
	switch k.Int64() {
	case GooseLockID:
		return ToolGoose, "goose migration lock", true
	case GooseLegacyLockID:
		return ToolGoose, "goose migration lock (goose before v3.26.0)", true
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
