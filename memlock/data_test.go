package memlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/memlock"
)

func TestWithData(t *testing.T) {
	l := memlock.New()
	ctx := ctxT(t, 5*time.Second)
	a := l.WithData("10.0.0.1:8080")
	lk, err := a.TryAcquire(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	infos, err := l.List(ctx, "leader")
	if err != nil || len(infos) != 1 || infos[0].Holder.Data != "10.0.0.1:8080" || infos[0].Holder.Token != lk.Token() {
		t.Fatalf("List = %+v, %v; want the holder's data and token", infos, err)
	}

	// The view and the Locker are one lock space.
	_, err = l.TryAcquire(ctx, "leader")
	var he *lockkit.HeldError
	if !errors.As(err, &he) || he.Holder == nil || he.Holder.Data != "10.0.0.1:8080" {
		t.Fatalf("TryAcquire on the Locker while a view holds = %v, want a HeldError with the view's data", err)
	}

	// A waiter of another view gets its own data when the lock is handed
	// to it.
	b := l.WithData("10.0.0.2:8080")
	got := make(chan lockkit.Lock, 1)
	errc := make(chan error, 1)
	go func() {
		lk, err := b.Acquire(ctx, "leader")
		if err != nil {
			errc <- err
			return
		}
		got <- lk
	}()
	waitQueued(t, l, "leader", 1)
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var next lockkit.Lock
	select {
	case next = <-got:
	case err := <-errc:
		t.Fatal(err)
	}
	infos, _ = l.List(ctx, "leader")
	if infos[0].Holder.Data != "10.0.0.2:8080" || infos[0].Holder.Token != next.Token() {
		t.Errorf("after the hand-over List = %+v, want the waiter's data and token", infos)
	}
	_ = next.Release(ctx)

	// The Locker itself stores no data.
	plain := mustTry(t, l, "leader")
	infos, _ = l.List(ctx, "leader")
	if infos[0].Holder.Data != "" {
		t.Errorf("a lock of the Locker itself has data %q", infos[0].Holder.Data)
	}
	_ = plain.Release(context.Background())
	if _, err := a.Acquire(ctx, ""); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("a view's Acquire(\"\") = %v, want ErrInvalid", err)
	}
}
