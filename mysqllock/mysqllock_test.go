package mysqllock_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/mysqllock"
)

// testProbeInterval is the probe interval the MySQL tests run with; the
// loss bound they check is the documented one for it.
const testProbeInterval = 100 * time.Millisecond

func mysqlLossBound(interval time.Duration) time.Duration {
	return interval + mysqllock.DefaultProbeTimeout
}

// newMySQL opens a *sql.DB of its own (one "process") and a locker on it.
func newMySQL(t *testing.T, cfg *mysqllock.Config) (*mysqllock.Locker, *sql.DB) {
	t.Helper()
	db := integration.MySQL(t)
	if cfg == nil {
		cfg = &mysqllock.Config{ProbeInterval: testProbeInterval}
	}
	m, err := mysqllock.New(db, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { checkNoConnsInUse(t, db) })
	return m, db
}

// checkNoConnsInUse fails if a lock left a connection pinned.
func checkNoConnsInUse(t *testing.T, db *sql.DB) {
	t.Helper()
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("%d connections of the locker's pool still in use after the test", n)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// usedBy returns IS_USED_LOCK(server): the holder's connection id, or
// invalid when nobody holds it.
func usedBy(t *testing.T, db *sql.DB, server string) sql.NullInt64 {
	t.Helper()
	var id sql.NullInt64
	if err := db.QueryRowContext(ctxT(t, 10*time.Second), "SELECT IS_USED_LOCK(?)", server).Scan(&id); err != nil {
		t.Fatalf("IS_USED_LOCK(%q): %v", server, err)
	}
	return id
}

func lockName(t *testing.T, m *mysqllock.Locker, name string) string {
	t.Helper()
	s, err := m.UserLockName(name)
	if err != nil {
		t.Fatalf("LockName(%q): %v", name, err)
	}
	return s
}

func killConn(t *testing.T, db *sql.DB, id int64) {
	t.Helper()
	if _, err := db.ExecContext(ctxT(t, 10*time.Second), "KILL CONNECTION "+strconv.FormatInt(id, 10)); err != nil {
		t.Fatalf("KILL %d: %v", id, err)
	}
}

// sessionAlive reports whether connection id is still in the processlist.
func sessionAlive(t *testing.T, db *sql.DB, id int64) bool {
	t.Helper()
	var n int
	if err := db.QueryRowContext(ctxT(t, 10*time.Second), "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n); err != nil {
		t.Fatalf("processlist: %v", err)
	}
	return n > 0
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

func isMariaDB(t *testing.T, db *sql.DB) bool {
	t.Helper()
	var v string
	if err := db.QueryRowContext(ctxT(t, 10*time.Second), "SELECT VERSION()").Scan(&v); err != nil {
		t.Fatalf("VERSION(): %v", err)
	}
	return strings.Contains(v, "MariaDB")
}

// singleConnID pins db to one connection and returns its id, so that a
// test knows the session a locker on db will use.
func singleConnID(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	var id int64
	if err := db.QueryRowContext(ctxT(t, 10*time.Second), "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatalf("CONNECTION_ID(): %v", err)
	}
	return id
}

func TestMySQLConformance(t *testing.T) {
	admin := integration.MySQL(t)
	var namer *mysqllock.Locker
	locktest.Run(t, locktest.Config{
		NewLocker: func(t *testing.T) lockkit.Locker {
			m, _ := newMySQL(t, nil)
			return m
		},
		KillHolder: func(t *testing.T, l lockkit.Lock) {
			killConn(t, admin, l.(*mysqllock.Lock).ConnID())
		},
		LossBound: mysqlLossBound(testProbeInterval),
		Leftovers: func(t *testing.T, names []string) int {
			if namer == nil {
				namer, _ = newMySQL(t, nil)
			}
			n := 0
			for _, name := range names {
				if usedBy(t, admin, lockName(t, namer, name)).Valid {
					n++
				}
			}
			return n
		},
	})
}

func TestMySQLLockNames(t *testing.T) {
	m, db := newMySQL(t, nil)
	other, _ := newMySQL(t, nil)
	if m.Namespace() != "test" {
		t.Fatalf("Namespace() = %q, want the DSN's database %q", m.Namespace(), "test")
	}
	unique := integration.Name(t) // at most 48 bytes
	pad := func(n int) string {
		full := "test." + unique
		return unique + strings.Repeat("x", n-len(full))
	}
	for _, tc := range []struct {
		what   string
		name   string
		hashed bool
	}{
		{"64 characters", pad(64), false},
		{"65 characters", pad(65), true},
		{"200 characters", pad(200), true},
		// 60 characters but 201 bytes: over MariaDB's byte limit.
		{"47 four-byte characters", unique[len(unique)-8:] + strings.Repeat("😀", 47), true},
	} {
		t.Run(tc.what, func(t *testing.T) {
			server := lockName(t, m, tc.name)
			full := "test." + tc.name
			if tc.hashed {
				sum := sha256.Sum256([]byte(full))
				want := string([]rune(full)[:31]) + "~" + hex.EncodeToString(sum[:])[:32]
				if server != want {
					t.Fatalf("LockName = %q, want %q", server, want)
				}
				// The documented SQL computes the same name on the server.
				var inSQL string
				if err := db.QueryRowContext(ctxT(t, 10*time.Second),
					"SELECT CONCAT(LEFT(?, 31), '~', LEFT(SHA2(?, 256), 32))", full, full).Scan(&inSQL); err != nil {
					t.Fatal(err)
				}
				if inSQL != server {
					t.Errorf("server-side hash = %q, Go = %q", inSQL, server)
				}
			} else if server != full {
				t.Fatalf("LockName = %q, want it unchanged: %q", server, full)
			}
			if n := utf8.RuneCountInString(server); n > mysqllock.MaxNameChars || len(server) > mysqllock.MaxNameBytes {
				t.Fatalf("LockName has %d characters, %d bytes", n, len(server))
			}
			lk, err := m.TryAcquire(ctxT(t, 10*time.Second), tc.name)
			if err != nil {
				t.Fatalf("TryAcquire: %v", err)
			}
			if got := usedBy(t, db, server); got.Int64 != lk.(*mysqllock.Lock).ConnID() {
				t.Errorf("IS_USED_LOCK(%q) = %v, want the holder's connection %d", server, got, lk.(*mysqllock.Lock).ConnID())
			}
			if lk2, err := other.TryAcquire(ctxT(t, 10*time.Second), tc.name); !errors.Is(err, lockkit.ErrNotAcquired) {
				t.Errorf("second TryAcquire = %v, %v; want ErrNotAcquired", lk2, err)
			}
			if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			if got := usedBy(t, db, server); got.Valid {
				t.Errorf("IS_USED_LOCK(%q) = %d after release", server, got.Int64)
			}
		})
	}

	// Two long names with a common prefix are two locks.
	a, b := pad(200)+"a", pad(200)+"b"
	if lockName(t, m, a) == lockName(t, m, b) {
		t.Fatal("two long names with a common prefix render the same")
	}
	la, err := m.TryAcquire(ctxT(t, 10*time.Second), a)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := other.TryAcquire(ctxT(t, 10*time.Second), b)
	if err != nil {
		t.Fatalf("a long name blocked by another with the same prefix: %v", err)
	}
	for _, lk := range []lockkit.Lock{la, lb} {
		if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMySQLNamespaces(t *testing.T) {
	db := integration.MySQL(t)
	name := integration.Name(t)
	plain, err := mysqllock.New(db, &mysqllock.Config{NoNamespace: true})
	if err != nil {
		t.Fatal(err)
	}
	app, err := mysqllock.New(db, &mysqllock.Config{Namespace: "app1"})
	if err != nil {
		t.Fatal(err)
	}
	def, err := mysqllock.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := lockName(t, plain, name); got != name {
		t.Errorf("NoNamespace LockName = %q, want %q", got, name)
	}
	if got := lockName(t, app, name); got != "app1."+name {
		t.Errorf("Namespace app1 LockName = %q", got)
	}
	// A plain GET_LOCK by another tool and a NoNamespace lockkit lock are
	// one lock; the namespaced lockers do not see it.
	raw, err := db.Conn(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = raw.Close() }()
	var got sql.NullInt64
	if err := raw.QueryRowContext(ctxT(t, 10*time.Second), "SELECT GET_LOCK(?, 0)", name).Scan(&got); err != nil || got.Int64 != 1 {
		t.Fatalf("raw GET_LOCK = %v, %v", got, err)
	}
	if _, err := plain.TryAcquire(ctxT(t, 10*time.Second), name); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("NoNamespace TryAcquire of a name another tool holds = %v, want ErrNotAcquired", err)
	}
	for _, l := range []*mysqllock.Locker{app, def} {
		lk, err := l.TryAcquire(ctxT(t, 10*time.Second), name)
		if err != nil {
			t.Fatalf("namespace %q: %v", l.Namespace(), err)
		}
		if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.QueryRowContext(ctxT(t, 10*time.Second), "SELECT RELEASE_LOCK(?)", name).Scan(&got); err != nil || got.Int64 != 1 {
		t.Fatalf("raw RELEASE_LOCK = %v, %v", got, err)
	}
	_ = raw.Close()
	checkNoConnsInUse(t, db)
}

// TestMySQLMixedCase pins what the server does with names that differ
// only in case: MariaDB (10.11, measured here) compares them exactly, so
// they are two locks; MySQL 5.7+ folds case, so they are one.
func TestMySQLMixedCase(t *testing.T) {
	m, db := newMySQL(t, nil)
	other, _ := newMySQL(t, nil)
	base := integration.Name(t)
	upper, lower := "Job-"+base, "job-"+base
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), upper)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Error(err)
		}
	}()
	lk2, err := other.TryAcquire(ctxT(t, 10*time.Second), lower)
	if isMariaDB(t, db) {
		if err != nil {
			t.Fatalf("MariaDB: %q while %q is held = %v, want a second lock (names compare exactly)", lower, upper, err)
		}
		if err := lk2.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("MySQL: %q while %q is held = %v, want ErrNotAcquired (names fold case)", lower, upper, err)
		if lk2 != nil {
			_ = lk2.Release(context.Background())
		}
	}
}

