package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lockkit/lockkit/filelock"
)

// listFiles lists the held file locks in dir: every lock file that is
// locked now, named by its file name or, for an encoded file name, by the
// name in its holder record. It never creates dir or a lock file.
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
		if names, err = lockNames(dir); err != nil {
			return nil, err
		}
		var out []heldLock
		for _, n := range names {
			h, err := inspectFile(ctx, l, n)
			if err != nil {
				return nil, err
			}
			if h.Held {
				out = append(out, h)
			}
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
	h := heldLock{Name: name, Held: st.Held, File: st.Path}
	if st.Held && st.Holder != nil {
		h.Owner, h.Host, h.PID, h.App, h.Data = st.Holder.Owner, st.Holder.Host, st.Holder.PID, st.Holder.App, st.Holder.Data
		h.Since = timePtr(st.Holder.Since)
	}
	return h, nil
}

// lockNames returns the lock names of the lock files in dir. A plain file
// name is the lock's name plus ".lock"; an encoded one (with '~') is
// named by the "name" of the holder record in it, when it has one whose
// name maps back to the file.
func lockNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, ent := range entries {
		file := ent.Name()
		if !ent.Type().IsRegular() || !strings.HasSuffix(file, filelock.Suffix) {
			continue
		}
		name := strings.TrimSuffix(file, filelock.Suffix)
		if strings.Contains(name, "~") {
			name = recordName(filepath.Join(dir, file))
		}
		if name == "" {
			continue
		}
		if f, err := filelock.FileName(name); err != nil || f != file {
			continue // not a lock file of this name scheme
		}
		names = append(names, name)
	}
	return names, nil
}

// recordName reads the lock name from a lock file's holder record, "" when
// there is none.
func recordName(path string) string {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0) // never a FIFO's writer wait
	if err != nil {
		return ""
	}
	defer f.Close()
	buf, _ := io.ReadAll(io.LimitReader(f, 8192))
	var rec struct {
		Name string `json:"name"`
	}
	if json.NewDecoder(bytes.NewReader(buf)).Decode(&rec) != nil {
		return ""
	}
	return rec.Name
}
