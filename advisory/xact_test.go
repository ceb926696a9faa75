package advisory

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// xactTable creates a table unique to the test, dropped when it ends.
func xactTable(t *testing.T, db *sql.DB) string {
	t.Helper()
	name := "lkt_xact_" + strings.ToLower(strings.NewReplacer(".", "_", "-", "_").Replace(integration.Name(t)[len(integration.Name(t))-12:]))
	if _, err := db.ExecContext(pgCtx(t, 10*time.Second), "CREATE TABLE "+name+" (v int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+name) })
	return name
}

func countRows(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(pgCtx(t, 10*time.Second), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// PITFALLS 9: transaction-scoped locks end at COMMIT and at ROLLBACK, on
// error and on panic; there is nothing to unlock and nothing leaks.
func TestWithTxLockEndsWithTransaction(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	db := integration.Postgres(t)
	db.SetMaxOpenConns(2)
	table := xactTable(t, admin)
	keys := testKeys(t, 3)
	other := rawSession(t, admin)

	// Commit.
	err := WithTxLock(pgCtx(t, 10*time.Second), db, keys, nil, func(ctx context.Context, tx *sql.Tx) error {
		for _, k := range keys {
			if rawTry(t, other, k) {
				t.Errorf("key %v free while the transaction holds it", k)
				rawUnlock(t, other, k)
			}
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES (1)")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, admin, table); n != 1 {
		t.Errorf("%d rows after commit, want 1", n)
	}
	waitNoLocks(t, admin, keys...)

	// Rollback on error.
	boom := errors.New("boom")
	err = WithTxLock(pgCtx(t, 10*time.Second), db, keys, nil, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES (2)"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WithTxLock = %v, want fn's error", err)
	}
	if n := countRows(t, admin, table); n != 1 {
		t.Errorf("%d rows after rollback, want 1", n)
	}
	waitNoLocks(t, admin, keys...)

	// Rollback on panic, and the panic goes on.
	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Errorf("recovered %v, want fn's panic", r)
			}
		}()
		_ = WithTxLock(pgCtx(t, 10*time.Second), db, keys, nil, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES (3)"); err != nil {
				return err
			}
			panic("kaboom")
		})
	}()
	if n := countRows(t, admin, table); n != 1 {
		t.Errorf("%d rows after a panic, want 1", n)
	}
	waitNoLocks(t, admin, keys...)
	if s := db.Stats(); s.InUse != 0 {
		t.Errorf("%d connections in use", s.InUse)
	}
}

// PITFALLS 9, the other half: a session-level lock taken inside a
// transaction that rolls back is still held. This is why WithTxLock uses
// the xact functions and why a *Lock owns a session outside transactions.
func TestSessionLockSurvivesRollback(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	key := testKeys(t, 1)[0]
	c, other := rawSession(t, admin), rawSession(t, admin)
	ctx := pgCtx(t, 10*time.Second)
	if _, err := c.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if !rawTry(t, c, key) {
		t.Fatal("raw try failed")
	}
	if _, err := c.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if rawTry(t, other, key) {
		t.Fatal("session lock was released by ROLLBACK; PostgreSQL keeps it")
	}
	rawUnlock(t, c, key)
	waitNoLocks(t, admin, key)
}

