package integration

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockkit/lockkit/internal/procstat"
)

// Server is a throwaway database server that a test starts itself from the
// binaries installed on the machine, so that it can stop, restart, kill or
// pause it — faults a test must never inflict on the shared servers named by
// [EnvPostgres], [EnvMySQL] and [EnvRedis].
//
// The server runs as a child process in a process group of its own, in a
// fresh temporary directory, listening on 127.0.0.1 on a free port. Its
// methods are safe for concurrent use. [StartPostgres], [StartMariaDB] and
// [StartRedis] register its removal with the test; servers made with
// [LaunchPostgres], [LaunchMariaDB] and [LaunchRedis] are removed by
// [Server.Close].
//
// Where a Docker engine answers, Testcontainers could play the same role:
// a container's Stop and Start restart the server with its data, and the
// Docker API's kill and pause (cgroup freezer) match Kill and Pause. lockkit
// keeps its fault tests on local binaries all the same, so that they run
// the same way with and without Docker (CI runs the rest of the suite on
// both); the binaries are in Debian's postgresql, mariadb-server and
// redis-server packages.
type Server struct {
	kind     string
	dir      string // the temporary directory, removed by Close
	port     int
	dsn      string
	logPath  string
	cred     *syscall.Credential // nil: run as the current user
	args     func() (string, []string)
	stopSig  syscall.Signal
	ready    func(ctx context.Context) error
	onCrash  func() // frees what a killed server leaves behind
	firstRun func(ctx context.Context) error
	env      []string // added to the server's environment

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	tree    []int         // processes below cmd that a signal reached, until they are gone
	paused  bool
	started bool // firstRun has run
	closed  bool
}

// Kind is "postgres", "mariadb", "redis" or "etcd".
func (s *Server) Kind() string { return s.kind }

// DSN returns the connection string: a pgx URL for PostgreSQL, a
// go-sql-driver/mysql DSN for MariaDB, a Redis URL for Redis.
func (s *Server) DSN() string { return s.dsn }

// Addr returns the server's TCP address, 127.0.0.1:port. It stays the same
// across Stop and Start.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// Dir returns the server's temporary directory, which holds its data and
// its log file (server.log).
func (s *Server) Dir() string { return s.dir }

// PID returns the process id of the server's main process, or 0 when it is
// not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the server process is alive (it may be paused).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runningLocked()
}

func (s *Server) runningLocked() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 60 * time.Second

// Start starts the server on its port and data directory and waits until it
// accepts connections. Starting a running server is an error.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("integration: %s server is closed", s.kind)
	}
	if s.runningLocked() {
		return fmt.Errorf("integration: %s server is already running", s.kind)
	}
	s.reapGroupLocked()

	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	name, args := s.args()
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	if len(s.env) > 0 {
		cmd.Env = append(os.Environ(), s.env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true, // keep the terminal's signals (^C) to the test binary
		Credential: s.cred,
	}
	setParentDeathSignal(cmd.SysProcAttr) // never outlive the test binary
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("integration: start %s: %w", s.kind, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited, s.paused = cmd, exited, false

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		err := s.ready(ctx)
		if err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("integration: %s exited while starting: %v\n%s", s.kind, err, s.logTail())
		case <-ctx.Done():
			s.killLocked()
			return fmt.Errorf("integration: %s not ready after %v: %v\n%s", s.kind, startTimeout, err, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !s.started && s.firstRun != nil {
		if err := s.firstRun(ctx); err != nil {
			s.killLocked()
			return fmt.Errorf("integration: set up %s: %w", s.kind, err)
		}
	}
	s.started = true
	return nil
}

// stopTimeout bounds a clean shutdown; after it the server is killed.
const stopTimeout = 30 * time.Second

// Stop shuts the server down cleanly (PostgreSQL's fast shutdown, SIGTERM
// for MariaDB and Redis) and waits for it to exit. A paused server is
// resumed first. Stopping a server that is not running does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.runningLocked() {
		return nil
	}
	if s.paused {
		s.signalTree(syscall.SIGCONT)
		s.paused = false
	}
	_ = s.cmd.Process.Signal(s.stopSig)
	select {
	case <-s.exited:
		s.reapGroupLocked()
		return nil
	case <-time.After(stopTimeout):
		s.killLocked()
		return fmt.Errorf("integration: %s did not stop within %v; killed it", s.kind, stopTimeout)
	}
}

// Kill sends SIGKILL to every process of the server (its main process and
// all processes descended from it), as a crash or a power
// cut would, and waits until they are gone. Killing a server that is not
// running does nothing.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
	return nil
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	s.signalTree(syscall.SIGKILL)
	<-s.exited
	s.paused = false
	s.reapGroupLocked()
}

