package mysqllock_test

import (
	"context"
	"database/sql"
	"log"

	"github.com/lockkit/lockkit/election"
	"github.com/lockkit/lockkit/mysqllock"
	"github.com/lockkit/lockkit/semaphore"
)

// A scheduler elected on MySQL/MariaDB GET_LOCK. Fencing keeps a counter
// row per name (in a table created on first use), so each leadership has
// a term that strictly increases, to pass with the scheduler's writes.
func Example_election() {
	ctx := context.Background()
	db, err := sql.Open("mysql", "app@tcp(db.internal:3306)/shop?interpolateParams=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locker, err := mysqllock.New(db, &mysqllock.Config{Fencing: true})
	if err != nil {
		log.Fatal(err)
	}
	e, err := election.New(locker, nil)
	if err != nil {
		log.Fatal(err)
	}
	err = election.Lead(ctx, e, "scheduler", "10.0.0.1:8080", func(ctx context.Context, term int64) error {
		<-ctx.Done() // schedule jobs, writing with "... WHERE fence <= term"
		return nil
	})
	if err != nil {
		log.Print(err)
	}
}

// At most 4 concurrent report exports across hosts, each permit one
// GET_LOCK of 4 slots, freed when its holder's session ends.
func Example_semaphore() {
	ctx := context.Background()
	db, err := sql.Open("mysql", "app@tcp(db.internal:3306)/shop?interpolateParams=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locker, err := mysqllock.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	s, err := semaphore.New(locker, nil)
	if err != nil {
		log.Fatal(err)
	}
	p, err := s.Acquire(ctx, "exports", 4)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Release(ctx)
	// ... export; stop if <-p.Done() ...
}
