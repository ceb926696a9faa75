package cli

// The help texts. Each starts with its usage line, which usage errors
// repeat.

const mainUsage = `Usage: lockkit COMMAND [ARG...]

lockkit runs a command while holding a named lock, like flock(1), but the
lock can live in PostgreSQL, MySQL/MariaDB or Redis, so that it holds
across hosts. With no backend given it uses a file lock in a per-user
directory (~/.cache/lockkit/locks on Linux), which needs no server.

Commands:
  run       run a command while holding a lock (--max N: one of N permits)
  status    list held locks, with holder and since when
  migrate   create, drop or inspect the lock table used by --table
  doctor    check what works on a backend, and why, before relying on it
  version   print lockkit's version
  help      show the help of a command

Run 'lockkit COMMAND -h' or 'lockkit help COMMAND' for a command's flags.

Backends (--backend URL, or the LOCKKIT_BACKEND environment variable):
  file:///DIR                          a file lock in DIR (the default)
  postgres://USER@HOST:PORT/DB?...     a PostgreSQL advisory lock
  mysql://USER:PASS@HOST:PORT/DB       a MySQL/MariaDB GET_LOCK lock
  redis://HOST:PORT/DB                 a Redis lease (rediss:// for TLS); with
                                       ?master_name=NAME&addr=HOST:PORT..., HOST:PORT
                                       and each addr are Sentinels that name the master
  etcd://HOST:PORT,HOST:PORT/PREFIX    an etcd lease on a cluster (etcds:// for TLS)
With --table, postgres:// and mysql:// use the lock table instead.

Exit status: the command's own, or 75 when the lock was not acquired, 70
when it was lost, 69 when the backend failed, 64 on a usage error; see
'lockkit run -h'.

Examples:
  lockkit run nightly -- ./nightly.sh
  LOCKKIT_BACKEND=postgres://app@db/app lockkit run -n nightly -- ./nightly.sh
  lockkit status --backend redis://cache:6379/0
`

const runUsage = `Usage: lockkit run [flags] NAME -- COMMAND [ARG...]

Acquire the lock NAME, run COMMAND while holding it, and release the lock
once COMMAND has exited. By default lockkit waits until the lock is free.
With --max N, up to N runs of NAME hold at once (see below).

COMMAND runs in a process group of its own. The lock is released only
after COMMAND and every process it left in that group (a 'job &' in a
script) have exited, as flock(1) holds its lock while a background job
keeps its file open; a process that leaves the group (setsid, a daemon)
is not waited for, and a member stopped with SIGSTOP keeps the lock until
it is continued and exits. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to
lockkit are forwarded to the group; one that arrives after COMMAND exited
makes lockkit exit 128+N. If lockkit itself is killed, the lock is gone
with it, so a small guard process that lockkit starts beside COMMAND sends
SIGKILL to COMMAND's process group.

If the lock is lost while COMMAND runs (the database session ends, the
lease cannot be renewed), lockkit sends SIGTERM to the process group, then
SIGKILL after --kill-grace to whatever is left, and exits 70 saying what
was lost and why.

Flags:
  -b, --backend URL           where the lock lives (default: $LOCKKIT_BACKEND,
                              else a file lock in a per-user directory)
  -n, --no-wait               fail at once if the lock is held
  -w, --wait DURATION         wait at most DURATION, e.g. 30s, 5m or 10
                              (seconds); the default is to wait until acquired.
                              Connecting to the backend is bounded by it too
                              (at least 1s)
  -s, --shared                take a shared lock: any number of shared holders
                              exclude the exclusive ones (postgres advisory
                              locks and file locks only; elsewhere exit 64)
      --table                 use the lock table instead of an advisory lock
                              (postgres:// and mysql://; see lockkit migrate)
      --ttl DURATION          lease length for --table, redis:// and
                              etcd://, renewed automatically while COMMAND
                              runs
      --max N                 let up to N runs of NAME run at once, across
                              hosts: NAME is a semaphore of N permits
      --conflict-exit-code N  exit status when the lock is not acquired
                              (default 75)
      --kill-grace DURATION   time between SIGTERM and SIGKILL when the lock
                              is lost (default 10s)
  -v, --verbose               say on stderr when lockkit waits, acquires,
                              forwards a signal and releases
  -h, --help                  show this help

While waiting with stderr on a terminal, a status line shows the lock, its
holder (where the backend knows it) and the time waited. Off a terminal
lockkit is quiet unless -v is given. Passwords are never printed.

At most N runs: --max N
  With --max N, NAME is a semaphore of N permits, kept as N locks named
  NAME#0 to NAME#N-1. lockkit takes whichever of them is free and runs
  COMMAND under it, so at most N runs of NAME hold a permit at once, on
  every host that uses the backend. All of the above applies to that lock:
  waiting, --no-wait and --wait (all N held), signals, loss and the exit
  statuses. COMMAND also sees LOCKKIT_SLOT, and LOCKKIT_TOKEN is the token
  of the slot's lock: it increases per slot, not per NAME.
  A waiting run takes a permit as soon as one frees up; on postgres:// and
  mysql:// it waits on one slot and tries the others again at least once
  a second. On redis:// and etcd:// runs get permits in about the order
  they started waiting; elsewhere in no set order.
  Give every run of NAME the same N. On file://, redis:// and --table a run
  that meets a holder of another N is refused with exit 64 (the holders
  record N); PostgreSQL and MySQL advisory locks and etcd:// cannot tell,
  and runs of different N there admit more than the smaller N. A run with --max and
  one without do not exclude each other: they hold different locks (NAME#I
  and NAME). That holds for --max 1 too: it is a semaphore of one permit,
  which excludes the other --max runs of NAME (and is refused beside a
  holder of another N, as above), not a plain run. Use one form per NAME.

Exit status:
  N     COMMAND's own exit status
  128+N COMMAND was killed by signal N
  75    the lock was not acquired: held, with --no-wait, or --wait elapsed
        (see --conflict-exit-code)
  70    the lock was lost while COMMAND ran, and COMMAND was stopped; also
        when the loss is found only as COMMAND exits (releasing finds the
        lock gone), since COMMAND may have run without it
  69    the backend could not be reached, or it failed
  64    usage error; also a --max N run that met a holder of another N
  126   COMMAND could not be executed
  127   COMMAND was not found

Environment:
  LOCKKIT_BACKEND  the backend URL when --backend is not given; keeps a
                   password out of the process list
  LOCKKIT_NAME     set for COMMAND: the lock's name
  LOCKKIT_TOKEN    set for COMMAND when the backend gives a fencing token
                   (--table, redis://, etcd://): it increases with every
                   new holder, so a resource can reject writes from an earlier holder
                   (with --max, every new holder of the same slot)
  LOCKKIT_SLOT     set for COMMAND with --max: its permit's slot, 0 to N-1

Examples:
  Run the nightly job at most once at a time on this host:
    lockkit run nightly -- ./nightly.sh

  From cron on several hosts, skipping a run while another host has it:
    LOCKKIT_BACKEND=postgres://cron@db.internal/app
    */5 * * * * lockkit run -n report -- ./report.sh

  Wait up to two minutes, with a renewed 30-second Redis lease:
    lockkit run -b redis://cache:6379/0 --ttl 30s -w 2m deploy -- make deploy

  At most 3 exports at once across the fleet, each waiting its turn:
    lockkit run -b redis://cache:6379/0 --max 3 export -- ./export.sh
`

