package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit/filelock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// result is one in-process lockkit run.
type result struct {
	code           int
	stdout, stderr string
}

// syncBuffer is a bytes.Buffer safe for the command's copying goroutines
// and the status line at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCLI runs the command in-process with env as its environment (plus
// PATH), output captured.
func runCLI(t *testing.T, p *Program, args ...string) result {
	t.Helper()
	var out, errOut syncBuffer
	if p == nil {
		p = &Program{}
	}
	if p.Stdout == nil {
		p.Stdout = &out
	}
	if p.Stderr == nil {
		p.Stderr = &errOut
	}
	p.Env = append([]string{"PATH=" + os.Getenv("PATH")}, p.Env...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := p.Main(ctx, args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// fileBackend returns a file:// URL on a fresh directory.
func fileURL(t *testing.T) (url, dir string) {
	dir = t.TempDir()
	return "file://" + dir, dir
}

// holdFile holds the lock name in dir until the test ends.
func holdFile(t *testing.T, dir, name string) {
	t.Helper()
	l, err := filelock.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := l.TryAcquire(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = lk.Release(context.Background())
		_ = l.Close()
	})
}

func TestUsageErrors(t *testing.T) {
	url, _ := fileURL(t)
	cases := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no command", nil, "Usage: lockkit COMMAND"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"flag before command", []string{"-x"}, "unknown flag -x"},
		{"run without name", []string{"run"}, "missing lock name and command"},
		{"run without command", []string{"run", "-b", url, "nightly"}, `missing command after the lock name "nightly"`},
		{"run without command after --", []string{"run", "-b", url, "nightly", "--"}, "missing command"},
		{"unknown flag", []string{"run", "--frob", "x", "--", "true"}, "unknown flag -frob"},
		{"bad duration", []string{"run", "-w", "soon", "x", "--", "true"}, `"soon" is not a duration`},
		{"negative duration", []string{"run", "--kill-grace", "-1s", "x", "--", "true"}, "negative"},
		{"bad exit code", []string{"run", "--conflict-exit-code", "300", "x", "--", "true"}, "not an exit status"},
		{"no-wait and wait", []string{"run", "-n", "-w", "1s", "x", "--", "true"}, "exclude each other"},
		{"zero ttl", []string{"run", "-b", "redis://127.0.0.1:1/0", "--ttl", "0", "x", "--", "true"}, "--ttl must be positive"},
		{"tiny ttl", []string{"run", "-b", "redis://127.0.0.1:1/0", "--ttl", "5ms", "x", "--", "true"}, "--ttl must be at least 100ms"},
		{"empty name", []string{"run", "-b", url, "", "--", "true"}, "empty lock name"},
		{"unknown scheme", []string{"run", "-b", "zookeeper://127.0.0.1:2181", "x", "--", "true"}, `unknown backend scheme "zookeeper"`},
		{"etcd without endpoint", []string{"run", "-b", "etcd:///locks", "x", "--", "true"}, "names no endpoint"},
		{"table on etcd", []string{"run", "-b", "etcd://127.0.0.1:1/locks", "--table", "x", "--", "true"}, "--table needs"},
		{"shared on etcd", []string{"run", "-b", "etcd://127.0.0.1:1/locks", "-s", "x", "--", "true"}, "etcd backend has no shared locks"},
		{"etcd tls params without etcds", []string{"run", "-b", "etcd://127.0.0.1:1/locks?cacert=/x", "x", "--", "true"}, "need etcds://"},
		{"not a URL", []string{"run", "-b", "/var/lock", "x", "--", "true"}, "a backend is a URL"},
		{"file with host", []string{"run", "-b", "file://otherhost/var/lock", "x", "--", "true"}, "a file lock is local"},
		{"table on file", []string{"run", "-b", url, "--table", "x", "--", "true"}, "--table needs a postgres:// or mysql://"},
		{"table on redis", []string{"run", "-b", "redis://127.0.0.1:1/0", "--table", "x", "--", "true"}, "--table needs"},
		{"ttl on file", []string{"run", "-b", url, "--ttl", "5s", "x", "--", "true"}, "--ttl needs --table or a redis://"},
		{"ttl on advisory", []string{"run", "-b", "postgres://u@127.0.0.1:1/db", "--ttl", "5s", "x", "--", "true"}, "--ttl needs --table"},
		{"shared on redis", []string{"run", "-b", "redis://127.0.0.1:1/0", "-s", "x", "--", "true"}, "no shared locks"},
		{"shared on mysql", []string{"run", "-b", "mysql://root@127.0.0.1:1/test", "--shared", "x", "--", "true"}, "no shared mode"},
		{"shared on table", []string{"run", "-b", "postgres://u@127.0.0.1:1/db", "--table", "-s", "x", "--", "true"}, "no shared locks"},
		{"mysql without host", []string{"run", "-b", "mysql:///test", "x", "--", "true"}, "names no host"},
		{"help with two names", []string{"help", "run", "status"}, "help takes one command name"},
		{"help for unknown", []string{"help", "frob"}, `unknown command "frob"`},
		{"version with args", []string{"version", "x"}, "version takes no arguments"},
		{"bad name", []string{"run", "-b", url, strings.Repeat("x", 5000), "--", "true"}, "invalid argument"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, nil, c.args...)
			if r.code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, ExitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr does not say %q:\n%s", c.want, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("usage error wrote to stdout:\n%s", r.stdout)
			}
		})
	}
}

