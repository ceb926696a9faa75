package mysqllock

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
)

// countedMySQL opens a one-connection pool on the MySQL test database
// whose round trips are counted, with interpolateParams as asked.
func countedMySQL(t *testing.T, interpolate bool) (*sql.DB, *integration.RoundTrips) {
	t.Helper()
	cfg, err := mysql.ParseDSN(integration.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	w := &integration.RoundTrips{}
	cfg.DialFunc = w.Dial
	cfg.InterpolateParams = interpolate
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db, w
}

func newCountedMySQL(t *testing.T, interpolate bool) (*Locker, *sql.DB, *integration.RoundTrips) {
	t.Helper()
	db, w := countedMySQL(t, interpolate)
	m, err := New(db, &Config{ProbeInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return m, db, w
}

func mctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustReleaseM(t *testing.T, l lockkit.Lock) {
	t.Helper()
	if err := l.Release(mctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// heldNames returns those of servers (GET_LOCK names) that some session
// holds.
func heldNames(t *testing.T, db *sql.DB, servers []string) []string {
	t.Helper()
	var held []string
	for _, s := range servers {
		var id sql.NullInt64
		if err := db.QueryRowContext(mctx(t, 10*time.Second), "SELECT IS_USED_LOCK(?)", s).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if id.Valid {
			held = append(held, fmt.Sprintf("%s by %d", s, id.Int64))
		}
	}
	return held
}

func hundredNames(t *testing.T) []string {
	base := integration.Name(t)
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%03d", base, i)
	}
	return names
}

// Round trips per operation, counted on the wire. With
// interpolateParams=true a statement is one round trip. Without it, a
// statement on one name (a try, a wait, a release, the holder query) is
// prepared once per connection, two round trips the first time and one
// from then on; a statement on several names is prepared each time, two
// round trips. Every name of an acquire is taken by one statement; a
// waiting acquire on a connection whose id is cached is one statement; a
// conflict costs the try, the give-back and the holder query, and leaves
// nothing held.
func TestMySQLRoundTrips(t *testing.T) {
	for _, interpolate := range []bool{true, false} {
		// want returns the round trips expected with interpolateParams,
		// or without.
		want := func(with, without int64) int64 {
			if interpolate {
				return with
			}
			return without
		}
		t.Run(fmt.Sprintf("interpolateParams=%v", interpolate), func(t *testing.T) {
			m, db, w := newCountedMySQL(t, interpolate)
			other, _, _ := newCountedMySQL(t, true)
			admin := integration.MySQL(t)
			names := hundredNames(t)
			servers := make([]string, len(names))
			for i, n := range names {
				servers[i] = mustName(m.UserLockName(n))
			}
			// count runs op and checks the round trips it took.
			count := func(what string, want int64, op func()) {
				t.Helper()
				before := w.Exchanges()
				op()
				if n := w.Exchanges() - before; n != want {
					t.Errorf("%s took %d round trips, want %d", what, n, want)
				}
			}
			var l lockkit.Lock
			var err error
			tryRelease := func() {
				if l, err = m.TryAcquire(mctx(t, 10*time.Second), names[0]); err != nil {
					t.Fatal(err)
				}
				mustReleaseM(t, l)
			}
			acquireRelease := func() {
				if l, err = m.Acquire(mctx(t, 10*time.Second), names[0]); err != nil {
					t.Fatal(err)
				}
				mustReleaseM(t, l)
			}
			// The Locker's first acquire asks once whether the server is
			// a Galera node (ErrGalera). A try learns (and caches) the
			// connection's id for free; without interpolateParams, the
			// release is prepared on the connection, and the try, which
			// ran before the id was known, the next time.
			count("the first TryAcquire+Release (wsrep_on, try, release)", want(3, 6), tryRelease)
			count("the second TryAcquire+Release (the try is prepared)", want(2, 3), tryRelease)
			count("TryAcquire+Release", want(2, 2), tryRelease)
			count("the first Acquire+Release (the wait is prepared)", want(2, 3), acquireRelease)
			count("Acquire+Release", want(2, 2), acquireRelease)
			count("TryLockNames of 100 names + Release", want(2, 4), func() {
				if l, err = m.TryLockNames(mctx(t, 10*time.Second), names); err != nil {
					t.Fatal(err)
				}
				mustReleaseM(t, l)
			})
			count("LockNames of 100 names + Release", want(2, 4), func() {
				if l, err = m.LockNames(mctx(t, 10*time.Second), names); err != nil {
					t.Fatal(err)
				}
				mustReleaseM(t, l)
			})

			// A conflict on the 51st name: the names before and after it
			// are taken by the statement and given back.
			ol, err := other.TryAcquire(mctx(t, 10*time.Second), names[50])
			if err != nil {
				t.Fatal(err)
			}
			holderID := ol.(*Lock).ConnID()
			checkConflict := func(what string, err error, wait bool) {
				t.Helper()
				var he *lockkit.HeldError
				if !errors.As(err, &he) || he.Name != names[50] || he.Holder == nil || int64(he.Holder.PID) != holderID {
					t.Errorf("%s over a held name = %v, want a HeldError for %q held by %d", what, err, names[50], holderID)
				}
				if wait != errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s: %v; DeadlineExceeded should be %v", what, err, wait)
				}
				if held := heldNames(t, admin, servers); len(held) != 1 || !strings.HasPrefix(held[0], servers[50]+" ") {
					t.Errorf("%s left held: %v, want only %q", what, held, servers[50])
				}
				if s := db.Stats(); s.InUse != 0 || s.OpenConnections != 1 {
					t.Errorf("%s: pool has %d in use, %d open; want its connection back, clean", what, s.InUse, s.OpenConnections)
				}
			}
			// Without interpolateParams: the try and the give-back
			// prepared (2 each), the holder query prepared the first time.
			count("TryLockNames of 100 names with a conflict (try, give back, holder)", want(3, 6), func() {
				_, err = m.TryLockNames(mctx(t, 10*time.Second), names)
				checkConflict("TryLockNames", err, false)
			})
			count("LockNames of 100 names timed out (wait, give back, holder)", want(3, 5), func() {
				_, err = m.LockNames(mctx(t, 200*time.Millisecond), names)
				checkConflict("LockNames", err, true)
			})

			// Contended, a wait is one statement: it is granted when the
			// holder releases.
			res := make(chan error, 1)
			before := w.Exchanges()
			go func() {
				l, err := m.Acquire(mctx(t, 30*time.Second), names[50])
				if err == nil {
					res <- nil
					mustReleaseM(t, l)
					return
				}
				res <- err
			}()
			time.Sleep(100 * time.Millisecond)
			if d := w.Exchanges() - before; d != 1 {
				t.Errorf("a waiting Acquire sent %d round trips before the grant, want 1 (one statement)", d)
			}
			mustReleaseM(t, ol)
			if err := <-res; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A wait over several names takes them left to right in sorted order
// within its one statement: while it waits for the second, it holds the
// first and not the third. Cancelled, it leaves nothing held and no late
// grant: its session is killed before Acquire returns.
func TestMySQLWaitOrderAndCancel(t *testing.T) {
	m, db, _ := newCountedMySQL(t, true)
	other, _, _ := newCountedMySQL(t, true)
	odb := integration.MySQL(t)
	base := integration.Name(t)
	a, b, c := base+".a", base+".b", base+".c"
	sa, sb, sc := mustName(m.UserLockName(a)), mustName(m.UserLockName(b)), mustName(m.UserLockName(c))
	// Learn the connection's id, so the wait below is the one statement.
	l, err := m.TryAcquire(mctx(t, 10*time.Second), a)
	if err != nil {
		t.Fatal(err)
	}
	waiterID := l.(*Lock).ConnID()
	mustReleaseM(t, l)
	if n := m.conns.Len(); n != 1 {
		t.Fatalf("%d cached connection ids, want 1", n)
	}
	ol, err := other.TryAcquire(mctx(t, 10*time.Second), b)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan error, 1)
	go func() {
		l, err := m.LockNames(ctx, []string{c, b, a})
		if err == nil {
			_ = l.Release(context.Background())
			err = errors.New("acquired")
		}
		res <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var state sql.NullString
		_ = odb.QueryRowContext(mctx(t, 5*time.Second), "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?", waiterID).Scan(&state)
		if state.String == "User lock" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiter never waited in GET_LOCK")
		}
		time.Sleep(5 * time.Millisecond)
	}
	held := heldNames(t, odb, []string{sa, sb, sc})
	want := []string{fmt.Sprintf("%s by %d", sa, waiterID), fmt.Sprintf("%s by %d", sb, ol.(*Lock).ConnID())}
	if strings.Join(held, "|") != strings.Join(want, "|") {
		t.Errorf("while waiting for %q: held %v, want %v (the first name taken, the third not yet)", b, held, want)
	}
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled LockNames = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled LockNames did not return")
	}
	var n int
	if err := odb.QueryRowContext(mctx(t, 5*time.Second), "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", waiterID).Scan(&n); err != nil || n != 0 {
		t.Errorf("the cancelled waiter's session: %d rows in the processlist (%v), want it killed", n, err)
	}
	mustReleaseM(t, ol)
	if held := heldNames(t, odb, []string{sa, sb, sc}); len(held) != 0 {
		t.Errorf("after the cancelled wait and the release: held %v (a late grant?)", held)
	}
	if s := db.Stats(); s.InUse != 0 {
		t.Errorf("%d connections in use", s.InUse)
	}
}

func mustName(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// A wait over several names ends at the deadline as a whole, not at a
// deadline per name: with two names held elsewhere, the second gets only
// what is left of the time, and the connection stays clean.
func TestMySQLMultiWaitEndsAtDeadline(t *testing.T) {
	m, db, _ := newCountedMySQL(t, true)
	other, _, _ := newCountedMySQL(t, true)
	admin := integration.MySQL(t)
	names := hundredNames(t)[:20]
	servers := make([]string, len(names))
	for i, n := range names {
		servers[i] = mustName(m.UserLockName(n))
	}
	l, err := m.TryAcquire(mctx(t, 10*time.Second), names[0]) // learn the id
	if err != nil {
		t.Fatal(err)
	}
	id := l.(*Lock).ConnID()
	mustReleaseM(t, l)
	ol, err := other.TryLockNames(mctx(t, 10*time.Second), []string{names[5], names[15]})
	if err != nil {
		t.Fatal(err)
	}
	const wait = 400 * time.Millisecond
	start := time.Now()
	_, err = m.LockNames(mctx(t, wait), names)
	took := time.Since(start)
	var he *lockkit.HeldError
	if !errors.As(err, &he) || he.Name != names[5] || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("LockNames = %v, want a HeldError for %q and DeadlineExceeded", err, names[5])
	}
	t.Logf("the wait returned after %v", took.Round(time.Millisecond))
	// Not early; and late only by scheduling, never by another name's
	// timeout (20 names of 400ms each would take seconds). The slack
	// covers a loaded 2-core machine.
	if took < wait-50*time.Millisecond || took > wait+time.Second {
		t.Errorf("the wait returned after %v, want about %v", took, wait)
	}
	if held := heldNames(t, admin, servers); len(held) != 2 {
		t.Errorf("held after the timed-out wait: %v, want only the other locker's two", held)
	}
	l, err = m.TryAcquire(mctx(t, 10*time.Second), names[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := l.(*Lock).ConnID(); got != id {
		t.Errorf("after the timed-out wait the pool's connection is %d, want the same %d", got, id)
	}
	mustReleaseM(t, l)
	mustReleaseM(t, ol)
	if s := db.Stats(); s.InUse != 0 {
		t.Errorf("%d connections in use", s.InUse)
	}
}

// A fenced lock adds the bump, and a WithData view's lock the record, one
// round trip each, with or without interpolateParams: both are cached
// statements on the lock's own connection, which is all the view's acquire
// needs (a pool of one connection suffices).
func TestMySQLRoundTripsFencedAndData(t *testing.T) {
	for _, interpolate := range []bool{true, false} {
		t.Run(fmt.Sprintf("interpolateParams=%v", interpolate), func(t *testing.T) {
			db, w := countedMySQL(t, interpolate)
			name := integration.Name(t)
			for _, c := range []struct {
				what    string
				fencing bool
				data    bool
				want    int64
			}{
				{"fenced try+release (try, bump, release)", true, false, 3},
				{"WithData try+release (try, record, release)", false, true, 3},
				{"fenced WithData try+release (try, bump, record, release)", true, true, 4},
			} {
				m, err := New(db, &Config{ProbeInterval: time.Minute, Fencing: c.fencing})
				if err != nil {
					t.Fatal(err)
				}
				var locker lockkit.Locker = m
				if c.data {
					locker = m.WithData("data")
				}
				for i := range 4 {
					before := w.Exchanges()
					l, err := locker.TryAcquire(mctx(t, 10*time.Second), name)
					if err != nil {
						t.Fatal(err)
					}
					mustReleaseM(t, l)
					// The first rounds prepare the statements (and check
					// wsrep_on, and make the tables and the row).
					if n := w.Exchanges() - before; i >= 2 && n != c.want {
						t.Errorf("%s took %d round trips, want %d", c.what, n, c.want)
					}
				}
			}
		})
	}
}
