package integration

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Sentinel topology starts, and a SIGKILLed master is replaced by its
// replica, which a failover client then reaches.
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rs := StartRedisSentinel(t, SentinelConfig{})
	t.Logf("started in %v", time.Since(start))
	ctx := ctxFor(t, 60*time.Second)
	c := redis.NewFailoverClient(rs.FailoverOptions())
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old, err := rs.MasterAddr(ctx)
	if err != nil || old != rs.Master.Addr() {
		t.Fatalf("master %q, %v; want %s", old, err, rs.Master.Addr())
	}
	killed := time.Now()
	addr, err := rs.KillMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover to %s in %v", addr, time.Since(killed))
	if addr != rs.Replica.Addr() {
		t.Fatalf("new master %s, want the replica %s", addr, rs.Replica.Addr())
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET through the failover client after the failover = %q, %v", v, err)
	}
}

// The cluster starts with every slot served, and a cluster client writes
// keys on every node.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rc := StartRedisCluster(t)
	t.Logf("started in %v", time.Since(start))
	ctx := ctxFor(t, 60*time.Second)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	defer c.Close()
	for i := range 100 {
		if err := c.Set(ctx, "k"+string(rune('a'+i%26))+string(rune('a'+i/26)), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range rc.Nodes {
		nc := redis.NewClient(&redis.Options{Addr: n.Addr()})
		size, err := nc.DBSize(ctx).Result()
		_ = nc.Close()
		if err != nil || size == 0 {
			t.Errorf("node %s holds %d keys, %v; want some", n.Addr(), size, err)
		}
	}
}
