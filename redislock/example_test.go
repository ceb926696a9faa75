package redislock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/redislock"
	"github.com/redis/go-redis/v9"
)

// Run a job at most once at a time across every host that shares the Redis
// server. (Needs a server, so it has no checked output.)
func Example() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()

	locker, err := redislock.New(client, &redislock.Config{Owner: "report-job"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = lockkit.Do(ctx, locker, "reports.nightly", func(ctx context.Context) error {
		// ctx is cancelled if the lock is lost while the job runs.
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// A try that finds the lock held says who holds it and until when.
func ExampleLocker_TryLock() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	locker, err := redislock.New(client, nil)
	if err != nil {
		log.Fatal(err)
	}

	lock, err := locker.TryLock(context.Background(), "invoices")
	var held *lockkit.HeldError
	switch {
	case errors.As(err, &held):
		fmt.Println("busy:", held.Holder) // e.g. "billing on web-3 (pid 4121) since ..."
		return
	case err != nil:
		log.Fatal(err)
	}
	defer lock.Release(context.Background())
	fmt.Println("holding", lock.Name(), "in key", lock.Key())
}

// With fencing, every holder gets a token greater than every earlier
// holder's. The guarded resource keeps the highest token it has seen and
// refuses writes carrying a lower one, which stops a holder that lost its
// lock (a long pause, a Redis failover) from overwriting newer work.
func ExampleConfig_fencing() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	locker, err := redislock.New(client, &redislock.Config{Fencing: true, TTL: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	lock, err := locker.Lock(context.Background(), "ledger")
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release(context.Background())
	fmt.Printf("UPDATE ledger SET ..., fence = %d WHERE fence < %d\n", lock.Token(), lock.Token())
}

// Manual renewal: turn automatic renewal off and call Renew before the lease
// runs out. Renew reports a lock lost to another holder as lockkit.ErrLost.
func ExampleLock_Renew() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	locker, err := redislock.New(client, &redislock.Config{TTL: 5 * time.Second, NoAutoRenew: true})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	lock, err := locker.Lock(ctx, "import")
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release(ctx)
	for range 3 {
		time.Sleep(time.Second) // a step of the work
		if err := lock.Renew(ctx); errors.Is(err, lockkit.ErrLost) {
			log.Fatal("lost the lock; stop: ", err)
		}
	}
}

// Bad settings are refused before any I/O.
func ExampleNew() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	_, err := redislock.New(client, &redislock.Config{TTL: time.Second, RenewInterval: time.Second})
	fmt.Println(errors.Is(err, lockkit.ErrInvalid))
	fmt.Println(err)

	locker, _ := redislock.New(client, &redislock.Config{Prefix: "app:"})
	fmt.Println(locker.Key("jobs.nightly"))
	// Output:
	// true
	// lockkit: invalid argument: redislock: RenewInterval 1s must be positive and at most half the TTL 1s
	// app:{jobs.nightly}
}

// Locks on a Redis replicated under Sentinel: the failover client follows
// the master, and WaitReplicas makes each acquire and renewal wait for a
// replica, so that a failover keeps the locks and tokens handed out.
// (Needs Sentinels, so it has no checked output.)
func ExampleNew_sentinel() {
	client := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            "main",
		SentinelAddrs:         []string{"sentinel-1:26379", "sentinel-2:26379", "sentinel-3:26379"},
		ContextTimeoutEnabled: true,
	})
	defer client.Close()

	locker, err := redislock.New(client, &redislock.Config{Fencing: true, WaitReplicas: 1})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lock, err := locker.Lock(ctx, "invoices.nightly")
	if errors.Is(err, redislock.ErrNotReplicated) {
		log.Fatal("no replica acknowledged the lock: it was given back")
	}
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release(context.WithoutCancel(ctx))
	fmt.Println("write with fencing token", lock.Token())
}

// Locks on Redis Cluster: each name's keys share one slot, chosen by the
// library, so its scripts never fail with CROSSSLOT. (Needs a cluster, so
// it has no checked output.)
func ExampleNew_cluster() {
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 []string{"redis-1:6379", "redis-2:6379", "redis-3:6379"},
		ContextTimeoutEnabled: true,
	})
	defer client.Close()

	locker, err := redislock.New(client, &redislock.Config{Fencing: true})
	if err != nil {
		log.Fatal(err)
	}
	err = lockkit.Do(context.Background(), locker, "reports.nightly", func(ctx context.Context) error {
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
