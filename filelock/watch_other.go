//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"fmt"

	"github.com/lockkit/lockkit"
)

// Changes implements lockkit.Watcher where there is no inotify: it returns
// an error matching lockkit.ErrUnsupported, and readers poll.
func (l *Locker) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	return nil, fmt.Errorf("filelock: changes are pushed on Linux only (inotify): %w", lockkit.ErrUnsupported)
}

// Announce implements lockkit.Watcher. It does nothing.
func (l *Locker) Announce(ctx context.Context, name string) error { return checkName(name) }
