package election_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/election"
	"github.com/lockkit/lockkit/memlock"
)

// Lead runs a scheduler on one instance at a time. Here two instances share
// one in-memory Locker, which stands for the database or Redis both reach.
// The first leads; its lock is lost (memlock's Lose plays a killed session
// or an expired lease), so its function's context is cancelled with the
// loss, and the second instance takes over with a greater term. The
// instances report to main, which prints in a fixed order.
func ExampleLead() {
	locker := memlock.New() // in production: rowlock.New(db, nil), ...
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	started := make(chan string)
	stopped := make(chan string)
	scheduler := func(instance string) func(ctx context.Context, term int64) error {
		return func(ctx context.Context, term int64) error {
			started <- fmt.Sprintf("%s leads in term %d", instance, term)
			<-ctx.Done() // a real scheduler works here, passing term with its writes
			stopped <- fmt.Sprintf("%s stops: lost=%v", instance, errors.Is(context.Cause(ctx), lockkit.ErrLost))
			return nil
		}
	}
	instance := func(wg *sync.WaitGroup, name, addr string, backoff time.Duration) *election.Elector {
		e, err := election.New(locker, &election.Config{MinBackoff: backoff})
		if err != nil {
			log.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = election.Lead(ctx, e, "scheduler", addr, scheduler(name))
		}()
		return e
	}

	var wg sync.WaitGroup
	// The first instance pauses long before it campaigns again, so that
	// the second takes over whenever it starts campaigning.
	instance(&wg, "first", "10.0.0.1:8080", time.Hour)
	fmt.Println(<-started)
	e := instance(&wg, "second", "10.0.0.2:8080", time.Second)

	locker.Lose("scheduler", errors.New("session killed"))
	fmt.Println(<-stopped)
	fmt.Println(<-started)

	ld, err := e.Leader(ctx, "scheduler")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("leader: %s in term %d\n", ld.Value, ld.Term)

	cancel()
	fmt.Println(<-stopped)
	wg.Wait()
	// Output:
	// first leads in term 1
	// first stops: lost=true
	// second leads in term 2
	// leader: 10.0.0.2:8080 in term 2
	// second stops: lost=false
}