func TestMySQLBadInputBeforeIO(t *testing.T) {
	// Nothing listens on port 1: any I/O would fail with a connection
	// error, not ErrInvalid, and would show in the pool's stats.
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:1)/test?timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := mysqllock.New(db, &mysqllock.Config{Namespace: "app"})
	if err != nil {
		t.Fatalf("New with a Namespace must not do I/O: %v", err)
	}
	ctx := ctxT(t, 10*time.Second)
	invalid := map[string]func() error{
		"Acquire empty":    func() error { _, err := m.Acquire(ctx, ""); return err },
		"TryAcquire empty": func() error { _, err := m.TryAcquire(ctx, ""); return err },
		"bad UTF-8":        func() error { _, err := m.TryAcquire(ctx, "a\xffb"); return err },
		"NUL byte":         func() error { _, err := m.TryAcquire(ctx, "a\x00b"); return err },
		"too long":         func() error { _, err := m.TryAcquire(ctx, strings.Repeat("x", 1025)); return err },
		"no names":         func() error { _, err := m.TryLockNames(ctx, nil); return err },
		"an empty name":    func() error { _, err := m.LockNames(ctx, []string{"a", ""}); return err },
		"duplicate names":  func() error { _, err := m.LockNames(ctx, []string{"a", "b", "a"}); return err },
		"duplicate keys": func() error {
			_, err := m.LockKeys(ctx, []keyhash.Key{keyhash.Int64(1), keyhash.Int64(1)})
			return err
		},
		"nil DB":           func() error { _, err := mysqllock.New(nil, nil); return err },
		"namespace with .": func() error { _, err := mysqllock.New(db, &mysqllock.Config{Namespace: "a.b"}); return err },
		"namespace with #": func() error { _, err := mysqllock.New(db, &mysqllock.Config{Namespace: "a#b"}); return err },
		"namespace and none": func() error {
			_, err := mysqllock.New(db, &mysqllock.Config{Namespace: "a", NoNamespace: true})
			return err
		},
		"negative interval": func() error {
			_, err := mysqllock.New(db, &mysqllock.Config{Namespace: "a", ProbeInterval: -1})
			return err
		},
		"tiny interval": func() error {
			_, err := mysqllock.New(db, &mysqllock.Config{Namespace: "a", ProbeInterval: time.Millisecond})
			return err
		},
		"negative release to": func() error {
			_, err := mysqllock.New(db, &mysqllock.Config{Namespace: "a", ReleaseTimeout: -1})
			return err
		},
		"LockName empty": func() error { _, err := m.UserLockName(""); return err },
	}
	for what, fn := range invalid {
		if err := fn(); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", what, err)
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Acquire(cancelled, "a"); !errors.Is(err, context.Canceled) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("Acquire with a cancelled context = %v", err)
	}
	if s := db.Stats(); s.OpenConnections != 0 || s.WaitCount != 0 {
		t.Errorf("bad input did I/O: %+v", s)
	}
	// Without Namespace, New reads the database name: that is I/O,
	// and here it fails with the connection error, not ErrInvalid.
	if _, err := mysqllock.New(db, nil); err == nil || errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("New reading the namespace from a dead server = %v", err)
	}
}

