package redislock

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
	"github.com/redis/go-redis/v9"
)

// floorTryRelease is the raw go-redis floor for a Locker without fencing:
// the same commands with the same arguments (SET NX PX GET, then the
// release script through EVALSHA), without lockkit's handle, timers,
// validation or reply parsing.
func floorTryRelease(ctx context.Context, c *redis.Client, key, ch, rest string, ttlMs int64) error {
	secret := rand.Text() + "|"
	if err := c.Do(ctx, "set", key, secret+"0"+rest, "px", ttlMs, "nx", "get").Err(); !errors.Is(err, redis.Nil) {
		return fmt.Errorf("not acquired: %v", err)
	}
	return floorRelease(ctx, c, []string{key, key + ":queue", key + ":alive"}, secret, ch, ttlMs)
}

// floorTryReleaseFenced is the floor for a Locker with fencing: the same
// acquire and release scripts through EVALSHA.
func floorTryReleaseFenced(ctx context.Context, c *redis.Client, key, fenceKey, ch, rest string, ttlMs int64) error {
	secret := rand.Text() + "|"
	res, err := acquireScript.Run(ctx, c, []string{key, fenceKey}, secret, ttlMs, rest).Slice()
	if err != nil {
		return err
	}
	if res[0] != int64(1) {
		return errors.New("held")
	}
	return floorRelease(ctx, c, []string{key, key + ":queue", key + ":alive", fenceKey}, secret, ch, ttlMs)
}

func floorRelease(ctx context.Context, c *redis.Client, keys []string, secret, ch string, ttlMs int64) error {
	n, err := releaseScript.Run(ctx, c, keys, secret, ch, min(ttlMs, 2000), "").Int64()
	if err != nil {
		return err
	}
	if n != 1 {
		return errors.New("not released")
	}
	return nil
}

// naiveTryRelease is what hand-written Redis locks do: SET NX PX, then a
// compare-and-delete script.
func naiveTryRelease(ctx context.Context, c *redis.Client, key string, ttl time.Duration) error {
	secret := rand.Text()
	ok, err := c.SetNX(ctx, key, secret, ttl).Result()
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("held")
	}
	n, err := naiveRelease.Run(ctx, c, []string{key}, secret).Int64()
	if err != nil {
		return err
	}
	if n != 1 {
		return errors.New("not released")
	}
	return nil
}

