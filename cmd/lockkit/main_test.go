package main

// End-to-end tests: the real lockkit binary, built once in TestMain, run
// with real child processes against the file backend and the servers
// named by LOCKKIT_TEST_POSTGRES, LOCKKIT_TEST_MYSQL and LOCKKIT_TEST_REDIS.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
	"go.uber.org/goleak"
)

// bin is the lockkit binary under test.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lockkit-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "lockkit")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building lockkit:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(integration.EtcdCleanup(m), goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// proc is a lockkit process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *bufio.Reader // nil when collected into out
	out    bytes.Buffer
	errOut bytes.Buffer
	done   chan struct{}
	code   int
}

// baseEnv is the environment every lockkit process gets: this one, minus
// any LOCKKIT_ variable of the caller's, with HOME and XDG_CACHE_HOME in
// the test's temporary directory so that the default lock directory is
// private to the test.
func baseEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LOCKKIT_") && !strings.HasPrefix(k, "LOCKKIT_TEST_") || k == "HOME" || k == "XDG_CACHE_HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
}

// start starts lockkit with args. With pipeOut the caller reads stdout
// line by line through p.stdout; otherwise it is collected.
func start(t *testing.T, env []string, pipeOut bool, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stderr = &p.errOut
	var pw *os.File
	if pipeOut {
		// An *os.File is handed to lockkit (and its command) as is, so
		// Wait does not wait for the test to read it.
		pr, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		pw = w
		p.cmd.Stdout = pw
		p.stdout = bufio.NewReader(pr)
		t.Cleanup(func() { pr.Close() })
	} else {
		p.cmd.Stdout = &p.out
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if pw != nil {
		pw.Close()
	}
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			// A failed test: stop the command's process group, then
			// lockkit.
			for _, child := range childPids(p.cmd.Process.Pid) {
				_ = syscall.Kill(-child, syscall.SIGKILL)
			}
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = -int(ws.Signal())
		}
		close(p.done)
	}()
	return p
}

// commandPids lists the children of lockkit pid other than its guard: the
// guard runs lockkit's own executable (also while it is between fork and
// exec, when its cmdline is still lockkit's).
func commandPids(pid int) []int {
	self, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	var out []int
	for _, c := range childPids(pid) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", c)); exe != self {
			out = append(out, c)
		}
	}
	return out
}

// childPids lists the children of pid, from /proc.
func childPids(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// waitLine reads the next stdout line and checks that it is want.
func (p *proc) waitLine(want string) {
	p.t.Helper()
	type res struct {
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		l, err := p.stdout.ReadString('\n')
		ch <- res{l, err}
	}()
	select {
	case r := <-ch:
		if strings.TrimSuffix(r.line, "\n") != want {
			p.t.Fatalf("lockkit %v: read %q (%v), want %q; stderr:\n%s", p.cmd.Args[1:], r.line, r.err, want, p.stderr())
		}
	case <-time.After(20 * time.Second):
		p.t.Fatalf("lockkit %v: no %q on stdout after 20s", p.cmd.Args[1:], want)
	}
}

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("lockkit %v did not exit within 30s; stderr:\n%s", p.cmd.Args[1:], p.stderr())
	}
	return p.code
}

func (p *proc) stderr() string {
	select {
	case <-p.done:
		return p.errOut.String()
	default:
		return "(still running)"
	}
}

// lockkit runs lockkit to completion and returns its exit status, stdout
// and stderr.
func lockkit(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, env, false, args...)
	code = p.wait()
	return code, p.out.String(), p.errOut.String()
}

// wantExit checks an exit status.
func wantExit(t *testing.T, what string, got, want int, stderr string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: exit %d, want %d; stderr:\n%s", what, got, want, stderr)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// pidAlive reports whether pid runs (a zombie counts as gone).
func pidAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat))
	return len(f) > 2 && f[2] != "Z"
}

