package keyhash_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// Source: activerecord 6.1.7.10 (Debian's ruby-activerecord),
// lib/active_record/migration.rb:
//
//	MIGRATOR_SALT = 2053462845
//	db_name_hash = Zlib.crc32(Base.connection.current_database)
//	MIGRATOR_SALT * db_name_hash
//
// interop's TestRailsMigrationLockInterop runs a real migration.
func TestRails(t *testing.T) {
	for _, c := range []struct {
		db   string
		want int64 // ruby -rzlib -e 'p 2053462845 * Zlib.crc32(db)'
	}{
		{"test", 7458657555131878620},
		{"myapp_production", 8572362244439197575},
		{"données", 2044265567675438205},
	} {
		if ref := int64(2053462845 * uint64(refCRC32([]byte(c.db)))); ref != c.want {
			t.Fatalf("reference(%q) = %d, Ruby says %d", c.db, ref, c.want)
		}
		if got := keyhash.Rails(c.db); got != keyhash.Int64(c.want) {
			t.Errorf("Rails(%q) = %v, want %d", c.db, got, c.want)
		}
		if got := keyhash.RailsMySQLLockName(c.db); got != fmt.Sprint(c.want) {
			t.Errorf("RailsMySQLLockName(%q) = %q, want %d", c.db, got, c.want)
		}
	}
	// The largest CRC still fits in a bigint, as Rails' bit_length <= 63 check requires.
	if max := uint64(2053462845) * 0xFFFFFFFF; max >= 1<<63 {
		t.Fatalf("salt × max CRC = %d overflows int64", max)
	}
}

// Sources: Prisma's schema engine (prisma-engines,
// schema-engine/connectors/sql-schema-connector/src/flavour/postgres.rs:
// "SELECT pg_advisory_lock(72707369)", also in build/schema_engine_bg.wasm
// of npm prisma 6.19.3 and 7.10.1); node-pg-migrate 9.0.0
// dist/legacy/runner.js: PG_MIGRATE_LOCK_ID = 7241865325823964.
func TestFixedToolKeys(t *testing.T) {
	if keyhash.Prisma() != keyhash.Int64(72707369) || keyhash.PrismaLockID != 72707369 {
		t.Errorf("Prisma() = %v", keyhash.Prisma())
	}
	if keyhash.NodePGMigrate() != keyhash.Int64(7241865325823964) || keyhash.NodePGMigrateLockID != 7241865325823964 {
		t.Errorf("NodePGMigrate() = %v", keyhash.NodePGMigrate())
	}
}

// Source: npm pg-boss 10.4.2, src/plans.js (advisoryLock); 12.38.1,
// dist/plans.js (advisoryLockKey). The values are PostgreSQL's own, from
// pg-boss's expression run in psql:
//
//	SELECT ('x' || encode(sha224((d || '.pgboss.' || s || k)::bytea), 'hex'))::bit(64)::bigint
//
// TestToolStatementsExcludePresets runs it against the server too.
func TestPgBoss(t *testing.T) {
	for _, c := range []struct {
		db, schema, key string
		want            int64
	}{
		{"test", "pgboss", "", -5286306967951862581},
		{"test", "", "", -5286306967951862581},
		{"test", "pgboss", "create-queue", -5967785093035590452},
		{"prod", "jobs", "", 6150848183877842856},
		{"test", "pgboss", "jobdeletion", -3767961465484248709},
	} {
		if got := keyhash.PgBoss(c.db, c.schema, c.key); got != keyhash.Int64(c.want) {
			t.Errorf("PgBoss(%q, %q, %q) = %v, want %d", c.db, c.schema, c.key, got, c.want)
		}
	}
}

// refJavaHash is java.lang.String.hashCode written out over UTF-16 code
// units with 64-bit arithmetic reduced at the end.
func refJavaHash(s string) int32 {
	var h uint64
	for _, r := range s {
		var units []uint64
		if r >= 0x10000 {
			r -= 0x10000
			units = []uint64{0xD800 + uint64(r>>10), 0xDC00 + uint64(r&0x3FF)}
		} else {
			units = []uint64{uint64(r)}
		}
		for _, u := range units {
			h = (h*31 + u) & 0xFFFFFFFF
		}
	}
	return int32(uint32(h))
}

