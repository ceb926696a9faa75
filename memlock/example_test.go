package memlock_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/memlock"
)

// nightly is code under test: it takes any lockkit.Locker, and in
// production gets one on a real backend.
func nightly(ctx context.Context, l lockkit.Locker) error {
	return lockkit.Do(ctx, l, "nightly-report", func(ctx context.Context) error {
		fmt.Println("building the report")
		return nil
	})
}

// In a test, pass a memlock Locker to code written against lockkit.Locker,
// and check afterwards that it released what it took.
func ExampleLocker() {
	l := memlock.New()
	err := nightly(context.Background(), l)
	fmt.Println("err:", err)
	fmt.Println("still held:", l.Held("nightly-report"))
	// Output:
	// building the report
	// err: <nil>
	// still held: false
}

// reindex is code under test that must stop when its lock is lost. It works
// under the lock until its context ends; started is closed once it holds
// the lock.
func reindex(ctx context.Context, l lockkit.Locker, started chan<- struct{}) error {
	return lockkit.Do(ctx, l, "reindex", func(ctx context.Context) error {
		close(started)
		<-ctx.Done() // a real job works in batches, checking ctx between them
		fmt.Println("stopped:", context.Cause(ctx))
		return ctx.Err()
	})
}

// Lose tests the loss handling of code under test: the lock is lost while
// the code holds it, as when its lease is taken over, so lockkit.Do cancels
// the function's context and returns an error matching lockkit.ErrLost.
func ExampleLocker_Lose() {
	l := memlock.New()
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- reindex(context.Background(), l, started) }()

	<-started
	had := l.Lose("reindex", errors.New("lease taken over"))
	err := <-errc // after reindex printed why it stopped
	fmt.Println("had a holder:", had)
	fmt.Println("lost:", errors.Is(err, lockkit.ErrLost))
	fmt.Println("still held:", l.Held("reindex"))
	// Output:
	// stopped: lockkit: lock lost: "reindex": lease taken over
	// had a holder: true
	// lost: true
	// still held: false
}

// A try on a held name fails with a *lockkit.HeldError that describes the
// holder, as the lock table backend's does.
func ExampleLocker_TryAcquire() {
	l := memlock.New()
	ctx := context.Background()
	held, _ := l.TryAcquire(ctx, "report")
	_, err := l.TryAcquire(ctx, "report")
	var he *lockkit.HeldError
	if errors.As(err, &he) {
		fmt.Println("held by", he.Holder.Owner, "with token", he.Holder.Token)
	}
	_ = held.Release(ctx)
	// Output:
	// held by memlock with token 1
}