func TestMySQLNoDatabaseSelected(t *testing.T) {
	dsn := integration.MySQLDSN(t)
	i := strings.LastIndex(dsn, "/")
	rest := dsn[i+1:]
	q := ""
	if j := strings.IndexByte(rest, '?'); j >= 0 {
		q = rest[j:]
	}
	db, err := sql.Open("mysql", dsn[:i+1]+q)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := mysqllock.New(db, nil); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("New without a database = %v, want ErrInvalid asking for a Namespace", err)
	}
	if _, err := mysqllock.New(db, &mysqllock.Config{Namespace: "jobs"}); err != nil {
		t.Errorf("New without a database but with a Namespace: %v", err)
	}
}

func TestMySQLHolderOnConflict(t *testing.T) {
	m, db := newMySQL(t, nil)
	other, _ := newMySQL(t, nil)
	name := integration.Name(t)
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release(context.Background())
	var now int64
	if err := db.QueryRowContext(ctxT(t, 10*time.Second), "SELECT UNIX_TIMESTAMP()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	_, err = other.TryAcquire(ctxT(t, 10*time.Second), name)
	var he *lockkit.HeldError
	if !errors.As(err, &he) || he.Holder == nil {
		t.Fatalf("TryAcquire while held = %v, want a *HeldError with a holder", err)
	}
	h := he.Holder
	if int64(h.PID) != lk.(*mysqllock.Lock).ConnID() {
		t.Errorf("Holder.PID = %d, want the holder's connection %d", h.PID, lk.(*mysqllock.Lock).ConnID())
	}
	// The client's host as the server sees it ("127.0.0.1:port" for a
	// server on this machine, the bridge's gateway through a container's
	// published port, "localhost" over a Unix socket), without the port,
	// which differs from one connection to the next.
	var seen string
	if err := db.QueryRowContext(ctxT(t, 10*time.Second), "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()").Scan(&seen); err != nil {
		t.Fatal(err)
	}
	hostOnly := func(s string) string {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			return s[:i]
		}
		return s
	}
	if h.Owner != "root" || h.Host == "" || hostOnly(h.Host) != hostOnly(seen) {
		t.Errorf("Holder = %+v, want user root on %s, where the server sees this test's clients", h, hostOnly(seen))
	}
	if d := h.Since.Unix() - now; d < -5 || d > 5 {
		t.Errorf("Holder.Since = %v, want within seconds of the server's now %v", h.Since, time.Unix(now, 0))
	}
	if !strings.Contains(err.Error(), "root") {
		t.Errorf("error %q does not show the holder", err)
	}
	// A timed-out wait names the holder too.
	_, err = other.Acquire(ctxT(t, 200*time.Millisecond), name)
	if !errors.As(err, &he) || he.Holder == nil || int64(he.Holder.PID) != lk.(*mysqllock.Lock).ConnID() || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timed-out Acquire = %v, want DeadlineExceeded with the holder", err)
	}
}

