package redislock_test

import (
	"context"
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/lockkit/lockkit/election"
	"github.com/lockkit/lockkit/redislock"
	"github.com/lockkit/lockkit/semaphore"
)

// A scheduler elected on Redis. Fencing makes each leadership's term a
// token from a per-name counter; a leader whose key expires (it stopped
// renewing) is replaced once the TTL has passed.
func Example_election() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	locker, err := redislock.New(client, &redislock.Config{Fencing: true})
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

// At most 4 workers call the payment API at once; each permit is a key
// with a TTL, renewed while held.
func Example_semaphore() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	locker, err := redislock.New(client, nil)
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
	// ... call the API; stop if <-p.Done() ...
}
