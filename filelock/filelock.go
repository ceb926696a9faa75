//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/backoff"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/internal/telemetry"
	"golang.org/x/sys/unix"
)

// Mode says whether a lock excludes every other holder or only exclusive
// ones: [lockkit.Mode].
type Mode = lockkit.Mode

const (
	// Exclusive excludes every other holder, shared or exclusive. It is
	// the mode of Acquire and TryAcquire.
	Exclusive = lockkit.Exclusive
	// Shared coexists with other shared holders and excludes exclusive
	// ones (readers and a writer).
	Shared = lockkit.Shared
)

// Defaults for a nil or zero [Config].
const (
	DefaultFileMode os.FileMode = 0o644
	DefaultDirMode  os.FileMode = 0o700
	DefaultPollMin              = 500 * time.Microsecond
	DefaultPollMax              = 50 * time.Millisecond
)

// Errors of this package. Bad arguments get errors matching
// lockkit.ErrInvalid instead.
var (
	// ErrUnsafe means a lock directory or lock file is not what a lock
	// may safely use: a directory anyone may write to without the sticky
	// bit, a lock path that is a symbolic link, a file that is not a
	// regular file, or a file with more than one hard link. Nothing is
	// locked, read or written through such a path.
	ErrUnsafe = errors.New("filelock: unsafe lock path")

	// ErrFileRemoved is the cause of a loss when the lock file was removed
	// or replaced by another file while the lock was held (an "rm -rf" of
	// the lock directory, a cleaner). The flock itself was still held, but
	// on a file nobody else opens any more: a new process would create a
	// new file and lock that, so the exclusion was broken.
	ErrFileRemoved = errors.New("filelock: lock file was removed or replaced while held")

	// ErrClosed is returned by a Locker after Close.
	ErrClosed = errors.New("filelock: locker closed")
)

// Config tunes a [Locker]. A nil *Config, and every zero field, means the
// default.
type Config struct {
	// FileMode is the permission of lock files the Locker creates,
	// narrowed by the process umask. Default 0o644: others may lock
	// (flock needs only a read-only descriptor) but not write holder
	// records. In a directory shared by a group, use 0o664. Only
	// permission bits are allowed, and the owner must be able to read.
	FileMode os.FileMode

	// DirMode is the permission of the lock directory and its parents
	// when New creates them, narrowed by the umask. Default 0o700. An
	// existing directory is used as it is.
	DirMode os.FileMode

	// Owner, App and Data are written into the holder record of every
	// exclusive lock, so that a conflict (a *lockkit.HeldError) and
	// [Locker.Inspect] can name the holder. Owner defaults to the user
	// name, App to the program name (the base of os.Args[0]).
	Owner string
	App   string
	Data  string

	// PollMin and PollMax bound the wait between attempts while Acquire
	// waits: the first retry comes after about PollMin, and the interval
	// doubles, with jitter, up to PollMax. Defaults 500µs and 50ms.
	PollMin time.Duration
	PollMax time.Duration

	// CheckInterval, when positive, makes every held lock check on this
	// interval, and once more in Release, that its path still names the
	// locked file, and report the lock lost (Done closes, Err wraps
	// [ErrFileRemoved]) when it does not. Zero means no loss checks but
	// explicit ones ([Lock.Check]): a Release then costs two system calls
	// (the record's clearing and the close) instead of three.
	CheckInterval time.Duration

	// Fencing gives every exclusive lock a fencing token ([Lock.Token]),
	// strictly increasing per name: the larger of the previous token kept
	// in the lock file plus one, and the system clock in microseconds.
	// It costs a read of the file's first 32 bytes per exclusive acquire.
	// An exclusive acquire that may only read the lock file fails with an
	// error matching lockkit.ErrUnsupported rather than hand out no token.
	// See the package documentation, Fencing tokens.
	Fencing bool
	// Telemetry says where the Locker's metrics, spans and logs go; nil
	// means OpenTelemetry's global providers and no logs. See
	// [lockkit.Telemetry].
	Telemetry *lockkit.Telemetry
	// AllowNetworkFS lets the lock directory be on a network file system
	// (NFS, SMB/CIFS, Ceph, AFS, 9P, Lustre, GPFS; see [FileSystem]), which
	// New refuses by default with [ErrNetworkFS]. What is lost there: flock
	// is emulated (on Linux NFS by byte-range locks the server keeps, or
	// with local_lock=flock or nolock by locks only this machine sees),
	// exclusion between machines depends on the server and the mount, and
	// a lock can silently disappear when the client or server restarts or
	// the server's lease on it expires; a held lock is not told.
	AllowNetworkFS bool
}