func TestUsageErrorFromEnvironment(t *testing.T) {
	r := runCLI(t, &Program{Env: []string{"LOCKKIT_BACKEND=zookeeper://h"}}, "run", "x", "--", "true")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "LOCKKIT_BACKEND: unknown backend scheme") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		r := runCLI(t, nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: lockkit COMMAND") || r.stderr != "" {
			t.Errorf("%v: exit %d, stdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
		}
		for _, cmd := range []string{"run", "status", "migrate", "version", "help"} {
			if !strings.Contains(r.stdout, "\n  "+cmd+" ") {
				t.Errorf("%v: main help does not list %s", args, cmd)
			}
		}
	}
	for cmd, usage := range map[string]string{"run": runUsage, "status": statusUsage, "migrate": migrateUsage, "version": versionUsage} {
		for _, args := range [][]string{{cmd, "-h"}, {cmd, "--help"}, {"help", cmd}} {
			r := runCLI(t, nil, args...)
			if r.code != 0 || r.stdout != usage {
				t.Errorf("%v: exit %d, stdout:\n%s", args, r.code, r.stdout)
			}
		}
	}
	// The run help documents every flag and exit status of the contract.
	for _, want := range []string{
		"-b, --backend URL", "-n, --no-wait", "-w, --wait DURATION", "--ttl DURATION", "-s, --shared",
		"--table", "--conflict-exit-code N", "--kill-grace DURATION", "-v, --verbose",
		"128+N", "\n  75 ", "\n  70 ", "\n  69 ", "\n  64 ",
		"LOCKKIT_BACKEND", "LOCKKIT_NAME", "LOCKKIT_TOKEN",
	} {
		if !strings.Contains(runUsage, want) {
			t.Errorf("run help lacks %q", want)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runCLI(t, nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "lockkit ") || len(strings.Fields(r.stdout)) < 2 {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	old := Version
	Version = "v9.8.7"
	defer func() { Version = old }()
	if r := runCLI(t, nil, "version"); r.stdout != "lockkit v9.8.7\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestParseRunInterspersed(t *testing.T) {
	e := &env{p: &Program{}, stdout: io.Discard, stderr: io.Discard, scrub: &scrubber{}}
	cases := []struct {
		args []string
		name string
		argv []string
	}{
		{[]string{"n", "--", "echo", "-n", "x"}, "n", []string{"echo", "-n", "x"}},
		{[]string{"-n", "n", "--", "echo"}, "n", []string{"echo"}},
		{[]string{"n", "-n", "--", "echo"}, "n", []string{"echo"}},
		{[]string{"n", "-w", "5", "-v", "--", "echo", "--"}, "n", []string{"echo", "--"}},
		{[]string{"n", "echo", "-n"}, "n", []string{"echo", "-n"}},
		{[]string{"--", "n", "echo"}, "n", []string{"echo"}},
	}
	for _, c := range cases {
		_, name, argv, code, done := e.parseRun(c.args)
		if done || name != c.name || strings.Join(argv, " ") != strings.Join(c.argv, " ") {
			t.Errorf("%q: name %q argv %q (done %v, code %d)", c.args, name, argv, done, code)
		}
	}
	f, _, _, _, _ := e.parseRun([]string{"--backend=file:///x", "--wait=1m30s", "--kill-grace", "2", "--conflict-exit-code=0", "n", "true"})
	if !f.backendGiven || f.wait != 90*time.Second || f.killGrace != 2*time.Second || f.conflictCode != 0 {
		t.Errorf("long flags: %+v", f)
	}
	f, _, _, _, _ = e.parseRun([]string{"-w", "0", "n", "true"})
	if !f.noWait {
		t.Error("--wait 0 is not one attempt")
	}
}

func TestRunExitStatus(t *testing.T) {
	url, _ := fileURL(t)
	cases := []struct {
		cmd  []string
		want int
	}{
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"sh", "-c", "kill -KILL $$"}, 128 + 9},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15},
		{[]string{"./no-such-command"}, ExitNotFound},
		{[]string{"no-such-command-in-path"}, ExitNotFound},
		{[]string{"/dev/null"}, ExitCannotExecute},
	}
	for _, c := range cases {
		r := runCLI(t, nil, append([]string{"run", "-b", url, "job", "--"}, c.cmd...)...)
		if r.code != c.want {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", c.cmd, r.code, c.want, r.stderr)
		}
	}
}

