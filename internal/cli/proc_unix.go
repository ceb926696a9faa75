//go:build unix

package cli

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// child is the command lockkit run started, the leader of its own process
// group.
type child struct {
	cmd    *exec.Cmd
	pgid   int
	exited chan struct{} // closed when the command has exited (not yet reaped)
}

// startChild starts cmd as the leader of a new process group, so that the
// whole group can be signalled, and watches for its exit without reaping
// it: until wait reaps it, its pid, and so its process group id, cannot be
// reused, and signalling the group is safe.
func startChild(cmd *exec.Cmd, _ io.Reader) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, pgid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		defer close(c.exited)
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, c.pgid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, unix.EINTR) {
				return
			}
		}
	}()
	return c, nil
}

// signal sends sig to the command's process group, as a terminal sends
// the signals its keys make to the foreground group.
func (c *child) signal(sig os.Signal) {
	if s, ok := sig.(syscall.Signal); ok {
		_ = syscall.Kill(-c.pgid, s)
	}
}

// terminate sends SIGTERM to the process group, and SIGCONT so that a
// stopped process gets to act on it.
func (c *child) terminate() {
	_ = syscall.Kill(-c.pgid, syscall.SIGTERM)
	_ = syscall.Kill(-c.pgid, syscall.SIGCONT)
}

// kill sends SIGKILL to the process group.
func (c *child) kill() { _ = syscall.Kill(-c.pgid, syscall.SIGKILL) }

// wait reaps the command and returns its state.
func (c *child) wait() *os.ProcessState {
	_ = c.cmd.Wait() // a non-zero status is an error here; the state says it
	return c.cmd.ProcessState
}

// signaled reports the signal that killed the process, if one did.
func signaled(state *os.ProcessState) (os.Signal, bool) {
	ws, ok := state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return nil, false
	}
	return ws.Signal(), true
}