// Locker takes flock(2) locks on files in one directory. It implements
// lockkit.Locker. It is safe for concurrent use; each lock it holds has an
// open file description of its own (a Release may hand its description,
// still flocked, to the next exclusive acquire of the name queued in the
// Locker; see the package documentation), so two handles exclude each
// other even inside one process. Its acquires of one name take turns in FIFO
// order (see [Locker.Lock]), so goroutines that share a Locker share
// a contended lock fairly.
//
// A Locker keeps a descriptor of its directory open, and opens lock files
// relative to it: renaming or replacing the directory path after New does
// not redirect its locks. Close it when done.
type Locker struct {
	dir    string
	dirfd  int
	cfg    Config
	prefix []byte // holder record up to "since"
	host   string // the host in holder records

	mu     sync.Mutex
	refs   int // 1 while open, plus one per lock and per acquire in flight
	closed bool
	idle   []*notifier // for reuse by waiters

	turns turnSet // by lock file; see turn.go
	tel   *telemetry.Recorder
}

var _ lockkit.Locker = (*Locker)(nil)

// unsafeMode says whether a directory of this mode is one every user may
// write to without the sticky bit, which New refuses.
func unsafeMode(mode uint32) bool { return mode&0o002 != 0 && mode&unix.S_ISVTX == 0 }

// ErrNoAccess means this process cannot create files in a lock directory.
var ErrNoAccess = errors.New("filelock: this user cannot create lock files in the directory")

// CheckDir checks an existing lock directory as New does, without creating
// or opening anything in it: it returns an error matching [ErrUnsafe] for a
// directory every user may write to that lacks the sticky bit, and one
// matching [ErrNoAccess] for a directory this process cannot create lock
// files in. It does not check the file system (see [FileSystem]).
func CheckDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("filelock: lock directory %q: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		return fmt.Errorf("filelock: stat lock directory %s: %w", abs, err)
	}
	if unsafeMode(uint32(st.Mode)) {
		return fmt.Errorf("%w: lock directory %s is writable by every user and has no sticky bit", ErrUnsafe, abs)
	}
	if err := unix.Access(abs, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("%w %s: %w", ErrNoAccess, abs, err)
	}
	return nil
}