const statusUsage = `Usage: lockkit status [flags] [NAME...]

List the locks that are held, with their holder and since when. With
NAMEs, list only those (and say which of them are free).

What each backend can show:
  file:///DIR   the locked files in DIR, with the holder's pid, host and
                start time as lockkit recorded them
  postgres://   advisory locks from pg_locks with the holding session's
                user, application, client address, pid and since when;
                keys of known schemes (lockkit names given as NAME,
                the lock of lockkit run NAME and its --max slots NAME#I,
                golang-migrate, goose) are named
  mysql://      user locks from performance_schema.metadata_locks where
                it is enabled; else only the given NAMEs (IS_USED_LOCK);
                the server records no "since" for a user lock
  redis://      lockkit's lock keys, with their lease expiry and token
  etcd://       the holders under PREFIX, with their lease expiry and token
  --table       the lock table's rows: owner, since, expires and token

Flags:
  -b, --backend URL  where the locks live (default: $LOCKKIT_BACKEND, else
                     the per-user file lock directory)
      --table        list the lock table instead of advisory locks
      --json         print one JSON array of locks instead of a table; its
                     "pid" is the database session on postgres:// and
                     mysql://, the holder's process id elsewhere
      --max N        the NAMEs are semaphores of N permits (lockkit run
                     --max N): list the holders of their permits, and say
                     how many are held and free; with --json, an array of
                     {"name", "permits", "free", "holders": [locks]}
      --watch        keep watching and report every change (see below)
      --interval D   how often --watch lists the locks (default 250ms,
                     at least 10ms)
  -h, --help         show this help

Watching: --watch
  lockkit status --watch [NAME...] lists the locks (or NAMEs, or with
  --max N the permits of the semaphores NAME) every --interval and
  reports each change: a lock acquired, released, or taken over (its
  holder replaced by another between two listings, such as a lease that
  ran out and was taken). A change is seen within one interval plus one
  listing's round trip; a holding that begins and ends between two
  listings is not seen. No backend pushes changes to lockkit, so every
  backend is polled: each listing is one query on the server (pg_locks,
  metadata_locks, the lock table, a Redis SCAN or read, an etcd range),
  or on file:// an instant's non-blocking flock of each lock file, which
  may make a 'lockkit run -n' elsewhere at that very instant fail.
  On a terminal the view is redrawn in place (the screen cleared) on
  every change: who holds each lock, since when, TOKEN/TERM and
  DATA/VALUE, with --max how many permits are held and free, and the
  latest changes. Off a terminal it prints the locks held at the start,
  then one line per change:
    2026-01-02T10:02:11.250+01:00 acquired nightly by alice (pid 4121), token 17
    2026-01-02T10:02:14.500+01:00 released nightly, held by alice (pid 4121), token 17
    2026-01-02T10:02:15.000+01:00 takeover nightly by bob (pid 5), token 18, from alice (pid 4121), token 17
  ("held" and "free" lines give the state at the start). With --json, one
  JSON object per line and change: {"time", "event" (held, free,
  acquired, released, takeover), "name", "holder", "previous"}, holder
  and previous being rows of --json above; with --max also "semaphore",
  "slot", "permits" and "free". SIGINT or SIGTERM ends it with status 0;
  a failed listing ends it with 69.

Leaders
  The leader of an election (package election) is the holder of the lock
  named as the election: 'lockkit status NAME' shows who leads it, its
  term is the holder's TOKEN and its value the holder's data (the
  [bracketed] part of HOLDER; "data" in --json). The TOKEN column shows
  on redis://, etcd://, --table, and on file:// when a holder has one
  (an election's lock file); PostgreSQL and MySQL advisory locks carry
  no token, so no election runs on them.

Exit status:
  0   the listing was printed (also when no lock is held); --watch
      was stopped by SIGINT or SIGTERM
  1   NAMEs were given and at least one of them is not held (with --max:
      has no permit held)
  69  the backend could not be reached, or it failed
  64  usage error

Examples:
  lockkit status
  lockkit status -b postgres://postgres@db/app nightly
  lockkit status -b redis://cache:6379/0 --max 3 export
  lockkit status -b mysql://app:secret@db:3306/app --table --json
  lockkit status -b redis://cache:6379/0 --watch scheduler
  lockkit status --watch --json >> locks.log
`

