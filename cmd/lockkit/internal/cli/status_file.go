package cli

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lockkit/lockkit/filelock"
)

// listFiles lists the held file locks in dir (filelock's List), or the
// named ones, held or not (Inspect). It never creates dir or a lock file.
func listFiles(ctx context.Context, dir string, names []string) ([]heldLock, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		// No directory: nothing was ever locked there.
		var out []heldLock
		for _, n := range names {
			if _, err := filelock.FileName(n); err != nil {
				return nil, err
			}
			out = append(out, heldLock{Name: n})
		}
		return out, nil
	}
	l, err := filelock.New(dir, nil)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if len(names) == 0 {
		held, err := l.List(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]heldLock, 0, len(held))
		for _, st := range held {
			out = append(out, fileHeld(st.Name, st))
		}
		return out, nil
	}
	out := make([]heldLock, 0, len(names))
	for _, n := range names {
		h, err := inspectFile(ctx, l, n)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

func inspectFile(ctx context.Context, l *filelock.Locker, name string) (heldLock, error) {
	st, err := l.Inspect(ctx, name)
	if err != nil {
		return heldLock{}, err
	}
	return fileHeld(name, st), nil
}

// fileHeld converts a lock file's status. A held file whose lock name is
// not known (an encoded file name with no holder record) is listed by its
// file name, in parentheses.
func fileHeld(name string, st filelock.Status) heldLock {
	if name == "" {
		name = "(" + filepath.Base(st.Path) + ")"
	}
	h := heldLock{Name: name, Held: st.Held, File: st.Path}
	if st.Held && st.Holder != nil {
		h.Owner, h.Host, h.PID, h.App, h.Data = st.Holder.Owner, st.Holder.Host, st.Holder.PID, st.Holder.App, st.Holder.Data
		h.Since = timePtr(st.Holder.Since)
	}
	return h
}