// A waiter blocks until the holder's transaction ends; a try fails at once
// with the holder named, without running fn.
func TestWithTxLockWaitAndTry(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	db := integration.Postgres(t)
	keys := testKeys(t, 2)
	p := newPGPool(t, nil)
	holder, err := p.LockKey(pgCtx(t, 10*time.Second), keys[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	err = WithTryTxLock(pgCtx(t, 10*time.Second), db, keys, nil, func(context.Context, *sql.Tx) error {
		t.Error("fn ran although a key was held")
		return nil
	})
	he := wantHeld(t, err, "WithTryTxLock over a held key")
	if he.Holder == nil || he.Holder.PID != holder.PID() {
		t.Errorf("Holder = %v, want pid %d", he.Holder, holder.PID())
	}
	// All or nothing: keys[0] is not left held.
	for _, r := range pgLocks(t, admin, keys...) {
		if r.pid != holder.PID() {
			t.Errorf("left over: %+v", r)
		}
	}
	ran := make(chan error, 1)
	go func() {
		ran <- WithTxLock(pgCtx(t, 20*time.Second), db, keys, nil, func(ctx context.Context, tx *sql.Tx) error {
			return nil
		})
	}()
	waitInPgLocks(t, admin, keys[1])
	mustRelease(t, holder)
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	// Shared transaction locks admit each other.
	shared := &TxOptions{Mode: Shared}
	err = WithTxLock(pgCtx(t, 10*time.Second), db, keys, shared, func(ctx context.Context, tx *sql.Tx) error {
		return WithTryTxLock(ctx, db, keys, shared, func(context.Context, *sql.Tx) error { return nil })
	})
	if err != nil {
		t.Fatalf("nested shared transaction locks: %v", err)
	}
	waitNoLocks(t, admin, keys...)
}

// PITFALLS 23 in transaction scope: a wait cancelled by its context stops
// on the server (no waiter left in pg_locks) and leaves nothing behind.
func TestWithTxLockCancelledWait(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	db := integration.Postgres(t)
	db.SetMaxOpenConns(2)
	key := testKeys(t, 1)[0]
	holder := rawSession(t, admin)
	if !rawTry(t, holder, key) {
		t.Fatal("raw try failed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		res <- WithTxLock(ctx, db, []keyhash.Key{key}, nil, func(context.Context, *sql.Tx) error {
			t.Error("fn ran without the lock")
			return nil
		})
	}()
	waitInPgLocks(t, admin, key)
	cancel()
	err := <-res
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled WithTxLock = %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		rows := pgLocks(t, admin, key)
		if len(rows) == 1 && rows[0].granted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg_locks = %+v, want only the holder", rows)
		}
		time.Sleep(5 * time.Millisecond)
	}
	rawUnlock(t, holder, key)
	waitNoLocks(t, admin, key)
	if s := db.Stats(); s.InUse != 0 {
		t.Errorf("%d in use", s.InUse)
	}
}

