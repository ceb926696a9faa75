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

// Campaign waits until the caller leads; Leader tells everyone else who
// does, with the value it campaigned with; Resign hands the office on.
func ExampleElector_Campaign() {
	e, err := election.New(memlock.New(), nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	l, err := e.Campaign(ctx, "scheduler", "10.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	ld, _ := e.Leader(ctx, "scheduler")
	fmt.Printf("%s leads in term %d\n", ld.Value, ld.Term)

	if err := l.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = e.Leader(ctx, "scheduler")
	fmt.Println(errors.Is(err, election.ErrNoLeader))
	// Output:
	// 10.0.0.1:8080 leads in term 1
	// true
}

// store is a resource that fences writes by term: it refuses a write whose
// term is lower than the highest it has accepted, as a conditional
// UPDATE ... WHERE term <= $1 does in SQL.
type store struct {
	mu   sync.Mutex
	term int64
	data string
}

func (s *store) write(term int64, data string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if term < s.term {
		return fmt.Errorf("term %d refused: term %d has written", term, s.term)
	}
	s.term, s.data = term, data
	return nil
}

// A leader can be deposed without noticing at once (a GC pause, a cut
// network), and then work on beside its successor: Kubernetes' client-go
// election has this split brain. The term fences it off: once the
// successor has written, the deposed leader's writes are refused.
func ExampleLeadership_Term() {
	locker := memlock.New()
	e, err := election.New(locker, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	res := &store{}

	old, _ := e.Campaign(ctx, "scheduler", "a")
	fmt.Println("a:", res.write(old.Term(), "a's plan"))

	locker.Lose("scheduler", errors.New("lease expired")) // a is deposed...
	successor, _ := e.Campaign(ctx, "scheduler", "b")
	fmt.Println("b:", res.write(successor.Term(), "b's plan"))

	fmt.Println("a:", res.write(old.Term(), "a's stale plan")) // ...and writes on
	fmt.Println("kept:", res.data)
	_ = successor.Resign(ctx)
	// Output:
	// a: <nil>
	// b: <nil>
	// a: term 1 refused: term 2 has written
	// kept: b's plan
}

// Observe yields the leader, then every change. Here the loop body makes
// the next change itself: a leader, its resignation, another leader.
func ExampleElector_Observe() {
	e, err := election.New(memlock.New(), &election.Config{PollInterval: 10 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	var l *election.Leadership
	for ld, err := range e.Observe(ctx, "scheduler") {
		if err != nil {
			log.Fatal(err)
		}
		if ld.Term == 0 {
			fmt.Println("no leader")
		} else {
			fmt.Printf("term %d: %s\n", ld.Term, ld.Value)
		}
		switch {
		case l == nil: // nobody leads: a campaigns
			l, _ = e.Campaign(ctx, "scheduler", "10.0.0.1:8080")
		case l.Value() == "10.0.0.1:8080" && ld.Term != 0: // a leads: it resigns
			_ = l.Resign(ctx)
		case ld.Term == 0: // nobody leads again: b campaigns
			l, _ = e.Campaign(ctx, "scheduler", "10.0.0.2:8080")
		}
		if ld.Value == "10.0.0.2:8080" {
			break // a real observer runs until its ctx ends
		}
	}
	_ = l.Resign(ctx)
	// Output:
	// no leader
	// term 1: 10.0.0.1:8080
	// no leader
	// term 2: 10.0.0.2:8080
}