// waitGone waits until pid is gone.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still running", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readPid reads a pid a command wrote to a file.
func readPid(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestReadmeFirstCommand is the README's first command, on a machine with
// no server and no lock directory yet.
func TestReadmeFirstCommand(t *testing.T) {
	env := baseEnv(t)
	code, out, errOut := lockkit(t, env, "run", "nightly", "--", "echo", "hello")
	wantExit(t, "lockkit run nightly -- echo hello", code, 0, errOut)
	if out != "hello\n" || errOut != "" {
		t.Fatalf("stdout %q, stderr %q", out, errOut)
	}
	var home string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "XDG_CACHE_HOME="); ok {
			home = v
		}
	}
	if _, err := os.Stat(filepath.Join(home, "lockkit", "locks", "nightly.lock")); err != nil {
		t.Fatalf("the default lock directory was not used: %v", err)
	}
}

// backendCase is one backend the end-to-end tests run on.
type backendCase struct {
	name  string
	url   string
	env   []string
	table bool // lockkit run --table
	max   int  // lockkit run --max, when not 0
}

// run returns the arguments of lockkit run on bc, followed by args.
func (bc backendCase) run(args ...string) []string {
	a := []string{"run", "-b", bc.url}
	if bc.table {
		a = []string{"run", "--backend", bc.url, "--table"}
	}
	if bc.max != 0 {
		a = append(a, "--max", strconv.Itoa(bc.max))
	}
	return append(a, args...)
}

func fileCase(t *testing.T) backendCase {
	return backendCase{name: "file", url: "file://" + t.TempDir(), env: baseEnv(t)}
}

// exitCodes checks the exit statuses of lockkit run on backend bc.
func exitCodes(t *testing.T, bc backendCase) {
	name := integration.Name(t)
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return lockkit(t, bc.env, bc.run(args...)...)
	}
	code, out, errOut := run(name, "--", "sh", "-c", `echo "$LOCKKIT_NAME ${LOCKKIT_TOKEN-unset}"; exit 7`)
	wantExit(t, "own status", code, 7, errOut)
	gotName, token, _ := strings.Cut(strings.TrimSpace(out), " ")
	if gotName != name {
		t.Errorf("LOCKKIT_NAME: stdout %q", out)
	}
	// A fencing token where the backend gives one (Redis, etcd, the
	// lock table), none elsewhere.
	if tokens := bc.name == "redis" || bc.name == "etcd" || bc.table; tokens {
		if n, err := strconv.ParseInt(token, 10, 64); err != nil || n <= 0 {
			t.Errorf("LOCKKIT_TOKEN %q on %s", token, bc.name)
		}
	} else if token != "unset" {
		t.Errorf("LOCKKIT_TOKEN %q on %s, which has no fencing tokens", token, bc.name)
	}
	code, _, errOut = run(name, "--", "sh", "-c", "kill -KILL $$")
	wantExit(t, "killed by SIGKILL", code, 128+9, errOut)
	code, _, errOut = run(name, "--", "sh", "-c", "kill -USR1 $$")
	wantExit(t, "killed by SIGUSR1", code, 128+int(syscall.SIGUSR1), errOut)
	code, _, errOut = run(name)
	wantExit(t, "no command", code, 64, errOut)
	code, _, errOut = run(name, "--", "./no-such-command")
	wantExit(t, "command not found", code, 127, errOut)

	// Busy: another lockkit holds the lock.
	holder := start(t, bc.env, true, bc.run(name, "--", "sh", "-c", "echo ready; exec sleep 1000")...)
	holder.waitLine("ready")
	code, out, errOut = run("-n", name, "--", "echo", "ran")
	wantExit(t, "--no-wait while held", code, 75, errOut)
	if out != "" || errOut != "" {
		t.Errorf("--no-wait while held: stdout %q, stderr %q; want quiet off a terminal", out, errOut)
	}
	code, _, errOut = run("--no-wait", "--conflict-exit-code", "0", name, "--", "echo", "ran")
	wantExit(t, "--conflict-exit-code 0", code, 0, errOut)
	begin := time.Now()
	code, out, errOut = run("-w", "400ms", "-v", name, "--", "echo", "ran")
	wantExit(t, "--wait elapsed", code, 75, errOut)
	if waited := time.Since(begin); waited < 400*time.Millisecond {
		t.Errorf("--wait 400ms gave up after %v", waited)
	}
	if out != "" || !strings.Contains(errOut, "still held") {
		t.Errorf("--wait elapsed: stdout %q, stderr %q", out, errOut)
	}
	code, _, errOut = run("--wait", "0.3", "--conflict-exit-code", "9", name, "--", "echo", "ran")
	wantExit(t, "--wait elapsed, --conflict-exit-code 9", code, 9, errOut)

	// SIGTERM to the holder reaches its command (sleep dies of it), and
	// the lock is free afterwards.
	if err := holder.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "holder after SIGTERM", holder.wait(), 128+int(syscall.SIGTERM), holder.stderr())
	code, out, errOut = run("-n", name, "--", "echo", "ran")
	wantExit(t, "--no-wait after release", code, 0, errOut)
	if out != "ran\n" {
		t.Errorf("stdout %q", out)
	}
}

