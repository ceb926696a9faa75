package rowlock_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/rowlock"
)

// nowhere returns a *sql.DB whose every connection attempt fails: a call
// that did any I/O would fail with a connection error, not ErrInvalid.
func nowhere(t *testing.T, d rowlock.Dialect) *sql.DB {
	t.Helper()
	driver, dsn := "pgx", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"
	if d == rowlock.MySQL {
		driver, dsn = "mysql", "nobody@tcp(127.0.0.1:1)/none?timeout=1s"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("%s = %v, want ErrInvalid", what, err)
	}
}

func TestBadConfig(t *testing.T) {
	db := nowhere(t, rowlock.Postgres)
	long := strings.Repeat("o", 300)
	for what, cfg := range map[string]*rowlock.Config{
		"table with a quote":     {Table: `locks"; DROP TABLE x; --`},
		"table with a dot":       {Table: "public.locks"},
		"table with a space":     {Table: "lock table"},
		"table of 64 characters": {Table: strings.Repeat("t", 64)},
		"unknown dialect":        {Dialect: "sqlite"},
		"negative TTL":           {TTL: -time.Second},
		"TTL below 1ms":          {TTL: time.Microsecond},
		"renew above TTL/2":      {TTL: time.Second, RenewInterval: 600 * time.Millisecond},
		"renew equal to TTL":     {TTL: time.Second, RenewInterval: time.Second},
		"300-character owner":    {Owner: long},
		"owner with NUL":         {Owner: "a\x00b"},
		"owner not UTF-8":        {Owner: "a\xffb"},
		"300-character host":     {Host: long},
		"negative PID":           {PID: -1},
		"oversized data":         {Data: strings.Repeat("d", rowlock.MaxDataBytes+1)},
		"MaxPoll below 2ms":      {MaxPoll: time.Millisecond},
	} {
		_, err := rowlock.New(db, cfg)
		wantInvalid(t, "New with "+what, err)
	}
	_, err := rowlock.New(nil, &rowlock.Config{Dialect: rowlock.Postgres})
	wantInvalid(t, "New(nil)", err)
	// Detected from the driver.
	for d, db := range map[rowlock.Dialect]*sql.DB{rowlock.Postgres: db, rowlock.MySQL: nowhere(t, rowlock.MySQL)} {
		l, err := rowlock.New(db, nil)
		if err != nil {
			t.Fatalf("New(%s, nil): %v", d, err)
		}
		if l.Dialect() != d {
			t.Errorf("detected %q, want %q", l.Dialect(), d)
		}
		_ = l.Close()
	}
	// Exactly TTL/2 is accepted.
	l, err := rowlock.New(db, &rowlock.Config{TTL: time.Second, RenewInterval: 500 * time.Millisecond})
	if err != nil {
		t.Errorf("renew = TTL/2: %v", err)
	} else {
		_ = l.Close()
	}
}

