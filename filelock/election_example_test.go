package filelock_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/lockkit/lockkit/election"
	"github.com/lockkit/lockkit/filelock"
	"github.com/lockkit/lockkit/semaphore"
)

// Processes on one host elect a leader through a lock directory. Fencing
// keeps a counter in the lock file, so each leadership's term is greater
// than the last; the kernel frees the lock when the leader's process dies.
func Example_election() {
	dir, err := os.MkdirTemp("", "locks")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	locker, err := filelock.New(dir, &filelock.Config{Fencing: true})
	if err != nil {
		log.Fatal(err)
	}
	e, err := election.New(locker, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	first, err := e.Campaign(ctx, "scheduler", "pid 100")
	if err != nil {
		log.Fatal(err)
	}
	leader, err := e.Leader(ctx, "scheduler")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", leader.Value)
	if err := first.Resign(ctx); err != nil {
		log.Fatal(err)
	}

	second, err := e.Campaign(ctx, "scheduler", "pid 200")
	if err != nil {
		log.Fatal(err)
	}
	defer second.Resign(ctx)
	fmt.Println("next term is greater:", second.Term() > first.Term())
	// Output:
	// leader: pid 100
	// next term is greater: true
}

// At most 2 of this host's processes run a heavy job at once; Status shows
// the holders and the free permits.
func Example_semaphore() {
	dir, err := os.MkdirTemp("", "locks")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	locker, err := filelock.New(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	s, err := semaphore.New(locker, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	p, err := s.Acquire(ctx, "transcode", 2)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Release(ctx)
	st, err := s.Status(ctx, "transcode", 2)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("held:", len(st.Holders), "free:", st.Free)
	// Output:
	// held: 1 free: 1
}