// Source: github.com/flyway/flyway, PostgreSQLAdvisoryLockTemplate.java
// (LOCK_MAGIC_NUM + table.toString().hashCode()) and MySQLNamedLockTemplate.java
// ("Flyway-" + discriminator). The values were computed by Java 17 with
// LOCK_MAGIC_NUM copied from the source and the quoted table names
// "schema"."table" (PostgreSQL) and `db`.`table` (MySQL).
func TestFlyway(t *testing.T) {
	const magic = 0x46<<40 + 0x6C<<32 + 0x79<<24 + 0x77<<16 + 0x61<<8 + 0x79
	if magic != 77431708279161 { // Java: System.out.println(LOCK_MAGIC_NUM)
		t.Fatalf("magic = %d", int64(magic))
	}
	for _, c := range []struct {
		schema, table string
		want          int64
		mysql         string
	}{
		{"public", "", 77433833903597, "Flyway-1981264048"},
		{"public", "flyway_schema_history", 77433833903597, "Flyway-1981264048"},
		{"app", "", 77431436970681, "Flyway--320650056"},
		{"public", "migrations_history", 77429740610006, "Flyway-967193949"},
		{"schéma", "日本", 77433503983109, "Flyway--1733526132"},
	} {
		table := c.table
		if table == "" {
			table = "flyway_schema_history"
		}
		if ref := magic + int64(refJavaHash(`"`+c.schema+`"."`+table+`"`)); ref != c.want {
			t.Fatalf("reference(%q, %q) = %d, Java says %d", c.schema, table, ref, c.want)
		}
		if got := keyhash.Flyway(c.schema, c.table); got != keyhash.Int64(c.want) {
			t.Errorf("Flyway(%q, %q) = %v, want %d", c.schema, c.table, got, c.want)
		}
		if got := keyhash.FlywayMySQLLockName(c.schema, c.table); got != c.mysql {
			t.Errorf("FlywayMySQLLockName(%q, %q) = %q, want %q", c.schema, c.table, got, c.mysql)
		}
	}
	// A quote inside a name is doubled, as Flyway's PostgreSQL doQuote does.
	if got, want := keyhash.Flyway(`a"b`, "t"), keyhash.Int64(magic+int64(refJavaHash(`"a""b"."t"`))); got != want {
		t.Errorf("Flyway with a quote = %v, want %v", got, want)
	}
	// Characters outside the BMP count as two UTF-16 units.
	if got, want := keyhash.Flyway("🔒", "t"), keyhash.Int64(magic+int64(refJavaHash(`"🔒"."t"`))); got != want {
		t.Errorf("Flyway with an emoji = %v, want %v", got, want)
	}
}

func TestDescribeEcosystems(t *testing.T) {
	targets := []keyhash.MigrateTarget{{Database: "test", Schema: "app"}}
	for _, c := range []struct {
		k                keyhash.Key
		tool, wantDetail string
	}{
		{keyhash.Int64(72707369), keyhash.ToolPrisma, "migration lock (Prisma Migrate)"},
		{keyhash.Int64(7241865325823964), keyhash.ToolNodePGMigrate, "migration lock"},
		{keyhash.Int64(7458657555131878620), keyhash.ToolRails, `migrations of database "test" (ActiveRecord)`},
		{keyhash.Int64(-5286306967951862581), keyhash.ToolPgBoss, `schema "pgboss" (installation, migrations and maintenance)`},
		{keyhash.Int64(-5967785093035590452), keyhash.ToolPgBoss, `schema "pgboss" (create-queue)`},
		{keyhash.PgBoss("test", "app", ""), keyhash.ToolPgBoss, `schema "app" (installation, migrations and maintenance)`},
		{keyhash.Flyway("app", ""), keyhash.ToolFlyway, `migrations, table "app"."flyway_schema_history"`},
	} {
		tool, detail, ok := keyhash.Describe(c.k, targets...)
		if !ok || tool != c.tool || detail != c.wantDetail {
			t.Errorf("Describe(%v) = %q, %q, %v; want %q, %q", c.k, tool, detail, ok, c.tool, c.wantDetail)
		}
	}
	// An empty schema stands for public.
	if tool, _, ok := keyhash.Describe(keyhash.Flyway("public", ""), keyhash.MigrateTarget{Database: "test"}); !ok || tool != keyhash.ToolFlyway {
		t.Errorf("Flyway in public not recognised: %q %v", tool, ok)
	}
	// Database-derived keys need a target.
	for _, k := range []keyhash.Key{keyhash.Rails("test"), keyhash.PgBoss("test", "", ""), keyhash.Flyway("public", "")} {
		if tool, _, ok := keyhash.Describe(k); ok {
			t.Errorf("Describe(%v) without targets = %q", k, tool)
		}
	}
	// Another database's Rails key is not this one's.
	if _, _, ok := keyhash.Describe(keyhash.Rails("other"), targets...); ok {
		t.Error("Rails key of another database recognised")
	}
}