// signalForwarding checks that SIGTERM, SIGINT and SIGHUP sent to lockkit
// reach the command, and that the lock is released only after the
// command has exited.
func signalForwarding(t *testing.T, bc backendCase) {
	for _, c := range []struct {
		sig  syscall.Signal
		trap string
		want int
	}{{syscall.SIGTERM, "TERM", 42}, {syscall.SIGINT, "INT", 43}, {syscall.SIGHUP, "HUP", 44}, {syscall.SIGQUIT, "QUIT", 45}} {
		t.Run(c.trap, func(t *testing.T) {
			name := integration.Name(t)
			log := filepath.Join(t.TempDir(), "log")
			// The command cleans up for a while after the signal; the
			// waiter must not run before the cleanup is done.
			script := fmt.Sprintf(`trap 'sleep 0.3; echo cleanup >> %s; exit %d' %s; echo ready; while :; do sleep 0.05; done`, log, c.want, c.trap)
			holder := start(t, bc.env, true, bc.run(name, "--", "sh", "-c", script)...)
			holder.waitLine("ready")
			waiter := start(t, bc.env, false, bc.run("-w", "20s", name, "--", "sh", "-c", "echo waiter >> "+log)...)
			time.Sleep(100 * time.Millisecond) // let the waiter start waiting
			if err := holder.cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			wantExit(t, "holder", holder.wait(), c.want, holder.stderr())
			wantExit(t, "waiter", waiter.wait(), 0, waiter.stderr())
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != "cleanup\nwaiter\n" {
				t.Fatalf("log %q: the lock was released before the command exited", b)
			}
		})
	}
}