// PITFALLS 11: lock_timeout (55P03) and deadlocks (40P01) get errors of
// their own.
func TestPostgresServerTimeoutAndDeadlock(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	db := integration.Postgres(t)
	keys := testKeys(t, 2)
	p := newPGPool(t, nil)
	holder, err := p.LockKey(pgCtx(t, 10*time.Second), keys[0], nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("xact lock_timeout", func(t *testing.T) {
		err := WithTxLock(pgCtx(t, 10*time.Second), db, keys[:1], &TxOptions{LockTimeout: 50 * time.Millisecond}, func(context.Context, *sql.Tx) error {
			t.Error("fn ran")
			return nil
		})
		if !errors.Is(err, ErrLockTimeout) || !errors.Is(err, lockkit.ErrNotAcquired) || pgCode(err) != "55P03" {
			t.Fatalf("WithTxLock with LockTimeout = %v, want ErrLockTimeout, ErrNotAcquired, 55P03", err)
		}
		he := wantHeld(t, err, "lock_timeout")
		if he.Holder == nil || he.Holder.PID != holder.PID() {
			t.Errorf("Holder = %v, want pid %d", he.Holder, holder.PID())
		}
		// When the lock is granted, fn runs with the previous setting.
		err = WithTxLock(pgCtx(t, 10*time.Second), db, keys[1:], &TxOptions{LockTimeout: 50 * time.Millisecond}, func(ctx context.Context, tx *sql.Tx) error {
			var v string
			if err := tx.QueryRowContext(ctx, "SHOW lock_timeout").Scan(&v); err != nil {
				return err
			}
			if v != "0" {
				t.Errorf("lock_timeout inside fn = %q, want the previous 0", v)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("session lock_timeout", func(t *testing.T) {
		dsn := integration.PostgresDSN(t)
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		tdb, err := sql.Open("pgx", dsn+sep+"lock_timeout=50")
		if err != nil {
			t.Fatal(err)
		}
		defer tdb.Close()
		tp, err := New(tdb, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tp.LockKey(pgCtx(t, 10*time.Second), keys[0], nil)
		if !errors.Is(err, ErrLockTimeout) || !errors.Is(err, lockkit.ErrNotAcquired) {
			t.Fatalf("LockKey on a session with lock_timeout = %v, want ErrLockTimeout", err)
		}
		if he := wantHeld(t, err, "session lock_timeout"); he.Holder == nil || he.Holder.PID != holder.PID() {
			t.Errorf("Holder = %v", he.Holder)
		}
	})

	t.Run("deadlock", func(t *testing.T) {
		// Two transactions take the two keys in opposite orders, one
		// LockTx call each (the unsafe pattern LockKeys avoids).
		k1, k2 := testKeys(t, 2)[0], testKeys(t, 2)[1]
		ctx := pgCtx(t, 20*time.Second)
		tx1, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx1.Rollback()
		tx2, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx2.Rollback()
		if err := LockTx(ctx, tx1, k1); err != nil {
			t.Fatal(err)
		}
		if err := LockTx(ctx, tx2, k2); err != nil {
			t.Fatal(err)
		}
		type result struct {
			tx  *sql.Tx
			err error
		}
		res := make(chan result, 2)
		go func() { res <- result{tx1, LockTx(ctx, tx1, k2)} }()
		waitInPgLocks(t, admin, k2)
		go func() { res <- result{tx2, LockTx(ctx, tx2, k1)} }()
		// The victim's statement fails and its transaction aborts at
		// once, which releases its locks; the other one then gets its
		// lock. The two results arrive in either order.
		var victims, winners int
		for range 2 {
			select {
			case r := <-res:
				switch {
				case r.err == nil:
					winners++
				case errors.Is(r.err, lockkit.ErrDeadlock) && pgCode(r.err) == "40P01":
					victims++
					t.Logf("victim: %v", r.err)
				default:
					t.Errorf("LockTx = %v, want nil or lockkit.ErrDeadlock with 40P01", r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no deadlock resolution within 10s; pg_locks: %+v", pgLocks(t, admin, k1, k2))
			}
		}
		if victims != 1 || winners != 1 {
			t.Errorf("%d deadlock victims and %d winners, want one of each", victims, winners)
		}
		_ = tx1.Rollback()
		_ = tx2.Rollback()
		waitNoLocks(t, admin, k1, k2)
	})
	mustRelease(t, holder)
}

// LockTx and TryLockTx inside a caller's transaction; a failed multi-key
// try leaves nothing held and the transaction usable.
func TestLockTxHelpers(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	db := integration.Postgres(t)
	keys := testKeys(t, 4)
	other := rawSession(t, admin)
	ctx := pgCtx(t, 20*time.Second)

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := LockTx(ctx, tx, keys[0]); err != nil {
		t.Fatal(err)
	}
	ok, err := TryLockTx(ctx, tx, keys[1])
	if err != nil || !ok {
		t.Fatalf("TryLockTx = %v, %v", ok, err)
	}
	if rawTry(t, other, keys[0]) || rawTry(t, other, keys[1]) {
		t.Fatal("keys locked in the transaction were free")
	}
	// keys[3] held elsewhere: a multi-key try fails as a whole.
	if !rawTry(t, other, keys[3]) {
		t.Fatal("raw try failed")
	}
	ok, err = TryLockTx(ctx, tx, keys[2], keys[3])
	if err != nil || ok {
		t.Fatalf("TryLockTx over a held key = %v, %v; want false", ok, err)
	}
	if !rawTry(t, other, keys[2]) {
		t.Error("keys[2] stayed locked after a failed all-or-nothing try")
	} else {
		rawUnlock(t, other, keys[2])
	}
	// The transaction is intact, and still holds what it held before.
	if err := tx.QueryRowContext(ctx, "SELECT 1").Scan(new(int)); err != nil {
		t.Fatalf("transaction unusable after a failed try: %v", err)
	}
	if rawTry(t, other, keys[0]) {
		t.Error("the rollback to the savepoint released a lock taken before it")
	}
	rawUnlock(t, other, keys[3])
	ok, err = TryLockTx(ctx, tx, keys[2], keys[3])
	if err != nil || !ok {
		t.Fatalf("TryLockTx of free keys = %v, %v", ok, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	waitNoLocks(t, admin, keys...)

	// Shared flavours.
	tx1, _ := db.BeginTx(ctx, nil)
	tx2, _ := db.BeginTx(ctx, nil)
	defer tx1.Rollback()
	defer tx2.Rollback()
	if err := LockTxShared(ctx, tx1, keys[0]); err != nil {
		t.Fatal(err)
	}
	if ok, err := TryLockTxShared(ctx, tx2, keys[0], keys[1]); err != nil || !ok {
		t.Fatalf("TryLockTxShared = %v, %v", ok, err)
	}
	if ok, err := TryLockTx(ctx, tx2, keys[0]); err != nil || ok {
		t.Fatalf("exclusive TryLockTx over a shared holder = %v, %v", ok, err)
	}
	_ = tx1.Rollback()
	_ = tx2.Rollback()
	waitNoLocks(t, admin, keys...)
}

func TestXactBadInput(t *testing.T) {
	t.Parallel()
	dead, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	ctx := pgCtx(t, 5*time.Second)
	k := []keyhash.Key{keyhash.Int64(1)}
	fn := func(context.Context, *sql.Tx) error { return nil }
	for what, err := range map[string]error{
		"nil db":           WithTxLock(ctx, nil, k, nil, fn),
		"nil fn":           WithTxLock(ctx, dead, k, nil, nil),
		"no keys":          WithTxLock(ctx, dead, nil, nil, fn),
		"bad mode":         WithTryTxLock(ctx, dead, k, &TxOptions{Mode: 3}, fn),
		"neg lock timeout": WithTxLock(ctx, dead, k, &TxOptions{LockTimeout: -time.Second}, fn),
		"nil tx":           LockTx(ctx, nil, k...),
		"nil tx try":       second(TryLockTx(ctx, nil, k...)),
		"no keys tx":       second(TryLockTxShared(ctx, &sql.Tx{})),
	} {
		if !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("%s = %v, want ErrInvalid", what, err)
		}
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WithTxLock(cctx, dead, k, nil, fn); !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx = %v", err)
	}
	if s := dead.Stats(); s.OpenConnections != 0 {
		t.Errorf("bad input opened %d connections", s.OpenConnections)
	}
}

// The pgx flavour: BEGIN and the lock in one round trip; the locks end
// with the transaction; try, shared, lock_timeout and cancellation.
func TestWithPgxTxLock(t *testing.T) {
	t.Parallel()
	admin := pgAdmin(t)
	pool, w := countedPool(t)
	table := xactTable(t, admin)
	// Negative values and both key spaces go through the literal SQL.
	keys := append(testKeys(t, 2), keyhash.Int64(-testKeys(t, 1)[0].Int64()|1), keyhash.Pair(-1<<31, int32(testKeys(t, 1)[0].Int64())))
	other := rawSession(t, admin)
	ctx := pgCtx(t, 30*time.Second)

	insert := func(v int) func(ctx context.Context, tx pgx.Tx) error {
		return func(ctx context.Context, tx pgx.Tx) error {
			rows := pgLocks(t, admin, keys...)
			if len(rows) != len(keys) {
				t.Errorf("inside fn pg_locks shows %d of %d keys", len(rows), len(keys))
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1)", v)
			return err
		}
	}
	if err := WithPgxTxLock(ctx, pool, keys, nil, insert(1)); err != nil {
		t.Fatal(err)
	}
	waitNoLocks(t, admin, keys...)
	boom := errors.New("boom")
	err := WithPgxTxLock(ctx, pool, keys, nil, func(ctx context.Context, tx pgx.Tx) error {
		if err := insert(2)(ctx, tx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("= %v, want fn's error", err)
	}
	if n := countRows(t, admin, table); n != 1 {
		t.Errorf("%d rows, want 1 (one commit, one rollback)", n)
	}
	waitNoLocks(t, admin, keys...)

	// Two round trips: BEGIN+lock, COMMIT.
	nop := func(context.Context, pgx.Tx) error { return nil }
	best := int64(1 << 62)
	for range 3 {
		before := w.Writes()
		if err := WithPgxTxLock(ctx, pool, keys, &TxOptions{LockTimeout: time.Second}, nop); err != nil {
			t.Fatal(err)
		}
		best = min(best, w.Writes()-before)
	}
	if best != 2 {
		t.Errorf("WithPgxTxLock took %d round trips, want 2", best)
	}

	// Held elsewhere: try fails with the holder, lock_timeout ends the
	// wait, cancellation stops it on the server.
	if !rawTry(t, other, keys[3]) {
		t.Fatal("raw try failed")
	}
	err = WithTryPgxTxLock(ctx, pool, keys, nil, func(context.Context, pgx.Tx) error {
		t.Error("fn ran")
		return nil
	})
	if he := wantHeld(t, err, "WithTryPgxTxLock over a held key"); he.Holder == nil {
		t.Error("no holder")
	}
	err = WithPgxTxLock(ctx, pool, keys, &TxOptions{LockTimeout: 50 * time.Millisecond, Tx: &sql.TxOptions{Isolation: sql.LevelSerializable}}, nop)
	if !errors.Is(err, ErrLockTimeout) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("= %v, want ErrLockTimeout", err)
	}
	if he := wantHeld(t, err, "lock_timeout"); he.Holder == nil {
		t.Error("no holder after lock_timeout")
	}
	cctx, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() { res <- WithPgxTxLock(cctx, pool, keys, nil, nop) }()
	waitInPgLocks(t, admin, keys[3])
	cancel()
	if err := <-res; !errors.Is(err, lockkit.ErrNotAcquired) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled = %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(pgLocks(t, admin, keys...)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("pg_locks after the cancelled wait: %+v", pgLocks(t, admin, keys...))
		}
		time.Sleep(5 * time.Millisecond)
	}
	rawUnlock(t, other, keys[3])

	// Shared admits shared; the try flavour succeeds when free.
	shared := &TxOptions{Mode: Shared}
	err = WithPgxTxLock(ctx, pool, keys, shared, func(ctx context.Context, tx pgx.Tx) error {
		return WithTryPgxTxLock(ctx, pool, keys, shared, nop)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitNoLocks(t, admin, keys...)
	if s := pool.Stat(); s.AcquiredConns() != 0 {
		t.Errorf("%d pool connections still acquired", s.AcquiredConns())
	}

	for what, err := range map[string]error{
		"nil pool": WithPgxTxLock(ctx, nil, keys, nil, nop),
		"nil fn":   WithPgxTxLock(ctx, pool, keys, nil, nil),
		"no keys":  WithTryPgxTxLock(ctx, pool, nil, nil, nop),
		"bad iso":  WithPgxTxLock(ctx, pool, keys, &TxOptions{Tx: &sql.TxOptions{Isolation: sql.LevelLinearizable}}, nop),
	} {
		if !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("%s = %v, want ErrInvalid", what, err)
		}
	}
}

func TestLiteralStmt(t *testing.T) {
	got := literalStmt(single(fnXact, Shared, keyhash.Pair(-1<<31, 7)))
	if want := "SELECT pg_catalog.pg_advisory_xact_lock_shared('-2147483648'::integer, '7'::integer)"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	got = literalStmt(multi(fnXact, Exclusive, []keyhash.Key{keyhash.Int64(-5), keyhash.Int64(9), keyhash.Pair(1, 2)}))
	for _, part := range []string{"pg_catalog.unnest('{-5,9}'::bigint[])", "ROWS FROM (pg_catalog.unnest('{1}'::integer[]), pg_catalog.unnest('{2}'::integer[]))"} {
		if !strings.Contains(got, part) {
			t.Errorf("%s lacks %s", got, part)
		}
	}
	if strings.Contains(got, "$") {
		t.Errorf("placeholder left in %s", got)
	}
}
