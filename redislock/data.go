package redislock

import (
	"context"
	"encoding/json"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
)

var _ lockkit.DataLocker = (*Locker)(nil)

// WithData implements lockkit.DataLocker: it returns a Locker that takes
// the same locks as l (the same keys, queues and tokens, so they exclude
// each other) with data as the holder's Data in place of Config.Data; an
// empty data means Config.Data. Data longer than [MaxHolderLen] bytes is
// refused by its acquires with an error matching lockkit.ErrInvalid, before
// any I/O. Its locks are *Lock values, for the Renew, TTL and Key of a
// type assertion.
func (l *Locker) WithData(data string) lockkit.Locker {
	v := dataView{l: l, meta: l.set.meta}
	if data == "" {
		return v
	}
	if len(data) > MaxHolderLen {
		v.err = invalid.Errorf("redislock: Data must be at most %d bytes", MaxHolderLen)
		return v
	}
	h := l.set.holder
	h.Data = data
	meta, err := json.Marshal(h)
	if err != nil {
		v.err = invalid.Errorf("redislock: holder metadata: %v", err)
	}
	v.meta = string(meta)
	return v
}

// dataView is a Locker whose locks carry other holder data.
type dataView struct {
	l    *Locker
	meta string // the holder JSON
	err  error  // bad data
}

func (v dataView) Acquire(ctx context.Context, name string) (lockkit.Lock, error) {
	if v.err != nil {
		return nil, v.err
	}
	lk, err := v.l.lock(ctx, name, v.meta)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

func (v dataView) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	if v.err != nil {
		return nil, v.err
	}
	lk, err := v.l.tryLock(ctx, name, v.meta)
	if err != nil {
		return nil, err
	}
	return lk, nil
}
