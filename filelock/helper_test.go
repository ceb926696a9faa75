//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The test binary doubles as a helper process: TestMain runs helperMain
// instead of the tests when helperEnv is set, so that tests can take locks
// from real, separate OS processes and kill them.
const helperEnv = "LOCKKIT_FILELOCK_HELPER"

// helperUIDEnv, when set, makes the helper switch to that uid and gid
// before it does anything (it must start as root).
const helperUIDEnv = "LOCKKIT_FILELOCK_HELPER_UID"

// helperArgs is how many trailing command-line arguments each helper mode
// takes.
func helperArgs(mode string) int {
	switch mode {
	case "hold":
		return 2 // dir name
	case "count":
		return 4 // dir name counterfile rounds
	}
	return 0
}

// helperMain runs one helper mode and returns the exit code.
//
//	hold DIR NAME: acquire, print "held", wait for stdin to close, release.
//	count DIR NAME FILE N: N times: acquire, read the number in FILE, write it plus 1, release.
func helperMain(mode string, args []string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "helper:", err); return 2 }
	ctx := context.Background()
	if v := os.Getenv(helperUIDEnv); v != "" {
		id, err := strconv.Atoi(v)
		if err != nil {
			return fail(err)
		}
		if err := syscall.Setgid(id); err != nil {
			return fail(err)
		}
		if err := syscall.Setuid(id); err != nil {
			return fail(err)
		}
	}
	switch mode {
	case "hold":
		l, err := New(args[0], nil)
		if err != nil {
			return fail(err)
		}
		lk, err := l.Acquire(ctx, args[1])
		if err != nil {
			return fail(err)
		}
		fmt.Println("held")
		_, _ = io.Copy(io.Discard, os.Stdin)
		if err := lk.Release(ctx); err != nil {
			return fail(err)
		}
		return 0
	case "count":
		l, err := New(args[0], nil)
		if err != nil {
			return fail(err)
		}
		n, err := strconv.Atoi(args[3])
		if err != nil {
			return fail(err)
		}
		for range n {
			lk, err := l.Acquire(ctx, args[1])
			if err != nil {
				return fail(err)
			}
			b, err := os.ReadFile(args[2])
			if err != nil {
				return fail(err)
			}
			v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			if err := os.WriteFile(args[2], []byte(strconv.Itoa(v+1)), 0o644); err != nil {
				return fail(err)
			}
			if err := lk.Release(ctx); err != nil {
				return fail(err)
			}
		}
		return 0
	}
	return fail(fmt.Errorf("unknown mode %q", mode))
}

// helper starts the test binary as a helper process.
func helper(t *testing.T, mode string, args ...string) *exec.Cmd {
	t.Helper()
	if len(args) != helperArgs(mode) {
		t.Fatalf("helper %s takes %d arguments, got %d", mode, helperArgs(mode), len(args))
	}
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	return cmd
}

// startHolder starts a helper that holds name in dir and returns once it
// says so. Closing stdin makes it release and exit.
func startHolder(t *testing.T, dir, name string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := helper(t, "hold", dir, name)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "held\n" {
		t.Fatalf("helper did not report holding the lock: %q, %v", line, err)
	}
	return cmd, stdin
}

func itoa(i int) string { return strconv.Itoa(i) }
