package keyhash_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/jackc/pgx/v5"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// TestMigrateDriverLockInterop holds golang-migrate's own lock through its
// pgx/v5 driver's Lock (github.com/golang-migrate/migrate/v4,
// database/pgx/v5/pgx.go, which derives the key like database/postgres) and
// checks that a raw advisory lock on MigratePostgresLockID excludes it in
// both directions, for a driver made by WithInstance and one opened by URL.
func TestMigrateDriverLockInterop(t *testing.T) {
	dsn := integration.PostgresDSN(t)
	admin := integration.Postgres(t)
	ctx := context.Background()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	table := "lkt_mig_" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
	})
	var dbName, schema string
	if err := admin.QueryRowContext(ctx, "SELECT current_database(), current_schema()").Scan(&dbName, &schema); err != nil {
		t.Fatal(err)
	}

	open := map[string]func(t *testing.T) (database.Driver, string){
		"WithInstance": func(t *testing.T) (database.Driver, string) {
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			drv, err := migratepgx.WithInstance(db, &migratepgx.Config{MigrationsTable: table})
			if err != nil {
				_ = db.Close()
				t.Fatal(err)
			}
			return drv, dbName // from CURRENT_DATABASE()
		},
		"OpenURL": func(t *testing.T) (database.Driver, string) {
			_, rest, _ := strings.Cut(dsn, "://")
			u := "pgx5://" + rest
			if strings.Contains(u, "?") {
				u += "&x-migrations-table=" + table
			} else {
				u += "?x-migrations-table=" + table
			}
			drv, err := (&migratepgx.Postgres{}).Open(u)
			if err != nil {
				t.Fatal(err)
			}
			return drv, "/" + dbName // the URL's path, leading slash included
		},
	}
	for _, mode := range []string{"WithInstance", "OpenURL"} {
		t.Run(mode, func(t *testing.T) {
			if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") && mode == "OpenURL" {
				t.Fatalf("%s is not a postgres:// URL; cannot build migrate's URL", integration.EnvPostgres)
			}
			drv, migDB := open[mode](t)
			defer func() { _ = drv.Close() }()
			lk := pgConn(t, admin)
			key := keyhash.MigratePostgresLockID(migDB, schema, table)

			if err := drv.Lock(); err != nil {
				t.Fatal(err)
			}
			if tryKey(t, lk, key) {
				t.Fatalf("lockkit acquired %v while golang-migrate holds its lock", key)
			}
			// Describe names the holder from what pg_locks shows.
			hi, lo := key.Pair()
			var raw int64
			if err := lk.QueryRowContext(ctx, `SELECT (classid::int8 << 32) | objid::int8 FROM pg_locks
				WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND classid = $1::int8::oid AND objid = $2::int8::oid`,
				int64(uint32(hi)), int64(uint32(lo))).Scan(&raw); err != nil {
				t.Fatalf("migrate's lock not in pg_locks: %v", err)
			}
			held := keyhash.Int64(raw)
			tool, detail, ok := keyhash.Describe(held, keyhash.MigrateTarget{Database: dbName, Schema: schema, Table: table})
			if !ok || tool != keyhash.ToolMigrate || !strings.Contains(detail, `"`+migDB+`"`) || !strings.Contains(detail, table) {
				t.Fatalf("Describe(%v) = %q, %q, %v", held, tool, detail, ok)
			}
			if mode == "OpenURL" {
				// The other spelling of the database name is another key.
				other := keyhash.MigratePostgresLockID(dbName, schema, table)
				if !tryKey(t, lk, other) || !unlockKey(t, lk, other) {
					t.Fatal("the key without the slash is blocked too; the documented quirk is wrong")
				}
			}
			if err := drv.Unlock(); err != nil {
				t.Fatal(err)
			}
			if !tryKey(t, lk, key) {
				t.Fatal("lockkit could not acquire after migrate unlocked")
			}

			// Now migrate must wait for lockkit.
			errc := make(chan error, 1)
			go func() { errc <- drv.Lock() }()
			deadline := time.Now().Add(10 * time.Second)
			for {
				var waiting bool
				if err := lk.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
					AND objsubid = 1 AND NOT granted AND classid = $1::int8::oid AND objid = $2::int8::oid)`,
					int64(uint32(hi)), int64(uint32(lo))).Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				if waiting {
					break
				}
				select {
				case err := <-errc:
					t.Fatalf("migrate's Lock returned (%v) while lockkit holds the key", err)
				default:
				}
				if time.Now().After(deadline) {
					unlockKey(t, lk, key)
					<-errc
					t.Fatal("migrate's Lock never waited on the key")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !unlockKey(t, lk, key) {
				t.Fatal("lockkit unlock returned false")
			}
			select {
			case err := <-errc:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("migrate's Lock did not return after lockkit released")
			}
			if err := drv.Unlock(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
