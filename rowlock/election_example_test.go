package rowlock_test

import (
	"context"
	"database/sql"
	"log"

	"github.com/lockkit/lockkit/election"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/rowlock"
	"github.com/lockkit/lockkit/semaphore"
)

// A scheduler elected on the lock table: the term is the lease's fencing
// token, the leader's value ("10.0.0.1:8080") is stored in the row for
// Leader and Observe to show, and a leader that stops renewing is replaced
// once its lease runs out.
func Example_election() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Up(ctx, db, migrations.Postgres, nil); err != nil {
		log.Fatal(err)
	}
	locker, err := rowlock.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()
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

// At most 4 workers call the payment API at once; a crashed worker's
// permit is free when its lease runs out.
func Example_semaphore() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locker, err := rowlock.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()
	s, err := semaphore.New(locker, nil)
	if err != nil {
		log.Fatal(err)
	}
	p, err := s.Acquire(ctx, "payments", 4)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Release(ctx)
	// ... call the API with p.Token(); stop if <-p.Done() ...
}
