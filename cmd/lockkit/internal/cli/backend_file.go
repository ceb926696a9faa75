package cli

import (
	"context"
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
	l, err := filelock.New(b.dir, &filelock.Config{CheckInterval: fileCheckInterval})
	if err != nil {
		return nil, err
	}
	return &fileBackend{l: l}, nil
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
