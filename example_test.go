//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package lockkit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
)

// Do runs a function while holding a lock, and releases the lock when the
// function returns, even if it panics. Any backend's Locker works; this one
// is a file lock, which needs no server.
func ExampleDo() {
	dir, _ := os.MkdirTemp("", "lockkit-example")
	defer os.RemoveAll(dir)
	locker, err := filelock.New(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	err = lockkit.Do(context.Background(), locker, "nightly-report", func(ctx context.Context) error {
		// ctx is cancelled if the lock is lost while this runs.
		fmt.Println("only one process runs this at a time")
		return nil
	})
	fmt.Println("err:", err)
	// Output:
	// only one process runs this at a time
	// err: <nil>
}

// TryDo skips the work when another holder has the lock, and says who.
func ExampleTryDo() {
	dir, _ := os.MkdirTemp("", "lockkit-example")
	defer os.RemoveAll(dir)
	cron, _ := filelock.New(dir, &filelock.Config{Owner: "cron"})
	defer cron.Close()
	manual, _ := filelock.New(dir, &filelock.Config{Owner: "operator"})
	defer manual.Close()
	ctx := context.Background()

	_ = lockkit.Do(ctx, cron, "reindex", func(ctx context.Context) error {
		err := lockkit.TryDo(ctx, manual, "reindex", func(ctx context.Context) error {
			fmt.Println("not reached")
			return nil
		})
		var held *lockkit.HeldError
		if errors.As(err, &held) {
			fmt.Println("skipped: reindex is held by", held.Holder.Owner)
		}
		fmt.Println("ErrNotAcquired:", errors.Is(err, lockkit.ErrNotAcquired))
		return nil
	})
	// Output:
	// skipped: reindex is held by cron
	// ErrNotAcquired: true
}
