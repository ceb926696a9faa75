package memlock

import (
	"context"

	"github.com/lockkit/lockkit"
)

// WithData implements lockkit.DataLocker: it returns a Locker on the same
// lock space whose locks carry data as their holder's Data, shown by List
// and in a *lockkit.HeldError. Its locks exclude, and are excluded by, those
// of l and of every other view of l, and they share l's queues and tokens.
func (l *Locker) WithData(data string) lockkit.Locker { return dataView{l, data} }

// dataView is a Locker whose locks carry data.
type dataView struct {
	l    *Locker
	data string
}

func (v dataView) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := v.l.lock(ctx, name, v.data)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

func (v dataView) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := v.l.tryLock(ctx, name, v.data)
	if err != nil {
		return nil, err
	}
	return lk, nil
}
