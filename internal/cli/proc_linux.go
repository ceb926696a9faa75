package cli

import (
	"errors"

	"golang.org/x/sys/unix"
)

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
