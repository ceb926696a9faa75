package redislock

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
	"github.com/redis/go-redis/v9"
)

// Workers with a Locker each, as separate processes have, loop Lock and
// Release on one name. Each contended acquisition costs the wait script
// that registers in the queue and the release: two round trips, counted on
// the wire; the waiter holds the lock from the release's grant message.
// Claiming the grant with the wait script again cost three; a wait that
// opened, subscribed and closed a pub/sub connection of its own (and tried
// SET NX GET first) about seven.
func TestLockerPerWorkerRoundTrips(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	opts, err := redis.ParseURL(integration.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 40
	var rt integration.RoundTrips
	n := name(t)
	lockers := make([]*Locker, workers)
	for i := range lockers {
		o := *opts
		o.Dialer = rt.Dial
		c := redis.NewClient(&o)
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Ping(ctxT(t, 5*time.Second)).Err(); err != nil {
			t.Fatal(err)
		}
		lockers[i] = newLocker(t, c, &Config{Prefix: prefix})
		t.Cleanup(func() { _ = lockers[i].Close() })
	}
	before := rt.Writes()
	ctx := ctxT(t, 60*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for _, l := range lockers {
		wg.Go(func() {
			for range each {
				lk, err := l.Lock(ctx, n)
				if err == nil {
					err = lk.Release(context.Background())
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("worker: %v", err)
	}
	per := float64(rt.Writes()-before) / (workers * each)
	t.Logf("%.2f round trips per acquisition, %d workers with a Locker each", per, workers)
	if per > 2.5 {
		t.Errorf("%.2f round trips per acquisition with a Locker per worker, want at most 2.5 (2 per contended acquisition)", per)
	}
}
