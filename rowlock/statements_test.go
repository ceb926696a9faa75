package rowlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/rowlock"
)

func TestStatementsBadInput(t *testing.T) {
	if _, err := rowlock.Statements(rowlock.Postgres, `x"; DROP TABLE y; --`); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("bad table: %v", err)
	}
	if _, err := rowlock.Statements("sqlite", ""); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("bad dialect: %v", err)
	}
}

// TestStatementsInterop: leases taken and ended with the published
// statements through the raw driver, as a service in another language
// would, and a Locker exclude each other and see each other's holder and
// token.
func TestStatementsInterop(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		q, err := rowlock.Statements(e.dialect, "")
		if err != nil {
			t.Fatal(err)
		}
		ctx := ctxT(t, 30*time.Second)
		const owner, host, pid, data = "other-service", "elsewhere", 7, "ui:bob"
		ttl := time.Minute.Microseconds()
		acquire := func(name string) int64 {
			t.Helper()
			if e.dialect == rowlock.Postgres {
				var token int64
				var o, h, d string
				var tk, acq, exp, p, left int64
				if err := e.db.QueryRowContext(ctx, q.Acquire, name, owner, ttl, host, pid, data).Scan(&token, &o, &tk, &acq, &exp, &h, &p, &d, &left); err != nil {
					t.Fatal(err)
				}
				return token
			}
			conn, err := e.db.Conn(ctx) // LAST_INSERT_ID is per session
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			res, err := conn.ExecContext(ctx, q.Acquire, name, owner, ttl, host, pid, data, owner, host, pid, data, ttl)
			if err != nil {
				t.Fatal(err)
			}
			token, err := res.LastInsertId()
			if err != nil {
				t.Fatal(err)
			}
			return token
		}
		exec := func(stmt string, args ...any) int64 {
			t.Helper()
			if e.dialect == rowlock.Postgres && stmt == q.Release {
				var n int64
				if err := e.db.QueryRowContext(ctx, stmt, append(args, q.Channel)...).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			res, err := e.db.ExecContext(ctx, stmt, args...)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := res.RowsAffected()
			return n
		}
		l := e.locker(t, nil)
		name := e.name(t)

		token := acquire(name)
		if token == 0 {
			t.Fatal("raw Acquire of a free name returned token 0")
		}
		_, err = l.TryAcquire(ctx, name)
		var held *lockkit.HeldError
		if !errors.As(err, &held) || held.Holder == nil || held.Holder.Owner != owner || held.Holder.Token != token || held.Holder.Data != data {
			t.Fatalf("TryAcquire while the raw lease is live = %v (holder %+v)", err, holderOf(held))
		}
		if n := exec(q.Renew, ttl, name, owner, token); n != 1 {
			t.Errorf("raw Renew affected %d rows", n)
		}
		if n := exec(q.Release, name, owner, token); n != 1 {
			t.Errorf("raw Release = %d", n)
		}
		lk, err := l.TryAcquire(ctx, name)
		if err != nil {
			t.Fatalf("TryAcquire after the raw release: %v", err)
		}
		if lk.Token() <= token {
			t.Errorf("Locker's token %d not above the raw lease's %d", lk.Token(), token)
		}
		if got := acquire(name); got != 0 {
			t.Errorf("raw Acquire while the Locker holds the lease returned token %d", got)
		}
		if n := exec(q.Release, name, owner, token); n != 0 {
			t.Errorf("raw Release with a stale token ended %d leases", n)
		}
		if err := lk.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func holderOf(h *lockkit.HeldError) any {
	if h == nil {
		return nil
	}
	return h.Holder
}
