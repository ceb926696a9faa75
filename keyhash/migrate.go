package keyhash

import (
	"hash/crc32"
	"strconv"
	"strings"
)

// MigrateDefaultTable is golang-migrate's default migrations table,
// schema_migrations.
const MigrateDefaultTable = "schema_migrations"

// migrateSalt is advisoryLockIDSalt in golang-migrate's database/util.go.
const migrateSalt uint32 = 1486364155

// MigrateLockID reproduces golang-migrate's database.GenerateAdvisoryLockId
// (github.com/golang-migrate/migrate/v4, file database/util.go, v4.20.1):
//
//	if len(additionalNames) > 0 {
//		databaseName = strings.Join(append(additionalNames, databaseName), "\x00")
//	}
//	sum := crc32.ChecksumIEEE([]byte(databaseName))
//	sum = sum * uint32(advisoryLockIDSalt) // 1486364155, wrapping at 2³²
//	return fmt.Sprint(sum), nil
//
// Note the order: the additional names come first and the database name
// last. migrate passes the decimal string to pg_advisory_lock($1), so the key
// is the bigint key of that uint32, always in [0, 2³²).
func MigrateLockID(databaseName string, additionalNames ...string) Key {
	s := databaseName
	if len(additionalNames) > 0 {
		s = strings.Join(additionalNames, "\x00") + "\x00" + databaseName
	}
	return Int64(int64(crc32.ChecksumIEEE([]byte(s)) * migrateSalt))
}

// MigratePostgresLockID returns the advisory key golang-migrate's postgres
// and pgx (v4 and v5) drivers lock while migrating (in database/postgres/postgres.go,
// Lock calls GenerateAdvisoryLockId(DatabaseName, migrationsSchemaName,
// migrationsTableName) and then pg_advisory_lock($1)). An empty table means
// [MigrateDefaultTable].
//
// Pass the names the driver ends up with:
//
//   - database: Config.DatabaseName; when it is empty the driver uses
//     SELECT CURRENT_DATABASE(). Beware: opened through a URL
//     (migrate.New("postgres://host/test")) the driver sets DatabaseName to
//     the URL's path, "/test" with its leading slash, so the key differs from
//     that of WithInstance on a *sql.DB connected to the same database
//     ("test").
//   - schema: Config.SchemaName, else CURRENT_SCHEMA() (usually "public"); or
//     the schema part of a quoted x-migrations-table "schema"."table".
//   - table: the migrations table name without schema and quotes.
func MigratePostgresLockID(database, schema, table string) Key {
	if table == "" {
		table = MigrateDefaultTable
	}
	return MigrateLockID(database, schema, table)
}

// MigrateMySQLLockName returns the GET_LOCK name golang-migrate's mysql
// driver takes while migrating (database/mysql/mysql.go: Lock calls
// GenerateAdvisoryLockId(fmt.Sprintf("%s:%s", DatabaseName, MigrationsTable))
// and then GET_LOCK(?, 10) with that decimal string). An empty table means
// [MigrateDefaultTable].
func MigrateMySQLLockName(database, table string) string {
	if table == "" {
		table = MigrateDefaultTable
	}
	return strconv.FormatInt(MigrateLockID(database+":"+table).Int64(), 10)
}