// New returns a Locker on the lock directory dir, creating it (and its
// parents) with cfg.DirMode when it does not exist. A relative dir is made
// absolute against the working directory.
//
// New refuses, with an error matching [ErrUnsafe], a directory that every
// user may write to but that lacks the sticky bit (in such a directory
// anyone could delete or replace lock files). A directory shared with other
// users should be group-writable with the setgid bit, or like /tmp
// world-writable with the sticky bit.
func New(dir string, cfg *Config) (*Locker, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if dir == "" {
		return nil, invalid.Errorf("filelock: empty lock directory")
	}
	if strings.IndexByte(dir, 0) >= 0 {
		return nil, invalid.Errorf("filelock: lock directory %q contains a NUL byte", dir)
	}
	c.FileMode = cmp.Or(c.FileMode, DefaultFileMode)
	c.DirMode = cmp.Or(c.DirMode, DefaultDirMode)
	c.PollMin = cmp.Or(c.PollMin, DefaultPollMin)
	c.PollMax = cmp.Or(c.PollMax, DefaultPollMax)
	switch {
	case c.FileMode&^os.ModePerm != 0:
		return nil, invalid.Errorf("filelock: FileMode %v has bits other than permissions", c.FileMode)
	case c.FileMode&0o400 == 0:
		return nil, invalid.Errorf("filelock: FileMode %v does not let the owner read", c.FileMode)
	case c.DirMode&^os.ModePerm != 0:
		return nil, invalid.Errorf("filelock: DirMode %v has bits other than permissions", c.DirMode)
	case c.DirMode&0o700 != 0o700:
		return nil, invalid.Errorf("filelock: DirMode %v does not give the owner rwx", c.DirMode)
	case c.PollMin < 0 || c.PollMax < c.PollMin:
		return nil, invalid.Errorf("filelock: need 0 < PollMin <= PollMax, have %v and %v", c.PollMin, c.PollMax)
	case len(c.Owner)+len(c.App)+len(c.Data) > maxRecordMeta:
		return nil, invalid.Errorf("filelock: Owner, App and Data are %d bytes together, more than %d", len(c.Owner)+len(c.App)+len(c.Data), maxRecordMeta)
	case c.CheckInterval < 0:
		return nil, invalid.Errorf("filelock: negative CheckInterval %v", c.CheckInterval)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("filelock: lock directory %q: %w", dir, err)
	}
	if c.Owner == "" {
		if u, err := user.Current(); err == nil {
			c.Owner = u.Username
		} else {
			c.Owner = "uid " + strconv.Itoa(os.Getuid())
		}
	}
	if c.App == "" && len(os.Args) > 0 {
		c.App = filepath.Base(os.Args[0])
	}
	host, _ := os.Hostname()

	if err := os.MkdirAll(abs, c.DirMode); err != nil {
		return nil, fmt.Errorf("filelock: create lock directory: %w", err)
	}
	dirfd, err := openRetry(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("filelock: open lock directory %s: %w", abs, err)
	}
	var st unix.Stat_t
	if err := fstat(dirfd, &st); err != nil {
		unix.Close(dirfd)
		return nil, fmt.Errorf("filelock: stat lock directory %s: %w", abs, err)
	}
	if unsafeMode(uint32(st.Mode)) {
		unix.Close(dirfd)
		return nil, fmt.Errorf("%w: lock directory %s is writable by every user and has no sticky bit", ErrUnsafe, abs)
	}
	if !c.AllowNetworkFS {
		fstype, network, err := dirFileSystem(dirfd)
		if err != nil {
			unix.Close(dirfd)
			return nil, fmt.Errorf("filelock: statfs lock directory %s: %w", abs, err)
		}
		if network {
			unix.Close(dirfd)
			return nil, &networkFSError{dir: abs, fstype: fstype}
		}
	}
	return &Locker{
		dir:    abs,
		dirfd:  dirfd,
		cfg:    c,
		prefix: recordPrefix(os.Getpid(), host, c.Owner, c.App, c.Data),
		host:   host,
		refs:   1,
		turns:  newTurnSet(),
		tel:    telemetry.New(c.Telemetry, telemetry.Backend{Name: "filelock", Reason: lossReason}),
	}, nil
}

// DefaultDir returns the per-user lock directory the lockkit CLI uses when
// none is given: os.UserCacheDir()/lockkit/locks (on Linux
// $XDG_CACHE_HOME/lockkit/locks, else $HOME/.cache/lockkit/locks), or,
// where there is no such directory, $TMPDIR/lockkit-<uid> (usually
// /tmp/lockkit-1000). It does not create the directory; [New] does.
//
// $XDG_RUNTIME_DIR is deliberately not used: cron jobs and services usually
// run without it, so they would lock in a different directory from a login
// shell, and systemd removes it when the user's last session ends, lock
// files and all, even while a lock is held.
//
// Processes see each other's locks only when they use the same directory:
// different users, and services with a private /tmp, do not share this
// default; give them a common directory.
func DefaultDir() (string, error) {
	if d, err := os.UserCacheDir(); err == nil && filepath.IsAbs(d) {
		return filepath.Join(d, "lockkit", "locks"), nil
	}
	uid := os.Getuid()
	d := filepath.Join(os.TempDir(), "lockkit-"+strconv.Itoa(uid))
	var st unix.Stat_t
	switch err := unix.Lstat(d, &st); {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return "", fmt.Errorf("filelock: default lock directory %s: %w", d, err)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return "", fmt.Errorf("%w: default lock directory %s is not a directory", ErrUnsafe, d)
	case int(st.Uid) != uid:
		return "", fmt.Errorf("%w: default lock directory %s belongs to uid %d, not %d", ErrUnsafe, d, st.Uid, uid)
	}
	return d, nil
}

