//go:build unix

package cli

import (
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// GuardArg is the hidden first argument that makes the lockkit binary run
// as the guard of a command's process group ([Guard]). cmd/lockkit checks
// for it before anything else.
const GuardArg = "__lockkit-guard"

// guardOK is what lockkit run writes to its guard when it ends normally.
const guardOK = "ok\n"

// Guard is the guard process that lockkit run starts before the command,
// in a process group of its own. It reads its stdin, a pipe whose write end
// only lockkit run holds, to the end: first the command's process group id
// and a newline, once the command has started, then guardOK when lockkit
// run ends normally. When lockkit dies instead (SIGKILL, a crash), the pipe
// closes without guardOK, and the guard sends SIGKILL to the command's
// process group, since the lock went with lockkit. It returns the exit
// status.
func Guard() int {
	// Terminal and session signals are for lockkit and the command.
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	b, _ := io.ReadAll(os.Stdin)
	line, rest, _ := strings.Cut(string(b), "\n")
	pgid, err := strconv.Atoi(line)
	if err != nil || pgid <= 1 || rest == guardOK {
		return ExitOK // no command started, or lockkit ended normally
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return ExitOK
}

// guard is a started guard process.
type guard struct {
	cmd *exec.Cmd
	w   *os.File
}

// startGuard starts self as a guard, before the command, so that it is in
// place the moment the command runs.
func startGuard(self string) (*guard, error) {
	r, w, err := os.Pipe() // close-on-exec: only the guard gets r
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, GuardArg)
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

// watch tells the guard the command's process group.
func (g *guard) watch(pgid int) {
	if g != nil {
		_, _ = io.WriteString(g.w, strconv.Itoa(pgid)+"\n")
	}
}

// stand tells the guard that lockkit ends normally and waits for it to
// exit. Call it while the command is still unreaped, so that its process
// group id cannot have been reused. It also ends a guard whose command
// never started.
func (g *guard) stand() {
	if g == nil {
		return
	}
	_, _ = io.WriteString(g.w, guardOK)
	g.w.Close()
	_ = g.cmd.Wait()
}
