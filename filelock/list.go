//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lockkit/lockkit"
	"golang.org/x/sys/unix"
)

var _ lockkit.Lister = (*Locker)(nil)

// Status is what [Locker.Inspect] found out about a lock.
type Status struct {
	// Name is the name Inspect was given.
	Name string
	// Path is the lock file.
	Path string
	// Held reports that some process held the lock when Inspect looked.
	Held bool
	// Mode is the mode it was held in, when Held: Shared when only
	// shared holders held it.
	Mode Mode
	// Holder is the holder record in the file, when an exclusive holder
	// wrote one; nil otherwise. Shared holders, and holders that could
	// open the file read-only only, write none.
	Holder *lockkit.Holder
}

// Inspect reports whether the named lock is held, in which mode and by
// whom, for a status display; [Locker.List] with the name says the same as
// a [lockkit.LockInfo]. It does not create the lock file. To find out, it
// takes the lock for an instant with non-blocking flocks, so a TryLock
// elsewhere at that very instant may fail; the answer is stale as soon as
// it is returned.
func (l *Locker) Inspect(ctx context.Context, name string) (Status, error) {
	if err := checkName(name); err != nil {
		return Status{}, err
	}
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	if err := l.ref(); err != nil {
		return Status{}, err
	}
	defer l.unref()
	s, _, err := l.inspect(fileName(name))
	s.Name = name
	return s, err
}

// List implements [lockkit.Lister] from the lock directory: the locks any
// process holds there, lockkit or another flock(2) user. It never creates
// a file. To tell whether a lock is held it takes it for an instant with
// non-blocking flocks, exclusive and then, when that fails, shared, so a
// TryLock elsewhere at that very instant may fail; the answer is stale as
// soon as it is returned.
//
// Without names it returns the held lock files, ordered by name: a plain
// file name gives the lock's name; for an encoded one the name comes from
// the holder record, when an exclusive holder wrote one whose name maps
// back to the file, and is otherwise "(" + the file's base name + ")".
// Files that are not lock files (another suffix, symbolic links, not
// regular) are skipped. With names it returns an entry per name in the
// order given, Held false for a name nobody holds or that has no lock
// file.
//
// Key is the lock file's path. Mode is Shared when only shared holders
// hold the lock; there is then one entry however many they are, and no
// Holder, since shared holders write no record. Holder is the exclusive
// holder's record (pid, host, owner, app, data, since), a hint: see the
// package documentation on holder records. A bad name returns an error
// matching lockkit.ErrInvalid before any I/O.
func (l *Locker) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, err
		}
	}
	if err := l.ref(); err != nil {
		return nil, err
	}
	defer l.unref()
	if len(names) > 0 {
		out := make([]lockkit.LockInfo, len(names))
		for i, n := range names {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s, _, err := l.inspect(fileName(n))
			if err != nil {
				return nil, err
			}
			out[i] = s.info(n)
		}
		return out, nil
	}
	files, err := l.readDir()
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	var out []lockkit.LockInfo
	for _, file := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !strings.HasSuffix(file, Suffix) || strings.HasPrefix(file, ".") {
			continue
		}
		s, recName, err := l.inspect(file)
		if errors.Is(err, ErrUnsafe) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !s.Held {
			continue
		}
		name := "(" + file + ")"
		if base := strings.TrimSuffix(file, Suffix); isPlain(base) {
			name = base
		} else if recName != "" && checkName(recName) == nil && fileName(recName) == file {
			name = recName
		}
		out = append(out, s.info(name))
	}
	slices.SortStableFunc(out, func(a, b lockkit.LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// info converts s into the LockInfo of name.
func (s Status) info(name string) lockkit.LockInfo {
	li := lockkit.LockInfo{Name: name, Held: s.Held, Key: s.Path}
	if s.Held {
		li.Mode = s.Mode
		if s.Holder != nil {
			li.Holder = *s.Holder
		}
	}
	return li
}

// readDir lists the lock directory's entries through a descriptor of its
// own: the Locker's is shared, and its offset must not move.
func (l *Locker) readDir() ([]string, error) {
	fd, err := openatRetry(l.dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("filelock: open %s: %w", l.dir, err)
	}
	d := os.NewFile(uintptr(fd), l.dir)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("filelock: read %s: %w", l.dir, err)
	}
	return names, nil
}

// inspect probes one lock file without creating it; recName is the name in
// its holder record.
//
// A non-blocking exclusive flock that succeeds means nobody holds it. When
// it fails, a shared one tells the modes apart: it fails beside an
// exclusive holder and succeeds beside shared ones only — or beside nobody,
// if the holder left in between, which converting it to exclusive then
// tells. Only an exclusive holder's record is read: shared holders write
// none, and one left behind is not theirs.
func (l *Locker) inspect(file string) (s Status, recName string, err error) {
	s.Path = filepath.Join(l.dir, file)
	fd, err := openatRetry(l.dirfd, file, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	switch {
	case err == unix.ENOENT:
		return s, "", nil
	case err == unix.ELOOP || err == unix.EMLINK:
		return s, "", fmt.Errorf("%w: %s is a symbolic link", ErrUnsafe, s.Path)
	case err != nil:
		return s, "", fmt.Errorf("filelock: open %s: %w", s.Path, err)
	}
	defer unix.Close(fd) // drops any probe lock
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return s, "", fmt.Errorf("filelock: stat %s: %w", s.Path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return s, "", fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, s.Path)
	}
	switch err := flock(fd, unix.LOCK_EX|unix.LOCK_NB); err {
	case nil:
		return s, "", nil
	case unix.EWOULDBLOCK:
	default:
		return s, "", fmt.Errorf("filelock: flock %s: %w", s.Path, err)
	}
	switch err := flock(fd, unix.LOCK_SH|unix.LOCK_NB); err {
	case nil:
		if flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			return s, "", nil // released in between
		}
		s.Held, s.Mode = true, Shared
		return s, "", nil
	case unix.EWOULDBLOCK:
		s.Held, s.Mode = true, Exclusive
		s.Holder, recName = readHolderName(fd)
		return s, recName, nil
	default:
		return s, "", fmt.Errorf("filelock: flock %s: %w", s.Path, err)
	}
}