// reapGroupLocked waits until no live process is left of the server's last
// run: its main process, and the children it had (a killed PostgreSQL
// postmaster's backends die a moment after it).
func (s *Server) reapGroupLocked() {
	if s.cmd == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var alive []int
		for _, pid := range s.tree {
			if processAlive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			s.tree = nil
			return
		}
		for _, pid := range alive {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// signalTree sends sig to root and to every process descended from it, and
// records them in s.tree. PostgreSQL puts each backend in a session of its
// own, so a process group does not reach them; the parent links do. For
// SIGSTOP and SIGKILL the root is stopped first so that it cannot fork a
// child that escapes; for SIGCONT the children go first.
func (s *Server) signalTree(sig syscall.Signal) {
	root := s.cmd.Process.Pid
	if sig != syscall.SIGCONT {
		_ = syscall.Kill(root, syscall.SIGSTOP)
	}
	seen := map[int]bool{}
	for range 3 { // again, for a child forked just before the root stopped
		for _, pid := range descendants(root) {
			if !seen[pid] {
				seen[pid] = true
				s.tree = append(s.tree, pid)
			}
			_ = syscall.Kill(pid, sig)
		}
	}
	_ = syscall.Kill(root, sig)
}

// processAlive reports whether pid is a process that is not a zombie (a
// zombie waits for a reaper that may never come in a container).
func processAlive(pid int) bool {
	st, ok := procstat.Read(pid)
	return ok && st.Alive()
}

// descendants lists every live process below root, children first.
func descendants(root int) []int {
	pids, err := procstat.PIDs()
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, pid := range pids {
		if st, ok := procstat.Read(pid); ok && st.Alive() {
			children[st.PPID] = append(children[st.PPID], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Pause stops every process of the server with SIGSTOP: it keeps its
// sockets open but answers nothing, like a server stuck in a long GC pause
// or a frozen VM.
func (s *Server) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.runningLocked() {
		return fmt.Errorf("integration: %s server is not running", s.kind)
	}
	s.signalTree(syscall.SIGSTOP)
	s.paused = true
	return nil
}

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.runningLocked() {
		return fmt.Errorf("integration: %s server is not running", s.kind)
	}
	s.signalTree(syscall.SIGCONT)
	s.paused = false
	return nil
}

// Restart stops the server cleanly and starts it again on the same port
// and data directory.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Close kills the server and removes its directory. It is safe to call
// more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.killLocked()
	if s.onCrash != nil {
		s.onCrash()
	}
	return os.RemoveAll(s.dir)
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return "--- " + s.logPath + " (tail) ---\n" + string(b)
}

// register makes t own srv: it fails t when srv did not start, and closes
// srv when t ends.
func register(t testing.TB, srv *Server, err error) *Server {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("integration: remove %s server: %v", srv.kind, err)
		}
	})
	return srv
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// freePorts asks the kernel for n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	seen := map[int]bool{}
	for len(ports) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// serverDir makes a short temporary directory (unix socket paths are limited
// to about 100 bytes) that user cred can use.
func serverDir(prefix string, cred *syscall.Credential) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// runAs returns the credential for a system user when the tests run as
// root (database servers refuse to run as root), else nil.
func runAs(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("integration: running as root, and no %q user to run the server as: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// run runs a setup command as cred and returns its output on failure.
func run(cred *syscall.Credential, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	setParentDeathSignal(cmd.SysProcAttr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("integration: %s: %w\n%s", filepath.Base(name), err, out)
	}
	return nil
}

// findBinary looks name up in PATH, then in dirs.
func findBinary(name string, dirs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("integration: %s not found in PATH or %v", name, dirs)
}

// pingSQL opens dsn with driver, pings it under ctx and runs setup.
func pingSQL(ctx context.Context, driver, dsn string, setup ...string) error {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		return err
	}
	for _, q := range setup {
		if _, err := db.ExecContext(pctx, q); err != nil {
			return err
		}
	}
	return nil
}

// pingRedis sends PING to the Redis server at addr.
func pingRedis(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c.Close()
	return c.Ping(ctx).Err()
}

// Option tunes a private server.
type Option func(*serverOptions)

type serverOptions struct {
	env  []string
	args []string
}

// WithServerArgs passes extra command-line arguments to the server process,
// after lockkit's own: for example "-c", "idle_session_timeout=500" for
// PostgreSQL, "--wait-timeout=2" for MariaDB, "--maxclients", "50" for
// Redis.
func WithServerArgs(args ...string) Option {
	return func(o *serverOptions) { o.args = append(o.args, args...) }
}

// FakeTimeLib is where Debian's faketime package installs libfaketime.
const FakeTimeLib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

// WithFakeTime runs the server with libfaketime preloaded, so that its wall
// clock is shifted by offset, in libfaketime's syntax ("+1h", "-90m",
// "+3d"); its monotonic clock is left alone. A server whose clock is off by
// an hour is what a client with a clock off by an hour looks like from the
// other side: the test of "the client's clock does not matter".
//
// It works for PostgreSQL and MariaDB. It does not work for redis-server:
// its jemalloc reads the clock while libfaketime initialises, and the
// server hangs at start.
//
// Go programs cannot be shifted this way: they read the clock through the
// vDSO, not libc, so LD_PRELOAD does not reach them. The server is started
// only if libfaketime is installed (apt-get install faketime); otherwise
// Launch fails with an error saying so.
func WithFakeTime(offset string) Option {
	return func(o *serverOptions) {
		o.env = append(o.env, "LD_PRELOAD="+FakeTimeLib, "FAKETIME="+offset,
			"FAKETIME_DONT_FAKE_MONOTONIC=1", "FAKETIME_NO_CACHE=1")
	}
}

func applyOptions(opts []Option) (*serverOptions, error) {
	o := &serverOptions{}
	for _, f := range opts {
		f(o)
	}
	for _, e := range o.env {
		if strings.HasPrefix(e, "LD_PRELOAD=") {
			if _, err := os.Stat(strings.TrimPrefix(e, "LD_PRELOAD=")); err != nil {
				return nil, fmt.Errorf("integration: WithFakeTime needs libfaketime (apt-get install faketime): %w", err)
			}
		}
	}
	return o, nil
}

// poll calls f every 50 ms until it returns nil or ctx ends; then it
// returns f's last error.
func poll(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
