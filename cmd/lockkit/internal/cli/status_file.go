package cli

import (
	"context"
	"errors"
	"io/fs"
	"os"

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
	infos, err := l.List(ctx, names...)
	if err != nil {
		return nil, err
	}
	out := make([]heldLock, 0, len(infos))
	for _, li := range infos {
		h := heldLock{Name: li.Name, Held: li.Held, File: li.Key}
		if li.Held {
			hd := li.Holder
			h.Owner, h.Host, h.PID, h.App, h.Data = hd.Owner, hd.Host, hd.PID, hd.App, hd.Data
			h.Since = timePtr(hd.Since)
		}
		out = append(out, h)
	}
	return out, nil
}
