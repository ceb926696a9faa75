package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/lockkit/lockkit"
)

// Exit statuses of lockkit itself. They follow sysexits(3).
const (
	// ExitOK is success.
	ExitOK = 0
	// ExitUsage is a usage error: a bad flag, argument or backend URL.
	ExitUsage = 64
	// ExitUnavailable means the backend could not be reached, or failed.
	ExitUnavailable = 69
	// ExitLost means the lock was lost while the command ran, and the
	// command was stopped.
	ExitLost = 70
	// ExitNotAcquired is the default status when the lock was not
	// acquired: it was held and --no-wait was given, or --wait elapsed.
	ExitNotAcquired = 75
	// ExitCannotExecute means the command was found but could not be run.
	ExitCannotExecute = 126
	// ExitNotFound means the command was not found.
	ExitNotFound = 127
)

// Environment variables lockkit reads or sets.
const (
	// EnvBackend gives the backend URL when --backend is not given, so a
	// password need not appear in the process list.
	EnvBackend = "LOCKKIT_BACKEND"
	// EnvName is set in the command's environment to the lock's name.
	EnvName = "LOCKKIT_NAME"
	// EnvToken is set in the command's environment to the lock's fencing
	// token, when the backend gives one. With --max it is the token of
	// the permit's slot, which increases per slot.
	EnvToken = "LOCKKIT_TOKEN"
	// EnvSlot is set in the command's environment with --max: the slot of
	// the permit it runs under, 0 to N-1.
	EnvSlot = "LOCKKIT_SLOT"
)

// Version is the lockkit version. The build may set it with
// -ldflags "-X github.com/lockkit/lockkit/internal/cli.Version=v1.2.3";
// otherwise it is read from the module's build information.
var Version = ""

// Program is one lockkit invocation and what surrounds it. The zero value
// of every field is usable: no input, output discarded, an empty
// environment, no signals.
type Program struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// Env is the environment, as os.Environ returns it. lockkit reads
	// LOCKKIT_BACKEND from it, and the command of lockkit run gets it with
	// LOCKKIT_NAME, LOCKKIT_TOKEN and (with --max) LOCKKIT_SLOT added.
	Env []string

	// Signals delivers the signals lockkit receives. lockkit run forwards
	// SIGINT, SIGTERM and SIGHUP to the command's process group; the other
	// commands stop at the first one. The caller registers it with
	// signal.Notify; nil means no signals arrive.
	Signals <-chan os.Signal

	// Self is the lockkit executable. When set, lockkit run starts it as
	// the guard of the command's process group ([Guard]), which kills the
	// group should lockkit die while holding the lock. Empty: no guard.
	Self string

	// IsTerminal reports whether w is a terminal; it decides whether a live
	// status line is shown while waiting for a lock. Nil checks whether w
	// is an *os.File on a terminal.
	IsTerminal func(w io.Writer) bool
}

// env is one command's view of the Program: the streams with secrets
// scrubbed from lockkit's own messages.
type env struct {
	p *Program
	// stdout carries data (lock names, holders, versions) as the server
	// gave it, and backend URLs only in their redacted form; scrubbing it
	// would corrupt any datum that contains the password's text.
	stdout io.Writer // lockkit's own output
	stderr io.Writer // lockkit's own messages, scrubbed
	scrub  *scrubber

	verbose bool // -v: say more on stderr

	// appName is what lockkit's PostgreSQL sessions show as
	// application_name: "lockkit run NAME" for run, so that pg_stat_activity
	// and lockkit status name the lock a session holds.
	appName string

	// announcer, when the backend pushes changes, is told of run's
	// acquire and release, so that lockkit status --watch sees them at
	// once where the lock itself notifies nothing (advisory locks, a
	// Redis or lock-table acquire).
	announcer lockkit.Watcher
}

// Main runs lockkit with args (without the program name) and returns the
// exit status. ctx bounds the whole run; signals arrive on p.Signals.
func (p *Program) Main(ctx context.Context, args []string) int {
	sc := &scrubber{}
	e := &env{
		p:      p,
		stdout: orDiscard(p.Stdout),
		stderr: sc.writer(orDiscard(p.Stderr)),
		scrub:  sc,
	}
	if len(args) == 0 {
		fmt.Fprint(e.stderr, mainUsage)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help":
		fmt.Fprint(e.stdout, mainUsage)
		return ExitOK
	case "-version", "--version":
		return e.version(nil)
	}
	c, ok := commands[cmd]
	if !ok {
		if strings.HasPrefix(cmd, "-") {
			e.errorf("unknown flag %s before the command", cmd)
		} else {
			e.errorf("unknown command %q", cmd)
		}
		fmt.Fprint(e.stderr, "Run 'lockkit help' for usage.\n")
		return ExitUsage
	}
	return c.run(e, ctx, rest)
}