// Dir returns the lock directory, as an absolute path.
func (l *Locker) Dir() string { return l.dir }

// Path returns the path of the file that holds the lock called name; see
// [FileName] for the mapping.
func (l *Locker) Path(name string) (string, error) {
	f, err := FileName(name)
	if err != nil {
		return "", err
	}
	return filepath.Join(l.dir, f), nil
}

// Close closes the Locker's directory descriptor once every lock it handed
// out has been released. Locks still held stay held and valid; acquiring
// through a closed Locker returns [ErrClosed]. Close is idempotent.
func (l *Locker) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	for _, n := range l.idle {
		n.close()
	}
	l.idle = nil
	return l.unrefLocked()
}

func (l *Locker) ref() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.refs++
	return nil
}

func (l *Locker) unref() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.unrefLocked()
}

func (l *Locker) unrefLocked() error {
	l.refs--
	if l.refs == 0 {
		return unix.Close(l.dirfd)
	}
	return nil
}

// Acquire takes the named lock in exclusive mode, waiting until it is free
// or ctx ends; it is [Locker.Lock] with nil options, for the
// [lockkit.Locker] interface.
func (l *Locker) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := l.acquire(ctx, name, Exclusive, true, l.prefix)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// TryAcquire makes one attempt at the named lock in exclusive mode; it is
// [Locker.TryLock] with nil options, for the [lockkit.Locker] interface.
func (l *Locker) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := l.acquire(ctx, name, Exclusive, false, l.prefix)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// Options tune one acquire. A nil *Options means the defaults: an
// exclusive lock.
type Options struct {
	// Mode is Exclusive (the zero value) or Shared.
	Mode Mode
}

func (o *Options) mode() Mode {
	if o == nil {
		return Exclusive
	}
	return o.Mode
}

// Lock takes the named lock, waiting until it is free or ctx ends. opts
// may be nil: an exclusive lock.
//
// flock(2) has a blocking wait, but a thread blocked in it cannot be
// interrupted safely from Go, so Acquire polls instead: it tries without
// blocking, and between attempts sleeps about Config.PollMin at first,
// doubling with jitter up to Config.PollMax. On Linux it also watches the
// lock file with inotify and retries as soon as anyone closes it, which is
// when a holder releases or dies; without that wake-up a released lock is
// taken up to one interval later.
//
// The acquires of a name in one Locker take turns in the order they came:
// while one of them holds the lock or waits on it, the others queue in the
// process, without touching the lock file, and each Release hands the turn
// to the next (see the package documentation). Shared acquires share a
// turn, behind any exclusive one queued before them. Between Lockers and
// processes, a waiter that just started may win over one that has waited
// long: that waiting is not fair.
//
// When ctx ends first the error is a *lockkit.HeldError matching both
// lockkit.ErrNotAcquired and ctx.Err(), and nothing is held (a turn handed
// to an acquire as its ctx ends is handed on).
func (l *Locker) Lock(ctx context.Context, name string, opts *Options) (*Lock, error) {
	return l.acquire(ctx, name, opts.mode(), true, l.prefix)
}

// TryLock makes one attempt at the named lock and returns at once. opts
// may be nil: an exclusive lock. When the lock is held elsewhere in a conflicting mode the
// error is a *lockkit.HeldError naming the holder, as far as the lock file
// tells (see [Locker.Inspect]).
//
// It does not jump the queue of this Locker's acquires of the name (see
// [Locker.Lock]): while one of them holds the name's turn in a
// conflicting mode, or any is queued for it, TryLock fails at once
// with a HeldError without trying the flock. That includes the moment
// between a Release and the next queued acquire's flock, when the lock file
// is briefly unlocked.
func (l *Locker) TryLock(ctx context.Context, name string, opts *Options) (*Lock, error) {
	return l.acquire(ctx, name, opts.mode(), false, l.prefix)
}

