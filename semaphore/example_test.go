package semaphore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/memlock"
	"github.com/lockkit/lockkit/semaphore"
)

// At most 3 workers call the payment API at once. Ten workers share one
// in-memory Locker, which stands for the database, Redis or lock directory
// that processes on several hosts reach.
func ExampleSemaphore_Acquire() {
	locker := memlock.New() // in production: rowlock.New(db, nil), redislock.New(client, nil), ...
	s, err := semaphore.New(locker, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	var (
		mu           sync.Mutex
		inside, most int
		wg           sync.WaitGroup
	)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.Acquire(ctx, "payments", 3)
			if err != nil {
				log.Print(err)
				return
			}
			defer p.Release(ctx)
			mu.Lock()
			inside++
			most = max(most, inside)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond) // call the API, passing p.Token() where it fences
			mu.Lock()
			inside--
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Println("at most", most, "at once")
	// Output:
	// at most 3 at once
}

// TryAcquire takes a permit if one is free; Status shows who holds the
// others.
func ExampleSemaphore_TryAcquire() {
	s, err := semaphore.New(memlock.New(), &semaphore.Config{Data: "worker-a"})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	var held []*semaphore.Permit
	for range 3 {
		p, err := s.TryAcquire(ctx, "exports", 2)
		if errors.Is(err, lockkit.ErrNotAcquired) {
			fmt.Println("both permits are held")
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		held = append(held, p)
	}
	st, err := s.Status(ctx, "exports", 2)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d held, %d free\n", len(st.Holders), st.Free)
	for _, h := range st.Holders {
		fmt.Printf("slot %d: %q (n=%d)\n", h.Slot, h.Holder.Data, h.Permits)
	}
	for _, p := range held {
		_ = p.Release(ctx)
	}
	// Output:
	// both permits are held
	// 2 held, 0 free
	// slot 0: "n=2 worker-a" (n=2)
	// slot 1: "n=2 worker-a" (n=2)
}

// A caller that uses a semaphore with another number of permits than its
// holders is refused, where the Locker records holder data.
func ExampleMismatchError() {
	s, err := semaphore.New(memlock.New(), nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	p, err := s.TryAcquire(ctx, "reports", 2)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Release(ctx)

	_, err = s.TryAcquire(ctx, "reports", 4)
	var mm *semaphore.MismatchError
	if errors.As(err, &mm) {
		fmt.Printf("refused: asked for %d permits, a holder has %d (invalid: %v)\n", mm.Permits, mm.Other, errors.Is(err, lockkit.ErrInvalid))
	}
	// Output:
	// refused: asked for 4 permits, a holder has 2 (invalid: true)
}

// Locker turns the permits into a lockkit.Locker, so that lockkit.Do runs a
// function under a permit; its context is cancelled if the permit is lost.
func ExampleSemaphore_Locker() {
	s, err := semaphore.New(memlock.New(), nil)
	if err != nil {
		log.Fatal(err)
	}
	err = lockkit.Do(context.Background(), s.Locker(3), "thumbnails", func(ctx context.Context) error {
		fmt.Println("rendering under one of 3 permits")
		return nil
	})
	fmt.Println("err:", err)
	// Output:
	// rendering under one of 3 permits
	// err: <nil>
}
