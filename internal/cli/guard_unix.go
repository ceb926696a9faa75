//go:build unix

package cli

import (
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
)

// GuardArg is the hidden first argument that makes the lockkit binary run
// as the guard of a command's process group ([Guard]). cmd/lockkit checks
// for it before anything else.
const GuardArg = "__lockkit-guard"

// guardOK is what lockkit run writes to its guard when it ends normally.
const guardOK = "ok\n"

// Guard is the guard process that lockkit run starts beside the command,
// in a process group of its own: it reads its stdin, a pipe whose write end
// only lockkit run holds, to the end. When lockkit run ends normally it
// first writes guardOK; when lockkit dies instead (SIGKILL, a crash), the
// pipe closes without it, and the guard sends SIGKILL to the command's
// process group pgid, since the lock went with lockkit. It returns the exit
// status.
func Guard(pgid string) int {
	// Terminal and session signals are for lockkit and the command.
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	id, err := strconv.Atoi(pgid)
	if err != nil || id <= 1 {
		return ExitUsage
	}
	b, _ := io.ReadAll(os.Stdin)
	if string(b) != guardOK {
		_ = syscall.Kill(-id, syscall.SIGKILL)
	}
	return ExitOK
}

// guard is a started guard process.
type guard struct {
	cmd *exec.Cmd
	w   *os.File
}

// startGuard starts self as the guard of process group pgid, or returns
// nil (with the reason) when it cannot: lockkit then runs without one.
func startGuard(self string, pgid int) (*guard, error) {
	r, w, err := os.Pipe() // close-on-exec: only the guard gets r
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, GuardArg, strconv.Itoa(pgid))
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // out of the terminal's signals
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	r.Close()
	return &guard{cmd: cmd, w: w}, nil
}

// stand tells the guard that lockkit ends normally and waits for it to
// exit. Call it while the command is still unreaped, so that its process
// group id cannot have been reused.
func (g *guard) stand() {
	if g == nil {
		return
	}
	_, _ = io.WriteString(g.w, guardOK)
	g.w.Close()
	_ = g.cmd.Wait()
}
