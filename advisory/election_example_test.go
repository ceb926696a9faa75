package advisory_test

import (
	"context"
	"database/sql"
	"log"

	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/election"
	"github.com/lockkit/lockkit/semaphore"
)

// A scheduler that runs on one instance at a time, elected on PostgreSQL
// advisory locks. Fencing gives each leadership a term drawn from a
// sequence (created on first use), so the scheduler can pass the term with
// its writes and a deposed leader's late writes are refused. The lock is a
// session lock: when the leader's session dies, the next candidate leads
// within the loss bound.
func Example_election() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locker, err := advisory.New(db, &advisory.Config{Fencing: true})
	if err != nil {
		log.Fatal(err)
	}
	e, err := election.New(locker, nil)
	if err != nil {
		log.Fatal(err)
	}
	err = election.Lead(ctx, e, "scheduler", "10.0.0.1:8080", func(ctx context.Context, term int64) error {
		// Schedule jobs until ctx ends (leadership lost or ctx cancelled),
		// writing with "... WHERE fence <= term".
		<-ctx.Done()
		return nil
	})
	if err != nil {
		log.Print(err)
	}
}

// At most 4 workers call the payment API at once, across hosts: each
// permit is a session lock on one of 4 slots, freed when its holder's
// session ends.
func Example_semaphore() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locker, err := advisory.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	s, err := semaphore.New(locker, nil)
	if err != nil {
		log.Fatal(err)
	}
	p, err := s.Acquire(ctx, "payments", 4)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Release(ctx)
	// ... call the API; stop if <-p.Done() ...
}