var naiveRelease = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// BenchmarkRedisTryRelease measures an uncontended TryLock + Release
// through lockkit against the raw go-redis floor sending the same commands,
// and against the naive SET NX PX + compare-and-delete script that
// hand-written Redis locks use. The
// interleaved variant alternates lockkit and the floor in each iteration,
// so that load from elsewhere on the machine hits both alike, and reports
// their ratio.
func BenchmarkRedisTryRelease(b *testing.B) {
	admin := integration.Redis(b)
	prefix := testPrefix(b, admin)
	ctx := context.Background()
	for _, fencing := range []bool{false, true} {
		suffix := ""
		if fencing {
			suffix = "-fencing"
		}
		l := newLocker(b, integration.Redis(b), &Config{Prefix: prefix, Fencing: fencing})
		floor := integration.Redis(b)
		n := "bench" + suffix
		key := l.Key(n)
		floorRun := func() error {
			rest := "|" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "|" + l.set.meta
			if fencing {
				return floorTryReleaseFenced(ctx, floor, key, l.fenceKey(key), l.channel(key), rest, l.set.ttlMs)
			}
			return floorTryRelease(ctx, floor, key, l.channel(key), rest, l.set.ttlMs)
		}
		lockkitRun := func() error {
			lk, err := l.TryLock(ctx, n)
			if err != nil {
				return err
			}
			return lk.Release(ctx)
		}
		// Warm up: load the scripts, open the connections.
		if err := lockkitRun(); err != nil {
			b.Fatal(err)
		}
		if err := floorRun(); err != nil {
			b.Fatal(err)
		}
		b.Run("lockkit"+suffix, func(b *testing.B) {
			for b.Loop() {
				if err := lockkitRun(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("floor"+suffix, func(b *testing.B) {
			for b.Loop() {
				if err := floorRun(); err != nil {
					b.Fatal(err)
				}
			}
		})
		naive := integration.Redis(b)
		naiveKey := prefix + "naive" + suffix
		if err := naiveTryRelease(ctx, naive, naiveKey, 30*time.Second); err != nil {
			b.Fatal(err)
		}
		b.Run("interleaved"+suffix, func(b *testing.B) {
			var lk, fl, nv time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := lockkitRun(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := floorRun(); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if err := naiveTryRelease(ctx, naive, naiveKey, 30*time.Second); err != nil {
					b.Fatal(err)
				}
				lk += t1.Sub(t0)
				fl += t2.Sub(t1)
				nv += time.Since(t2)
			}
			b.ReportMetric(float64(lk.Nanoseconds())/float64(b.N), "lockkit-ns/op")
			b.ReportMetric(float64(fl.Nanoseconds())/float64(b.N), "floor-ns/op")
			b.ReportMetric(float64(nv.Nanoseconds())/float64(b.N), "naive-ns/op")
			b.ReportMetric(float64(lk)/float64(fl), "ratio-floor")
			b.ReportMetric(float64(lk)/float64(nv), "ratio-naive")
		})
	}
}

// BenchmarkRedisHandoff measures the time from the start of a holder's
// Release to the moment a waiter blocked in Lock (on another Locker and
// client, as another process would be) holds the lock. Two lockers pass the
// lock back and forth; each handoff starts only once the next waiter is
// blocked. It reports the median and the 99th percentile.
func BenchmarkRedisHandoff(b *testing.B) {
	admin := integration.Redis(b)
	prefix := testPrefix(b, admin)
	lockers := [2]*Locker{
		newLocker(b, integration.Redis(b), &Config{Prefix: prefix}),
		newLocker(b, integration.Redis(b), &Config{Prefix: prefix}),
	}
	var waiting [2]chan struct{}
	for i, l := range lockers {
		waiting[i] = make(chan struct{}, 1)
		c := waiting[i]
		l.waitHook = func(string) {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
	ctx := context.Background()
	const n = "handoff"
	held, err := lockers[0].TryLock(ctx, n)
	if err != nil {
		b.Fatal(err)
	}
	type result struct {
		lk  *Lock
		at  time.Time
		err error
	}
	var lat []time.Duration
	cur := 0
	for b.Loop() {
		next := 1 - cur
		got := make(chan result, 1)
		go func() {
			lk, err := lockers[next].Lock(ctx, n)
			got <- result{lk, time.Now(), err}
		}()
		<-waiting[next]
		t0 := time.Now()
		if err := held.Release(ctx); err != nil {
			b.Fatal(err)
		}
		r := <-got
		if r.err != nil {
			b.Fatal(r.err)
		}
		lat = append(lat, r.at.Sub(t0))
		held, cur = r.lk, next
	}
	if err := held.Release(ctx); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRedisContended runs 16 workers on 4 Lockers (4 clients, as 4
// processes would be) taking one lock in turn with Lock and Release, and
// reports the per-worker spread: the most acquisitions by one worker over
// the fewest.
func BenchmarkRedisContended(b *testing.B) {
	admin := integration.Redis(b)
	prefix := testPrefix(b, admin)
	var lockers [4]*Locker
	for i := range lockers {
		lockers[i] = newLocker(b, integration.Redis(b), &Config{Prefix: prefix})
	}
	const workers = 16
	ctx := context.Background()
	var (
		counts [workers]int64
		left   = make(chan struct{}, b.N)
		errs   = make(chan error, workers)
		wg     sync.WaitGroup
	)
	for range b.N {
		left <- struct{}{}
	}
	close(left)
	b.ResetTimer()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := lockers[w%len(lockers)]
			for range left {
				lk, err := l.Lock(ctx, "contended")
				if err != nil {
					errs <- err
					return
				}
				counts[w]++
				if err := lk.Release(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	lo, hi := counts[0], counts[0]
	for _, c := range counts {
		lo, hi = min(lo, c), max(hi, c)
	}
	if lo > 0 {
		b.ReportMetric(float64(hi)/float64(lo), "spread")
	} else {
		b.ReportMetric(float64(hi), "spread-starved")
	}
}

// BenchmarkRedisTryReleaseWhileHolding measures TryLock + Release on one
// name while the same Locker holds 0, 1000 or 10000 other locks, which it
// keeps renewing in the background (TTL 3s, renewed every second, so the
// larger sets renew 1000 and 10000 times a second).
func BenchmarkRedisTryReleaseWhileHolding(b *testing.B) {
	admin := integration.Redis(b)
	for _, held := range []int{0, 1000, 10000} {
		b.Run(strconv.Itoa(held), func(b *testing.B) {
			l := newLocker(b, integration.Redis(b), &Config{Prefix: testPrefix(b, admin), TTL: 3 * time.Second, RenewInterval: time.Second})
			ctx := context.Background()
			locks := make([]*Lock, 0, held)
			for i := range held {
				lk, err := l.TryLock(ctx, strconv.Itoa(i))
				if err != nil {
					b.Fatal(err)
				}
				locks = append(locks, lk)
			}
			time.Sleep(time.Second) // let the renewals spread out
			for b.Loop() {
				lk, err := l.TryLock(ctx, "probe")
				if err != nil {
					b.Fatal(err)
				}
				if err := lk.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			lost, expired := 0, 0
			for _, lk := range locks {
				if err := lk.Release(ctx); err != nil {
					lost++
					if errors.Is(err, ErrLeaseExpired) {
						expired++
						if expired == 1 {
							b.Logf("first expiry: %v", err)
						}
					}
				}
			}
			b.ReportMetric(float64(lost), "lost")
			b.ReportMetric(float64(expired), "expired")
		})
	}
}
