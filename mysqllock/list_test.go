package mysqllock_test

import (
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/mysqllock"
)

// TestMySQLListNames: with names, an entry per name in the order given,
// the holder's connection, user and host, Held false for a free name, and
// names looked up in the Locker's namespace.
func TestMySQLListNames(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	m, db := newMySQL(t, nil)
	other, _ := newMySQL(t, &mysqllock.Config{Namespace: "listns", ProbeInterval: testProbeInterval})
	var user string
	if err := db.QueryRowContext(ctx, "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)").Scan(&user); err != nil {
		t.Fatal(err)
	}
	base := integration.Name(t)
	held, free, elsewhere := base+".held", base+".free", base+".elsewhere"
	lk, err := m.TryLock(ctx, held)
	if err != nil {
		t.Fatal(err)
	}
	lo, err := other.TryLock(ctx, elsewhere)
	if err != nil {
		t.Fatal(err)
	}

	got, err := m.List(ctx, held, free, elsewhere)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("List = %+v, want 3 entries", got)
	}
	h := got[0]
	if h.Name != held || !h.Held || h.Mode != lockkit.Exclusive || h.Key != lockName(t, m, held) || h.Tool != "" {
		t.Errorf("held entry %+v", h)
	}
	if h.Holder.PID != int(lk.ConnID()) || h.Holder.Owner != user || h.Holder.Host == "" || !h.Holder.Since.IsZero() {
		t.Errorf("holder %+v, want connection %d, user %s, a host and no since", h.Holder, lk.ConnID(), user)
	}
	for _, f := range got[1:] {
		if f.Held || f.Holder != (lockkit.Holder{}) {
			t.Errorf("free entry %+v (the second is held in another namespace)", f)
		}
	}
	if got[1].Name != free || got[1].Key != lockName(t, m, free) || got[2].Name != elsewhere {
		t.Errorf("entries %+v", got)
	}
	if got, err := other.List(ctx, elsewhere); err != nil || len(got) != 1 || !got[0].Held || got[0].Holder.PID != int(lo.ConnID()) {
		t.Errorf("List in its namespace = %+v, %v", got, err)
	}

	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lo.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := m.List(ctx, held); err != nil || len(got) != 1 || got[0].Held {
		t.Errorf("after release: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "a\x00b"} {
		if _, err := m.List(ctx, held, bad); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("List(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestMySQLListAll: without names the shared test server (MariaDB with
// neither performance_schema nor metadata_lock_info) says it cannot list;
// where it can, the listing has the lock, without the namespace.
func TestMySQLListAll(t *testing.T) {
	t.Parallel()
	m, _ := newMySQL(t, nil)
	all, err := m.List(ctxT(t, 30*time.Second))
	if errors.Is(err, mysqllock.ErrListUnsupported) {
		if !errors.Is(err, lockkit.ErrUnsupported) || !strings.Contains(err.Error(), "metadata_lock_info") {
			t.Errorf("List on a server that cannot list = %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the test server lists %d user locks", len(all))
}

// TestMySQLListAllSources lists user locks without names on private
// MariaDB servers that show them: through the metadata_lock_info plugin,
// and through performance_schema (MySQL 8's way).
func TestMySQLListAllSources(t *testing.T) {
	if testing.Short() {
		t.Skip("starts private MariaDB servers")
	}
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"metadata_lock_info", []string{"--plugin-load-add=metadata_lock_info"}},
		{"performance_schema", []string{"--performance-schema=ON", "--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := integration.StartMariaDB(t, integration.WithServerArgs(c.args...))
			ctx := ctxT(t, 60*time.Second)
			open := func() *sql.DB {
				db, err := sql.Open("mysql", srv.DSN())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
			m, err := mysqllock.New(open(), nil)
			if err != nil {
				t.Fatal(err)
			}
			raw := open()
			if all, err := m.List(ctx); err != nil || len(all) != 0 {
				t.Fatalf("List on an idle server = %+v, %v", all, err)
			}
			b, a := "b-"+integration.Name(t), "a-"+integration.Name(t)
			lb, err := m.TryLock(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			la, err := m.TryLock(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			// A lock another program took by a plain name.
			conn, err := raw.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var got sql.NullInt64
			if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('plain-lock', 0)").Scan(&got); err != nil || got.Int64 != 1 {
				t.Fatalf("GET_LOCK = %v, %v", got, err)
			}

			all, err := m.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			names := make([]string, len(all))
			for i, e := range all {
				names[i] = e.Name
				if !e.Held || e.Mode != lockkit.Exclusive || e.Holder.PID == 0 || e.Key == "" {
					t.Errorf("entry %+v", e)
				}
			}
			if want := []string{a, b, "plain-lock"}; !slices.Equal(names, want) {
				t.Fatalf("List names %q, want %q (%+v)", names, want, all)
			}
			if all[0].Holder.PID != int(la.ConnID()) || all[0].Key != "test."+a || all[0].Holder.Owner != "root" {
				t.Errorf("entry of %q: %+v, want connection %d", a, all[0], la.ConnID())
			}
			for _, l := range []*mysqllock.Lock{la, lb} {
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := conn.ExecContext(ctx, "DO RELEASE_LOCK('plain-lock')"); err != nil {
				t.Fatal(err)
			}
			if all, err := m.List(ctx); err != nil || len(all) != 0 {
				t.Errorf("List after release = %+v, %v", all, err)
			}
		})
	}
}
