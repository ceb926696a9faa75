package rowlock_test

import (
	"database/sql"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/rowlock"
)

// TestClockSkew runs leases against private servers whose wall clock
// libfaketime shifts by an hour, forward (PostgreSQL) and back (MariaDB).
// From the server's side that is exactly a client whose clock is an hour
// off. Go programs cannot be shifted with libfaketime themselves (the
// runtime reads the clock through the vDSO, not libc), so the shift is put
// on the side that can carry it.
//
// If any statement used the client's clock (a bound time.Now() + ttl, say),
// the lease would be an hour off on the server: taken over at once, or held
// for an hour. The test shows neither happens.
func TestClockSkew(t *testing.T) {
	if _, err := os.Stat(integration.FakeTimeLib); err != nil {
		if os.Getenv(integration.EnvRequire) == "1" {
			t.Fatalf("libfaketime missing (apt-get install faketime): %v", err)
		}
		t.Skipf("libfaketime missing (apt-get install faketime): %v", err)
	}
	for _, tc := range []struct {
		dialect rowlock.Dialect
		shift   time.Duration
	}{
		{rowlock.Postgres, time.Hour},
		{rowlock.MySQL, -time.Hour},
	} {
		t.Run(string(tc.dialect), func(t *testing.T) {
			t.Parallel()
			offset := "+1h"
			if tc.shift < 0 {
				offset = "-1h"
			}
			var db *sql.DB
			var now string
			switch tc.dialect {
			case rowlock.Postgres:
				srv := integration.StartPostgres(t, integration.WithFakeTime(offset), integration.WithServerArgs("-c", "TimeZone=UTC"))
				db = openDB(t, "pgx", srv.DSN())
				now = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
			case rowlock.MySQL:
				srv := integration.StartMariaDB(t, integration.WithFakeTime(offset))
				db = openDB(t, "mysql", srv.DSN())
				now = "SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))"
			}
			ctx := ctxT(t, time.Minute)
			if err := migrations.Up(ctx, db, migrations.Dialect(tc.dialect), nil); err != nil {
				t.Fatal(err)
			}
			serverNow := func() time.Time {
				t.Helper()
				var us int64
				if err := db.QueryRowContext(ctx, now).Scan(&us); err != nil {
					t.Fatal(err)
				}
				return time.UnixMicro(us)
			}
			// The setup itself: the server's clock is off by the shift.
			if skew := serverNow().Sub(time.Now()) - tc.shift; skew < -time.Minute || skew > time.Minute {
				t.Fatalf("server clock is %v off ours, want about %v", serverNow().Sub(time.Now()), tc.shift)
			}

			const ttl = time.Second
			cfg := &rowlock.Config{TTL: ttl, RenewInterval: rowlock.NoRenew}
			a, err := rowlock.New(db, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, err := rowlock.New(db, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			name := integration.Name(t)

			lk, err := a.TryAcquire(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			held := lk.(*rowlock.Lock)
			// Not taken over at once...
			he := wantHeld(t, b, name)
			if he.Holder == nil {
				t.Fatal("no holder in HeldError")
			}
			// ... and the lease is dated on the server's clock.
			if left := he.Holder.Expires.Sub(serverNow()); left <= 0 || left > ttl {
				t.Errorf("lease ends %v after the server's now, want within (0, %v]", left, ttl)
			}
			// The handle's own expiry is on our clock.
			if left := time.Until(held.Expires()); left <= 0 || left > ttl {
				t.Errorf("handle's Expires is %v from our now, want within (0, %v]", left, ttl)
			}
			if err := held.Renew(ctx); err != nil {
				t.Fatalf("Renew: %v", err)
			}
			time.Sleep(ttl / 2)
			wantHeld(t, b, name)
			// ... nor held for an hour: once the TTL has passed, it is
			// taken over.
			time.Sleep(ttl)
			next, err := b.TryAcquire(ctx, name)
			if err != nil {
				t.Fatalf("TryAcquire after the TTL: %v", err)
			}
			if next.Token() <= held.Token() {
				t.Errorf("takeover token %d not above %d", next.Token(), held.Token())
			}
			if err := held.Renew(ctx); !errors.Is(err, lockkit.ErrLost) {
				t.Errorf("old holder's Renew = %v, want ErrLost", err)
			}
			if err := next.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func openDB(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestSessionTimeZone: sessions with time zones far apart share leases
// correctly. On MySQL this is what UTC_TIMESTAMP(6) buys: NOW(6) follows the
// session's time_zone, and a DATETIME written with it by a +14:00 session
// would look 14 hours in the future to a UTC one.
func TestSessionTimeZone(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		zones := map[string]string{"timezone": "Pacific/Kiritimati"} // UTC+14
		if e.dialect == rowlock.MySQL {
			zones = map[string]string{"time_zone": "'+13:00'"}
		}
		ahead := e.open(t, zones)
		var probe string
		q := "SELECT current_setting('TimeZone')"
		if e.dialect == rowlock.MySQL {
			q = "SELECT @@session.time_zone"
		}
		if err := ahead.QueryRow(q).Scan(&probe); err != nil || (probe != "Pacific/Kiritimati" && probe != "+13:00") {
			t.Fatalf("session time zone = %q, %v", probe, err)
		}
		cfg := &rowlock.Config{TTL: 500 * time.Millisecond, RenewInterval: rowlock.NoRenew}
		a := e.lockerOn(t, ahead, cfg)
		b := e.locker(t, cfg)
		name := e.name(t)
		lk := mustTry(t, a, name, nil)
		he := wantHeld(t, b, name)
		if d := time.Until(he.Holder.Expires); d < -time.Minute || d > time.Minute {
			t.Errorf("lease written by a +14:00 session ends %v from now", d)
		}
		time.Sleep(600 * time.Millisecond)
		lk2 := mustTry(t, b, name, nil) // taken over after the TTL, not 14h later
		if err := lk.Release(ctxT(t, 5*time.Second)); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("stale Release = %v, want ErrLost", err)
		}
		// And the other way round.
		lk3, err := a.TryAcquire(ctxT(t, 5*time.Second), name)
		if err == nil {
			_ = lk3.Release(ctxT(t, 5*time.Second))
			t.Fatal("a +14:00 session took over a live lease written by a UTC session")
		}
		if err := lk2.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
}
