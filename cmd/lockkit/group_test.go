package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
)

// TestFileGroupHoldsLock: a command that leaves a process running in its
// process group (`job &`) and exits keeps the lock held until that process
// has exited too, as flock(1) does: a second run with --no-wait is refused
// meanwhile, and the first exits with the command's status once the group
// is empty.
func TestFileGroupHoldsLock(t *testing.T) {
	t.Parallel()
	bc := fileCase(t)
	name := integration.Name(t)
	tmp := t.TempDir()
	gate, done := filepath.Join(tmp, "gate"), filepath.Join(tmp, "done")
	// The background job runs until the test creates the gate file.
	script := fmt.Sprintf(`(while [ ! -e %s ]; do sleep 0.02; done; echo done > %s) >/dev/null 2>&1 & echo ready; exit 3`, gate, done)
	p := start(t, bc.env, true, "run", "-b", bc.url, name, "--", "sh", "-c", script)
	p.waitLine("ready")
	time.Sleep(100 * time.Millisecond) // the command exits; its job runs on
	code, _, errOut := lockkit(t, bc.env, "run", "-b", bc.url, "-n", name, "--", "true")
	wantExit(t, "second run while the job runs", code, 75, errOut)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "first run", p.wait(), 3, p.stderr())
	if b, err := os.ReadFile(done); err != nil || string(b) != "done\n" {
		t.Fatalf("lockkit exited before the job finished: %q, %v", b, err)
	}
	code, _, errOut = lockkit(t, bc.env, "run", "-b", bc.url, "-n", name, "--", "true")
	wantExit(t, "run after the job", code, 0, errOut)
}

// TestFileLostLockGraceForGroup: when the lock is lost, a process of the
// command's group that handles SIGTERM gets --kill-grace to finish, even
// after the command itself has exited.
func TestFileLostLockGraceForGroup(t *testing.T) {
	t.Parallel()
	bc := fileCase(t)
	dir := strings.TrimPrefix(bc.url, "file://")
	name := integration.Name(t)
	tmp := t.TempDir()
	pidFile, marker := filepath.Join(tmp, "pid"), filepath.Join(tmp, "marker")
	// The command dies of SIGTERM at once; its job takes 500 ms to wind up.
	job := fmt.Sprintf(`trap 'sleep 0.5; echo cleaned > %s; exit 0' TERM; echo $$ > %s; while :; do sleep 0.05; done`, marker, pidFile)
	script := fmt.Sprintf(`sh -c %q & while [ ! -s %s ]; do sleep 0.02; done; echo ready; wait`, job, pidFile)
	p := start(t, bc.env, true, "run", "-b", bc.url, "--kill-grace", "5s", name, "--", "sh", "-c", script)
	p.waitLine("ready")
	jobPid := readPid(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(jobPid, syscall.SIGKILL) }) // should it outlive a failed test
	if err := os.Remove(filepath.Join(dir, name+".lock")); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "lost lock", p.wait(), 70, p.stderr())
	if b, err := os.ReadFile(marker); err != nil || string(b) != "cleaned\n" {
		t.Errorf("the job was killed within its grace period: %q, %v\n%s", b, err, p.stderr())
	}
	if strings.Contains(p.stderr(), "SIGKILL to its process group") {
		t.Errorf("SIGKILL sent although the group ended within --kill-grace:\n%s", p.stderr())
	}
	waitGone(t, jobPid, "the job")
}

// TestFileLockkitKilled: when lockkit itself is killed with SIGKILL, its
// lock goes with it, so its guard kills the command's whole process group
// (and the kernel kills the command: the parent-death signal), rather
// than let the command or its background jobs run on unlocked.
func TestFileLockkitKilled(t *testing.T) {
	t.Parallel()
	bc := fileCase(t)
	name := integration.Name(t)
	tmp := t.TempDir()
	cmdPidFile, jobPidFile := filepath.Join(tmp, "cmd"), filepath.Join(tmp, "job")
	script := fmt.Sprintf(`sh -c 'echo $$ > %[2]s; exec sleep 1000' >/dev/null 2>&1 & while [ ! -s %[2]s ]; do sleep 0.02; done; echo $$ > %[1]s; echo ready; exec sleep 1000 >/dev/null 2>&1`, cmdPidFile, jobPidFile)
	p := start(t, bc.env, true, "run", "-b", bc.url, name, "--", "sh", "-c", script)
	p.waitLine("ready")
	cmdPid, jobPid := readPid(t, cmdPidFile), readPid(t, jobPidFile)
	t.Cleanup(func() { // should they outlive the test
		_ = syscall.Kill(cmdPid, syscall.SIGKILL)
		_ = syscall.Kill(jobPid, syscall.SIGKILL)
	})
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()
	waitGone(t, cmdPid, "the command of a killed lockkit")
	waitGone(t, jobPid, "the background job of a killed lockkit's command")
	code, _, errOut := lockkit(t, bc.env, "run", "-b", bc.url, "-n", name, "--", "true")
	wantExit(t, "run after lockkit was killed", code, 0, errOut)
}

