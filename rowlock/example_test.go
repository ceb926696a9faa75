package rowlock_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/rowlock"
)

// A per-record edit lock across HTTP requests: the edit form's request
// takes a lease on the record and hands (name, owner, token) to the
// browser; the save request resumes the lease, writes with the fencing
// token, and releases. A second user meanwhile learns who is editing.
func Example_editLockAcrossRequests() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	// Once, at start-up: the lock table, under lockkit's own history table.
	if err := migrations.Up(ctx, db, migrations.Postgres, nil); err != nil {
		log.Fatal(err)
	}
	// Edit locks live for minutes and are not renewed in the background:
	// a request ends, the lease stays.
	locks, err := rowlock.New(db, &rowlock.Config{TTL: 10 * time.Minute, RenewInterval: rowlock.NoRenew})
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	name := rowlock.RecordName("products", 42)

	// Request 1: GET /products/42/edit by alice.
	lease, err := locks.TryLock(ctx, name, &rowlock.Options{Owner: "user:alice", Data: "Alice"})
	var held *lockkit.HeldError
	switch {
	case errors.As(err, &held):
		fmt.Println("This product is being edited by", held.Holder.Data, "since", held.Holder.Since.Format("15:04"))
		return
	case err != nil:
		log.Fatal(err)
	}
	// Put these in the form (signed, or in the session).
	owner, token := lease.Owner(), lease.Token()

	// Meanwhile, bob opens the same record.
	_, err = locks.TryLock(ctx, name, &rowlock.Options{Owner: "user:bob", Data: "Bob"})
	if errors.As(err, &held) {
		fmt.Printf("bob sees: being edited by %s\n", held.Holder.Data)
	}

	// Request 2: POST /products/42 by alice, maybe on another server.
	lease, err = locks.Resume(ctx, name, owner, token)
	if errors.Is(err, lockkit.ErrLost) {
		fmt.Println("Your edit lock expired or was taken over; reload the record.")
		return
	} else if err != nil {
		log.Fatal(err)
	}
	// The write carries the fencing token: a stale editor whose lease was
	// taken over in between cannot overwrite a newer one; the same holder
	// may write more than once (<=).
	_, err = db.ExecContext(ctx,
		`UPDATE products SET title = $1, lock_token = $2 WHERE id = $3 AND lock_token <= $2`,
		"New title", lease.Token(), 42)
	_ = err // (no products table in this example)
	if err := lease.Release(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("saved and unlocked")
}

func ExampleRecordName() {
	fmt.Println(rowlock.RecordName("products", 42))
	fmt.Println(rowlock.RecordName("orders", "A-17"))
	// Output:
	// products:42
	// orders:A-17
}

// A transaction-scoped lock: held until the transaction commits or rolls
// back, with no unlock call.
func ExampleLocker_LockTx() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locks, err := rowlock.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback()
	if err := locks.LockTx(ctx, tx, rowlock.RecordName("accounts", 7)); err != nil {
		log.Fatal(err)
	}
	// ... read and write account 7 ...
	if err := tx.Commit(); err != nil { // the lock ends here
		log.Fatal(err)
	}
}

// A job lease another host takes over if this one dies: Do renews the
// lease in the background and cancels fn's context if it is lost.
func ExampleLocker_Acquire() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locks, err := rowlock.New(db, &rowlock.Config{TTL: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	err = lockkit.Do(ctx, locks, "nightly-report", func(ctx context.Context) error {
		// ... work, stopping when ctx is cancelled ...
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
