package migrations_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/lockkit/lockkit/migrations"
)

func TestDiagnoseLatest(t *testing.T) {
	for _, d := range dialects {
		if v := migrations.Latest(d); v < 1 {
			t.Errorf("Latest(%s) = %d", d, v)
		}
	}
	if v := migrations.Latest("oracle"); v != 0 {
		t.Errorf("Latest(oracle) = %d", v)
	}
}

func TestDiagnoseInspect(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			db := isolated(t, d)()
			ctx := ctxT(t, time.Minute)
			st, err := migrations.Inspect(ctx, db, d)
			if err != nil || st != (migrations.State{}) {
				t.Fatalf("before Up: %+v, %v", st, err)
			}
			if err := migrations.Up(ctx, db, d, nil); err != nil {
				t.Fatal(err)
			}
			st, err = migrations.Inspect(ctx, db, d)
			want := migrations.State{Table: true, History: true, Applied: true, Version: migrations.Latest(d)}
			if err != nil || st != want {
				t.Fatalf("after Up: %+v, %v; want %+v", st, err, want)
			}

			// Dirty: failed halfway, or running now (the migrators'
			// lock held); told apart without taking the lock.
			if _, err := db.ExecContext(ctx, "UPDATE "+migrations.DefaultMigrationsTable+" SET dirty = TRUE"); err != nil {
				t.Fatal(err)
			}
			want.Dirty = true
			inspectFor(t, db, d, "dirty", want)
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			unlock, err := migrations.SessionLock(ctx, conn, d, migrations.DefaultMigrationsTable)
			if err != nil {
				t.Fatal(err)
			}
			want.Migrating = true
			if st, err = migrations.Inspect(ctx, db, d); err != nil || st != want {
				t.Errorf("dirty, the migrators' lock held: %+v, %v; want %+v", st, err, want)
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			want.Migrating = false
			inspectFor(t, db, d, "dirty, the lock given back", want)
		})
	}
}

// inspectFor waits up to 10 s for Inspect to report want with the
// migrators' lock free: on PostgreSQL its key names the history table,
// not the schema, so another test's migration in the same database holds
// it for a moment now and then.
func inspectFor(t *testing.T, db *sql.DB, d migrations.Dialect, what string, want migrations.State) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	for {
		st, err := migrations.Inspect(ctx, db, d)
		switch {
		case err == nil && st == want:
			return
		case err != nil || !st.Migrating || ctx.Err() != nil:
			t.Fatalf("%s: %+v, %v; want %+v", what, st, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