func TestRunEnvironment(t *testing.T) {
	url, _ := fileURL(t)
	p := &Program{Env: []string{"LOCKKIT_NAME=outer", "LOCKKIT_TOKEN=99", "KEEP=1"}}
	r := runCLI(t, p, "run", "-b", url, "nightly", "--", "sh", "-c", `echo "$LOCKKIT_NAME ${LOCKKIT_TOKEN-unset} $KEEP"`)
	if r.code != 0 || r.stdout != "nightly unset 1\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestRunDefaultBackendFromEnvironment(t *testing.T) {
	url, dir := fileURL(t)
	holdFile(t, dir, "envjob")
	r := runCLI(t, &Program{Env: []string{"LOCKKIT_BACKEND=" + url}}, "run", "-n", "envjob", "--", "true")
	if r.code != ExitNotAcquired {
		t.Fatalf("LOCKKIT_BACKEND not used: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	// --backend wins over the environment.
	other, _ := fileURL(t)
	r = runCLI(t, &Program{Env: []string{"LOCKKIT_BACKEND=" + url}}, "run", "-n", "-b", other, "envjob", "--", "true")
	if r.code != 0 {
		t.Fatalf("--backend did not win: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestRunNotAcquired(t *testing.T) {
	url, dir := fileURL(t)
	holdFile(t, dir, "busy")

	r := runCLI(t, nil, "run", "-b", url, "-n", "busy", "--", "sh", "-c", "echo ran")
	if r.code != ExitNotAcquired || r.stdout != "" || r.stderr != "" {
		t.Errorf("--no-wait: exit %d, stdout %q, stderr %q (want 75, quiet off a terminal)", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, nil, "run", "-b", url, "-n", "--conflict-exit-code", "0", "busy", "--", "sh", "-c", "echo ran")
	if r.code != 0 || r.stdout != "" {
		t.Errorf("--conflict-exit-code 0: exit %d, stdout %q", r.code, r.stdout)
	}
	start := time.Now()
	r = runCLI(t, nil, "run", "-b", url, "-w", "300ms", "--conflict-exit-code", "3", "-v", "busy", "--", "sh", "-c", "echo ran")
	if r.code != 3 || r.stdout != "" {
		t.Errorf("--wait: exit %d, stdout %q", r.code, r.stdout)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("--wait 300ms gave up after %v", waited)
	}
	pid := strconv.Itoa(os.Getpid())
	for _, want := range []string{`waiting for "busy"`, "(pid " + pid + ")", `"busy" is still held by`, "after waiting 300ms"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("-v stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestRunStatusLineOnTerminal(t *testing.T) {
	url, dir := fileURL(t)
	holdFile(t, dir, "tty")
	p := &Program{IsTerminal: func(io.Writer) bool { return true }}
	r := runCLI(t, p, "run", "-b", url, "-w", "600ms", "tty", "--", "true")
	if r.code != ExitNotAcquired {
		t.Fatalf("exit %d", r.code)
	}
	if n := strings.Count(r.stderr, "\rlockkit: waiting for \"tty\", held by "); n < 2 {
		t.Errorf("status line drawn %d times, want it redrawn:\n%q", n, r.stderr)
	}
	if !strings.Contains(r.stderr, "\r\x1b[K") {
		t.Errorf("status line not cleared:\n%q", r.stderr)
	}
	if !strings.Contains(r.stderr, `"tty" is still held by`) {
		t.Errorf("no conflict message on a terminal:\n%q", r.stderr)
	}
}

func TestRunWaitsUntilReleased(t *testing.T) {
	url, dir := fileURL(t)
	l, err := filelock.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lk, err := l.TryAcquire(context.Background(), "handoff")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = lk.Release(context.Background())
	}()
	r := runCLI(t, nil, "run", "-b", url, "-w", "20s", "handoff", "--", "echo", "ran")
	if r.code != 0 || r.stdout != "ran\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestRunSharedFileLocks(t *testing.T) {
	url, dir := fileURL(t)
	l, err := filelock.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	shared, err := l.TryLock(context.Background(), "readers", &filelock.Options{Mode: filelock.Shared})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Release(context.Background())
	if r := runCLI(t, nil, "run", "-b", url, "-s", "-n", "readers", "--", "true"); r.code != 0 {
		t.Errorf("shared next to shared: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "run", "-b", url, "-n", "readers", "--", "true"); r.code != ExitNotAcquired {
		t.Errorf("exclusive next to shared: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// startSignalled runs lockkit in the background with an injected signal
// channel; the command prints "ready" on stdout once it trapped its
// signals.
func startSignalled(t *testing.T, args ...string) (sigs chan os.Signal, ready *bufio.Reader, wait func() result) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	sigs = make(chan os.Signal, 1)
	var errOut syncBuffer
	p := &Program{Stdout: pw, Stderr: &errOut, Signals: sigs}
	done := make(chan result, 1)
	go func() {
		r := runCLI(t, p, args...)
		pw.Close()
		r.stderr = errOut.String()
		done <- r
	}()
	t.Cleanup(func() { pr.Close() })
	return sigs, bufio.NewReader(pr), func() result { return <-done }
}

// unignoreHangup traps SIGHUP in this process, for the rest of its life,
// if it was started with SIGHUP ignored (a runner under nohup): the
// commands it starts would inherit the ignore (as they should: lockkit's
// main leaves ignored signals alone), a script's HUP trap would not take,
// and the command would never exit. Trapped, SIGHUP is at its default in
// the commands. It is never untrapped: signal.Stop would ignore it again
// while signal.Ignored went on reporting false.
var unignoreHangup = sync.OnceFunc(func() {
	if signal.Ignored(syscall.SIGHUP) {
		signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	}
})

func TestRunForwardsSignals(t *testing.T) {
	url, _ := fileURL(t)
	unignoreHangup()
	for _, c := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGTERM, 42}, {syscall.SIGINT, 43}, {syscall.SIGHUP, 44}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			script := `trap 'exit 42' TERM; trap 'exit 43' INT; trap 'exit 44' HUP; echo ready; while :; do sleep 0.05; done`
			sigs, out, wait := startSignalled(t, "run", "-b", url, "sig", "--", "sh", "-c", script)
			if line, err := out.ReadString('\n'); line != "ready\n" {
				t.Fatalf("child said %q, %v", line, err)
			}
			sigs <- c.sig
			if r := wait(); r.code != c.want {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, c.want, r.stderr)
			}
		})
	}
}

func TestRunSignalWhileWaiting(t *testing.T) {
	url, dir := fileURL(t)
	holdFile(t, dir, "held")
	sigs, out, wait := startSignalled(t, "run", "-b", url, "held", "--", "echo", "ran")
	time.Sleep(100 * time.Millisecond) // waiting for the lock, or about to
	sigs <- syscall.SIGINT
	r := wait()
	if r.code != 128+int(syscall.SIGINT) {
		t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, 128+int(syscall.SIGINT), r.stderr)
	}
	if rest, _ := io.ReadAll(out); len(rest) != 0 {
		t.Fatalf("the command ran: %q", rest)
	}
}

func TestRunLostLockStopsProcessGroup(t *testing.T) {
	url, dir := fileURL(t)
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	// The command starts a grandchild that ignores nothing, then waits.
	script := `sleep 1000 & echo $! > ` + pidFile + `; echo ready; wait`
	sigs, out, wait := startSignalled(t, "run", "-b", url, "--kill-grace", "5s", "lost", "--", "sh", "-c", script)
	_ = sigs
	if line, err := out.ReadString('\n'); line != "ready\n" {
		t.Fatalf("child said %q, %v", line, err)
	}
	// Removing the lock file under a held file lock breaks the exclusion:
	// the lock counts as lost.
	if err := os.Remove(filepath.Join(dir, "lost.lock")); err != nil {
		t.Fatal(err)
	}
	r := wait()
	if r.code != ExitLost {
		t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, ExitLost, r.stderr)
	}
	for _, want := range []string{`lost lock "lost"`, "removed or replaced", "SIGTERM"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	assertGone(t, strings.TrimSpace(string(b)))
}

// assertGone checks that the process pid has exited (it may linger as a
// zombie of init for an instant).
func assertGone(t *testing.T, pid string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return // gone
		}
		// Field 3 is the state; Z is a zombie: dead, not yet reaped.
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %s still running: %s", pid, stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestScrubber(t *testing.T) {
	sc := &scrubber{}
	b, err := parseBackendURL("postgres://app:p%40ss%2Fw0rd@db:5432/app?sslpassword=k3y", sc)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.display, "p@ss") || strings.Contains(b.display, "p%40ss") || strings.Contains(b.display, "k3y") {
		t.Errorf("display leaks: %s", b.display)
	}
	for _, leak := range []string{"p@ss/w0rd", "p%40ss%2Fw0rd", "p%40ss%2Fw0rd", "k3y"} {
		if got := sc.String("error: dial " + leak + " failed"); strings.Contains(got, leak) {
			t.Errorf("scrubbed %q still leaks: %s", leak, got)
		}
	}
	var buf bytes.Buffer
	w := sc.writer(&buf)
	if _, err := io.WriteString(w, "user=app password=p@ss/w0rd host=db"); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "user=app password=xxxxx host=db" {
		t.Errorf("writer: %q", buf.String())
	}
}

func TestBadURLNeverQuotesPassword(t *testing.T) {
	for _, raw := range []string{
		"postgres://app:s3cr#t@db/app",     // '#' cuts the URL: the password looks like a port
		"mysql://app:s3cr%zzt@db:3306/app", // a bad escape
		"redis://:s3cr t@cache:6379/0",     // a space
		"postgres://app:s3crt/x@db/app",    // '/' ends the authority
	} {
		r := runCLI(t, nil, "run", "-b", raw, "x", "--", "true")
		if r.code != ExitUsage {
			t.Errorf("%s: exit %d", raw, r.code)
		}
		if strings.Contains(r.stderr, "s3cr") {
			t.Errorf("%s: stderr quotes the password:\n%s", raw, r.stderr)
		}
	}
}
