package advisory_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/keyhash"
)

// A per-record edit lock: only one operator edits invoice 4121 at a time.
// The lock is a session lock on its own pinned connection; the conflict
// error names who holds it.
func ExampleLocker_TryLockKey() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test?application_name=billing")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locker, err := advisory.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}

	const invoices = 17 // the table's id in the application's key scheme
	key, err := keyhash.Record(invoices, 4121)
	if err != nil {
		log.Fatal(err) // a record id that would collide when packed
	}
	lock, err := locker.TryLockKey(ctx, key, nil)
	var held *lockkit.HeldError
	if errors.As(err, &held) {
		fmt.Println("invoice 4121 is being edited by", held.Holder)
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release(ctx)

	select {
	case <-lock.Done(): // the session died: stop editing
		log.Print(lock.Err())
	case <-time.After(time.Second): // ... the edit ...
	}
}

// A transaction-scoped lock: the locks end with the transaction, so there
// is nothing to release and nothing can leak.
func ExampleWithTxLock() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	from, _ := keyhash.PairRecord(1, 1001) // accounts 1001 and 1002, in any order:
	to, _ := keyhash.PairRecord(1, 1002)   // WithTxLock sorts them
	err = advisory.WithTxLock(ctx, db, []keyhash.Key{to, from}, &advisory.TxOptions{LockTimeout: 2 * time.Second},
		func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - 10 WHERE id = 1001"); err != nil {
				return err // rolls back; the locks end with the transaction
			}
			_, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance + 10 WHERE id = 1002")
			return err
		})
	if errors.Is(err, advisory.ErrLockTimeout) {
		fmt.Println("busy, try again later")
	} else if err != nil {
		log.Fatal(err)
	}
}

// A named job that runs on one host at a time, through lockkit.Do, on a
// pgxpool of its own (each held lock pins one connection).
func ExampleNewPool() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test?pool_max_conns=4")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	locker, err := advisory.NewPool(pool, &advisory.Config{Namespace: "billing"})
	if err != nil {
		log.Fatal(err)
	}
	err = lockkit.TryDo(ctx, locker, "nightly-report", func(ctx context.Context) error {
		// ctx is cancelled if the lock is lost.
		return nil
	})
	if errors.Is(err, lockkit.ErrNotAcquired) {
		fmt.Println("another host is running the report")
	}
}

// Several keys in one statement and one round trip, all or nothing.
func ExampleLocker_LockKeys() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locker, err := advisory.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	a, _ := locker.Key("inventory/sku-1")
	b, _ := locker.Key("inventory/sku-2")
	lock, err := locker.LockKeys(ctx, []keyhash.Key{a, b}, &advisory.Options{Mode: advisory.Shared})
	if err != nil {
		log.Fatal(err) // a timeout matches lockkit.ErrNotAcquired and context.DeadlineExceeded
	}
	defer lock.Release(context.Background())
	fmt.Println("held by backend", lock.PID(), "on", len(lock.Keys()), "keys")
}

func ExampleMode() {
	fmt.Println(advisory.Exclusive, advisory.Shared)
	// Output: exclusive shared
}
