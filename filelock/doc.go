// Package filelock is the lockkit backend for processes on one host: a lock
// is a flock(2) on a file in a lock directory. It needs no server, which
// makes it the lockkit CLI's zero-setup default.
//
// # Using it
//
//	l, err := filelock.New(dir, nil) // or filelock.DefaultDir()
//	...
//	defer l.Close()
//	err = lockkit.Do(ctx, l, "nightly-backup", func(ctx context.Context) error {
//		return backup(ctx)
//	})
//
// [Locker] implements lockkit.Locker (exclusive locks); [Locker.Lock]
// and [Locker.TryLock] also take [Shared] locks, which coexist with
// each other and exclude [Exclusive] ones.
//
// # Names and files
//
// A lock name maps to one file in the lock directory, never outside it; see
// [FileName]. Plain names ("nightly-backup", "db.migrate_v2") map to
// NAME.lock, so shell scripts can take the same locks with util-linux
// flock(1): flock DIR/NAME.lock CMD. Other names are encoded with a hash.
//
// Lock files are opened relative to a descriptor of the directory that New
// opened, with O_NOFOLLOW: a symbolic link planted at a lock path is refused
// with [ErrUnsafe] and its target is never opened, and so is anything that is
// not a regular file or has more than one hard link. New refuses a
// directory anyone may write to unless it has the sticky bit. New creates a
// missing directory with mode 0700 and lock files with mode 0644 (see
// [Config] to change them).
//
// # Lock files are never deleted
//
// lockkit never removes a lock file on release. Removing one is unsafe: a
// process that has opened the file but not yet locked it would then lock a
// file that is no longer in the directory, while a third process creates and
// locks a new file under the same name, and both hold "the" lock. The files
// are small and one per name, so leaving them is cheap.
//
// Should anything remove or replace a lock file anyway, acquiring still
// works: after locking, lockkit checks that the path still names the file it
// locked, and starts over on the new file otherwise. A holder whose file
// disappears is told so when it asks: [Lock.Check], and with
// Config.CheckInterval the periodic check and Release, report the lock lost
// with cause [ErrFileRemoved]. [Locker.Clean] removes lock files nobody holds, safely
// for lockkit processes because of that check (but not for util-linux
// flock(1) sharing the directory, which does not check).
//
// # Holder records
//
// An exclusive holder writes one JSON line over the start of its lock file
// after locking —
//
//	{"pid":4121,"host":"web-3","owner":"alice","app":"backup","since":"2026-01-02T10:02:11.123456789Z","name":"nightly"}
//
// — and on release overwrites its opening '{', which marks it cleared, so
// that a conflict (a *lockkit.HeldError), [Locker.Inspect] and
// [Locker.List] can say who holds a lock. The file is never truncated (a
// truncation costs ten times the write); readers take the first JSON value
// and ignore what follows. Shared holders write no record and clear a stale
// one. A record can be missing (shared holders; a holder that could open the
// file read-only only) or, after a holder was killed, stale until the next
// holder overwrites it; readers treat it as a hint and tolerate one caught
// half-written.
//
// # Waiting
//
// A blocked flock(2) cannot be cancelled from Go, so [Locker.Acquire] polls:
// non-blocking attempts with exponential backoff and jitter, from
// Config.PollMin (500µs) up to Config.PollMax (50ms), bounded by its
// context. On Linux a waiter is also woken by inotify when the lock file is
// closed anywhere — a holder releasing (lockkit releases by closing) or a
// holder process exiting or being killed — and retries at once
// (bench/RESULTS.md has the measured hand-over latency). Where inotify is not
// available (other systems, or fs.inotify.max_user_instances reached), or
// a holder unlocks without closing, a released lock is taken up to one
// polling interval later.
//
// Within one Locker, the acquires of a name take turns, first come first
// served: only the first of them opens the lock file and waits on it, the
// others queue in the process, and a Release hands the turn straight to the
// next one, which then takes the flock itself (on a descriptor of its own).
// When the releasing lock and the next in line are both exclusive, the
// Release hands over the lock itself: its open file description, still
// flocked, becomes the next Lock's, which only writes its holder record
// over the old one (one system call for the release and the acquire
// together, instead of seven). A chain of such hand-overs ends 1 ms after
// its first, with a real release, so that other Lockers and processes
// get a chance at the lock in between.
// A holder that releases and at once acquires again goes behind the
// acquires already queued; shared acquires share a turn, but do not pass a
// queued exclusive one. The next in line watches for its turn for up to
// 50µs, yielding the processor, before it sleeps: a quick succession of
// holders passes the lock without waking sleeping goroutines. Across
// Lockers and processes, waiting is not fair: a newcomer may win over a
// waiter that has waited long, and a Locker whose goroutines queue for a
// name keeps it for up to 1 ms of hand-overs at a time. Turns only order
// attempts; the flock still decides who holds the lock.
//
// # Loss
//
// A flock lives as long as its open file description. Nothing outside the
// holding process can take it away, and the kernel frees it the moment the
// process exits or is killed, even by SIGKILL. flock has no fencing token
// of its own: [Lock.Token] is 0 unless Config.Fencing is set.
//
// # Fencing tokens
//
// With Config.Fencing, every exclusive lock gets a fencing token, strictly
// increasing per name, so that a package such as election can use file
// locks. The holder keeps it in its lock file, first in the holder record —
//
//	{"token":1767348131123456,"pid":4121,"host":"web-3",...}
//
// — and the next exclusive holder, while it holds the flock, reads it back
// (the first 32 bytes of the file, whether the record was cleared or not)
// and takes the larger of that token plus one and the system clock in
// microseconds. The counter keeps tokens increasing when the clock is set
// back; the clock keeps them increasing when the counter is lost: the file
// removed (by [Locker.Clean], or by hand), or its record overwritten by a
// holder without fencing (this package without Fencing, or the lockkit
// CLI). Only both at once can repeat a token. Shared locks get no token
// (0), and keep the counter. The cost is that read: about 1µs on an
// exclusive acquire measured here (13.5µs → 14.4µs for a try and a
// release). Nothing is synced to disk, so after a machine crash the counter
// may be older than the last token handed out, and the clock, which has
// moved on since, takes over. An exclusive acquire that may only read the
// lock file (another user's file) fails with lockkit.ErrUnsupported rather
// than hand out no token.
//
// # Platforms
//
// Linux, macOS and the BSDs. On NFS, flock is emulated with byte-range
// locks (Linux) or not supported at all; keep lock directories on local
// file systems.
package filelock
