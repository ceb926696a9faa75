// Package ptytest runs the lockkit binary on a real pseudo-terminal
// (github.com/creack/pty), in a module of its own so that pty stays out of
// lockkit's go.mod. TestMain builds lockkit from the enclosing module.
package ptytest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lockkit-ptytest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "lockkit")
	build := exec.Command("go", "build", "-o", bin, "./cmd/lockkit")
	build.Dir = filepath.Join("..", "..", "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building lockkit:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is this environment without LOCKKIT_ variables, HOME in dir.
func env(dir string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "LOCKKIT_") || k == "HOME" || k == "XDG_CACHE_HOME" || k == "TERM" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "HOME="+dir, "TERM=xterm")
}

// terminal is what a program wrote to its pseudo-terminal.
type terminal struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (tm *terminal) String() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

func (tm *terminal) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(tm.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the terminal after 20s:\n%q", s, tm.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchRedrawsInPlace runs lockkit status --watch on a 64-column
// pseudo-terminal while another lockkit acquires and releases the lock:
// the view is redrawn in place (home and clear), cut to the terminal's
// width, shows the acquire and the release, and Ctrl-C ends it with 0.
func TestWatchRedrawsInPlace(t *testing.T) {
	dir := t.TempDir()
	url := "file://" + filepath.Join(dir, "locks")
	cmd := exec.Command(bin, "status", "--watch", "--interval", "50ms", "-b", url, "job")
	cmd.Env = env(dir)
	const cols = 64
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	tm := &terminal{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()

	tm.waitFor(t, "job   (free)")
	// The lock directory did not exist: the watch must not have made it.
	if _, err := os.Stat(filepath.Join(dir, "locks")); !os.IsNotExist(err) {
		t.Errorf("the watch created the lock directory: %v", err)
	}
	holder := exec.Command(bin, "run", "-b", url, "job", "--", "sleep", "0.5")
	holder.Env = env(dir)
	if out, err := holder.CombinedOutput(); err != nil {
		t.Fatalf("lockkit run: %v\n%s", err, out)
	}
	tm.waitFor(t, "acquired job by ")
	tm.waitFor(t, "released job, held by ")

	// Ctrl-C on the terminal: SIGINT to its foreground process group.
	if _, err := ptmx.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("after Ctrl-C: %v\n%q", waitErr, tm.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit after Ctrl-C:\n%q", tm.String())
	}

	screen := tm.String()
	frames := strings.Split(screen, "\x1b[H\x1b[2J")
	if len(frames) != 4 || frames[0] != "" {
		t.Fatalf("want 3 frames (free, held, free), each after home and clear; got %d:\n%q", len(frames)-1, screen)
	}
	held := frames[2]
	for _, want := range []string{"NAME", "SINCE", "job   ", "(pid ", "latest changes:", "acquired job by "} {
		if !strings.Contains(held, want) {
			t.Errorf("the held frame lacks %q:\n%s", want, held)
		}
	}
	if strings.Contains(held, "(free)") {
		t.Errorf("the held frame says (free):\n%s", held)
	}
	if !strings.Contains(frames[3], "job   (free)") || !strings.Contains(frames[3], "released job, held by ") {
		t.Errorf("the last frame:\n%s", frames[3])
	}
	for _, f := range frames[1:] {
		for _, l := range strings.Split(f, "\r\n") {
			if len([]rune(l)) > cols && !strings.HasPrefix(l, "^C") {
				t.Errorf("line of %d columns on a %d-column terminal: %q", len([]rune(l)), cols, l)
			}
		}
	}
}
