package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// The real tools of other ecosystems run as child processes: Node.js
// scripts in testdata/node (npm packages pinned in its package.json,
// installed by the first test that needs them into a cache directory) and
// a Ruby script in testdata/ruby (Debian's ruby-activerecord and ruby-pg,
// which .ci/run installs). A script prints "holding" while the tool holds
// its own lock and waits for a line on stdin; see testdata/node/common.mjs.

// EnvCache names the directory the npm packages are installed into;
// without it, the user's cache directory (os.UserCacheDir) + "/lockkit-interop".
const EnvCache = "LOCKKIT_INTEROP_CACHE"

// unavailable skips t because a tool cannot be had here, or fails it when
// LOCKKIT_TEST_REQUIRE=1 (as CI sets it).
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(integration.EnvRequire) == "1" {
		t.Fatalf("%s (%s=1)", msg, integration.EnvRequire)
	}
	t.Skip(msg)
}

var npmMu sync.Mutex

// nodeTools returns the directory holding the scripts of testdata/node
// beside a node_modules with the pinned packages, installing them with npm
// (no lockfile, no install scripts) when the cache has none for this
// package.json.
func nodeTools(t *testing.T) string {
	t.Helper()
	for _, c := range []string{"node", "npm"} {
		if _, err := exec.LookPath(c); err != nil {
			unavailable(t, "%s not found: the npm tools' tests need Node.js and npm", c)
		}
	}
	pkg, err := os.ReadFile(filepath.Join("testdata", "node", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	root := os.Getenv(EnvCache)
	if root == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			c = os.TempDir()
		}
		root = filepath.Join(c, "lockkit-interop")
	}
	sum := sha256.Sum256(pkg)
	dir := filepath.Join(root, "node-"+hex.EncodeToString(sum[:6]))
	npmMu.Lock()
	defer npmMu.Unlock()
	marker := filepath.Join(dir, "node_modules", ".lockkit-installed")
	if _, err := os.Stat(marker); err != nil {
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		tmp, err := os.MkdirTemp(root, "install-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		if err := os.WriteFile(filepath.Join(tmp, "package.json"), pkg, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--ignore-scripts", "--loglevel=error")
		cmd.Dir = tmp
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			unavailable(t, "npm install of testdata/node/package.json failed: %v\n%s", err, out)
		}
		t.Logf("npm install took %v", time.Since(start).Round(time.Millisecond))
		if err := os.WriteFile(filepath.Join(tmp, "node_modules", ".lockkit-installed"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_ = os.RemoveAll(dir)
		if err := os.Rename(tmp, dir); err != nil {
			t.Fatal(err)
		}
	}
	scripts, err := filepath.Glob(filepath.Join("testdata", "node", "*.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scripts {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(s)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// rubyRails checks that Ruby can load ActiveRecord and the pg gem.
func rubyRails(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ruby"); err != nil {
		unavailable(t, "ruby not found: the Rails test needs Debian's ruby-activerecord and ruby-pg")
	}
	out, err := exec.Command("ruby", "-e", `require "active_record"; require "pg"; print ActiveRecord::VERSION::STRING`).CombinedOutput()
	if err != nil {
		unavailable(t, "ruby cannot load active_record and pg (Debian: ruby-activerecord ruby-pg): %v\n%s", err, out)
	}
	t.Logf("activerecord %s", out)
}

// toolURL is the server's URL with application_name set to app, by which
// the tests find the tool's sessions.
func toolURL(t *testing.T, app string) string {
	t.Helper()
	u, err := url.Parse(integration.PostgresDSN(t))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL for the tools' tests", integration.EnvPostgres)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String()
}

// uniq returns prefix + 12 random hex digits: a name of this run's own.
func uniq(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// toolProc is a running tool script.
type toolProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startTool starts name with args in dir, with env added to the
// environment. The process is killed when t ends.
func startTool(t *testing.T, dir string, env []string, name string, args ...string) *toolProc {
	t.Helper()
	p := &toolProc{name: filepath.Base(name), lines: make(chan string, 16), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = lockedWriter{&p.mu, &p.stderr}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *toolProc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.TrimSpace(p.stderr.String())
}

// expect waits for the line want, failing t if the script ends or d passes
// first.
func (p *toolProc) expect(t *testing.T, want string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.done
				t.Fatalf("%s ended (%v) before printing %q: %s", p.name, p.err, want, p.stderrText())
			}
			if l == want {
				return
			}
		case <-timeout:
			t.Fatalf("%s did not print %q within %v: %s", p.name, want, d, p.stderrText())
		}
	}
}

// release sends the line the script waits for while it holds.
func (p *toolProc) release(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
}

// wait waits for the script to end and returns its error with its stderr.
func (p *toolProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	go func() {
		for range p.lines {
		}
	}()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s did not end within %v: %s", p.name, d, p.stderrText())
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w: %s", p.name, p.err, p.stderrText())
	}
	return nil
}

// assertToolHolds checks that lockkit cannot take key while the tool holds
// it: TryLockKey fails with a HeldError whose holder is the tool's session
// (application_name app), and List names the tool (unless tool is "").
func assertToolHolds(t *testing.T, p *advisory.Locker, key keyhash.Key, app, tool string) {
	t.Helper()
	l, err := p.TryLockKey(ctxT(t, 10*time.Second), key, nil)
	if err == nil {
		_ = l.Release(context.Background())
		t.Fatalf("lockkit acquired %v while %s holds its lock", key, tool)
	}
	var held *lockkit.HeldError
	if !errors.Is(err, lockkit.ErrNotAcquired) || !errors.As(err, &held) {
		t.Fatalf("TryLockKey(%v) while %s holds it = %v, want a HeldError", key, tool, err)
	}
	if held.Holder == nil || held.Holder.App != app {
		t.Errorf("conflict names holder %v, want the session of %s (application_name %q)", held.Holder, tool, app)
	}
	if tool == "" {
		return // a key List cannot name
	}
	locks, err := p.List(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, li := range locks {
		if li.Key == key.String() && li.Held {
			if li.Tool != tool || li.Holder.App != app {
				t.Errorf("List names %v as %q (tool %q, app %q), want tool %q", key, li.Name, li.Tool, li.Holder.App, tool)
			}
			t.Logf("lockkit status: %s held by %s", li.Name, li.Holder.App)
			return
		}
	}
	t.Errorf("List does not show %v while %s holds it: %+v", key, tool, locks)
}

// waitAdvisory waits until a session with application_name app holds
// (granted) or waits for (!granted) the advisory lock on key, failing t
// if proc ends first.
func waitAdvisory(t *testing.T, key keyhash.Key, app string, granted bool, proc *toolProc) {
	t.Helper()
	db := newDB(t, 1)
	hi, lo := key.Pair()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := db.QueryRowContext(ctxT(t, 10*time.Second), `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.classid = $1::int8::oid AND l.objid = $2::int8::oid
			AND l.granted = $3 AND a.application_name = $4`, int64(uint32(hi)), int64(uint32(lo)), granted, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		select {
		case <-proc.done:
			t.Fatalf("%s ended (%v) before it %s %v: %s", proc.name, proc.err, map[bool]string{true: "held", false: "waited for"}[granted], key, proc.stderrText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session of %s %s %v within 30s", app, map[bool]string{true: "held", false: "waited for"}[granted], key)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func currentDB(t *testing.T) (db, schema string) {
	t.Helper()
	if err := newDB(t, 1).QueryRowContext(ctxT(t, 10*time.Second), "SELECT current_database(), current_schema()").Scan(&db, &schema); err != nil {
		t.Fatal(err)
	}
	return db, schema
}

func execSQL(t *testing.T, q string) {
	t.Helper()
	if _, err := newDB(t, 1).ExecContext(ctxT(t, 10*time.Second), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
