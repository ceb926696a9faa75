package cli

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lockkit/lockkit/internal/procstat"
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
		if st, ok := procstat.Read(*last); ok && st.PGrp == pgid && st.Alive() {
			return true
		}
		*last = 0
	}
	if !procstat.OwnNamespace() {
		return true
	}
	pids, err := procstat.PIDs()
	if err != nil {
		return true
	}
	seen := false
	for _, pid := range pids {
		st, ok := procstat.Read(pid)
		if !ok || st.PGrp != pgid {
			continue
		}
		seen = true
		if st.Alive() {
			*last = pid
			return true
		}
	}
	// Only zombies: the group is done. None at all, although kill found
	// the group: /proc hides its members; assume they run.
	return !seen
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
