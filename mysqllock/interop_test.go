package mysqllock_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	migratemysql "github.com/golang-migrate/migrate/v4/database/mysql"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/mysqllock"
)

// TestMigrateMySQLLockInterop: golang-migrate's mysql driver holds its
// migration lock through its own Lock (GET_LOCK on the name
// keyhash.MigrateMySQLLockName gives). A locker with NoNamespace then
// fails to take that name, naming migrate's connection; once migrate
// unlocks, it takes it; while it holds the name, migrate's Lock waits; when
// it releases, migrate's Lock returns.
func TestMigrateMySQLLockInterop(t *testing.T) {
	t.Parallel()
	admin := integration.MySQL(t)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	table := "lkt_mig_" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP TABLE IF EXISTS `"+table+"`") })
	var dbName string
	if err := admin.QueryRowContext(ctxT(t, 10*time.Second), "SELECT DATABASE()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	drv, err := migratemysql.WithInstance(integration.MySQL(t), &migratemysql.Config{MigrationsTable: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	name := keyhash.MigrateMySQLLockName(dbName, table)
	m, _ := newMySQL(t, &mysqllock.Config{NoNamespace: true, ProbeInterval: testProbeInterval})

	if err := drv.Lock(); err != nil {
		t.Fatal(err)
	}
	migrateConn := usedBy(t, admin, name)
	if !migrateConn.Valid {
		t.Fatalf("migrate's Lock holds no GET_LOCK on %q", name)
	}
	l, err := m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err == nil {
		_ = l.Release(context.Background())
		t.Fatalf("lockkit took %q while golang-migrate holds it", name)
	}
	var held *lockkit.HeldError
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.As(err, &held) {
		t.Fatalf("TryAcquire while migrate holds the lock = %v, want a HeldError", err)
	}
	if held.Holder == nil || int64(held.Holder.PID) != migrateConn.Int64 {
		t.Errorf("conflict names holder %v, want migrate's connection %d", held.Holder, migrateConn.Int64)
	}
	if err := drv.Unlock(); err != nil {
		t.Fatal(err)
	}

	l, err = m.TryAcquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatalf("TryAcquire after migrate unlocked: %v", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- drv.Lock() }()
	// migrate's GET_LOCK(name, 10) waits on its connection.
	waiting := eventually(5*time.Second, func() bool {
		var n int
		if err := admin.QueryRowContext(ctxT(t, 10*time.Second), `SELECT COUNT(*) FROM information_schema.PROCESSLIST
			WHERE ID = ? AND INFO LIKE '%GET_LOCK%'`, migrateConn.Int64).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	select {
	case err := <-errc:
		t.Fatalf("migrate's Lock returned (%v) while lockkit holds %q", err, name)
	default:
	}
	if !waiting {
		t.Fatal("migrate's Lock never waited on the name")
	}
	if err := l.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("migrate's Lock after lockkit released: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("migrate's Lock did not return after lockkit released")
	}
	if got := usedBy(t, admin, name); got != migrateConn {
		t.Errorf("IS_USED_LOCK = %v after migrate locked again, want its connection %d", got, migrateConn.Int64)
	}
	if err := drv.Unlock(); err != nil {
		t.Fatal(err)
	}
}