// notifyEnabled turns the wake-up of waiters on; benchmarks turn it off to
// measure polling alone.
var notifyEnabled = true

// wakeRetry bounds the wait after a close event whose retry found the lock
// still held. close(2) queues the inotify event just before the kernel
// drops the closer's flock, so a waiter that runs at once can be that
// moment early; it looks again this soon instead of a full poll interval.
const wakeRetry = 50 * time.Microsecond

// maxIdleNotifiers bounds the notifiers a Locker keeps for reuse.
const maxIdleNotifiers = 8

// getNotifier returns a notifier watching the file open as fd, reusing an
// idle one; nil when there is none to be had.
func (l *Locker) getNotifier(fd int, path string) *notifier {
	if !notifyEnabled {
		return nil
	}
	var n *notifier
	l.mu.Lock()
	if k := len(l.idle); k > 0 {
		n = l.idle[k-1]
		l.idle = l.idle[:k-1]
	}
	l.mu.Unlock()
	if n == nil {
		if n = newNotifier(); n == nil {
			return nil
		}
	}
	if !n.arm(fd, path) {
		l.putNotifier(n)
		return nil
	}
	return n
}

// putNotifier keeps n for reuse, still watching its last file (its events
// are drained when it is armed again), or closes it.
func (l *Locker) putNotifier(n *notifier) {
	l.mu.Lock()
	if !l.closed && len(l.idle) < maxIdleNotifiers {
		l.idle = append(l.idle, n)
		n = nil
	}
	l.mu.Unlock()
	if n != nil {
		n.close()
	}
}

// notAcquired is the error of an acquire that ended by its context.
func notAcquired(name string, err error) error {
	return &lockkit.HeldError{Name: name, Cause: err}
}

// lossReason is the telemetry reason of a loss.
func lossReason(cause error, _ bool) telemetry.Reason {
	if errors.Is(cause, ErrFileRemoved) {
		return telemetry.FileRemoved
	}
	return telemetry.Other
}

// acquire takes the lock; an exclusive holder writes its record with
// prefix (see recordPrefix).
func (l *Locker) acquire(ctx context.Context, name string, mode Mode, wait bool, prefix []byte) (*Lock, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if mode != Exclusive && mode != Shared {
		return nil, invalid.Errorf("filelock: unknown lock mode %d", int(mode))
	}
	ctx, op := l.tel.StartAcquire(ctx, name, wait)
	lk, err := l.acquireChecked(ctx, name, mode, wait, prefix)
	if hold := op.End(ctx, err); lk != nil {
		lk.state.Observe(hold)
	}
	return lk, err
}

