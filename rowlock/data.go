package rowlock

import (
	"context"

	"github.com/lockkit/lockkit"
)

var _ lockkit.DataLocker = (*Locker)(nil)

// WithData implements lockkit.DataLocker: it returns a Locker on the same
// lock table whose leases carry data as their holder data, as
// Lock(ctx, name, &Options{Data: data}) does; an empty data means
// Config.Data. Data longer than [MaxDataBytes], not valid UTF-8 or with a
// NUL byte is refused by its acquires with an error matching
// lockkit.ErrInvalid, before any I/O.
func (l *Locker) WithData(data string) lockkit.Locker { return dataView{l, data} }

// dataView is a Locker whose leases carry data.
type dataView struct {
	l    *Locker
	data string
}

func (v dataView) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return asLock(v.l.acquire(ctx, name, &Options{Data: v.data}, true))
}

func (v dataView) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return asLock(v.l.acquire(ctx, name, &Options{Data: v.data}, false))
}
