package redislock

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/redis/go-redis/v9"
)

// WaitReplicas is checked by New, without I/O: its timeout against the
// TTL, and the client, which must send WAIT on the script's connection.
func TestWaitReplicasConfig(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cc.Close()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()

	for _, cfg := range []Config{
		{TTL: time.Second, WaitReplicas: 1, WaitTimeout: 600 * time.Millisecond},
		{WaitReplicas: 1, WaitTimeout: time.Microsecond},
	} {
		if _, err := New(c, &cfg); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
	if _, err := New(ring, &Config{WaitReplicas: 1}); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("New on a Ring with WaitReplicas = %v, want ErrInvalid", err)
	}
	for _, client := range []Client{c, cc} {
		l, err := New(client, &Config{WaitReplicas: 2})
		if err != nil {
			t.Fatalf("New on a %T with WaitReplicas = %v", client, err)
		}
		if l.set.waitN != 2 || l.set.waitMs != 1000 {
			t.Errorf("WaitReplicas 2 with the default TTL: %d replicas, %d ms", l.set.waitN, l.set.waitMs)
		}
	}
	l := newLocker(t, c, &Config{TTL: 2 * time.Second, NoAutoRenew: true, WaitReplicas: 1})
	if l.set.waitMs != 500 {
		t.Errorf("default WaitTimeout with TTL 2s = %d ms, want TTL/4", l.set.waitMs)
	}
	l = newLocker(t, c, &Config{TTL: 10 * time.Second, RenewInterval: 200 * time.Millisecond, WaitReplicas: 1})
	if l.set.waitMs != 100 {
		t.Errorf("default WaitTimeout with RenewInterval 200ms = %d ms, want RenewInterval/2", l.set.waitMs)
	}
}

// BenchmarkWaitReplicas measures what WaitReplicas: 1 costs: a TryLock and
// a Release with fencing on a master with one replica, both private
// servers on loopback, with and without it. WAIT rides in the acquire's
// pipeline, so the client's round trips stay the same (writes/op); the
// wait for the replica's acknowledgement is added to the acquire's
// latency (acquire-p50-µs, the median TryLock).
func BenchmarkWaitReplicas(b *testing.B) {
	master := integration.StartRedis(b)
	integration.StartRedis(b, integration.WithServerArgs("--replicaof", "127.0.0.1", strconv.Itoa(master.Port())))
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: master.Addr()})
	defer admin.Close()
	for {
		if role, err := ServerRole(ctx, admin); err == nil && role.Replicas == 1 {
			if n, err := admin.Wait(ctx, 1, time.Second).Result(); err == nil && n == 1 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, n := range []int{0, 1} {
		b.Run("WaitReplicas="+strconv.Itoa(n), func(b *testing.B) {
			var rt integration.RoundTrips
			c := redis.NewClient(&redis.Options{Addr: master.Addr(), Dialer: rt.Dial})
			defer c.Close()
			l := newLocker(b, c, &Config{Fencing: true, WaitReplicas: n})
			name := "bench-wait-" + strconv.Itoa(n)
			mustRelease(b, mustLock(b, l, name)) // the scripts cached, the connection open
			before := rt.Writes()
			acquires := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				lk, err := l.TryLock(ctx, name)
				if err != nil {
					b.Fatal(err)
				}
				acquires = append(acquires, time.Since(start))
				if err := lk.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(rt.Writes()-before)/float64(b.N), "writes/op")
			// The median TryLock: steadier than the mean on a shared machine.
			slices.Sort(acquires)
			b.ReportMetric(float64(acquires[len(acquires)/2].Microseconds()), "acquire-p50-µs")
		})
	}
}
