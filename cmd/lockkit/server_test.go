package main

// End-to-end tests on the servers: PostgreSQL advisory locks, MySQL/MariaDB
// GET_LOCK, the lock table on both, and Redis.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/mysqllock"
)

// pgCase is PostgreSQL advisory locks on the test server.
func pgCase(t *testing.T) backendCase {
	return backendCase{name: "postgres", url: integration.PostgresDSN(t), env: baseEnv(t)}
}

// mysqlURL converts the go-sql-driver DSN of the test server
// (root@tcp(127.0.0.1:3306)/test) into the URL lockkit takes
// (mysql://root@127.0.0.1:3306/test), optionally on another database.
func mysqlURL(t *testing.T, database string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(integration.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName}
	if database != "" {
		u.Path = "/" + database
	}
	if cfg.Passwd != "" {
		u.User = url.UserPassword(cfg.User, cfg.Passwd)
	} else {
		u.User = url.User(cfg.User)
	}
	return u.String()
}

func mysqlCase(t *testing.T) backendCase {
	return backendCase{name: "mysql", url: mysqlURL(t, ""), env: baseEnv(t)}
}

func redisCase(t *testing.T) backendCase {
	return backendCase{name: "redis", url: integration.RedisURL(t), env: baseEnv(t)}
}

// etcdE2EPrefix is the key prefix of the etcd cases' URL.
const etcdE2EPrefix = "lockkit-e2e"

