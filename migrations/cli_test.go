package migrations_test

import (
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/mysql"  // "mysql://" URLs
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // "pgx5://" URLs
	_ "github.com/golang-migrate/migrate/v4/source/file"     // "file://" sources

	"github.com/lockkit/lockkit/migrations"
)

// TestGolangMigrateFiles runs the migration files as golang-migrate's CLI
// does — plain files from a directory (the file:// source) and a database
// URL with x-migrations-table — and checks that lockkit's helpers see the
// same history: Version reports it, Up has nothing left to do, and Down
// drops the table.
func TestGolangMigrateFiles(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			driver, dsn := isolatedDSN(t, d)
			dir := t.TempDir()
			fsys, err := migrations.FS(d)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.CopyFS(dir, fsys); err != nil {
				t.Fatal(err)
			}
			var dbURL string
			switch d {
			case migrations.Postgres:
				u, err := url.Parse(dsn)
				if err != nil {
					t.Fatal(err)
				}
				u.Scheme = "pgx5"
				q := u.Query()
				q.Set("x-migrations-table", migrations.DefaultMigrationsTable)
				u.RawQuery = q.Encode()
				dbURL = u.String()
			case migrations.MySQL:
				cfg, err := mysql.ParseDSN(dsn)
				if err != nil {
					t.Fatal(err)
				}
				cfg.MultiStatements = true
				dbURL = "mysql://" + cfg.FormatDSN() + "&x-migrations-table=" + migrations.DefaultMigrationsTable
			}
			m, err := migrate.New("file://"+filepath.ToSlash(dir), dbURL)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Up(); err != nil {
				t.Fatalf("golang-migrate up: %v", err)
			}
			if srcErr, dbErr := m.Close(); srcErr != nil || dbErr != nil {
				t.Fatal(srcErr, dbErr)
			}

			db := openDB(t, driver, dsn)
			ctx := ctxT(t, time.Minute)
			files, _ := fs.Glob(fsys, "*.up.sql")
			v, dirty, err := migrations.Version(ctx, db, d, nil)
			if err != nil || dirty || int(v) != len(files) {
				t.Fatalf("Version after golang-migrate's up = %d, dirty %v, %v; want %d, clean", v, dirty, err, len(files))
			}
			if _, err := db.ExecContext(ctx, "SELECT name, owner, token FROM "+migrations.TableName); err != nil {
				t.Fatalf("the lock table after golang-migrate's up: %v", err)
			}
			if err := migrations.Up(ctx, db, d, nil); err != nil {
				t.Fatalf("Up after golang-migrate's up: %v", err)
			}
			if err := migrations.Down(ctx, db, d, nil); err != nil {
				t.Fatalf("Down after golang-migrate's up: %v", err)
			}
			if _, err := db.ExecContext(ctx, "SELECT 1 FROM "+migrations.TableName); err == nil {
				t.Fatal("the lock table is still there after Down")
			}
		})
	}
}