// acquireChecked is acquire after the arguments were checked.
func (l *Locker) acquireChecked(ctx context.Context, name string, mode Mode, wait bool, prefix []byte) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, notAcquired(name, err)
	}
	if err := l.ref(); err != nil {
		return nil, err
	}
	file := fileName(name)
	how := unix.LOCK_EX
	if mode == Shared {
		how = unix.LOCK_SH
	}

	var (
		f         = lockFile{fd: -1}
		pause     = l.cfg.PollMin
		timer     *time.Timer
		n         *notifier
		notified  bool // a notifier was tried for this fd
		afterWake bool // this attempt follows a close event
	)
	closeFile := func() {
		if n != nil {
			l.putNotifier(n)
			n = nil
		}
		notified = false
		if f.fd >= 0 {
			unix.Close(f.fd)
			f.fd = -1
		}
	}

	// Take this Locker's turn for the name first (see turn.go): behind
	// the acquires of the name already queued here, and never while a
	// Lock of this Locker holds it in a conflicting mode.
	t, ok, err := l.takeTurn(ctx, file, mode, wait)
	if !ok {
		l.unref()
		return nil, &lockkit.HeldError{Name: name, Holder: l.peekHolder(file), Cause: err}
	}

	fail := func(err error) (*Lock, error) {
		closeFile()
		if timer != nil {
			timer.Stop()
		}
		l.passTurn(file, t)
		l.unref()
		return nil, err
	}
	// A Release of this Locker may have left the lock to us, still
	// flocked (see parked): then there is nothing to open or lock.
	handed, chain := false, time.Time{}
	var dev, ino uint64
	if p, ok := l.takeParked(t); ok {
		if mode == Exclusive {
			handed, chain = true, p.chain
			f = lockFile{fd: p.fd, writable: p.writable}
			dev, ino = p.dev, p.ino
		} else {
			unix.Close(p.fd)
		}
	}
	for !handed {
		if f.fd < 0 {
			var err error
			if f, err = l.open(file); err != nil {
				f.fd = -1
				return fail(err)
			}
		}
		err := flock(f.fd, how|unix.LOCK_NB)
		if err == nil {
			// The path may have been unlinked or replaced between
			// open and flock; then the lock is on a file nobody
			// else will open. Start again on the path's file.
			same, err := l.sameFile(file, &f.st)
			if err != nil {
				return fail(fmt.Errorf("filelock: stat %s: %w", file, err))
			}
			if !same {
				closeFile()
				if err := ctx.Err(); err != nil {
					return fail(notAcquired(name, err))
				}
				continue
			}
			break
		}
		if err != unix.EWOULDBLOCK {
			return fail(fmt.Errorf("filelock: flock %s: %w", file, err))
		}
		if !wait {
			return fail(&lockkit.HeldError{Name: name, Holder: readHolder(f.fd)})
		}
		if !notified {
			// Arm the wake-up, then try once more: the holder may
			// have closed the file before the watch was in place.
			notified = true
			if n = l.getNotifier(f.fd, filepath.Join(l.dir, file)); n != nil {
				continue
			}
		}
		d := backoff.Jitter(pause)
		pause = min(pause*2, l.cfg.PollMax)
		if afterWake {
			// The retry after a close event lost: the event may have
			// come a moment before the closer's flock was dropped.
			afterWake = false
			d = min(d, wakeRetry)
		}
		if n != nil {
			woken, err := n.wait(ctx, d)
			if err != nil {
				return fail(&lockkit.HeldError{Name: name, Holder: readHolder(f.fd), Cause: err})
			}
			if woken {
				// Something closed the file: likely a release. If
				// the retry loses, poll fast again for a while.
				pause = l.cfg.PollMin
				afterWake = true
				// Or the file was removed or replaced: wait on the
				// path's new file, not behind the old one's holder.
				if same, err := l.sameFile(file, &f.st); err == nil && !same {
					closeFile()
				}
			}
			continue
		}
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return fail(&lockkit.HeldError{Name: name, Holder: readHolder(f.fd), Cause: ctx.Err()})
		case <-timer.C:
		}
	}
	if timer != nil {
		timer.Stop()
	}
	if n != nil {
		l.putNotifier(n)
		n = nil
	}

	if !handed {
		dev, ino = uint64(f.st.Dev), uint64(f.st.Ino)
	}
	lk := &Lock{locker: l, fd: f.fd, file: file, mode: mode, writable: f.writable, dev: dev, ino: ino, turn: t, chain: chain}
	var token int64
	if l.cfg.Fencing && mode == Exclusive && !f.writable {
		return fail(fmt.Errorf("filelock: Config.Fencing keeps the token in the lock file, and this process may only read %s: %w", filepath.Join(l.dir, file), lockkit.ErrUnsupported))
	}
	if f.writable {
		var err error
		switch mode {
		case Exclusive:
			if l.cfg.Fencing {
				token = nextToken(lastToken(f.fd), time.Now())
			}
			err = writeRecord(f.fd, prefix, name, token)
		case Shared:
			// Shared holders write no record; clear one left by an
			// exclusive holder that died without clearing it.
			if f.st.Size > 0 {
				err = clearRecord(f.fd)
			}
		}
		if err != nil {
			return fail(fmt.Errorf("filelock: write holder record to %s: %w", file, err))
		}
	}
	lk.start(name, token)
	return lk, nil
}

// lockFile is an open lock file and what fstat said about it.
type lockFile struct {
	fd       int
	writable bool
	st       unix.Stat_t
}

