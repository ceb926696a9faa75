package cli

import (
	"context"
	"strconv"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
)

// fileCheckInterval is how often a held file lock checks that its lock
// file is still in place, so that a lock file removed under lockkit run
// counts as a lost lock.
const fileCheckInterval = time.Second

func defaultFileDir() (string, error) { return filelock.DefaultDir() }

type fileBackend struct {
	l *filelock.Locker
}

func openFile(_ context.Context, _ *env, b *backendURL) (backend, error) {
	allow, err := allowNetworkFS(b)
	if err != nil {
		return nil, err
	}
	l, err := filelock.New(b.dir, &filelock.Config{CheckInterval: fileCheckInterval, AllowNetworkFS: allow})
	if err != nil {
		return nil, err
	}
	return &fileBackend{l: l}, nil
}

// allowNetworkFS reads the file URL's allow_network_fs parameter: lock in a
// directory on a network file system, which filelock refuses by default.
func allowNetworkFS(b *backendURL) (bool, error) {
	v := b.u.Query().Get("allow_network_fs")
	if v == "" {
		return false, nil
	}
	allow, err := strconv.ParseBool(v)
	if err != nil {
		return false, usagef("%s: allow_network_fs=%q: want 1 or 0", b.display, v)
	}
	return allow, nil
}

func (f *fileBackend) locker(opts lockOptions) (lockkit.Locker, error) {
	if opts.shared {
		return modeLocker{f.l, filelock.Shared}, nil
	}
	return f.l, nil
}

func (f *fileBackend) lister(bool) (lockkit.Lister, error) { return f.l, nil }

func (f *fileBackend) close() error { return f.l.Close() }

// modeLocker takes file locks in one mode.
type modeLocker struct {
	l    *filelock.Locker
	mode filelock.Mode
}

func (m modeLocker) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := m.l.Lock(ctx, name, &filelock.Options{Mode: m.mode})
	if err != nil {
		return nil, err
	}
	return lk, nil
}

func (m modeLocker) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := m.l.TryLock(ctx, name, &filelock.Options{Mode: m.mode})
	if err != nil {
		return nil, err
	}
	return lk, nil
}
