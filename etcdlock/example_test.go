package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/etcdlock"
)

// Run a job at most once at a time across every host that shares the etcd
// cluster. (Needs a cluster, so it has no checked output.)
func Example() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	locker, err := etcdlock.New(cli, &etcdlock.Config{Owner: "report-job"})
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close() // revokes the Locker's lease
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

// A try that finds the lock held says who holds it, since when, and until
// when its lease runs unless renewed.
func ExampleLocker_TryLock() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	locker, err := etcdlock.New(cli, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	lock, err := locker.TryLock(context.Background(), "deploy")
	var held *lockkit.HeldError
	switch {
	case errors.As(err, &held):
		fmt.Println("deploy is running:", held.Holder) // "ci on build-7 (pid 812) since ..."
		return
	case err != nil:
		log.Fatal(err)
	}
	defer lock.Release(context.Background())
	fmt.Println("deploying with fencing token", lock.Token())
}

// IsOwner fences writes inside etcd itself: a transaction that compares it
// writes only while the lock is held, whatever its writer believes (a
// paused process that resumes after its lease ran out writes nothing).
func ExampleLock_IsOwner() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	locker, err := etcdlock.New(cli, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()
	ctx := context.Background()

	lock, err := locker.Lock(ctx, "config")
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release(ctx)
	resp, err := cli.Txn(ctx).If(lock.IsOwner()).Then(clientv3.OpPut("app/config", "v2")).Commit()
	if err != nil {
		log.Fatal(err)
	}
	if !resp.Succeeded {
		log.Fatal("the lock was lost: nothing written")
	}
}
