package reliability

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

// A helper process is this test binary started again with envChild set:
// TestMain then runs runChild instead of the tests. It is a real process
// holding a real lock, so that the tests can SIGKILL it, SIGSTOP it, or run
// it as another user.
const (
	envChild   = "LOCKKIT_RELIABILITY_CHILD" // the helper's mode: "script", "torture"
	envSpecVar = "LOCKKIT_RELIABILITY_SPEC"  // the backend spec, JSON
	envName    = "LOCKKIT_RELIABILITY_NAME"  // the lock name
	envArgs    = "LOCKKIT_RELIABILITY_ARGS"  // mode-specific parameters, JSON
)

// event is one line a helper process writes on its stdout.
type event struct {
	Event   string `json:"event"` // "held", "lost", "released", "error", "wrote", "fenced", ...
	Name    string `json:"name,omitempty"`
	Session string `json:"session,omitempty"` // see session()
	Token   int64  `json:"token,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Err     string `json:"err,omitempty"`
	At      int64  `json:"at,omitempty"` // Unix nanoseconds: processes on one host share the clock

	// torture
	Worker int     `json:"worker,omitempty"`
	Seq    int     `json:"seq,omitempty"`
	Stats  *wStats `json:"stats,omitempty"`
}

func emit(w io.Writer, mu *sync.Mutex, e event) {
	if e.At == 0 {
		e.At = time.Now().UnixNano()
	}
	b, _ := json.Marshal(e)
	mu.Lock()
	defer mu.Unlock()
	_, _ = w.Write(append(b, '\n'))
}

func runChild(mode string) int {
	var s spec
	if err := json.Unmarshal([]byte(os.Getenv(envSpecVar)), &s); err != nil {
		fmt.Fprintf(os.Stderr, "child: bad %s: %v\n", envSpecVar, err)
		return 2
	}
	switch mode {
	case "script":
		return childScript(s, os.Getenv(envName))
	case "torture":
		return childTorture(s, os.Getenv(envName), os.Getenv(envArgs))
	}
	fmt.Fprintf(os.Stderr, "child: unknown mode %q\n", mode)
	return 2
}

// command is one line a test writes to a "script" helper's stdin.
type command struct {
	Op   string        `json:"op"` // "acquire", "try", "release", "write"
	Name string        `json:"name"`
	Wait time.Duration `json:"wait,omitempty"` // acquire: how long to wait
	Path string        `json:"path,omitempty"` // write: the fenced resource
}

// childScript runs commands from stdin against one backend and reports
// every outcome, and every loss, as an event on stdout. When envName is set
// it acquires that lock first. When stdin ends it releases what it holds.
func childScript(s spec, first string) int {
	var mu sync.Mutex
	out := func(e event) { emit(os.Stdout, &mu, e) }
	b, err := s.open()
	if err != nil {
		out(event{Event: "error", Err: err.Error()})
		return 1
	}
	defer b.Close()
	held := map[string]lockkit.Lock{}
	do := func(c command) {
		switch c.Op {
		case "acquire", "try":
			wait := cmp.Or(c.Wait, 30*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			var l lockkit.Lock
			var err error
			if c.Op == "try" {
				l, err = b.locker.TryAcquire(ctx, c.Name)
			} else {
				l, err = b.locker.Acquire(ctx, c.Name)
			}
			if err != nil {
				out(event{Event: "error", Name: c.Name, Err: err.Error()})
				return
			}
			held[c.Name] = l
			out(event{Event: "held", Name: c.Name, Session: session(l), Token: l.Token(), PID: os.Getpid()})
			go func() {
				<-l.Done()
				if err := l.Err(); err != nil && !errors.Is(err, lockkit.ErrReleased) {
					out(event{Event: "lost", Name: c.Name, Err: err.Error()})
				}
			}()
		case "release":
			l := held[c.Name]
			if l == nil {
				out(event{Event: "error", Name: c.Name, Err: "not held"})
				return
			}
			delete(held, c.Name)
			e := event{Event: "released", Name: c.Name}
			if err := l.Release(context.Background()); err != nil {
				e.Err = err.Error()
			}
			out(e)
		case "write":
			l := held[c.Name]
			if l == nil {
				out(event{Event: "error", Name: c.Name, Err: "not held"})
				return
			}
			e := event{Event: "wrote", Name: c.Name, Token: l.Token()}
			if err := fencedWrite(c.Path, l.Token(), os.Getpid()); err != nil {
				e.Event, e.Err = "fenced", err.Error()
			}
			out(e)
		default:
			out(event{Event: "error", Err: "unknown op " + c.Op})
		}
	}
	if first != "" {
		do(command{Op: "acquire", Name: first})
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var c command
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			out(event{Event: "error", Err: "bad command: " + err.Error()})
			continue
		}
		do(c)
	}
	for n, l := range held {
		e := event{Event: "released", Name: n}
		if err := l.Release(context.Background()); err != nil {
			e.Err = err.Error()
		}
		out(e)
	}
	return 0
}

// child is a running helper process, seen from the test.
type child struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan event
	stderr *syncBuffer
	exited chan struct{}
}

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

// childOptions tune startChild.
type childOptions struct {
	args any                 // JSON in envArgs
	env  []string            // more environment
	cred *syscall.Credential // run as another user
}

// startChild starts a helper process in mode for spec s and lock name. It
// is killed, if still running, when t ends.
func startChild(t testing.TB, mode string, s spec, name string, o *childOptions) *child {
	t.Helper()
	if o == nil {
		o = &childOptions{}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if o.cred != nil {
		exe = copyExecutable(t, exe)
	}
	args, _ := json.Marshal(o.args)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envSpecVar+"="+s.String(), envName+"="+name,
		envArgs+"="+string(args))
	cmd.Env = append(cmd.Env, o.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	setParentDeathSignal(cmd.SysProcAttr) // a helper never outlives the test binary
	c := &child{t: t, cmd: cmd, events: make(chan event, 1024), stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				c.stderr.Write([]byte("unparsed stdout: " + sc.Text() + "\n"))
				continue
			}
			c.events <- e
		}
	}()
	go func() { _ = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		_ = c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-c.exited
		}
		for range c.events { // drain, so that the reader goroutine ends
		}
	})
	return c
}

// next waits for the child's next event of kind want, skipping none: any
// other event fails the test.
func (c *child) next(want string, timeout time.Duration) event {
	c.t.Helper()
	select {
	case e, ok := <-c.events:
		if !ok {
			c.t.Fatalf("helper exited before %q: %s", want, c.stderr.String())
		}
		if e.Event != want {
			c.t.Fatalf("helper: got event %+v, want %q; stderr: %s", e, want, c.stderr.String())
		}
		return e
	case <-time.After(timeout):
		c.t.Fatalf("helper: no %q within %v; stderr: %s", want, timeout, c.stderr.String())
	}
	return event{}
}

// do writes a command to a "script" child's stdin.
func (c *child) do(cmd command) {
	c.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("helper stdin: %v", err)
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (c *child) kill() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("SIGKILL: %v", err)
	}
	<-c.exited
}

// copyExecutable copies the test binary where another user can run it: go
// test builds it in a directory only its owner can enter.
func copyExecutable(t testing.TB, exe string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lkrel")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "reliability.test")
	if err := os.WriteFile(dst, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
