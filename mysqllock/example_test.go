package mysqllock_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/mysqllock"
	"github.com/lockkit/lockkit/rowlock"
)

// Run a job on at most one host at a time, on the MySQL or MariaDB the
// application already uses.
func ExampleLocker() {
	db, err := sql.Open("mysql", "app@tcp(db.internal:3306)/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locker, err := mysqllock.New(db, nil) // names are namespaced "shop."
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = lockkit.Do(ctx, locker, "nightly-report", func(ctx context.Context) error {
		// Only one process runs this at a time. ctx is cancelled if the
		// lock is lost (its session killed, the server restarted).
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// One editor per record: try to lock the row, and tell the user who holds
// it when someone does.
func ExampleLocker_TryLockKey() {
	db, err := sql.Open("mysql", "app@tcp(db.internal:3306)/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locker, err := mysqllock.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	const ordersTable, orderID = 7, 4121
	lock, err := locker.TryLockKey(ctx, keyhash.Pair(ordersTable, orderID))
	var held *lockkit.HeldError
	switch {
	case errors.As(err, &held):
		fmt.Println("order is being edited by", held.Holder)
		return
	case err != nil:
		log.Fatal(err)
	}
	defer lock.Release(ctx)
	// ... edit the order; watch lock.Done() ...
}

// The GET_LOCK names lockkit uses: namespaced, and hashed to 64
// characters when longer.
func ExampleUserLockName() {
	short, _ := mysqllock.UserLockName("shop", "nightly-report")
	long, _ := mysqllock.UserLockName("shop", "export/"+strings.Repeat("customer-", 10))
	key, _ := mysqllock.KeyUserLockName("shop", keyhash.Pair(7, 4121))
	fmt.Println(short)
	fmt.Println(long, len(long))
	fmt.Println(key)
	// Output:
	// shop.nightly-report
	// shop.export/customer-customer-c~564824edf65e41a4535d369c30705078 64
	// shop#(7,4121)
}

// On a Galera cluster node, GET_LOCK excludes nothing across nodes and the
// Locker refuses it; the lock table works there.
func ExampleErrGalera() {
	db, err := sql.Open("mysql", "app@tcp(galera-1.internal:3306)/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	var locker lockkit.Locker
	if locker, err = mysqllock.New(db, nil); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	lock, err := locker.Acquire(ctx, "nightly-report")
	if errors.Is(err, mysqllock.ErrGalera) {
		// The lock table's rows replicate to every node (create it first
		// with package migrations, from one place).
		table, terr := rowlock.New(db, &rowlock.Config{Dialect: rowlock.MySQL})
		if terr != nil {
			log.Fatal(terr)
		}
		defer table.Close()
		lock, err = table.Acquire(ctx, "nightly-report")
	}
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release(ctx)
	// ... run the job; pass lock.Token() to what it writes ...
}
