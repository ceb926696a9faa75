package advisory

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/jackc/pgx/v5"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
)

// toolLock is another tool's own lock, taken through that tool's API.
type toolLock struct {
	key keyhash.Key
	pid func() int // the tool's session, from pg_backend_pid()
	// lock takes the tool's lock. blocked reports whether the tool is
	// kept out while lockkit holds the key: for a tool that waits, its
	// lock call is seen waiting in pg_locks; for one that only tries, its
	// lock call fails.
	lock    func(ctx context.Context) error
	blocked func(t *testing.T) (wait func() error)
	unlock  func(ctx context.Context) error
}

// TestToolLockInterop: golang-migrate (its pgx/v5 driver's Lock) holds its
// migration lock through its own API. lockkit's TryLockKey with the
// matching keyhash preset then fails with a conflict that names the tool's
// session; once the tool unlocks, lockkit acquires; while lockkit holds
// the key, the tool is kept out; after lockkit releases, the tool locks.
//
// goose's session locker gets the same test in the interop module
// (interop/goose_test.go), which keeps goose out of lockkit's go.mod.
func TestToolLockInterop(t *testing.T) {
	admin := pgAdmin(t)
	var dbName, schema string
	if err := admin.QueryRowContext(pgCtx(t, 10*time.Second), "SELECT current_database(), current_schema()").Scan(&dbName, &schema); err != nil {
		t.Fatal(err)
	}

	tools := map[string]func(t *testing.T) toolLock{
		"golang-migrate": func(t *testing.T) toolLock {
			var rnd [6]byte
			_, _ = rand.Read(rnd[:])
			table := "lkt_mig_" + hex.EncodeToString(rnd[:])
			t.Cleanup(func() {
				_, _ = admin.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
			})
			_, db := newPG(t, 2, nil)
			drv, err := migratepgx.WithInstance(db, &migratepgx.Config{MigrationsTable: table})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = drv.Close() })
			key := keyhash.MigratePostgresLockID(dbName, schema, table)
			return toolLock{
				key:    key,
				pid:    func() int { return lockHolderPID(t, admin, key) },
				lock:   func(context.Context) error { return drv.Lock() },
				unlock: func(context.Context) error { return drv.Unlock() },
				blocked: func(t *testing.T) func() error {
					errc := make(chan error, 1)
					go func() { errc <- drv.Lock() }()
					waitForWaiter(t, admin, key, errc)
					return func() error { return <-errc }
				},
			}
		},
	}
	for _, name := range []string{"golang-migrate"} {
		t.Run(name, func(t *testing.T) {
			tool := tools[name](t)
			p, _ := newPG(t, 2, nil)

			if err := tool.lock(pgCtx(t, 10*time.Second)); err != nil {
				t.Fatalf("%s lock: %v", name, err)
			}
			l, err := p.TryLockKey(pgCtx(t, 10*time.Second), tool.key, nil)
			if err == nil {
				_ = l.Release(context.Background())
				t.Fatalf("lockkit acquired %v while %s holds its lock", tool.key, name)
			}
			var held *lockkit.HeldError
			if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.As(err, &held) {
				t.Fatalf("TryLockKey while %s holds the lock = %v, want a HeldError", name, err)
			}
			if want := tool.pid(); held.Holder == nil || held.Holder.PID != want {
				t.Errorf("conflict names holder %v, want %s's session %d", held.Holder, name, want)
			}
			if err := tool.unlock(pgCtx(t, 10*time.Second)); err != nil {
				t.Fatalf("%s unlock: %v", name, err)
			}

			l, err = p.TryLockKey(pgCtx(t, 10*time.Second), tool.key, nil)
			if err != nil {
				t.Fatalf("TryLockKey after %s unlocked: %v", name, err)
			}
			wait := tool.blocked(t)
			if err := l.Release(pgCtx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := wait(); err != nil {
				t.Fatalf("%s could not lock after lockkit released: %v", name, err)
			}
			if err := tool.unlock(pgCtx(t, 10*time.Second)); err != nil {
				t.Fatalf("%s unlock: %v", name, err)
			}
		})
	}
}

// lockHolderPID returns the session that holds the advisory lock on key.
func lockHolderPID(t *testing.T, admin *sql.DB, key keyhash.Key) int {
	t.Helper()
	hi, lo := key.Pair()
	var pid int
	if err := admin.QueryRowContext(pgCtx(t, 10*time.Second), `SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND classid = $1::int8::oid AND objid = $2::int8::oid`,
		int64(uint32(hi)), int64(uint32(lo))).Scan(&pid); err != nil {
		t.Fatalf("no holder of %v in pg_locks: %v", key, err)
	}
	return pid
}

// waitForWaiter waits until a session waits for the advisory lock on key,
// failing if the lock call behind errc returns first.
func waitForWaiter(t *testing.T, admin *sql.DB, key keyhash.Key, errc <-chan error) {
	t.Helper()
	hi, lo := key.Pair()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting bool
		if err := admin.QueryRowContext(pgCtx(t, 10*time.Second), `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND objsubid = 1 AND NOT granted AND classid = $1::int8::oid AND objid = $2::int8::oid)`,
			int64(uint32(hi)), int64(uint32(lo))).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		select {
		case err := <-errc:
			t.Fatalf("the tool's lock call returned (%v) while lockkit holds the key", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the tool's lock call never waited on the key")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