func TestBadInputBeforeIO(t *testing.T) {
	for _, d := range []rowlock.Dialect{rowlock.Postgres, rowlock.MySQL} {
		t.Run(string(d), func(t *testing.T) {
			l, err := rowlock.New(nowhere(t, d), &rowlock.Config{TTL: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx := ctxT(t, 10*time.Second)
			names := map[string]string{
				"empty name":         "",
				"256-byte name":      strings.Repeat("n", 256),
				"128 two-byte runes": strings.Repeat("é", 128),
				"NUL in name":        "a\x00b",
				"name not UTF-8":     "a\xff",
			}
			for what, name := range names {
				_, err := l.TryAcquire(ctx, name)
				wantInvalid(t, "TryAcquire with "+what, err)
				_, err = l.Acquire(ctx, name)
				wantInvalid(t, "Acquire with "+what, err)
				_, err = l.ForceRelease(ctx, name)
				wantInvalid(t, "ForceRelease with "+what, err)
				_, err = l.Resume(ctx, name, "o", 1)
				wantInvalid(t, "Resume with "+what, err)
				wantInvalid(t, "LockTx with "+what, l.LockTx(ctx, &sql.Tx{}, name))
			}
			for what, o := range map[string]*rowlock.Options{
				"300-character owner": {Owner: strings.Repeat("o", 300)},
				"owner with NUL":      {Owner: "\x00"},
				"negative TTL":        {TTL: -1},
				"renew above TTL/2":   {TTL: time.Second, RenewInterval: 501 * time.Millisecond},
				"oversized data":      {Data: strings.Repeat("d", rowlock.MaxDataBytes+1)},
			} {
				_, err := l.TryLock(ctx, "x", o)
				wantInvalid(t, "TryLock with "+what, err)
			}
			_, err = l.Resume(ctx, "x", "", 1)
			wantInvalid(t, "Resume with an empty owner", err)
			_, err = l.Resume(ctx, "x", "o", 0)
			wantInvalid(t, "Resume with token 0", err)
			_, err = l.CleanupExpired(ctx, -time.Second)
			wantInvalid(t, "CleanupExpired(-1s)", err)
			wantInvalid(t, "LockTx(nil tx)", l.LockTx(ctx, nil, "x"))
			// 255 bytes is fine: the attempt reaches the network.
			_, err = l.TryAcquire(ctx, strings.Repeat("n", 255))
			if err == nil || errors.Is(err, lockkit.ErrInvalid) {
				t.Errorf("TryAcquire of a 255-byte name = %v, want a connection error", err)
			}
		})
	}
}

// TestLongOwnerRejected is PITFALLS 14: a 300-character owner is rejected
// before any I/O, and the server, in the strict mode that is the default,
// rejects it too rather than truncating. Owners up to 255 characters, even
// of multi-byte ones, round-trip intact.
func TestLongOwnerRejected(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		l := e.locker(t, nil)
		ctx := ctxT(t, 10*time.Second)
		name := e.name(t)
		_, err := l.TryLock(ctx, name, &rowlock.Options{Owner: strings.Repeat("o", 300)})
		wantInvalid(t, "300-character owner", err)
		if n := e.rows(t, name); n != 0 {
			t.Errorf("%d rows after the rejected acquire", n)
		}

		// The server would not truncate either.
		q := `INSERT INTO lockkit_locks (name, owner, token, acquired_at, expires_at, host, pid, data)
		      VALUES (?, ?, 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), '', 0, '')`
		if e.dialect == rowlock.Postgres {
			q = `INSERT INTO lockkit_locks (name, owner, acquired_at, expires_at) VALUES ($1, $2, now(), now())`
		}
		if _, err := e.db.ExecContext(ctx, q, name, strings.Repeat("o", 300)); err == nil {
			t.Error("the server accepted a 300-character owner")
		} else {
			t.Logf("server: %v", err)
		}
		if n := e.rows(t, name); n != 0 {
			t.Errorf("%d rows after the server rejected the owner", n)
		}

		// 255 characters of two bytes each: accepted and stored whole.
		owner := strings.Repeat("é", 255)
		lk := mustTry(t, l, name, &rowlock.Options{Owner: owner, Data: "ünïcødé ✓ 🔒"})
		he := wantHeld(t, e.locker(t, nil), name)
		if he.Holder.Owner != owner || he.Holder.Data != "ünïcødé ✓ 🔒" {
			t.Errorf("stored owner %d chars %q..., data %q", len([]rune(he.Holder.Owner)), he.Holder.Owner[:10], he.Holder.Data)
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
		// A 255-byte name works; names are compared byte for byte.
		long := strings.Repeat("n", 250) + randHex(2) + "x"
		lk = mustTry(t, l, long, nil)
		upper := mustTry(t, l, strings.ToUpper(long), nil) // no case folding
		spaced := mustTry(t, l, long[:254]+" ", nil)       // no trailing-space padding
		for _, k := range []*rowlock.Lock{lk, upper, spaced} {
			if err := k.Release(ctx); err != nil {
				t.Error(err)
			}
		}
	})
}

func TestRecordName(t *testing.T) {
	for _, tc := range []struct {
		table string
		id    any
		want  string
	}{
		{"products", 42, "products:42"},
		{"products", "42", "products:42"},
		{"products", int64(-7), "products:-7"},
		{"a:b", 1, "a%3Ab:1"},
		{"a", "b:1", "a:b:1"},
		{"100%", "x", "100%25:x"},
	} {
		if got := rowlock.RecordName(tc.table, tc.id); got != tc.want {
			t.Errorf("RecordName(%q, %v) = %q, want %q", tc.table, tc.id, got, tc.want)
		}
	}
}

func TestClosedLocker(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		l := e.locker(t, nil)
		ctx := ctxT(t, 10*time.Second)
		lk := mustTry(t, l, e.name(t), nil)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		if _, err := l.TryAcquire(ctx, e.name(t)); err == nil {
			t.Error("TryAcquire after Close succeeded")
		}
		// A lock still held keeps working.
		if err := lk.Renew(ctx); err != nil {
			t.Errorf("Renew after Close: %v", err)
		}
		if err := lk.Release(context.Background()); err != nil {
			t.Errorf("Release after Close: %v", err)
		}
	})
}