// open opens (creating when missing) the lock file relative to the
// directory descriptor, refusing symlinks and anything but a regular file
// with one link. It opens read-write where it may, else read-only (flock
// needs no more; the holder record is then not written).
func (l *Locker) open(file string) (lockFile, error) {
	const flags = unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	f := lockFile{fd: -1, writable: true}
	fd, err := openatRetry(l.dirfd, file, unix.O_RDWR|unix.O_CREAT|flags, uint32(l.cfg.FileMode))
	if err == unix.EACCES || err == unix.EPERM || err == unix.EROFS {
		// Not ours to write (or, in a sticky directory with
		// fs.protected_regular, not ours to O_CREAT): lock read-only.
		if fd2, err2 := openatRetry(l.dirfd, file, unix.O_RDONLY|flags, 0); err2 == nil {
			fd, err, f.writable = fd2, nil, false
		}
	}
	if err != nil {
		switch err {
		case unix.ELOOP, unix.EMLINK:
			return f, fmt.Errorf("%w: %s is a symbolic link", ErrUnsafe, filepath.Join(l.dir, file))
		case unix.EISDIR:
			return f, fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, filepath.Join(l.dir, file))
		}
		return f, fmt.Errorf("filelock: open %s: %w", filepath.Join(l.dir, file), err)
	}
	if err := fstat(fd, &f.st); err != nil {
		unix.Close(fd)
		return f, fmt.Errorf("filelock: stat %s: %w", filepath.Join(l.dir, file), err)
	}
	switch {
	case f.st.Mode&unix.S_IFMT != unix.S_IFREG:
		unix.Close(fd)
		return f, fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, filepath.Join(l.dir, file))
	case f.st.Nlink > 1:
		unix.Close(fd)
		return f, fmt.Errorf("%w: %s has %d hard links", ErrUnsafe, filepath.Join(l.dir, file), f.st.Nlink)
	}
	f.fd = fd
	return f, nil
}

// sameFile reports whether file in the lock directory is still the file st
// describes.
func (l *Locker) sameFile(file string, st *unix.Stat_t) (bool, error) {
	var now unix.Stat_t
	err := fstatat(l.dirfd, file, &now, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return now.Dev == st.Dev && now.Ino == st.Ino, nil
}

// writeRecord writes the holder record over the start of the file, with
// the fencing token first when it is not 0. The file is never truncated (on
// most file systems a truncation costs ten times the write): bytes an older,
// longer record left after it are ignored by readers, which read the first
// JSON value only.
func writeRecord(fd int, prefix []byte, name string, token int64) error {
	var buf [1024]byte
	rec := buf[:0]
	if token != 0 {
		rec = append(rec, `{"token":`...)
		rec = strconv.AppendInt(rec, token, 10)
		rec = append(rec, ',')
		prefix = prefix[1:] // without its '{'
	}
	rec = appendRecord(rec, prefix, time.Now(), name)
	_, err := pwriteFull(fd, rec)
	return err
}

// lastToken reads the fencing token kept in a lock file; see parseToken.
func lastToken(fd int) int64 {
	var buf [32]byte // '{', tokenKey and 19 digits fit
	n, err := unix.Pread(fd, buf[:], 0)
	if err != nil || n <= 0 {
		return 0
	}
	return parseToken(buf[:n])
}

// clearRecord marks the record in the file as cleared by overwriting its
// opening '{': readers take content that does not start with '{' for no
// record.
func clearRecord(fd int) error {
	_, err := pwriteFull(fd, []byte{' '})
	return err
}

// peekHolder reads the holder record of file without creating or locking
// it: for a conflict found without looking at the file (another acquire of
// this Locker has the name's turn). nil when there is none it can read.
func (l *Locker) peekHolder(file string) *lockkit.Holder {
	fd, err := openatRetry(l.dirfd, file, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	return readHolder(fd)
}

// readHolder reads the holder record from an open lock file; nil when there
// is none it can read.
func readHolder(fd int) *lockkit.Holder {
	h, _ := readHolderName(fd)
	return h
}

// readHolderName is readHolder that also returns the lock name in the
// record.
func readHolderName(fd int) (*lockkit.Holder, string) {
	buf := make([]byte, maxHolderInfo)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil || n <= 0 {
		return nil, ""
	}
	return parseHolder(buf[:n])
}