// parallelCounter runs 20 lockkit processes that each increment a counter
// in a file by read-modify-write; the lock must make the count exact.
func parallelCounter(t *testing.T, bc backendCase, extra ...string) {
	const n = 20
	name := integration.Name(t)
	counter := filepath.Join(t.TempDir(), "counter")
	if err := os.WriteFile(counter, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Read, pause so that an unlocked run would interleave, write.
	script := fmt.Sprintf(`n=$(cat %[1]s); sleep 0.01; echo $((n + 1)) > %[1]s`, counter)
	var wg sync.WaitGroup
	procs := make([]*proc, n)
	for i := range procs {
		args := append(bc.run("-w", "40s"), extra...)
		procs[i] = start(t, bc.env, false, append(args, name, "--", "sh", "-c", script)...)
	}
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.wait()
			if p.code != 0 {
				t.Errorf("process %d: exit %d; stderr:\n%s", i, p.code, p.errOut.String())
			}
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(n) {
		t.Fatalf("counter is %s after %d locked increments", got, n)
	}
}

func TestFileExitCodes(t *testing.T)        { t.Parallel(); exitCodes(t, fileCase(t)) }
func TestFileSignalForwarding(t *testing.T) { t.Parallel(); signalForwarding(t, fileCase(t)) }
func TestFileParallelCounter(t *testing.T)  { t.Parallel(); parallelCounter(t, fileCase(t)) }

// TestFileLostLock removes the lock file under a running command: the
// exclusion is broken, so lockkit stops the command's whole process group
// and exits 70.
func TestFileLostLock(t *testing.T) {
	t.Parallel()
	bc := fileCase(t)
	dir := strings.TrimPrefix(bc.url, "file://")
	name := integration.Name(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The command and its grandchild ignore SIGTERM, so only the SIGKILL
	// after the grace period stops them.
	script := fmt.Sprintf(`trap "" TERM; sh -c 'echo $$ > %s; exec sleep 1000' & sleep 0.2; echo ready; wait`, pidFile)
	p := start(t, bc.env, true, "run", "-b", bc.url, "--kill-grace", "500ms", name, "--", "sh", "-c", script)
	p.waitLine("ready")
	grandchild := readPid(t, pidFile)
	if err := os.Remove(filepath.Join(dir, name+".lock")); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "lost lock", p.wait(), 70, p.stderr())
	if s := p.stderr(); !strings.Contains(s, fmt.Sprintf("lost lock %q on %s", name, bc.url)) || !strings.Contains(s, "removed or replaced") {
		t.Errorf("stderr does not say what was lost and why:\n%s", s)
	}
	if s := p.stderr(); !strings.Contains(s, "SIGKILL to its process group") {
		t.Errorf("stderr does not say that the grace period ended in SIGKILL:\n%s", s)
	}
	waitGone(t, grandchild, "grandchild ignoring SIGTERM")
}

// TestStatusLineOnTerminal runs lockkit under script(1), which gives it a
// terminal: while waiting it shows the live status line.
func TestStatusLineOnTerminal(t *testing.T) {
	t.Parallel()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) not installed (util-linux)")
	}
	bc := fileCase(t)
	name := integration.Name(t)
	holder := start(t, bc.env, true, "run", "-b", bc.url, name, "--", "sh", "-c", "echo ready; exec sleep 1000")
	holder.waitLine("ready")
	cmdline := fmt.Sprintf("%s run -b %s -w 700ms %s -- true", bin, bc.url, name)
	cmd := exec.Command(script, "-qec", cmdline, "/dev/null")
	cmd.Env = bc.env
	out, err := cmd.CombinedOutput()
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != 75 {
		t.Fatalf("under script: %v; output:\n%q", err, out)
	}
	if n := bytes.Count(out, []byte("\rlockkit: waiting for \""+name+"\", held by ")); n < 2 {
		t.Errorf("status line drawn %d times, want a live line; output:\n%q", n, out)
	}
	if !bytes.Contains(out, []byte(fmt.Sprintf("(pid %d)", holder.cmd.Process.Pid))) {
		t.Errorf("status line does not name the holder's pid %d:\n%q", holder.cmd.Process.Pid, out)
	}
	// And off a terminal, without -v, the same wait says nothing.
	code, _, errOut := lockkit(t, bc.env, "run", "-b", bc.url, "-w", "200ms", name, "--", "true")
	if code != 75 || errOut != "" {
		t.Errorf("off a terminal: exit %d, stderr %q", code, errOut)
	}
}