type command struct {
	usage string
	run   func(e *env, ctx context.Context, args []string) int
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"run":     {runUsage, (*env).run},
		"status":  {statusUsage, (*env).status},
		"migrate": {migrateUsage, (*env).migrate},
		"doctor":  {doctorUsage, (*env).doctor},
		"version": {versionUsage, func(e *env, _ context.Context, args []string) int { return e.version(args) }},
		"help":    {helpUsage, func(e *env, _ context.Context, args []string) int { return e.help(args) }},
	}
}

func (e *env) help(args []string) int {
	fs := newFlagSet("help")
	if code, done := e.parse(fs, helpUsage, args); done {
		return code
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprint(e.stdout, mainUsage)
		return ExitOK
	}
	if len(args) > 1 {
		e.errorf("help takes one command name")
		return ExitUsage
	}
	c, ok := commands[args[0]]
	if !ok {
		e.errorf("unknown command %q", args[0])
		fmt.Fprint(e.stderr, "Run 'lockkit help' for usage.\n")
		return ExitUsage
	}
	fmt.Fprint(e.stdout, c.usage)
	return ExitOK
}

func (e *env) version(args []string) int {
	fs := newFlagSet("version")
	if code, done := e.parse(fs, versionUsage, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return e.usageErr(versionUsage, "version takes no arguments")
	}
	fmt.Fprintf(e.stdout, "lockkit %s\n", versionString())
	return ExitOK
}

func versionString() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		if v == "" || v == "(devel)" {
			v = "devel"
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					v += " " + s.Value[:12]
				}
			}
		}
		return v + " " + bi.GoVersion
	}
	return "devel"
}

// getenv looks key up in the injected environment; the last entry wins, as
// in os.Getenv.
func (e *env) getenv(key string) string {
	v := ""
	for _, kv := range e.p.Env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func (e *env) isTerminal(w io.Writer) bool {
	if e.p.IsTerminal != nil {
		return e.p.IsTerminal(w)
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// errorf prints "lockkit: msg" on stderr.
func (e *env) errorf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "lockkit: "+format+"\n", args...)
}

// usageErr prints msg and a pointer to the command's help; it returns
// ExitUsage.
func (e *env) usageErr(usage, format string, args ...any) int {
	e.errorf(format, args...)
	line, _, _ := strings.Cut(usage, "\n")
	fmt.Fprintf(e.stderr, "%s\nRun 'lockkit %s -h' for help.\n", line, commandOf(usage))
	return ExitUsage
}

// commandOf extracts the command name from a usage text that starts with
// "Usage: lockkit CMD".
func commandOf(usage string) string {
	f := strings.Fields(usage)
	if len(f) >= 3 {
		return f[2]
	}
	return ""
}

// signalExit is the exit status for a process that dies of sig: 128+N.
func signalExit(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 128 + int(syscall.SIGTERM)
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// errSignal is the cancellation cause when a signal stops a command.
type errSignal struct{ sig os.Signal }

func (e errSignal) Error() string { return "interrupted by " + e.sig.String() }

// interruptible returns a context cancelled, with an errSignal cause, when
// a signal arrives on e.p.Signals, and a function that stops watching and
// reports the signal that arrived, if any.
func (e *env) interruptible(ctx context.Context) (context.Context, func() os.Signal) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	var got os.Signal
	go func() {
		defer close(done)
		select {
		case sig := <-e.p.Signals: // a nil channel never delivers
			got = sig
			cancel(errSignal{sig})
		case <-stop:
		}
	}()
	return ctx, func() os.Signal {
		close(stop)
		<-done
		cancel(nil)
		return got
	}
}

// errorCode maps an error from opening a backend or acquiring a lock to an
// exit status.
func errorCode(err error, conflict int) int {
	var se errSignal
	switch {
	case errors.As(err, &se):
		return signalExit(se.sig)
	case isUsage(err):
		return ExitUsage
	case isNotAcquired(err):
		return conflict
	default:
		return ExitUnavailable
	}
}
