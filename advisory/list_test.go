package advisory

import (
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/migrations"
)

// pgWithParams opens a database/sql pool whose sessions set params
// (application_name, search_path).
func pgWithParams(t *testing.T, params map[string]string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(integration.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

func mustNew(t *testing.T, db *sql.DB, cfg *Config) *Locker {
	t.Helper()
	p, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestListNames: with names, an entry per name in the order given, one per
// shared holder, Held false for a free name, and the holding session.
func TestListNames(t *testing.T) {
	t.Parallel()
	ctx := pgCtx(t, 30*time.Second)
	var user string
	if err := pgAdmin(t).QueryRowContext(ctx, "SELECT current_user").Scan(&user); err != nil {
		t.Fatal(err)
	}
	p := newPGPool(t, nil)
	hp := mustNew(t, pgWithParams(t, map[string]string{"application_name": "lockkit-list-test"}), nil)
	base := integration.Name(t)
	held, free, shared := base+".held", base+".free", base+".shared"

	before := time.Now()
	l, err := hp.TryLock(ctx, held, nil)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	s1, err := p.TryLock(ctx, shared, &Options{Mode: Shared})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := p.TryLock(ctx, shared, &Options{Mode: Shared})
	if err != nil {
		t.Fatal(err)
	}

	got, err := p.List(ctx, held, free, shared)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("List = %+v, want 4 entries (held, free, 2 shared)", got)
	}
	k := func(n string) string { kk, _ := p.Key(n); return kk.String() }
	h := got[0]
	if h.Name != held || !h.Held || h.Mode != Exclusive || h.Key != k(held) || h.Tool != "" {
		t.Errorf("held entry %+v", h)
	}
	if h.Holder.PID != l.PID() || h.Holder.App != "lockkit-list-test" || h.Holder.Owner != user || h.Holder.Host == "" {
		t.Errorf("holder %+v, want pid %d, app lockkit-list-test, owner %s and a host", h.Holder, l.PID(), user)
	}
	if h.Holder.Since.Before(before.Add(-time.Second)) || h.Holder.Since.After(after.Add(time.Second)) {
		t.Errorf("Since %v, want within [%v, %v]", h.Holder.Since, before, after)
	}
	if f := got[1]; f.Name != free || f.Held || f.Key != k(free) || f.Holder != (lockkit.Holder{}) {
		t.Errorf("free entry %+v", f)
	}
	pids := []int{got[2].Holder.PID, got[3].Holder.PID}
	slices.Sort(pids)
	want := []int{s1.PID(), s2.PID()}
	slices.Sort(want)
	for _, s := range got[2:] {
		if s.Name != shared || !s.Held || s.Mode != Shared || s.Key != k(shared) {
			t.Errorf("shared entry %+v", s)
		}
	}
	if !slices.Equal(pids, want) {
		t.Errorf("shared holders %v, want %v", pids, want)
	}

	// A name listed twice is reported twice.
	if got, err := p.List(ctx, free, free); err != nil || len(got) != 2 {
		t.Errorf("List(free, free) = %+v, %v", got, err)
	}
	mustRelease(t, l)
	mustRelease(t, s1)
	mustRelease(t, s2)
	got, err = p.List(ctx, held, shared)
	if err != nil || len(got) != 2 || got[0].Held || got[1].Held {
		t.Errorf("after release: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "a\x00b"} {
		if _, err := p.List(ctx, held, bad); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("List(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestListNamespace: names are looked up under the Locker's namespace.
func TestListNamespace(t *testing.T) {
	t.Parallel()
	ctx := pgCtx(t, 30*time.Second)
	ns := newPGPool(t, &Config{Namespace: "list-ns"})
	plain := newPGPool(t, nil)
	name := integration.Name(t)
	l, err := ns.TryLock(ctx, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mustRelease(t, l)
	if got, err := ns.List(ctx, name); err != nil || len(got) != 1 || !got[0].Held || got[0].Key != keyhash.NamespacedName("list-ns", name).String() {
		t.Errorf("List in the namespace = %+v, %v", got, err)
	}
	if got, err := plain.List(ctx, name); err != nil || len(got) != 1 || got[0].Held {
		t.Errorf("List without the namespace = %+v, %v; want free", got, err)
	}
}

// TestListAll: without names, every granted advisory lock, ordered by
// name, named by `lockkit run`'s application_name (when the key is the
// name's), by golang-migrate's lock, or by its key.
func TestListAll(t *testing.T) {
	t.Parallel()
	ctx := pgCtx(t, 30*time.Second)
	admin := pgAdmin(t)
	base := integration.Name(t)
	runName, other := base+".run", base+".other"

	// A `lockkit run NAME` session holding NAME, and one holding another
	// name: only the first is named by its application_name.
	run := mustNew(t, pgWithParams(t, map[string]string{"application_name": RunAppPrefix + runName}), nil)
	lr, err := run.TryLock(ctx, runName, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mustRelease(t, lr)
	lo, err := run.TryLock(ctx, other, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mustRelease(t, lo)

	// golang-migrate's lock for lockkit's migrations table in a schema of
	// this test's own (a key no other test takes), listed by a Locker
	// whose sessions have that schema as their current schema.
	schema := "lockkit_list_test"
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
		t.Fatal(err)
	}
	var dbName string
	if err := admin.QueryRowContext(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	mk := keyhash.MigratePostgresLockID(dbName, schema, lockkitMigrationsTable)
	raw := rawSession(t, admin)
	if !rawTry(t, raw, mk) {
		t.Fatalf("golang-migrate's key %v is held", mk)
	}
	defer rawUnlock(t, raw, mk)

	p := mustNew(t, pgWithParams(t, map[string]string{"search_path": schema}), nil)
	all, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(all, func(a, b lockkit.LockInfo) int { return strings.Compare(a.Name, b.Name) }) {
		t.Errorf("List is not ordered by name: %+v", all)
	}
	find := func(key keyhash.Key) *lockkit.LockInfo {
		for i := range all {
			if all[i].Key == key.String() {
				return &all[i]
			}
		}
		t.Fatalf("key %v not listed: %+v", key, all)
		return nil
	}
	if e := find(keyhash.Name(runName)); e.Name != runName || !e.Held || e.Holder.PID != lr.PID() || e.Holder.App != RunAppPrefix+runName {
		t.Errorf("the run session's lock: %+v", e)
	}
	if e := find(keyhash.Name(other)); e.Name != "key "+keyhash.Name(other).String() || e.Holder.PID != lo.PID() {
		t.Errorf("a key the application_name does not name: %+v", e)
	}
	if e := find(mk); e.Tool != keyhash.ToolMigrate || !strings.Contains(e.Name, schema) || !strings.Contains(e.Name, lockkitMigrationsTable) {
		t.Errorf("golang-migrate's lock: %+v", e)
	}
	for _, e := range all {
		if !e.Held || e.Name == "" || e.Key == "" {
			t.Errorf("listed entry %+v", e)
		}
	}
}

// TestListMigrationsTable pins the table name advisory spells out to the
// one package migrations uses.
func TestListMigrationsTable(t *testing.T) {
	if lockkitMigrationsTable != migrations.DefaultMigrationsTable {
		t.Errorf("lockkitMigrationsTable = %q, migrations.DefaultMigrationsTable = %q", lockkitMigrationsTable, migrations.DefaultMigrationsTable)
	}
}

func TestPgMode(t *testing.T) {
	if pgMode("ExclusiveLock") != Exclusive || pgMode("ShareLock") != Shared {
		t.Error("pg_locks modes mapped wrong")
	}
}
