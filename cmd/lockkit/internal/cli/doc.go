// Package cli implements the lockkit command: run a command under a lock on
// any lockkit backend, list held locks, run the bundled lock-table
// migrations, and check a backend (doctor).
//
// The command is a [Program]: its standard streams, environment and the
// signals it receives are injected, and [Program.Main] returns the exit
// status instead of exiting, so every command runs in-process in tests.
// cmd/lockkit is a thin main over it.
//
// # Commands
//
//   - lockkit run [flags] NAME -- COMMAND [ARG...]: acquire NAME, run
//     COMMAND in its own process group while holding it, forward SIGINT,
//     SIGTERM and SIGHUP to that group, release once COMMAND has exited;
//     on loss, SIGTERM the group, SIGKILL it after --kill-grace, exit 70.
//     With --max N, NAME is a semaphore of N permits (package semaphore)
//     and the held lock is one permit's slot: at most N runs at once.
//   - lockkit status [--backend URL] [--table] [--json] [--max N] [--watch] [NAME...]:
//     list held locks with holder and since when (exit 1 when a given NAME
//     is free); with --max, the permit holders and free permits of the
//     semaphores NAME. With --watch, a live view that lists them on every
//     change the backend pushes and every --interval (5s where it pushes,
//     else 250ms by default) and reports each change: redrawn in
//     place on a terminal, else one line (or with --json one JSON object)
//     per lock acquired, released or taken over.
//   - lockkit migrate [--backend URL] up|down|version: the lock table's
//     migrations.
//   - lockkit doctor [--backend URL] [--json] [--locks N]: a checklist of
//     what works on the backend and why, from real probes (exit 0 when
//     everything holds, 1 when something is degraded or warned, 69 when
//     unreachable, 64 on a usage error).
//   - lockkit version, lockkit help [COMMAND], lockkit COMMAND -h.
//
// Backends are URLs: file:///DIR, postgres:// or postgresql://, mysql://
// (converted to a go-sql-driver configuration), redis:// or rediss://,
// etcd:// or etcds:// (a comma-separated list of endpoints, the key prefix
// as the path, and for etcds:// the cacert, cert and key parameters), from --backend or the LOCKKIT_BACKEND environment variable; without
// either, a file lock in filelock.DefaultDir.
//
// # Exit status
//
// lockkit run exits with the command's own status when the command ran and
// exited, 128+N when the command was killed by signal N, and otherwise with
// one of the sysexits(3) codes below:
//
//   - [ExitNotAcquired] (75, EX_TEMPFAIL): the lock was not acquired (held,
//     with --no-wait, or --wait elapsed); --conflict-exit-code changes it.
//   - [ExitLost] (70, EX_SOFTWARE): the lock was lost while the command ran,
//     and the command was stopped.
//   - [ExitUnavailable] (69, EX_UNAVAILABLE): the backend could not be
//     reached, or it failed.
//   - [ExitUsage] (64, EX_USAGE): a usage error.
//
// A command that cannot be started exits 127 when it was not found and 126
// when it could not be executed, as env(1) and the shells do.
//
// # Passwords
//
// A backend URL may carry a password. lockkit never prints it: URLs are
// shown redacted, and everything lockkit itself writes (including errors
// from the database drivers, which may quote a connection string) passes
// through a filter that replaces the URL's secrets with "xxxxx".
package cli