// TestMySQLNoStacking: every handle has its own session, so a second
// handle from the same locker cannot take a held name, and one release
// frees it for everyone: the server's stacking is never exposed.
func TestMySQLNoStacking(t *testing.T) {
	m, db := newMySQL(t, nil)
	name := integration.Name(t)
	server := lockName(t, m, name)
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
		var he *lockkit.HeldError
		if !errors.As(err, &he) {
			t.Fatalf("second TryAcquire on the same locker = %v, want a *HeldError", err)
		}
		if he.Holder == nil || int64(he.Holder.PID) != lk.(*mysqllock.Lock).ConnID() {
			t.Errorf("holder %v, want the first handle's session %d", he.Holder, lk.(*mysqllock.Lock).ConnID())
		}
	}
	if _, err := m.Acquire(ctxT(t, 150*time.Millisecond), name); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("blocking Acquire on the same locker = %v, want it to wait and time out", err)
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := usedBy(t, db, server); got.Valid {
		t.Errorf("after the one release, IS_USED_LOCK = %d: the lock was stacked", got.Int64)
	}
}

func TestMySQLReleaseFromAnotherConnection(t *testing.T) {
	m, db := newMySQL(t, nil)
	name := integration.Name(t)
	server := lockName(t, m, name)
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	var got sql.NullInt64
	if err := db.QueryRowContext(ctxT(t, 10*time.Second), "SELECT RELEASE_LOCK(?)", server).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !got.Valid || got.Int64 != 0 {
		t.Errorf("RELEASE_LOCK from another session = %v, want 0", got)
	}
	if u := usedBy(t, db, server); u.Int64 != lk.(*mysqllock.Lock).ConnID() {
		t.Errorf("after a foreign RELEASE_LOCK, IS_USED_LOCK = %v, want still %d", u, lk.(*mysqllock.Lock).ConnID())
	}
	time.Sleep(3 * testProbeInterval)
	if err := lk.Err(); err != nil {
		t.Errorf("holder's Err() after a foreign RELEASE_LOCK = %v, want still held", err)
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Errorf("Release = %v", err)
	}
}

func TestMySQLKilledHolder(t *testing.T) {
	m, db := newMySQL(t, nil)
	other, _ := newMySQL(t, nil)
	name := integration.Name(t)
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	id := lk.(*mysqllock.Lock).ConnID()
	start := time.Now()
	killConn(t, db, id)
	select {
	case <-lk.Done():
		t.Logf("loss detected %v after KILL (probe interval %v)", time.Since(start).Round(time.Millisecond), testProbeInterval)
	case <-time.After(mysqlLossBound(testProbeInterval)):
		t.Fatalf("Done not closed within %v of KILL", mysqlLossBound(testProbeInterval))
	}
	if err := lk.Err(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Err() = %v, want ErrLost", err)
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release = %v, want ErrLost", err)
	}
	lk2, err := other.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatalf("TryAcquire after the holder was killed: %v", err)
	}
	if err := lk2.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// The dead connection is gone from the pool, not reused.
	lk3, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatalf("TryAcquire on the locker whose connection was killed: %v", err)
	}
	if lk3.(*mysqllock.Lock).ConnID() == id {
		t.Error("the killed connection was reused")
	}
	if err := lk3.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestMySQLLossLatency measures how soon Done closes after KILL at the
// default probe interval; it asserts only the documented bound.
func TestMySQLLossLatency(t *testing.T) {
	m, db := newMySQL(t, &mysqllock.Config{})
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), integration.Name(t))
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release(context.Background())
	// Kill at a random point of the probe cycle.
	time.Sleep(time.Duration(time.Now().UnixNano() % int64(mysqllock.DefaultProbeInterval)))
	start := time.Now()
	killConn(t, db, lk.(*mysqllock.Lock).ConnID())
	select {
	case <-lk.Done():
		t.Logf("default probe interval %v: loss detected %v after KILL", mysqllock.DefaultProbeInterval, time.Since(start).Round(time.Millisecond))
	case <-time.After(mysqlLossBound(mysqllock.DefaultProbeInterval)):
		t.Fatalf("Done not closed within the documented %v", mysqlLossBound(mysqllock.DefaultProbeInterval))
	}
}

