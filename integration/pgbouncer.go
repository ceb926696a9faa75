package integration

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PgBouncer is a pgbouncer that a test started (see [StartPgBouncer]).
type PgBouncer struct{ addr string }

// Addr returns pgbouncer's address, 127.0.0.1:port.
func (p *PgBouncer) Addr() string { return p.addr }

// DSN returns the URL of database db ("single", "pair", "trio" or "many")
// through pgbouncer. Named prepared statements do not survive transaction
// pooling before PgBouncer 1.21: the URL asks pgx for the simple protocol,
// as pgx's documentation says for PgBouncer.
func (p *PgBouncer) DSN(db string) string {
	return "postgres://postgres@" + p.addr + "/" + db + "?sslmode=disable&default_query_exec_mode=simple_protocol"
}

// StartPgBouncer runs Debian's pgbouncer with poolMode (transaction or
// session) on a free port in front of the PostgreSQL server of
// [PostgresDSN], with four databases: "single" (one server connection for
// everyone), "pair" (two), "trio" (three) and "many" (40). extra lines go
// into the [pgbouncer] section. pgbouncer is stopped when t ends. Without
// pgbouncer installed (apt-get install pgbouncer) t is skipped, or fails
// when [EnvRequire] is "1".
func StartPgBouncer(t testing.TB, poolMode string, extra ...string) *PgBouncer {
	t.Helper()
	u, err := url.Parse(PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	pg, dbname := u.Host, strings.TrimPrefix(u.Path, "/")
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = "/usr/sbin/pgbouncer"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv(EnvRequire) == "1" {
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
trio = host=%[1]s port=%[2]s dbname=%[3]s user=postgres pool_size=3
many = host=%[1]s port=%[2]s dbname=%[3]s user=postgres pool_size=40

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[4]d
unix_socket_dir =
auth_type = any
pool_mode = %[6]s
default_pool_size = 1
max_client_conn = 200
logfile = %[5]s/pgbouncer.log
pidfile = %[5]s/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
%[7]s
`, host, port, dbname, listen, dir, poolMode, strings.Join(extra, "\n"))
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
			return &PgBouncer{addr: addr}
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
