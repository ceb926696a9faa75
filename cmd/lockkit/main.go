// Command lockkit runs a command while holding a named lock on PostgreSQL,
// MySQL/MariaDB, Redis or a local file, lists held locks, and runs the
// bundled lock-table migrations. Run "lockkit help" for usage.
//
//	lockkit run nightly -- ./nightly.sh
//	lockkit run -b postgres://cron@db/app -n report -- ./report.sh
//	lockkit status -b postgres://cron@db/app
//
// The commands are implemented in internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockkit/lockkit/cmd/lockkit/internal/cli"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == cli.GuardArg {
		os.Exit(cli.Guard())
	}
	self, _ := os.Executable()
	sigs := make(chan os.Signal, 16)
	// A signal lockkit was started with ignored (nohup, a shell's
	// background job) stays ignored, for lockkit and the command, as under
	// flock(1): trapping it would undo the ignore.
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
		if !signal.Ignored(sig) {
			signal.Notify(sigs, sig)
		}
	}
	p := &cli.Program{
		Stdin:   os.Stdin,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Env:     os.Environ(),
		Signals: sigs,
		Self:    self,
	}
	os.Exit(p.Main(context.Background(), os.Args[1:]))
}
