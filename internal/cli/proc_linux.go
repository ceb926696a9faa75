package cli

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// setDeathSignal makes the kernel SIGKILL the command when lockkit dies
// (SIGKILL, a crash): the lock goes with lockkit, so the command must not
// run on without it.
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }

// groupHasLiveMembers reports whether a process that has not exited is in
// the process group pgid. kill(-pgid, 0) alone would also count an exited
// member that its new parent (init, after the command exited) has not
// reaped yet, which some container inits do late or never; so the members
// are read from /proc, and zombies skipped. Without /proc it falls back to
// kill.
func groupHasLiveMembers(pgid int) bool {
	if !signalGroupAlive(pgid) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, ent := range entries {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces and
		// parentheses, so the fields are counted after the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 {
			continue
		}
		if f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			return true
		}
	}
	return false
}

// Linux si_code values of a SIGCHLD-style wait result.
const (
	cldExited = 1 // exited
	cldKilled = 2 // killed by a signal
	cldDumped = 3 // killed by a signal, core dumped
)

// watch waits for the command to exit, without reaping it (WNOWAIT), and
// in foreground mode reports each stop on c.stopped.
func (c *child) watch() {
	defer close(c.exited)
	flags := unix.WEXITED | unix.WNOWAIT
	if c.tty >= 0 {
		flags |= unix.WSTOPPED
	}
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, c.pgid, &info, flags, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		switch info.Code {
		case cldExited, cldKilled, cldDumped:
			return
		}
		// A stop. Consume it (without WNOWAIT), or the next wait would
		// report it again; WNOHANG in case it was already undone.
		var consumed unix.Siginfo
		_ = unix.Waitid(unix.P_PID, c.pgid, &consumed, unix.WSTOPPED|unix.WNOHANG, nil)
		select {
		case c.stopped <- struct{}{}:
		default:
		}
	}
}