// TestMySQLKillQueryOnWaiter: KILL QUERY ends a waiting GET_LOCK with
// NULL. Acquire reports an error (not a lock, not a timeout), drops the
// connection, and the waiter never gets the lock later.
func TestMySQLKillQueryOnWaiter(t *testing.T) {
	holder, db := newMySQL(t, nil)
	waiter, wdb := newMySQL(t, nil)
	waiterID := singleConnID(t, wdb)
	name := integration.Name(t)
	server := lockName(t, holder, name)
	lk, err := holder.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		l, err := waiter.Acquire(ctxT(t, 30*time.Second), name)
		if err == nil {
			_ = l.Release(context.Background())
			err = errors.New("acquired")
		}
		res <- err
	}()
	if !eventually(5*time.Second, func() bool {
		var state sql.NullString
		_ = db.QueryRowContext(ctxT(t, 5*time.Second), "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?", waiterID).Scan(&state)
		return state.String == "User lock"
	}) {
		t.Fatal("the waiter never waited in GET_LOCK")
	}
	if _, err := db.ExecContext(ctxT(t, 10*time.Second), "KILL QUERY "+strconv.FormatInt(waiterID, 10)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err == nil || errors.Is(err, lockkit.ErrNotAcquired) || !strings.Contains(err.Error(), "NULL") {
			t.Errorf("Acquire whose GET_LOCK was killed = %v, want the NULL error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire did not return after KILL QUERY")
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if u := usedBy(t, db, server); u.Valid {
		t.Errorf("IS_USED_LOCK = %d after the holder released: the killed waiter got it", u.Int64)
	}
	if !eventually(5*time.Second, func() bool { return !sessionAlive(t, db, waiterID) }) {
		t.Error("the waiter's connection was not discarded")
	}
}

// TestMySQLCancelledWaiterLeavesNoGrant: a waiter cancelled without a
// deadline has its connection closed by the driver; lockkit kills its
// session, so that releasing the lock right after grants it to nobody.
func TestMySQLCancelledWaiterLeavesNoGrant(t *testing.T) {
	holder, db := newMySQL(t, nil)
	waiter, wdb := newMySQL(t, nil)
	waiterID := singleConnID(t, wdb)
	name := integration.Name(t)
	server := lockName(t, holder, name)
	lk, err := holder.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		l, err := waiter.Acquire(ctx, name)
		if err == nil {
			_ = l.Release(context.Background())
			err = errors.New("acquired")
		}
		res <- err
	}()
	if !eventually(5*time.Second, func() bool {
		var state sql.NullString
		_ = db.QueryRowContext(ctxT(t, 5*time.Second), "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?", waiterID).Scan(&state)
		return state.String == "User lock"
	}) {
		t.Fatal("the waiter never waited in GET_LOCK")
	}
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Acquire = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled Acquire did not return")
	}
	// Acquire returned only after the waiting session was ended.
	if sessionAlive(t, db, waiterID) {
		t.Error("the cancelled waiter's session is still on the server")
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if u := usedBy(t, db, server); u.Valid {
		t.Errorf("IS_USED_LOCK = %d right after the release: a late grant", u.Int64)
	}
}

