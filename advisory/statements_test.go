package advisory

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// KeysStatements returns what a Locker sends for several keys on a direct
// connection, and the statements lock: a Locker cannot take the keys
// while a raw Try holds them, and can once the raw Unlock gave them back.
func TestKeysStatements(t *testing.T) {
	t.Parallel()
	keys := sortKeys(append(testKeys(t, 2), keyhash.Pair(7, -3)))
	for _, m := range []Mode{Exclusive, Shared} {
		q, err := KeysStatements(m)
		if err != nil {
			t.Fatal(err)
		}
		if want := sessionLock(fnTry, m, keys, "x", 1, checksLean).sql; q.Try != want {
			t.Errorf("%v: Try is not the statement TryLockKeys sends:\n%s\nwant\n%s", m, q.Try, want)
		}
		if want := sessionLock(fnLock, m, keys, "x", 1, checksLean).sql; q.Lock != want {
			t.Errorf("%v: Lock is not the statement LockKeys sends:\n%s\nwant\n%s", m, q.Lock, want)
		}
		if want := sessionUnlock(m, keys, "x", 1, formMulti).sql; q.Unlock != want {
			t.Errorf("%v: Unlock is not the statement Release sends:\n%s\nwant\n%s", m, q.Unlock, want)
		}
	}
	if _, err := KeysStatements(Mode(7)); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("KeysStatements(7) = %v, want ErrInvalid", err)
	}

	ctx := pgCtx(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, integration.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	p, err := NewPool(integration.PgxPool(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := KeysStatements(Exclusive)
	ints, as, bs := splitKeys(keys)
	// run sends sql and scans each row into dest; it returns the rows.
	run := func(sql string, args, dest []any) (int, error) {
		rs, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return 0, err
		}
		n := 0
		_, err = pgx.ForEachRow(rs, dest, func() error { n++; return nil })
		return n, err
	}
	var (
		pid    int32
		marked bool
	)
	rows, err := run(q.Try, []any{"raw", ints, as, bs},
		[]any{new(*string), &pid, new(int32), new(bool), new(int64), new(int32), new(int32), new(*bool), new(*bool), &marked})
	if err != nil || rows != len(keys) || !marked {
		t.Fatalf("raw Try: %d rows, marked %v, %v; want %d rows, marked", rows, marked, err, len(keys))
	}
	_, err = p.TryLockKeys(ctx, keys, nil)
	wantHeld(t, err, "TryLockKeys while the raw Try holds the keys")
	var mine, cleared bool
	rows, err = run(q.Unlock, []any{"raw", pid, ints, as, bs},
		[]any{new(*string), new(int32), &mine, new(bool), new(int64), new(int32), new(int32), new(*bool), &cleared})
	if err != nil || rows != len(keys) || !mine || !cleared {
		t.Fatalf("raw Unlock: %d rows, mine %v, cleared %v, %v", rows, mine, cleared, err)
	}
	l, err := p.TryLockKeys(ctx, keys, nil)
	if err != nil {
		t.Fatalf("TryLockKeys after the raw Unlock = %v", err)
	}
	mustRelease(t, l)
}
