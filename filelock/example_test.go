//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
)

// Run a job under a lock in a lock directory.
func Example() {
	dir, _ := os.MkdirTemp("", "lockkit-example")
	defer os.RemoveAll(dir)

	l, err := filelock.New(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	ctx := context.Background()
	err = lockkit.Do(ctx, l, "nightly-backup", func(ctx context.Context) error {
		fmt.Println("backing up")
		return nil
	})
	fmt.Println("done:", err)
	// Output:
	// backing up
	// done: <nil>
}

// A second taker is refused while the lock is held, and told who holds it.
func ExampleLocker_TryAcquire() {
	dir, _ := os.MkdirTemp("", "lockkit-example")
	defer os.RemoveAll(dir)
	a, _ := filelock.New(dir, &filelock.Config{Owner: "alice"})
	b, _ := filelock.New(dir, nil)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()

	held, err := a.TryAcquire(ctx, "report")
	if err != nil {
		log.Fatal(err)
	}
	_, err = b.TryAcquire(ctx, "report")
	var he *lockkit.HeldError
	if errors.As(err, &he) {
		fmt.Println("held by", he.Holder.Owner, "pid matches:", he.Holder.PID == os.Getpid())
	}
	_ = held.Release(ctx)
	// Output:
	// held by alice pid matches: true
}

// Readers share a lock; a writer excludes them.
func ExampleLocker_Lock() {
	dir, _ := os.MkdirTemp("", "lockkit-example")
	defer os.RemoveAll(dir)
	l, _ := filelock.New(dir, nil)
	defer l.Close()
	ctx := context.Background()

	r1, _ := l.Lock(ctx, "catalog", &filelock.Options{Mode: filelock.Shared})
	r2, _ := l.Lock(ctx, "catalog", &filelock.Options{Mode: filelock.Shared})
	_, err := l.TryLock(ctx, "catalog", &filelock.Options{Mode: filelock.Exclusive})
	fmt.Println("writer while two readers hold:", errors.Is(err, lockkit.ErrNotAcquired))
	_ = r1.Release(ctx)
	_ = r2.Release(ctx)
	w, err := l.TryLock(ctx, "catalog", &filelock.Options{Mode: filelock.Exclusive})
	fmt.Println("writer after the readers left:", err)
	_ = w.Release(ctx)
	// Output:
	// writer while two readers hold: true
	// writer after the readers left: <nil>
}

// Plain names map to NAME.lock, which shell scripts can lock with
// util-linux flock(1); other names are encoded and never leave the directory.
func ExampleFileName() {
	for _, name := range []string{"nightly-backup", "../etc/passwd", "reports/2026 Q1"} {
		f, _ := filelock.FileName(name)
		fmt.Println(f)
	}
	// Output:
	// nightly-backup.lock
	// _etc_passwd~7fef78f53440346c04dac510d59620d4.lock
	// reports_2026_Q1~be35fbd4095cd2806b8ea01a00bc8fba.lock
}