// TestMySQLWaitTimeoutKeepsConnection: a wait bounded by a deadline is
// ended by the server's own GET_LOCK timeout, so the connection stays
// clean and goes back to the pool.
func TestMySQLWaitTimeoutKeepsConnection(t *testing.T) {
	holder, _ := newMySQL(t, nil)
	waiter, wdb := newMySQL(t, nil)
	waiterID := singleConnID(t, wdb)
	name := integration.Name(t)
	lk, err := holder.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = waiter.Acquire(ctxT(t, 300*time.Millisecond), name)
	took := time.Since(start)
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire with a 300ms deadline = %v", err)
	}
	t.Logf("timed-out wait returned after %v", took.Round(time.Millisecond))
	if took < 250*time.Millisecond {
		t.Errorf("the wait ended after %v, before its deadline", took)
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	lk2, err := waiter.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	if got := lk2.(*mysqllock.Lock).ConnID(); got != waiterID {
		t.Errorf("after a timed-out wait the pool's connection is %d, want the same %d", got, waiterID)
	}
	if err := lk2.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestMySQLSeveralNames(t *testing.T) {
	m, db := newMySQL(t, nil)
	other, _ := newMySQL(t, nil)
	base := integration.Name(t)
	names := []string{base + ".c", base + ".a", base + ".b"}
	lk, err := m.TryLockNames(ctxT(t, 10*time.Second), names)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := lk.Names(), []string{base + ".a", base + ".b", base + ".c"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Names() = %v, want sorted %v", got, want)
	}
	for _, s := range lk.UserLockNames() {
		if u := usedBy(t, db, s); u.Int64 != lk.ConnID() {
			t.Errorf("IS_USED_LOCK(%q) = %v, want %d", s, u, lk.ConnID())
		}
	}
	// A try over an overlapping set fails on the held name and gives back
	// the free one it took first.
	free := base + ".0"
	_, err = other.TryLockNames(ctxT(t, 10*time.Second), []string{base + ".b", free})
	var he *lockkit.HeldError
	if !errors.As(err, &he) || he.Name != base+".b" || he.Holder == nil || int64(he.Holder.PID) != lk.ConnID() {
		t.Errorf("TryLockNames over a held name = %v", err)
	}
	if u := usedBy(t, db, lockName(t, m, free)); u.Valid {
		t.Errorf("the free name is left held by %d after a failed try", u.Int64)
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, s := range lk.UserLockNames() {
		if u := usedBy(t, db, s); u.Valid {
			t.Errorf("IS_USED_LOCK(%q) = %d after release", s, u.Int64)
		}
	}
}

// TestMySQLSortedNamesDoNotDeadlock: two lockers taking the same names in
// opposite orders never deadlock, because both take them sorted.
func TestMySQLSortedNamesDoNotDeadlock(t *testing.T) {
	a, _ := newMySQL(t, nil)
	b, _ := newMySQL(t, nil)
	base := integration.Name(t)
	x, y := base+".A", base+".B"
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, l := range []*mysqllock.Locker{a, b} {
		order := []string{x, y}
		if i == 1 {
			order = []string{y, x}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				lk, err := l.LockNames(ctxT(t, 20*time.Second), order)
				if err != nil {
					errs <- err
					return
				}
				if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMySQLDeadlock: lockkit's session holds A and asks for B while
// another session holds B and waits for A. The server picks lockkit (the
// session that closed the cycle) as the victim; the error matches
// ErrDeadlock and A is given back, so the other session gets it.
func TestMySQLDeadlock(t *testing.T) {
	m, db := newMySQL(t, &mysqllock.Config{NoNamespace: true, ProbeInterval: testProbeInterval})
	base := integration.Name(t)
	a, gate, b := base+".1", base+".2", base+".3"
	raw := func() *sql.Conn {
		c, err := db.Conn(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	getLock := func(c *sql.Conn, name string, timeout int) (sql.NullInt64, error) {
		var got sql.NullInt64
		err := c.QueryRowContext(ctxT(t, 30*time.Second), "SELECT GET_LOCK(?, ?)", name, timeout).Scan(&got)
		return got, err
	}
	s1, s2 := raw(), raw()
	if got, err := getLock(s1, b, 0); err != nil || got.Int64 != 1 {
		t.Fatalf("S1 GET_LOCK(B) = %v, %v", got, err)
	}
	if got, err := getLock(s2, gate, 0); err != nil || got.Int64 != 1 {
		t.Fatalf("S2 GET_LOCK(gate) = %v, %v", got, err)
	}
	res := make(chan error, 1)
	go func() {
		// Sorted: A, gate, B. Takes A, waits at the gate.
		lk, err := m.LockNames(ctxT(t, 30*time.Second), []string{b, a, gate})
		if err == nil {
			_ = lk.Release(context.Background())
			err = errors.New("acquired")
		}
		res <- err
	}()
	if !eventually(5*time.Second, func() bool { return usedBy(t, db, a).Valid }) {
		t.Fatal("lockkit never took A")
	}
	s1res := make(chan sql.NullInt64, 1)
	go func() {
		// S1 (holding B) waits for A.
		got, err := getLock(s1, a, 20)
		if err != nil {
			t.Errorf("S1 GET_LOCK(A) = %v", err)
		}
		s1res <- got
	}()
	time.Sleep(200 * time.Millisecond)
	// Open the gate: lockkit takes it and asks for B, closing the cycle.
	var rel sql.NullInt64
	if err := s2.QueryRowContext(ctxT(t, 10*time.Second), "SELECT RELEASE_LOCK(?)", gate).Scan(&rel); err != nil || rel.Int64 != 1 {
		t.Fatalf("S2 RELEASE_LOCK(gate) = %v, %v", rel, err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, lockkit.ErrDeadlock) || errors.Is(err, lockkit.ErrNotAcquired) {
			t.Errorf("LockNames in a deadlock = %v, want ErrDeadlock", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("no deadlock error")
	}
	if got := <-s1res; got.Int64 != 1 {
		t.Errorf("S1 GET_LOCK(A) = %v after lockkit was the victim, want 1: A was not given back", got)
	}
	for _, n := range []string{a, b} {
		var r sql.NullInt64
		if err := s1.QueryRowContext(ctxT(t, 10*time.Second), "SELECT RELEASE_LOCK(?)", n).Scan(&r); err != nil || r.Int64 != 1 {
			t.Errorf("S1 RELEASE_LOCK(%q) = %v, %v", n, r, err)
		}
	}
}

func TestMySQLKeys(t *testing.T) {
	m, db := newMySQL(t, &mysqllock.Config{Namespace: "lkt_" + strconv.FormatInt(time.Now().UnixNano(), 36), ProbeInterval: testProbeInterval})
	other, err := mysqllock.New(integration.MySQL(t), &mysqllock.Config{Namespace: m.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	big, pair := keyhash.Int64(-42), keyhash.Pair(7, -8)
	lk, err := m.TryLockKey(ctxT(t, 10*time.Second), big)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := m.KeyUserLockName(big); s != m.Namespace()+"#-42" || lk.UserLockNames()[0] != s || lk.Name() != "-42" {
		t.Errorf("key name %q, lock names %v, Name %q", s, lk.UserLockNames(), lk.Name())
	}
	if _, err := other.TryLockKey(ctxT(t, 10*time.Second), big); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("second TryLockKey = %v, want ErrNotAcquired", err)
	}
	// The name "-42" is not the key -42.
	ln, err := other.TryAcquire(ctxT(t, 10*time.Second), "-42")
	if err != nil {
		t.Fatalf("the name %q collided with the key: %v", "-42", err)
	}
	if err := ln.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	lp, err := other.LockKey(ctxT(t, 10*time.Second), pair)
	if err != nil {
		t.Fatal(err)
	}
	if s := lp.UserLockNames()[0]; s != m.Namespace()+"#(7,-8)" || usedBy(t, db, s).Int64 != lp.ConnID() {
		t.Errorf("pair lock name %q", s)
	}
	for _, l := range []*mysqllock.Lock{lk, lp} {
		if err := l.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	both, err := m.LockKeys(ctxT(t, 10*time.Second), []keyhash.Key{pair, big})
	if err != nil {
		t.Fatal(err)
	}
	if err := both.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestMySQLStalePooledConnection: an idle pooled connection killed on the
// server is replaced, not reported as a failed acquire.
func TestMySQLStalePooledConnection(t *testing.T) {
	m, db := newMySQL(t, nil)
	id := singleConnID(t, db)
	killConn(t, integration.MySQL(t), id)
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), integration.Name(t))
	if err != nil {
		t.Fatalf("TryAcquire after the idle connection was killed: %v", err)
	}
	if lk.(*mysqllock.Lock).ConnID() == id {
		t.Error("the killed connection was used")
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestMySQLPoolExhaustion: each held lock pins a connection; with the pool
// full, a further acquire waits for its context instead of hanging.
func TestMySQLPoolExhaustion(t *testing.T) {
	m, db := newMySQL(t, nil)
	db.SetMaxOpenConns(2)
	var held []lockkit.Lock
	for range 2 {
		lk, err := m.TryAcquire(ctxT(t, 10*time.Second), integration.Name(t))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, lk)
	}
	_, err := m.TryAcquire(ctxT(t, 300*time.Millisecond), integration.Name(t))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("TryAcquire on a full pool = %v, want ErrNotAcquired and DeadlineExceeded", err)
	}
	for _, lk := range held {
		if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMySQLReleaseWithCancelledContext: Release runs RELEASE_LOCK detached
// from the caller's cancellation, so the lock is given back cleanly and
// the connection is kept.
func TestMySQLReleaseWithCancelledContext(t *testing.T) {
	m, db := newMySQL(t, nil)
	id := singleConnID(t, db)
	name := integration.Name(t)
	lk, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := lk.Release(ctx); err != nil {
		t.Fatalf("Release with a cancelled context = %v", err)
	}
	if u := usedBy(t, integration.MySQL(t), lockName(t, m, name)); u.Valid {
		t.Errorf("still held by %d", u.Int64)
	}
	lk2, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	if lk2.(*mysqllock.Lock).ConnID() != id {
		t.Error("the connection was not returned to the pool")
	}
	if err := lk2.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestMySQLSessionsBackToBaseline runs every path that ends or abandons a
// connection (release, conflict, timed-out wait, cancelled wait, killed
// holder, deadlock-free several-name locks) as a user of its own, so that
// the server's processlist can be counted for this test alone: afterwards
// the server has exactly the sessions the pool keeps open, none in use.
// The same user has no PROCESS privilege, so a root holder shows only its
// connection id.
func TestMySQLSessionsBackToBaseline(t *testing.T) {
	admin := integration.MySQL(t)
	user := "lkt_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	for _, q := range []string{
		"CREATE USER '" + user + "'@'%'",
		"GRANT ALL ON test.* TO '" + user + "'@'%'",
	} {
		if _, err := admin.ExecContext(ctxT(t, 10*time.Second), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), "DROP USER '"+user+"'@'%'")
	})
	cfg, err := mysql.ParseDSN(integration.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Passwd = user, ""
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := mysqllock.New(db, &mysqllock.Config{ProbeInterval: testProbeInterval})
	if err != nil {
		t.Fatal(err)
	}
	rootLocker, _ := newMySQL(t, nil)
	sessions := func() int {
		var n int
		if err := admin.QueryRowContext(ctxT(t, 10*time.Second), "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?", user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ctx := ctxT(t, 30*time.Second)
	base := integration.Name(t)

	// Plain try and release, and several names.
	lk, err := m.TryAcquire(ctx, base+".1")
	if err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := m.LockNames(ctx, []string{base + ".2", base + ".3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Conflicts with a root holder: a try, a timed-out wait, a cancelled
	// wait.
	held, err := rootLocker.TryAcquire(ctx, base+".held")
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.TryAcquire(ctx, base+".held")
	var he *lockkit.HeldError
	if !errors.As(err, &he) || he.Holder == nil || int64(he.Holder.PID) != held.(*mysqllock.Lock).ConnID() || he.Holder.Owner != "" {
		t.Errorf("conflict with another user's lock, without PROCESS = %v (holder %+v), want its connection id only", err, he)
	}
	if _, err := m.Acquire(ctxT(t, 200*time.Millisecond), base+".held"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timed-out wait = %v", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := m.Acquire(cctx, base+".held"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait = %v", err)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// A killed holder.
	lk, err = m.TryAcquire(ctx, base+".kill")
	if err != nil {
		t.Fatal(err)
	}
	killConn(t, admin, lk.(*mysqllock.Lock).ConnID())
	<-lk.Done()
	if err := lk.Release(ctx); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release of the killed lock = %v", err)
	}

	if !eventually(5*time.Second, func() bool { return sessions() == db.Stats().OpenConnections }) {
		t.Errorf("server has %d sessions of the test user, the pool keeps %d open: sessions leaked", sessions(), db.Stats().OpenConnections)
	}
	if s := db.Stats(); s.InUse != 0 {
		t.Errorf("%d connections still in use", s.InUse)
	}
	_ = db.Close()
	if !eventually(5*time.Second, func() bool { return sessions() == 0 }) {
		t.Errorf("%d sessions of the test user after its pool was closed", sessions())
	}
}

// TestMySQLPooledStress is PITFALLS item 1 on MySQL: a pool of 4, many
// goroutines locking and unlocking a few names; afterwards no name is
// held on the server and no connection is in use.
func TestMySQLPooledStress(t *testing.T) {
	m, db := newMySQL(t, nil)
	db.SetMaxOpenConns(4)
	base := integration.Name(t)
	names := []string{base + ".a", base + ".b", base + ".c"}
	const workers, rounds = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				name := names[(w+r)%len(names)]
				var lk lockkit.Lock
				var err error
				if r%2 == 0 {
					lk, err = m.Acquire(ctxT(t, 20*time.Second), name)
				} else {
					lk, err = m.TryAcquire(ctxT(t, 20*time.Second), name)
					if errors.Is(err, lockkit.ErrNotAcquired) {
						continue
					}
				}
				if err != nil {
					errs <- err
					return
				}
				if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	admin := integration.MySQL(t)
	for _, n := range names {
		if u := usedBy(t, admin, lockName(t, m, n)); u.Valid {
			t.Errorf("%q still held by connection %d", n, u.Int64)
		}
	}
}

// TestMySQLServerBehaviour pins the rows of the MySQL 8 / MariaDB table in
// the MySQL type's documentation, on the raw server without lockkit: what
// lockkit's choices rest on.
func TestMySQLServerBehaviour(t *testing.T) {
	db := integration.MySQL(t)
	maria := isMariaDB(t, db)
	base := integration.Name(t)
	getLock := func(c interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}, name string, timeout any) (sql.NullInt64, error) {
		var got sql.NullInt64
		err := c.QueryRowContext(ctxT(t, 20*time.Second), "SELECT GET_LOCK(?, ?)", name, timeout).Scan(&got)
		return got, err
	}
	errNumber := func(err error) uint16 {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			return me.Number
		}
		return 0
	}
	conn, err := db.Conn(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.Background(), "DO RELEASE_ALL_LOCKS()")
		_ = conn.Close()
	}()

	got, err := getLock(conn, "", 0)
	if maria && (err != nil || got.Valid) || !maria && errNumber(err) != 3057 {
		t.Errorf("empty name: %v, %v", got, err)
	}
	long65 := base + strings.Repeat("x", 65-len(base))
	got, err = getLock(conn, long65, 0)
	if maria && (err != nil || got.Int64 != 1) || !maria && errNumber(err) != 3057 {
		t.Errorf("65 characters: %v, %v", got, err)
	}
	long193 := base + strings.Repeat("x", 193-len(base))
	got, err = getLock(conn, long193, 0)
	if maria && errNumber(err) != 1059 || !maria && errNumber(err) != 3057 {
		t.Errorf("193 bytes: %v, %v", got, err)
	}
	got, err = getLock(conn, base+".neg", -1)
	if maria && (err != nil || got.Valid) || !maria && (err != nil || got.Int64 != 1) {
		t.Errorf("negative timeout on a free name: %v, %v", got, err)
	}

	// A fractional wait on a held name, and a waiter whose client goes
	// away.
	held := base + ".held"
	if got, err := getLock(conn, held, 0); err != nil || got.Int64 != 1 {
		t.Fatalf("GET_LOCK(held) = %v, %v", got, err)
	}
	other := integration.MySQL(t)
	start := time.Now()
	got, err = getLock(other, held, 0.3)
	if took := time.Since(start); err != nil || !got.Valid || got.Int64 != 0 || maria && (took < 250*time.Millisecond || took > 900*time.Millisecond) {
		t.Errorf("GET_LOCK(held, 0.3) = %v, %v after %v", got, err, took)
	}
	waiterID := singleConnID(t, other)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var g sql.NullInt64
		_ = other.QueryRowContext(ctx, "SELECT GET_LOCK(?, 30)", held).Scan(&g)
	}()
	if !eventually(5*time.Second, func() bool {
		var state sql.NullString
		_ = db.QueryRowContext(ctxT(t, 5*time.Second), "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?", waiterID).Scan(&state)
		return state.String == "User lock"
	}) {
		t.Fatal("the raw waiter never waited")
	}
	cancel() // the driver closes the socket
	<-done
	time.Sleep(300 * time.Millisecond)
	alive := sessionAlive(t, db, waiterID)
	if maria != alive {
		t.Errorf("300ms after its client closed the socket, the waiting session is alive=%v; want %v on this server", alive, maria)
	}
	if alive {
		killConn(t, db, waiterID)
	}
}