func TestUsageAndHelp(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	code, out, errOut := lockkit(t, env, "-h")
	wantExit(t, "lockkit -h", code, 0, errOut)
	if !strings.HasPrefix(out, "Usage: lockkit COMMAND") {
		t.Errorf("lockkit -h:\n%s", out)
	}
	for _, cmd := range []string{"run", "status", "migrate", "version", "help"} {
		code, out, errOut = lockkit(t, env, cmd, "-h")
		wantExit(t, cmd+" -h", code, 0, errOut)
		if !strings.HasPrefix(out, "Usage: lockkit "+cmd) {
			t.Errorf("lockkit %s -h:\n%s", cmd, out)
		}
	}
	code, out, errOut = lockkit(t, env, "version")
	wantExit(t, "version", code, 0, errOut)
	if !strings.HasPrefix(out, "lockkit ") {
		t.Errorf("version: %q", out)
	}
	for _, args := range [][]string{{}, {"frob"}, {"run"}, {"run", "x"}, {"run", "--nope", "x", "--", "true"}, {"run", "-b", "ftp://x", "x", "--", "true"}} {
		code, _, errOut = lockkit(t, env, args...)
		wantExit(t, fmt.Sprint(args), code, 64, errOut)
	}
}

// ctxTimeout is a context for the tests' own server calls.
func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ptyShell is a program running on a terminal under script(1), driven
// through script's stdin and read from its stdout.
type ptyShell struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}
	state *os.ProcessState
}

// startPty runs command (a shell command line) on a terminal.
func startPty(t *testing.T, env []string, command string) *ptyShell {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) not installed (util-linux)")
	}
	p := &ptyShell{t: t, cmd: exec.Command(script, "-qec", command, "/dev/null"), done: make(chan struct{})}
	p.cmd.Env = append(env, "TERM=dumb", "PS1=$ ")
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				break
			}
		}
		r.Close()
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			// Kill script's session: the shell, lockkit and the command.
			for _, c := range childPids(p.cmd.Process.Pid) {
				_ = syscall.Kill(-c, syscall.SIGKILL)
				for _, gc := range childPids(c) {
					_ = syscall.Kill(-gc, syscall.SIGKILL)
				}
			}
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *ptyShell) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *ptyShell) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		p.t.Fatal(err)
	}
}

// waitFor waits until the output contains s.
func (p *ptyShell) waitFor(s string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.output(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("no %q on the terminal after 20s; output:\n%s", s, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCommandReadsTerminal: with stdin on the terminal the command gets the
// terminal's foreground, so it can read from it (in a background process
// group it would be stopped by SIGTTIN).
func TestCommandReadsTerminal(t *testing.T) {
	t.Parallel()
	bc := fileCase(t)
	name := integration.Name(t)
	p := startPty(t, bc.env, fmt.Sprintf(`%s run -b %s %s -- sh -c 'echo ready; read l; echo "got:$l"; exit 3'`, bin, bc.url, name))
	p.waitFor("ready")
	p.send("hello")
	p.waitFor("got:hello")
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("lockkit did not exit; output:\n%s", p.output())
	}
	if code := p.state.ExitCode(); code != 3 {
		t.Fatalf("exit %d, want 3; output:\n%s", code, p.output())
	}
}

// TestCtrlZ: when the command is stopped on the terminal (Ctrl-Z), lockkit
// stops too, so that an interactive shell sees the job stopped; "fg"
// continues both, and the command finishes under the lock.
func TestCtrlZ(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	bc := fileCase(t)
	name := integration.Name(t)
	p := startPty(t, bc.env, "bash --norc --noprofile -i")
	p.send(fmt.Sprintf(`%s run -b %s %s -- sh -c 'echo star""ted; kill -TSTP $$; echo re""sumed; exit 5'`, bin, bc.url, name))
	p.waitFor("started")
	p.waitFor("Stopped")
	// While stopped, lockkit still holds the lock.
	code, _, errOut := lockkit(t, bc.env, "run", "-b", bc.url, "-n", name, "--", "true")
	wantExit(t, "--no-wait while the job is stopped", code, 75, errOut)
	p.send("fg; echo FG=$?")
	p.waitFor("resumed")
	p.waitFor("FG=5")
	p.send("exit")
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the shell did not exit; output:\n%s", p.output())
	}
	code, _, errOut = lockkit(t, bc.env, "run", "-b", bc.url, "-n", name, "--", "true")
	wantExit(t, "--no-wait after the job ended", code, 0, errOut)
}