// TestFileContractExtras: the points of the run contract that the
// per-backend tests do not cover, end to end on the file backend.
func TestFileContractExtras(t *testing.T) {
	t.Parallel()
	bc := fileCase(t)
	name := integration.Name(t)

	gate := filepath.Join(t.TempDir(), "gate")
	holdUntilGate := fmt.Sprintf(`echo ready; while [ ! -e %s ]; do sleep 0.02; done`, gate)
	openGate := func() {
		t.Helper()
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// -s: shared holders coexist; an exclusive run is refused meanwhile.
	p := start(t, bc.env, true, "run", "-b", bc.url, "-s", name, "--", "sh", "-c", holdUntilGate)
	p.waitLine("ready")
	code, _, errOut := lockkit(t, bc.env, "run", "-b", bc.url, "-s", "-n", name, "--", "true")
	wantExit(t, "second shared run", code, 0, errOut)
	code, _, errOut = lockkit(t, bc.env, "run", "-b", bc.url, "-n", name, "--", "true")
	wantExit(t, "exclusive run beside a shared one", code, 75, errOut)
	openGate()
	wantExit(t, "first shared run", p.wait(), 0, p.stderr())
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}

	// -s with --table is a usage error, before any connection is made.
	code, _, errOut = lockkit(t, bc.env, "run", "-b", "postgres://u@"+closedPort(t)+"/db", "--table", "-s", name, "--", "true")
	wantExit(t, "--shared --table", code, 64, errOut)

	// -b wins over LOCKKIT_BACKEND.
	other := "file://" + t.TempDir()
	p = start(t, bc.env, true, "run", "-b", bc.url, name, "--", "sh", "-c", holdUntilGate)
	p.waitLine("ready")
	envOther := append(append([]string{}, bc.env...), "LOCKKIT_BACKEND="+other)
	code, _, errOut = lockkit(t, envOther, "run", "-b", bc.url, "-n", name, "--", "true")
	wantExit(t, "-b over LOCKKIT_BACKEND", code, 75, errOut)
	code, _, errOut = lockkit(t, envOther, "run", "-n", name, "--", "true")
	wantExit(t, "LOCKKIT_BACKEND alone", code, 0, errOut)
	openGate()
	wantExit(t, "holder", p.wait(), 0, p.stderr())

	// 126: COMMAND exists but cannot be executed; 127: it does not exist.
	noExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = lockkit(t, bc.env, "run", "-b", bc.url, name, "--", noExec)
	wantExit(t, "command not executable", code, 126, errOut)
	code, _, errOut = lockkit(t, bc.env, "run", "-b", bc.url, name, "--", "lockkit-no-such-command")
	wantExit(t, "command not found", code, 127, errOut)

	// help: the run contract on stdout, exit 0.
	code, out, errOut := lockkit(t, bc.env, "help", "run")
	wantExit(t, "help run", code, 0, errOut)
	if !strings.HasPrefix(out, "Usage: lockkit run") || !strings.Contains(out, "--kill-grace") {
		t.Errorf("help run printed:\n%s", out)
	}
}

// TestWaitBoundsConnect: --wait also bounds connecting, so a server that
// accepts connections but never answers ends lockkit after about --wait
// (exit 69), not after the 15 s connect timeout.
func TestWaitBoundsConnect(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn // accepted, never answered
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	for _, u := range []string{"postgres://u@" + ln.Addr().String() + "/db", "mysql://u@" + ln.Addr().String() + "/db", "redis://" + ln.Addr().String() + "/0"} {
		start := time.Now()
		code, _, errOut := lockkit(t, baseEnv(t), "run", "-b", u, "-w", "1s", integration.Name(t), "--", "true")
		took := time.Since(start)
		wantExit(t, u, code, 69, errOut)
		if took > 5*time.Second {
			t.Errorf("%s with --wait 1s against a silent server took %v", u, took.Round(time.Millisecond))
		}
		if !strings.Contains(errOut, "--wait 1s") {
			t.Errorf("%s: stderr does not say the wait ran out:\n%s", u, errOut)
		}
	}
}

// TestFileSignalAfterCommandExited: a SIGTERM that lockkit gets while it
// waits for a job the command left behind goes to the job, and lockkit
// exits 128+15 rather than the command's 0.
func TestFileSignalAfterCommandExited(t *testing.T) {
	t.Parallel()
	bc := fileCase(t)
	name := integration.Name(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	script := fmt.Sprintf(`sh -c 'echo $$ > %s; while :; do sleep 0.05; done' >/dev/null 2>&1 & while [ ! -s %s ]; do sleep 0.02; done; echo ready`, pidFile, pidFile)
	p := start(t, bc.env, true, "run", "-b", bc.url, name, "--", "sh", "-c", script)
	p.waitLine("ready")
	jobPid := readPid(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(jobPid, syscall.SIGKILL) })
	time.Sleep(100 * time.Millisecond) // the command exits; lockkit waits for the job
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "lockkit terminated while the job ran", p.wait(), 128+int(syscall.SIGTERM), p.stderr())
	waitGone(t, jobPid, "the job")
}
