package rowlock

import (
	"context"

	"github.com/lockkit/lockkit"
)

// ListNames is lockkit.Lister's List with names, read a row at a time, for
// the election suite while the Locker has no List of that signature.
func ListNames(ctx context.Context, l *Locker, names ...string) ([]lockkit.LockInfo, error) {
	out := make([]lockkit.LockInfo, 0, len(names))
	for _, name := range names {
		if err := checkName(name); err != nil {
			return nil, err
		}
		h, err := l.holder(ctx, name)
		if err != nil {
			return nil, err
		}
		info := lockkit.LockInfo{Name: name, Mode: lockkit.Exclusive}
		if h != nil && h.remaining > 0 {
			info.Held, info.Holder = true, h.Holder
		}
		out = append(out, info)
	}
	return out, nil
}