// TestToolStatementsExcludePresets runs, in one session, the statement each
// tool sends, as its source writes it (pg-boss's key computed by the
// server from current_database()), and checks that lockkit's preset is
// then refused in another session, and free again after the tool's
// unlock. Transaction-level locks (pg-boss, Flyway's default) are taken
// inside a transaction that is then rolled back.
func TestToolStatementsExcludePresets(t *testing.T) {
	db := integration.Postgres(t)
	tool, lk := pgConn(t, db), pgConn(t, db)
	ctx := context.Background()
	var dbName, schema string
	if err := tool.QueryRowContext(ctx, "SELECT current_database(), current_schema()").Scan(&dbName, &schema); err != nil {
		t.Fatal(err)
	}
	railsID := int64(2053462845 * uint64(refCRC32([]byte(dbName))))
	flywayID := int64(77431708279161) + int64(refJavaHash(`"`+schema+`"."flyway_schema_history"`))
	// pg-boss: a schema of this test's own, so that no running pg-boss
	// shares the key.
	bossSchema := "lkt_" + strings.NewReplacer(".", "_", "-", "_", "/", "_").Replace(integration.Name(t))

	for _, c := range []struct {
		name, lock, unlock string
		xact               bool
		key                keyhash.Key
	}{
		{"rails", fmt.Sprintf("SELECT pg_try_advisory_lock(%d)", railsID), fmt.Sprintf("SELECT pg_advisory_unlock(%d)", railsID), false, keyhash.Rails(dbName)},
		{"prisma", "SELECT pg_advisory_lock(72707369) IS NOT NULL", "SELECT pg_advisory_unlock(72707369)", false, keyhash.Prisma()},
		{"node-pg-migrate", "SELECT pg_try_advisory_lock(7241865325823964)", "SELECT pg_advisory_unlock(7241865325823964)", false, keyhash.NodePGMigrate()},
		{"pg-boss", `SELECT pg_advisory_xact_lock(
      ('x' || encode(sha224((current_database() || '.pgboss.` + bossSchema + `')::bytea), 'hex'))::bit(64)::bigint
  ) IS NOT NULL`, "", true, keyhash.PgBoss(dbName, bossSchema, "")},
		{"flyway", fmt.Sprintf("SELECT pg_try_advisory_xact_lock(%d)", flywayID), "", true, keyhash.Flyway(schema, "")},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.xact {
				if _, err := tool.ExecContext(ctx, "BEGIN"); err != nil {
					t.Fatal(err)
				}
			}
			if !queryBool(t, tool, c.lock) {
				t.Fatal("tool statement did not acquire")
			}
			if tryKey(t, lk, c.key) {
				t.Fatalf("lockkit key %v acquired while the tool holds the lock", c.key)
			}
			if c.xact {
				if _, err := tool.ExecContext(ctx, "ROLLBACK"); err != nil {
					t.Fatal(err)
				}
			} else if !queryBool(t, tool, c.unlock) {
				t.Fatal("tool unlock returned false")
			}
			if !tryKey(t, lk, c.key) {
				t.Fatalf("lockkit key %v not acquired after the tool released", c.key)
			}
			if !unlockKey(t, lk, c.key) {
				t.Fatal("lockkit unlock returned false")
			}
		})
	}
}