// etcdCase is the etcd test cluster, every endpoint in the URL.
func etcdCase(t *testing.T) backendCase {
	var hosts []string
	for _, ep := range integration.EtcdEndpoints(t) {
		hosts = append(hosts, strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://"))
	}
	return backendCase{name: "etcd", url: "etcd://" + strings.Join(hosts, ",") + "/" + etcdE2EPrefix, env: baseEnv(t)}
}

// etcdClient opens an etcd client on endpoints, closed when the test ends,
// with its log silenced.
func etcdClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client on %v: %v", endpoints, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func randSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pgTableCase is the lock table on PostgreSQL, in a schema of this test's
// own (search_path in the URL), created with lockkit migrate up.
func pgTableCase(t *testing.T) backendCase {
	t.Helper()
	db := integration.Postgres(t)
	schema := "lkt_cli_" + randSuffix()
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE") })
	u, err := url.Parse(integration.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	bc := backendCase{name: "postgres-table", url: u.String(), env: baseEnv(t)}
	code, _, errOut := lockkit(t, bc.env, "migrate", "-b", bc.url, "up")
	wantExit(t, "migrate up", code, 0, errOut)
	return bc
}

// mysqlTableCase is the lock table on MySQL, in a database of this test's
// own.
func mysqlTableCase(t *testing.T) backendCase {
	t.Helper()
	db := integration.MySQL(t)
	name := "lkt_cli_" + randSuffix()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP DATABASE " + name) })
	bc := backendCase{name: "mysql-table", url: mysqlURL(t, name), env: baseEnv(t)}
	code, _, errOut := lockkit(t, bc.env, "migrate", "-b", bc.url, "up")
	wantExit(t, "migrate up", code, 0, errOut)
	return bc
}

func TestPostgresExitCodes(t *testing.T)      { t.Parallel(); exitCodes(t, pgCase(t)) }
func TestMySQLExitCodes(t *testing.T)         { t.Parallel(); exitCodes(t, mysqlCase(t)) }
func TestRedisExitCodes(t *testing.T)         { t.Parallel(); exitCodes(t, redisCase(t)) }
func TestEtcdExitCodes(t *testing.T)          { t.Parallel(); exitCodes(t, etcdCase(t)) }
func TestPostgresTableExitCodes(t *testing.T) { t.Parallel(); exitCodes(t, withTable(pgTableCase(t))) }
func TestMySQLTableExitCodes(t *testing.T)    { t.Parallel(); exitCodes(t, withTable(mysqlTableCase(t))) }

// withTable makes every lockkit run of bc use --table.
func withTable(bc backendCase) backendCase {
	bc.table = true
	return bc
}

func TestPostgresSignalForwarding(t *testing.T) { t.Parallel(); signalForwarding(t, pgCase(t)) }
func TestMySQLSignalForwarding(t *testing.T)    { t.Parallel(); signalForwarding(t, mysqlCase(t)) }
func TestRedisSignalForwarding(t *testing.T)    { t.Parallel(); signalForwarding(t, redisCase(t)) }
func TestEtcdSignalForwarding(t *testing.T)     { t.Parallel(); signalForwarding(t, etcdCase(t)) }

func TestPostgresTableSignalForwarding(t *testing.T) {
	t.Parallel()
	signalForwarding(t, withTable(pgTableCase(t)))
}

func TestMySQLTableSignalForwarding(t *testing.T) {
	t.Parallel()
	signalForwarding(t, withTable(mysqlTableCase(t)))
}

func TestPostgresParallelCounter(t *testing.T) { t.Parallel(); parallelCounter(t, pgCase(t)) }
func TestMySQLParallelCounter(t *testing.T)    { t.Parallel(); parallelCounter(t, mysqlCase(t)) }
func TestRedisParallelCounter(t *testing.T)    { t.Parallel(); parallelCounter(t, redisCase(t)) }
func TestEtcdParallelCounter(t *testing.T)     { t.Parallel(); parallelCounter(t, etcdCase(t)) }
func TestPostgresTableParallelCounter(t *testing.T) {
	t.Parallel()
	parallelCounter(t, withTable(pgTableCase(t)))
}

func TestMySQLTableParallelCounter(t *testing.T) {
	t.Parallel()
	parallelCounter(t, withTable(mysqlTableCase(t)))
}

// TestUnreachableBackend: a server that does not answer is exit 69, and
// the URL's password appears in no output, with or without -v.
func TestUnreachableBackend(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	addr := closedPort(t)
	const secret = "s3cr3t-pw"
	for _, u := range []string{
		"postgres://app:" + secret + "@" + addr + "/app",
		"postgresql://app:" + secret + "@" + addr + "/app?sslmode=disable",
		"mysql://app:" + secret + "@" + addr + "/app",
		"redis://:" + secret + "@" + addr + "/0",
		"etcd://app:" + secret + "@" + addr + "/locks",
	} {
		for _, extra := range [][]string{nil, {"-v"}, {"--table"}} {
			if (strings.HasPrefix(u, "redis") || strings.HasPrefix(u, "etcd")) && len(extra) > 0 && extra[0] == "--table" {
				continue
			}
			args := append(append([]string{"run", "-b", u}, extra...), "x", "--", "true")
			code, out, errOut := lockkit(t, env, args...)
			wantExit(t, fmt.Sprint(args), code, 69, errOut)
			if strings.Contains(out+errOut, secret) {
				t.Errorf("%v: output shows the password:\n%s", args, errOut)
			}
			if !strings.Contains(errOut, "xxxxx") {
				t.Errorf("%v: the message does not name the (redacted) backend:\n%s", args, errOut)
			}
		}
		code, _, errOut := lockkit(t, append(env, "LOCKKIT_BACKEND="+u), "status")
		wantExit(t, "status "+u, code, 69, errOut)
		if strings.Contains(errOut, secret) {
			t.Errorf("status: output shows the password:\n%s", errOut)
		}
	}
}

// TestPasswordFromEnvironment: a password in LOCKKIT_BACKEND (the trust
// setup accepts any) is used and never printed, even with -v.
func TestPasswordFromEnvironment(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(integration.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "pa55:w@rd/x"
	u.User = url.UserPassword(u.User.Username(), secret)
	u.Scheme = "postgresql" // the other spelling pgx accepts
	env := append(baseEnv(t), "LOCKKIT_BACKEND="+u.String())
	name := integration.Name(t)
	code, out, errOut := lockkit(t, env, "run", "-v", name, "--", "echo", "ran")
	wantExit(t, "run", code, 0, errOut)
	escaped := strings.TrimPrefix(url.UserPassword("", secret).String(), ":")
	for _, s := range []string{secret, escaped, "pa55"} {
		if strings.Contains(out+errOut, s) {
			t.Errorf("output shows the password as %q:\n%s%s", s, out, errOut)
		}
	}
	if out != "ran\n" || !strings.Contains(errOut, "xxxxx") {
		t.Errorf("stdout %q, stderr:\n%s", out, errOut)
	}
}

// TestStdoutKeepsData: a lock name that contains the password's text is
// printed as it is on stdout (data), while stderr still never shows the
// password.
func TestStdoutKeepsData(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(integration.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "word" // trust authentication accepts any password
	u.User = url.UserPassword(u.User.Username(), secret)
	env := append(baseEnv(t), "LOCKKIT_BACKEND="+u.String())
	name := "lkt-" + secret + "-" + randSuffix()
	code, out, errOut := lockkit(t, env, "status", "--json", name)
	wantExit(t, "status of a free name", code, 1, errOut)
	if !strings.Contains(out, `"name": "`+name+`"`) {
		t.Errorf("status --json altered the name %q:\n%s", name, out)
	}
	code, _, errOut = lockkit(t, env, "run", "-v", name, "--", "true")
	wantExit(t, "run", code, 0, errOut)
	if strings.Contains(errOut, ":"+secret+"@") {
		t.Errorf("stderr shows the password:\n%s", errOut)
	}
}

// lossCase stops a lock from outside, the way a real fault does.
type lossCase struct {
	bc    backendCase
	extra []string // flags for lockkit run
	kill  func(t *testing.T, name string)
	cause string // in the loss message
}

// lostLock runs a command that starts a grandchild, takes the lock away
// from outside, and checks that lockkit stops the whole process group and
// exits 70 saying what was lost and why.
func lostLock(t *testing.T, lc lossCase) {
	name := integration.Name(t)
	dir := t.TempDir()
	pidFile, marker := filepath.Join(dir, "grandchild"), filepath.Join(dir, "marker")
	// The command notes the SIGTERM it gets; its grandchild just dies of it.
	script := fmt.Sprintf(`trap 'echo TERM > %s; exit 1' TERM; sleep 1000 & echo $! > %s; echo ready; wait`, marker, pidFile)
	args := append(append([]string{"run", "-b", lc.bc.url, "--kill-grace", "2s"}, lc.extra...), name, "--", "sh", "-c", script)
	p := start(t, lc.bc.env, true, args...)
	p.waitLine("ready")
	child := commandPids(p.cmd.Process.Pid)
	if len(child) != 1 {
		t.Fatalf("lockkit has command children %v, want one", child)
	}
	grandchild := readPid(t, pidFile)
	lc.kill(t, name)
	wantExit(t, "lost lock", p.wait(), 70, p.stderr())
	msg := p.stderr()
	what := fmt.Sprintf("lost lock %q on %s", name, redacted(lc.bc.url))
	if !strings.Contains(msg, what) || !strings.Contains(msg, lc.cause) {
		t.Errorf("stderr does not say what was lost (%q) and why (%q):\n%s", what, lc.cause, msg)
	}
	waitGone(t, child[0], "the command")
	waitGone(t, grandchild, "the command's grandchild")
	if b, err := os.ReadFile(marker); err != nil || string(b) != "TERM\n" {
		t.Errorf("the command did not get SIGTERM before SIGKILL: %q, %v", b, err)
	}
}

func TestPostgresLostLock(t *testing.T) {
	t.Parallel()
	db := integration.Postgres(t)
	lostLock(t, lossCase{bc: pgCase(t), cause: "terminating connection due to administrator command", kill: func(t *testing.T, name string) {
		// The holder's session, found through pg_locks by the name's key.
		k := keyhash.Name(name).Int64()
		var pid int
		err := db.QueryRow(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND objsubid = 1 AND classid::bigint = $1 AND objid::bigint = $2`,
			int64(uint32(k>>32)), int64(uint32(k))).Scan(&pid)
		if err != nil {
			t.Fatalf("finding the holder's session: %v", err)
		}
		var ok bool
		if err := db.QueryRow("SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d): %v %v", pid, ok, err)
		}
	}})
}

func TestMySQLLostLock(t *testing.T) {
	t.Parallel()
	db := integration.MySQL(t)
	lostLock(t, lossCase{bc: mysqlCase(t), cause: "probing the lock's connection", kill: func(t *testing.T, name string) {
		lockName, err := mysqllock.UserLockName("test", name)
		if err != nil {
			t.Fatal(err)
		}
		var id sql.NullInt64
		if err := db.QueryRow("SELECT IS_USED_LOCK(?)", lockName).Scan(&id); err != nil || !id.Valid {
			t.Fatalf("IS_USED_LOCK(%q): %v %v", lockName, id, err)
		}
		if _, err := db.Exec("KILL " + strconv.FormatInt(id.Int64, 10)); err != nil {
			t.Fatal(err)
		}
	}})
}

func TestRedisLostLock(t *testing.T) {
	t.Parallel()
	c := integration.Redis(t)
	lostLock(t, lossCase{bc: redisCase(t), extra: []string{"--ttl", "900ms"}, cause: "no longer holds", kill: func(t *testing.T, name string) {
		n, err := c.Del(context.Background(), "lockkit:{"+name+"}").Result()
		if err != nil || n != 1 {
			t.Fatalf("DEL: %d %v", n, err)
		}
	}})
}

func TestEtcdLostLock(t *testing.T) {
	t.Parallel()
	c := etcdClient(t, integration.EtcdEndpoints(t)...)
	lostLock(t, lossCase{bc: etcdCase(t), extra: []string{"--ttl", "2s"}, cause: "key was deleted", kill: func(t *testing.T, name string) {
		resp, err := c.Delete(context.Background(), etcdE2EPrefix+"/"+url.PathEscape(name)+"/", clientv3.WithPrefix())
		if err != nil || resp.Deleted != 1 {
			t.Fatalf("delete the lock key: %v %v", resp, err)
		}
	}})
}

func TestPostgresTableLostLock(t *testing.T) {
	t.Parallel()
	bc := pgTableCase(t)
	db := integration.Postgres(t)
	u, _ := url.Parse(bc.url)
	schema := u.Query().Get("search_path")
	lostLock(t, lossCase{bc: bc, extra: []string{"--table", "--ttl", "900ms"}, cause: "lease expired, was taken over or was force-released", kill: func(t *testing.T, name string) {
		res, err := db.Exec("DELETE FROM "+schema+".lockkit_locks WHERE name = $1", name)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("deleted %d rows", n)
		}
	}})
}

func TestMySQLTableLostLock(t *testing.T) {
	t.Parallel()
	bc := mysqlTableCase(t)
	db := integration.MySQL(t)
	u, _ := url.Parse(bc.url)
	database := strings.TrimPrefix(u.Path, "/")
	lostLock(t, lossCase{bc: bc, extra: []string{"--table", "--ttl", "900ms"}, cause: "lease expired, was taken over or was force-released", kill: func(t *testing.T, name string) {
		res, err := db.Exec("DELETE FROM `"+database+"`.lockkit_locks WHERE name = ?", name)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("deleted %d rows", n)
		}
	}})
}

// TestLeaseRenewedAndTokens: the lease of the lock table, Redis and etcd
// is renewed while the command runs (the lock is still held after longer
// than one --ttl, and the command ends without a lost lock), and the
// command gets increasing fencing tokens in LOCKKIT_TOKEN.
//
// The lease is 2 s, renewed every third of it: a shorter one (this test
// used 300 ms) is lost for real when a starved CI machine runs the renewal
// more than two thirds of a lease late, which is not what this test is
// about.
func TestLeaseRenewedAndTokens(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	for _, bc := range []backendCase{redisCase(t), etcdCase(t), withTable(pgTableCase(t)), withTable(mysqlTableCase(t))} {
		t.Run(bc.name, func(t *testing.T) {
			t.Parallel()
			name := integration.Name(t)
			run := bc.run
			var tokens []int64
			for range 2 {
				code, out, errOut := lockkit(t, bc.env, run("--ttl", ttl.String(), name, "--", "sh", "-c", `echo "$LOCKKIT_TOKEN"`)...)
				wantExit(t, "token", code, 0, errOut)
				tok, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
				if err != nil || tok <= 0 {
					t.Fatalf("LOCKKIT_TOKEN %q", out)
				}
				tokens = append(tokens, tok)
			}
			if tokens[1] <= tokens[0] {
				t.Errorf("tokens %v do not increase", tokens)
			}
			// The holder runs until told to stop. "ready" comes after
			// the acquisition, so once 1.5 leases have passed since it
			// was read, a lease that was not renewed has run out.
			stop := filepath.Join(t.TempDir(), "stop")
			holder := start(t, bc.env, true, run("--ttl", ttl.String(), name, "--", "sh", "-c",
				`echo ready; while [ ! -e "$0" ]; do sleep 0.05; done`, stop)...)
			holder.waitLine("ready")
			time.Sleep(ttl * 3 / 2)
			code, _, errOut := lockkit(t, bc.env, run("-n", name, "--", "true")...)
			wantExit(t, "--no-wait on a renewed lease", code, 75, errOut)
			if err := os.WriteFile(stop, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			wantExit(t, "holder", holder.wait(), 0, holder.stderr())
		})
	}
}

// TestPostgresShared: shared holders coexist; an exclusive one waits.
func TestPostgresShared(t *testing.T) {
	t.Parallel()
	bc := pgCase(t)
	name := integration.Name(t)
	holder := start(t, bc.env, true, "run", "-b", bc.url, "-s", name, "--", "sh", "-c", "echo ready; exec sleep 1000")
	holder.waitLine("ready")
	code, out, errOut := lockkit(t, bc.env, "run", "-b", bc.url, "--shared", "-n", name, "--", "echo", "shared")
	wantExit(t, "second shared holder", code, 0, errOut)
	if out != "shared\n" {
		t.Errorf("stdout %q", out)
	}
	code, _, errOut = lockkit(t, bc.env, "run", "-b", bc.url, "-n", name, "--", "true")
	wantExit(t, "exclusive next to shared", code, 75, errOut)
	code, out, errOut = lockkit(t, bc.env, "status", "-b", bc.url, "--json", name)
	wantExit(t, "status", code, 0, errOut)
	var locks []map[string]any
	if err := json.Unmarshal([]byte(out), &locks); err != nil || len(locks) != 1 || locks[0]["mode"] != "shared" {
		t.Errorf("status of a shared lock: %v\n%s", err, out)
	}
	_ = holder.cmd.Process.Signal(syscall.SIGTERM)
	holder.wait()
	// Shared is a usage error where the backend has no shared locks.
	for _, u := range []string{mysqlURL(t, ""), integration.RedisURL(t)} {
		code, _, errOut = lockkit(t, bc.env, "run", "-b", u, "-s", name, "--", "true")
		wantExit(t, "-s on "+u, code, 64, errOut)
	}
}

// statusOf runs lockkit status --json and decodes it.
func statusOf(t *testing.T, env []string, args ...string) (int, []map[string]any) {
	t.Helper()
	code, out, errOut := lockkit(t, env, append([]string{"status", "--json"}, args...)...)
	if code != 0 && code != 1 {
		t.Fatalf("status %v: exit %d; stderr:\n%s", args, code, errOut)
	}
	var locks []map[string]any
	if err := json.Unmarshal([]byte(out), &locks); err != nil {
		t.Fatalf("status %v: %v\n%s", args, err, out)
	}
	return code, locks
}

// TestStatus: lockkit status names the holder of a held lock on every
// backend, with expiry and token for leases, and says which names are
// free.
func TestStatus(t *testing.T) {
	t.Parallel()
	cases := []backendCase{fileCase(t), pgCase(t), mysqlCase(t), redisCase(t), etcdCase(t), withTable(pgTableCase(t))}
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			t.Parallel()
			name, free := integration.Name(t), integration.Name(t)
			args := []string{"run", "-b", bc.url}
			sargs := []string{"-b", bc.url}
			if bc.table {
				args = append(args, "--table")
				sargs = append(sargs, "--table")
			}
			holder := start(t, bc.env, true, append(args, name, "--", "sh", "-c", "echo ready; exec sleep 1000")...)
			holder.waitLine("ready")

			code, locks := statusOf(t, bc.env, append(sargs, name, free)...)
			if code != 1 || len(locks) != 2 {
				t.Fatalf("status NAME FREE: exit %d, %v", code, locks)
			}
			held, notHeld := locks[0], locks[1]
			if held["name"] != name || held["held"] != true || notHeld["name"] != free || notHeld["held"] != false {
				t.Fatalf("status NAME FREE: %v", locks)
			}
			if held["pid"] == nil {
				t.Errorf("no holder pid: %v", held)
			}
			switch bc.name {
			case "file", "redis", "etcd", "postgres-table":
				// lockkit records its own pid.
				if pid, _ := held["pid"].(float64); int(pid) != holder.cmd.Process.Pid {
					t.Errorf("holder pid %v, want lockkit's %d", held["pid"], holder.cmd.Process.Pid)
				}
			}
			if bc.name != "mysql" && held["since"] == nil {
				t.Errorf("no since: %v", held)
			}
			if bc.name == "redis" || bc.name == "etcd" || bc.table {
				if held["expires"] == nil || held["token"] == nil {
					t.Errorf("a lease without expiry or token: %v", held)
				}
			}
			code, _ = statusOf(t, bc.env, append(sargs, name)...)
			if code != 0 {
				t.Errorf("status of a held name: exit %d", code)
			}
			// Without names: the lock is in the listing (MariaDB without
			// performance_schema cannot list, and says so).
			if bc.name == "mysql" {
				code, _, errOut := lockkit(t, bc.env, append([]string{"status"}, sargs...)...)
				if code == 69 && !strings.Contains(errOut, "cannot list user locks") {
					t.Errorf("mysql listing: exit %d, stderr:\n%s", code, errOut)
				}
			} else {
				// A PostgreSQL advisory lock's name is not in the
				// server, only its key.
				_, all := statusOf(t, bc.env, sargs...)
				found := false
				for _, l := range all {
					found = found || l["name"] == name ||
						bc.name == "postgres" && l["key"] == keyhash.Name(name).String() && l["name"] == "key "+l["key"].(string)
				}
				if !found {
					t.Errorf("listing lacks %q: %v", name, all)
				}
			}
			// The table output.
			code, out, errOut := lockkit(t, bc.env, append([]string{"status"}, append(sargs, name)...)...)
			wantExit(t, "status table", code, 0, errOut)
			if !strings.HasPrefix(out, "NAME") || !strings.Contains(out, name) {
				t.Errorf("status table:\n%s", out)
			}
			_ = holder.cmd.Process.Signal(syscall.SIGTERM)
			holder.wait()
			code, _ = statusOf(t, bc.env, append(sargs, name)...)
			if code != 1 {
				t.Errorf("status after release: exit %d", code)
			}
		})
	}
}

// TestPostgresStatusNamesMigrateLock: the advisory lock golang-migrate
// (here: lockkit migrate itself, whose history table is
// lockkit_schema_migrations) holds is named by status.
func TestPostgresStatusNamesMigrateLock(t *testing.T) {
	t.Parallel()
	bc := pgCase(t)
	db := integration.Postgres(t)
	var dbName string
	if err := db.QueryRow("SELECT current_database()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	k := keyhash.MigratePostgresLockID(dbName, "public", "schema_migrations")
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "SELECT pg_advisory_lock($1)", k.Int64()); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", k.Int64())
	_, locks := statusOf(t, bc.env, "-b", bc.url)
	for _, l := range locks {
		if l["key"] == k.String() {
			if l["scheme"] != keyhash.ToolMigrate || !strings.Contains(l["name"].(string), "schema_migrations") {
				t.Errorf("golang-migrate's lock not named: %v", l)
			}
			return
		}
	}
	t.Errorf("key %s not listed: %v", k, locks)
}

// TestMigrate: up, version and down on a schema of the test's own.
func TestMigrate(t *testing.T) {
	t.Parallel()
	for _, bc := range []backendCase{pgTableCase(t), mysqlTableCase(t)} {
		t.Run(bc.name, func(t *testing.T) {
			version := func() string {
				t.Helper()
				code, out, errOut := lockkit(t, append(bc.env, "LOCKKIT_BACKEND="+bc.url), "migrate", "version")
				wantExit(t, "migrate version", code, 0, errOut)
				return strings.TrimSpace(out)
			}
			dialect := migrations.Postgres
			if bc.name == "mysql-table" {
				dialect = migrations.MySQL
			}
			if v, want := version(), fmt.Sprint(migrations.Latest(dialect)); v != want {
				t.Fatalf("version after up: %q, want %s", v, want)
			}
			code, _, errOut := lockkit(t, bc.env, "migrate", "-b", bc.url, "up")
			wantExit(t, "second up", code, 0, errOut)
			code, _, errOut = lockkit(t, bc.env, "run", "-b", bc.url, "--table", integration.Name(t), "--", "true")
			wantExit(t, "run --table", code, 0, errOut)
			code, _, errOut = lockkit(t, bc.env, "migrate", "-b", bc.url, "down")
			wantExit(t, "down", code, 0, errOut)
			if v := version(); v != "0" {
				t.Fatalf("version after down: %q", v)
			}
			code, _, errOut = lockkit(t, bc.env, "run", "-b", bc.url, "--table", integration.Name(t), "--", "true")
			wantExit(t, "run --table without the table", code, 69, errOut)
			if !strings.Contains(errOut, "lockkit migrate up") {
				t.Errorf("no hint to migrate:\n%s", errOut)
			}
		})
	}
	env := baseEnv(t)
	for _, args := range [][]string{{"migrate"}, {"migrate", "sideways"}, {"migrate", "-b", "redis://127.0.0.1:6379/0", "up"}, {"migrate", "up"}} {
		code, _, errOut := lockkit(t, env, args...)
		wantExit(t, fmt.Sprint(args), code, 64, errOut)
	}
}

// redacted is how lockkit shows a backend URL: without its password.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}

// TestMySQLStatusListing lists user locks without names on private MariaDB
// servers that expose them: through the metadata_lock_info plugin, and
// through performance_schema (MySQL 8's way). The shared test server has
// neither; TestStatus checks what it says then.
func TestMySQLStatusListing(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"metadata_lock_info", []string{"--plugin-load-add=metadata_lock_info"}},
		{"performance_schema", []string{"--performance-schema=ON", "--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := integration.StartMariaDB(t, integration.WithServerArgs(c.args...))
			cfg, err := mysql.ParseDSN(srv.DSN())
			if err != nil {
				t.Fatal(err)
			}
			u := (&url.URL{Scheme: "mysql", User: url.User(cfg.User), Host: cfg.Addr, Path: "/" + cfg.DBName}).String()
			env := baseEnv(t)
			name := integration.Name(t)
			holder := start(t, env, true, "run", "-b", u, name, "--", "sh", "-c", "echo ready; exec sleep 1000")
			holder.waitLine("ready")
			code, out, errOut := lockkit(t, env, "status", "-b", u, "--json")
			wantExit(t, "status", code, 0, errOut)
			var locks []map[string]any
			if err := json.Unmarshal([]byte(out), &locks); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if len(locks) != 1 || locks[0]["name"] != name || locks[0]["held"] != true || locks[0]["pid"] == nil {
				t.Fatalf("listing: %v", locks)
			}
			_ = holder.cmd.Process.Signal(syscall.SIGTERM)
			holder.wait()
			code, out, errOut = lockkit(t, env, "status", "-b", u)
			wantExit(t, "status after release", code, 0, errOut)
			if out != "no locks held\n" {
				t.Errorf("after release:\n%s", out)
			}
		})
	}
}

// TestPostgresStatusNamesRunLocks: `lockkit status` without NAMEs names the
// advisory locks that `lockkit run` holds, from the session's
// application_name ("lockkit run NAME") checked against the key.
func TestPostgresStatusNamesRunLocks(t *testing.T) {
	t.Parallel()
	bc := pgCase(t)
	name := integration.Name(t)
	gate := filepath.Join(t.TempDir(), "gate")
	p := start(t, bc.env, true, "run", "-b", bc.url, name, "--", "sh", "-c",
		fmt.Sprintf(`echo ready; while [ ! -e %s ]; do sleep 0.02; done`, gate))
	p.waitLine("ready")
	code, out, errOut := lockkit(t, bc.env, "status", "-b", bc.url, "--json")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "status", code, 0, errOut)
	if !strings.Contains(out, `"name": "`+name+`"`) {
		t.Errorf("status does not name the lock %q that lockkit run holds:\n%s", name, out)
	}
	wantExit(t, "run", p.wait(), 0, p.stderr())
}