const migrateUsage = `Usage: lockkit migrate [flags] up|down|version

Run the bundled migrations of the lock table that lockkit run --table and
the rowlock package use.

  up       create the lock table, or bring it to the newest version
  down     drop the lock table (every lock held in it is lost)
  version  print the table's migration version, and whether it is dirty

Flags:
  -b, --backend URL  a postgres:// or mysql:// database (default:
                     $LOCKKIT_BACKEND)
  -h, --help         show this help

Exit status:
  0   done
  69  the database could not be reached, or a migration failed
  64  usage error

Examples:
  lockkit migrate -b postgres://postgres@db/app up
  LOCKKIT_BACKEND=mysql://root@db:3306/app lockkit migrate version
`

const doctorUsage = `Usage: lockkit doctor [flags]

Check what works on a backend, and why, before relying on it: a checklist
of what the backend promises and whether it holds here. doctor takes
locks of its own (named lockkit.doctor.*) and releases them; it creates
nothing else (not the lock table, not the lock directory).

What it checks:
  postgres://  the server's kind and version; a pooler or proxy in between,
               and whether it shares server sessions between connections
               (transaction pooling, where session locks are refused);
               session locks, by a real two-session probe; transaction-
               scoped locks; the lock table's migration version; whether
               NOTIFY reaches a listener; the clock offset; max_connections
               headroom for --locks held locks
  mysql://     the server's kind and version; Galera and Group Replication;
               user locks (GET_LOCK) by a two-session probe; the lock
               table; the clock offset; max_connections headroom
  redis://     the server's version and mode; replica or primary;
               persistence (AOF, RDB); locks by a two-client probe; the
               clock offset; clients
  file:///DIR  the directory, its file system (a network file system is
               refused unless ?allow_network_fs=1) and permissions; locks
               by a probe on two open file descriptions

Flags:
  -b, --backend URL  the backend to check (default: $LOCKKIT_BACKEND, else
                     the per-user file lock directory)
      --json         print the checklist as one JSON object
      --locks N      how many session locks will be held at once, for the
                     connection headroom (default 10)
  -h, --help         show this help

Each line is ok, info, warn or fail. Passwords are never printed.

Exit status:
  0   everything the backend promises holds (ok and info only)
  1   something is degraded or warned (a warn or fail line)
  69  the backend could not be reached
  64  usage error

Examples:
  lockkit doctor
  lockkit doctor -b postgres://app@pgbouncer:6432/app
  LOCKKIT_BACKEND=redis://cache:6379/0 lockkit doctor --json
`

const versionUsage = `Usage: lockkit version

Print lockkit's version and the Go version it was built with.
`

const helpUsage = `Usage: lockkit help [COMMAND]

Show lockkit's help, or the help of COMMAND.
`
