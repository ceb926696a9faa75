package interop

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	gooselock "github.com/pressly/goose/v3/lock"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// TestGooseLockInterop: goose (its lock.NewPostgresSessionLocker) holds its
// migration lock through its own API. lockkit's TryLockKey with
// keyhash.Goose then fails with a conflict that names goose's session;
// once goose unlocks, lockkit acquires; while lockkit holds the key, goose
// is kept out; after lockkit releases, goose locks.
//
// advisory's TestToolLockInterop does the same for golang-migrate. goose's
// key is one per database, shared by every test that might take it: no
// other test here takes it, and the root module's tests do not import goose.
func TestGooseLockInterop(t *testing.T) {
	db := newDB(t, 1)
	conn, err := db.Conn(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	var pid int
	if err := conn.QueryRowContext(ctxT(t, 10*time.Second), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	// Retry every second, twice, rather than goose's 5 s for 5 min.
	gl, err := gooselock.NewPostgresSessionLocker(gooselock.WithLockTimeout(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	key := keyhash.Goose()
	gooseLock := func(ctx context.Context) error { return gl.SessionLock(ctx, conn) }
	gooseUnlock := func(ctx context.Context) error { return gl.SessionUnlock(ctx, conn) }

	p, err := advisory.New(newDB(t, 2), nil)
	if err != nil {
		t.Fatal(err)
	}

	if err := gooseLock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("goose lock: %v", err)
	}
	l, err := p.TryLockKey(ctxT(t, 10*time.Second), key, nil)
	if err == nil {
		_ = l.Release(context.Background())
		t.Fatalf("lockkit acquired %v while goose holds its lock", key)
	}
	var held *lockkit.HeldError
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.As(err, &held) {
		t.Fatalf("TryLockKey while goose holds the lock = %v, want a HeldError", err)
	}
	if held.Holder == nil || held.Holder.PID != pid {
		t.Errorf("conflict names holder %v, want goose's session %d", held.Holder, pid)
	}
	if err := gooseUnlock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("goose unlock: %v", err)
	}

	l, err = p.TryLockKey(ctxT(t, 10*time.Second), key, nil)
	if err != nil {
		t.Fatalf("TryLockKey after goose unlocked: %v", err)
	}
	if err := gooseLock(ctxT(t, 1500*time.Millisecond)); err == nil {
		t.Fatal("goose took its lock while lockkit holds the key")
	}
	if err := l.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := gooseLock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("goose could not lock after lockkit released: %v", err)
	}
	if err := gooseUnlock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("goose unlock: %v", err)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newDB opens a database/sql pool of at most n connections on the
// PostgreSQL server of LOCKKIT_TEST_POSTGRES, through pgx's driver.
func newDB(t testing.TB, n int) *sql.DB {
	t.Helper()
	db := integration.Postgres(t)
	db.SetMaxOpenConns(n)
	return db
}
