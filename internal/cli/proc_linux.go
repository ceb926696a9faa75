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
// the process group pgid. kill(-pgid, 0) alone also counts exited members
// nobody has reaped yet (the command itself until wait, orphans that init
// reaps late or never in some containers), so the members are read from
// /proc and zombies skipped. When /proc cannot show the group (another PID
// namespace, hidepid) the kill answer stands. *last caches a live member,
// checked first, so that a long-running job costs one read per poll.
func groupHasLiveMembers(pgid int, last *int) bool {
	if !signalGroupAlive(pgid) {
		return false
	}
	if *last > 0 {
		if st, g, ok := procStat(*last); ok && g == pgid && st != "Z" && st != "X" {
			return true
		}
		*last = 0
	}
	if self, err := os.Readlink("/proc/self"); err != nil || self != strconv.Itoa(os.Getpid()) {
		return true // /proc is not this PID namespace's
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	seen := false
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		st, g, ok := procStat(pid)
		if !ok || g != pgid {
			continue
		}
		seen = true
		if st != "Z" && st != "X" {
			*last = pid
			return true
		}
	}
	// Only zombies: the group is done. None at all, although kill found
	// the group: /proc hides its members; assume they run.
	return !seen
}

// procStat returns the state and process group of pid from /proc.
func procStat(pid int) (state string, pgrp int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false // exited meanwhile
	}
	// "pid (comm) state ppid pgrp ...": comm may hold spaces and
	// parentheses, so the fields are counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return "", 0, false
	}
	g, err := strconv.Atoi(f[2])
	if err != nil {
		return "", 0, false
	}
	return f[0], g, true
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
