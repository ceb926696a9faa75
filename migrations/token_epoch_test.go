package migrations_test

import (
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit/internal/pgepoch"
	"github.com/lockkit/lockkit/migrations"
)

// TestPostgresTokenEpoch: on PostgreSQL a token is the timeline's epoch
// plus the sequence's next value, so it carries the timeline (1 on this
// server) and is above every plain sequence value; migrating that step
// down keeps the next token above the last one. The failover itself is in
// the reliability package (TestReplicaPostgresAsyncFailover).
func TestPostgresTokenEpoch(t *testing.T) {
	t.Parallel()
	fsys, err := migrations.FS(migrations.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"0002_token_epoch.up.sql", "0002_token_epoch.down.sql"} {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), pgepoch.SQL) {
			t.Errorf("%s does not use the epoch of internal/pgepoch", f)
		}
	}
	db := isolated(t, migrations.Postgres)()
	ctx := ctxT(t, time.Minute)
	if err := migrations.Up(ctx, db, migrations.Postgres, nil); err != nil {
		t.Fatal(err)
	}
	var timeline int64
	if err := db.QueryRowContext(ctx, "SELECT "+pgepoch.SQL+" >> 40").Scan(&timeline); err != nil {
		t.Fatal(err)
	}
	insert := func(name string) (tok int64) {
		t.Helper()
		if err := db.QueryRowContext(ctx, `INSERT INTO lockkit_locks (name, owner, acquired_at, expires_at)
			VALUES ($1, 'o', now(), now()) RETURNING token`, name).Scan(&tok); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	a, b := insert("a"), insert("b")
	if pgepoch.Timeline(a) != timeline || b <= a {
		t.Errorf("tokens %d, %d: want timeline %d in the high bits, increasing", a, b, timeline)
	}
	down, err := fs.ReadFile(fsys, "0002_token_epoch.down.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, string(down)); err != nil {
		t.Fatalf("0002 down: %v", err)
	}
	if c := insert("c"); c <= b {
		t.Errorf("token after migrating down = %d, not above %d", c, b)
	}
}
