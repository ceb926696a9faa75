//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"os"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
)

var _ lockkit.DataLocker = (*Locker)(nil)

// WithData implements lockkit.DataLocker: it returns a Locker on the same
// lock directory whose exclusive locks write data into their holder record
// in place of Config.Data; an empty data means Config.Data. When Owner, App
// and data together are longer than Config allows (1024 bytes), its
// acquires fail with an error matching lockkit.ErrInvalid before touching
// a file. Its locks are *Lock values.
func (l *Locker) WithData(data string) lockkit.Locker {
	v := dataView{l: l, prefix: l.prefix}
	if data == "" {
		return v
	}
	if n := len(l.cfg.Owner) + len(l.cfg.App) + len(data); n > maxRecordMeta {
		v.err = invalid.Errorf("filelock: Owner, App and Data are %d bytes together, more than %d", n, maxRecordMeta)
		return v
	}
	v.prefix = recordPrefix(os.Getpid(), l.host, l.cfg.Owner, l.cfg.App, data)
	return v
}

// dataView is a Locker whose holder records carry other data.
type dataView struct {
	l      *Locker
	prefix []byte
	err    error // bad data
}

func (v dataView) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return v.acquire(ctx, name, true)
}

func (v dataView) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return v.acquire(ctx, name, false)
}

func (v dataView) acquire(ctx context.Context, name string, wait bool) (lockkit.Lock, error) {
	if v.err != nil {
		return nil, v.err
	}
	lk, err := v.l.acquire(ctx, name, Exclusive, wait, v.prefix)
	if err != nil {
		return nil, err
	}
	return lk, nil
}
