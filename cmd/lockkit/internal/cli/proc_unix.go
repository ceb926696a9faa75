//go:build unix

package cli

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// child is the command lockkit run started, the leader of its own process
// group.
type child struct {
	cmd     *exec.Cmd
	pgid    int
	exited  chan struct{} // closed when the command has exited (not yet reaped)
	stopped chan struct{} // receives when the command was stopped (foreground mode only)

	// tty is the terminal whose foreground process group the command
	// got, or -1. lockkit gives the terminal to the command when its
	// stdin is that terminal and lockkit is in the foreground, so that the
	// command can read from it and gets the terminal's signals itself.
	tty  int
	pgrp int // lockkit's own process group

	state *os.ProcessState // set by wait

	lastMember int // a group member groupAlive last found alive
}

// startChild starts cmd as the leader of a new process group, so that the
// whole group can be signalled, and watches for its exit. On Linux the
// watch does not reap it: until wait does, its pid, and so its process
// group id, cannot be reused, and signalling the group is safe.
func startChild(cmd *exec.Cmd, stdin io.Reader) (*child, error) {
	c := &child{cmd: cmd, exited: make(chan struct{}), stopped: make(chan struct{}, 1), tty: -1, pgrp: syscall.Getpgrp()}
	attr := &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(attr)
	if f, ok := stdin.(*os.File); ok {
		fd := int(f.Fd())
		if term.IsTerminal(fd) {
			if fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err == nil && fg == c.pgrp {
				attr.Foreground = true
				attr.Ctty = fd // Foreground takes the parent's descriptor
				c.tty = fd
			}
		}
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		if c.tty >= 0 {
			c.takeTerminal()
		}
		return nil, err
	}
	c.pgid = cmd.Process.Pid
	go c.watch()
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

// exitedLeader is called when the command has exited, before wait: the
// terminal goes back to lockkit's group (the command no longer reads it).
func (c *child) exitedLeader() {
	if c.tty >= 0 {
		c.takeTerminal()
	}
}

// groupAlive reports whether a process that has not exited is left in the
// command's process group, the command itself included.
func (c *child) groupAlive() bool { return groupHasLiveMembers(c.pgid, &c.lastMember) }

// signalGroupAlive reports whether kill(-pgid, 0) finds the group. An
// exited member that nobody has reaped yet (a zombie) still counts.
func signalGroupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// wait reaps the command, gives the terminal back to lockkit's process
// group if the command had it, and returns the command's state.
func (c *child) wait() *os.ProcessState {
	<-c.exited
	if c.state == nil {
		_ = c.cmd.Wait() // a non-zero status is an error here; the state says it
		c.state = c.cmd.ProcessState
	}
	if c.tty >= 0 {
		c.takeTerminal()
	}
	return c.state
}

// suspend handles a stop of the command in foreground mode (the user
// pressed Ctrl-Z): lockkit takes the terminal back and stops its own
// process group, so that the shell sees the job stopped. When the shell
// continues the job, the command gets the terminal again (if lockkit is
// in the foreground) and SIGCONT.
func (c *child) suspend() {
	c.takeTerminal()
	_ = syscall.Kill(0, syscall.SIGTSTP) // returns once lockkit is continued
	if fg, err := unix.IoctlGetInt(c.tty, unix.TIOCGPGRP); err == nil && fg == c.pgrp {
		c.giveTerminal(c.pgid)
	}
	_ = syscall.Kill(-c.pgid, syscall.SIGCONT)
}

// takeTerminal makes lockkit's process group the terminal's foreground
// group again.
func (c *child) takeTerminal() { c.giveTerminal(c.pgrp) }

// giveTerminal makes pgrp the terminal's foreground process group. A
// process in a background group that does this gets SIGTTOU, so it is
// ignored for the call.
func (c *child) giveTerminal(pgrp int) {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	_ = unix.IoctlSetPointerInt(c.tty, unix.TIOCSPGRP, pgrp)
}

// signaled reports the signal that killed the process, if one did.
func signaled(state *os.ProcessState) (os.Signal, bool) {
	ws, ok := state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return nil, false
	}
	return ws.Signal(), true
}
