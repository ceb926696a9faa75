package reliability

import (
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// startPgBouncer runs Debian's pgbouncer in pool_mode=transaction on a
// free port in front of the PostgreSQL server at pg (host:port), with two
// databases: "single" (one server connection for everyone) and "pair"
// (two). It returns the address; pgbouncer is stopped when t ends.
func startPgBouncer(t *testing.T, pg, dbname string) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = "/usr/sbin/pgbouncer"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv(integration.EnvRequire) == "1" {
				t.Fatal("pgbouncer is not installed (apt-get install pgbouncer)")
			}
			t.Skip("pgbouncer is not installed (apt-get install pgbouncer)")
		}
	}
	host, port, _ := net.SplitHostPort(pg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	dir, err := os.MkdirTemp("", "lkpgb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 { // pgbouncer refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root and no postgres user for pgbouncer: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Chmod(dir, 0o755)
	ini := fmt.Sprintf(`[databases]
single = host=%[1]s port=%[2]s dbname=%[3]s user=postgres pool_size=1
pair = host=%[1]s port=%[2]s dbname=%[3]s user=postgres pool_size=2

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[4]d
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 1
max_client_conn = 100
logfile = %[5]s/pgbouncer.log
pidfile = %[5]s/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
`, host, port, dbname, listen, dir)
	cfg := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	setParentDeathSignal(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(listen))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer not listening on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPitfall07_PgBouncerTransactionMode runs advisory locks through
// PgBouncer in transaction mode.
//
// Session locks break there: the lock is taken on whichever server
// connection ran the statement, which then serves other clients. With one
// server connection for all clients, a second client's try-lock runs in the
// very session that holds the lock, the server grants it again (stacking),
// and lockkit — which cannot see the pooler — reports two holders. That is
// why RELIABILITY.md says: never session locks through transaction pooling.
//
// Transaction-scoped locks keep working: each transaction has a server
// connection to itself until it ends, and its xact lock excludes another
// transaction's until COMMIT.
func TestPitfall07_PgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(integration.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := startPgBouncer(t, u.Host, u.Path[1:])
	// Named prepared statements do not survive transaction pooling: use
	// the simple protocol, as pgx's documentation says for PgBouncer.
	dsn := func(db string) string {
		return "postgres://postgres@" + addr + "/" + db + "?sslmode=disable&default_query_exec_mode=simple_protocol"
	}
	open := func(db string) *sql.DB {
		d, err := sql.Open("pgx", dsn(db))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	n := name(t)

	t.Run("session lock: two holders", func(t *testing.T) {
		a, err := advisory.New(open("single"), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := advisory.New(open("single"), nil)
		if err != nil {
			t.Fatal(err)
		}
		la, err := a.TryAcquire(ctxT(t, 10*time.Second), n)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := b.TryAcquire(ctxT(t, 10*time.Second), n)
		if err == nil {
			t.Logf("through PgBouncer (transaction mode, one server connection) a second client also holds %q: two holders, as documented", n)
			stillHeld(t, la)
			stillHeld(t, lb)
			_ = lb.Release(ctxT(t, 10*time.Second))
		} else {
			t.Errorf("the second session lock through PgBouncer = %v; RELIABILITY.md says it is granted (stacking on the shared server session): update the documentation", err)
		}
		_ = la.Release(ctxT(t, 10*time.Second))
	})

	t.Run("xact lock: excludes", func(t *testing.T) {
		db := open("pair")
		k := keyhash.Name(n + ".xact")
		ctx := ctxT(t, 20*time.Second)
		txA, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer txA.Rollback()
		if err := advisory.LockTx(ctx, txA, k); err != nil {
			t.Fatal(err)
		}
		txB, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer txB.Rollback()
		ok, err := advisory.TryLockTx(ctx, txB, k)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Fatal("a second transaction through PgBouncer took an xact lock another transaction holds")
		}
		if err := txB.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := txA.Commit(); err != nil {
			t.Fatal(err)
		}
		txC, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer txC.Rollback()
		if ok, err := advisory.TryLockTx(ctx, txC, k); err != nil || !ok {
			t.Fatalf("after COMMIT the xact lock is free: TryLockTx = %v, %v", ok, err)
		}
		if err := txC.Commit(); err != nil {
			t.Fatal(err)
		}
	})
	direct := openT(t, envSpec(t, kindPostgres))
	direct.eventuallyFree(t, n, 2*time.Second)
}
