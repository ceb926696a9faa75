package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name under which [RedisSentinel]'s Sentinels
// monitor the master: redis.FailoverOptions.MasterName.
const SentinelMaster = "lockkit"

// RedisSentinel is a replicated Redis: a master, one replica and three
// Sentinels (quorum 2) watching them, every process a private [Server] on
// 127.0.0.1. Clients find the master through the Sentinels
// (redis.NewFailoverClient with [RedisSentinel.FailoverOptions]).
type RedisSentinel struct {
	// Master and Replica are the servers as started; after a failover the
	// roles are swapped on the servers but not in these fields (see
	// [RedisSentinel.WaitFailover]).
	Master, Replica *Server
	Sentinels       []*Server
	// Link is the proxy the replica replicates through, when
	// SentinelConfig.ProxyLink asked for one: stall and cut it to lose the
	// master's last writes, as a network partition does.
	Link *Proxy
}

// SentinelConfig tunes [StartRedisSentinel].
type SentinelConfig struct {
	// DownAfter is the Sentinels' down-after-milliseconds: how long the
	// master may not answer before it is considered down. Zero means
	// 500 ms.
	DownAfter time.Duration
	// FailoverTimeout is the Sentinels' failover-timeout. Zero means 2 s.
	// It also delays a Sentinel's reconfiguration of a replica that
	// replicates from another address (a proxy) by that long.
	FailoverTimeout time.Duration
	// ProxyLink makes the replica replicate through a [Proxy]
	// (RedisSentinel.Link) instead of straight from the master.
	ProxyLink bool
}

// StartRedisSentinel starts a master, a replica of it and three Sentinels,
// waits until the replica is in sync and every Sentinel knows the replica
// and the other Sentinels (SENTINEL CKQUORUM), and removes them all when t
// ends, however it ends. The binaries are Debian's redis-server and
// redis-sentinel (redis-server --sentinel).
func StartRedisSentinel(t testing.TB, cfg SentinelConfig) *RedisSentinel {
	t.Helper()
	if cfg.DownAfter == 0 {
		cfg.DownAfter = 500 * time.Millisecond
	}
	if cfg.FailoverTimeout == 0 {
		cfg.FailoverTimeout = 2 * time.Second
	}
	// A replica's full sync starts at once rather than after the default
	// 5 s wait for more replicas to share a diskless transfer.
	sync := WithServerArgs("--repl-diskless-sync-delay", "0")
	rs := &RedisSentinel{Master: StartRedis(t, sync)}
	upstream := rs.Master.Addr()
	if cfg.ProxyLink {
		rs.Link = NewProxy(t, rs.Master.Addr())
		upstream = rs.Link.Addr()
	}
	host, port, _ := net.SplitHostPort(upstream)
	rs.Replica = StartRedis(t, sync, WithServerArgs("--replicaof", host, port))
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		conf := func(dir string) string {
			return fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
				"sentinel down-after-milliseconds %[1]s %[3]d\n"+
				"sentinel failover-timeout %[1]s %[4]d\n"+
				"sentinel parallel-syncs %[1]s 1\n",
				SentinelMaster, rs.Master.Port(), cfg.DownAfter.Milliseconds(), cfg.FailoverTimeout.Milliseconds())
		}
		srv, err := launchRedis("sentinel", port, conf, &serverOptions{args: []string{"--sentinel"}})
		rs.Sentinels = append(rs.Sentinels, register(t, srv, err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := rs.waitReady(ctx); err != nil {
		t.Fatalf("integration: Redis Sentinel did not come up: %v", err)
	}
	return rs
}

// waitReady waits until the replica is in sync and every Sentinel can
// authorise a failover.
func (rs *RedisSentinel) waitReady(ctx context.Context) error {
	replica := redis.NewClient(&redis.Options{Addr: rs.Replica.Addr()})
	defer replica.Close()
	return poll(ctx, func() error {
		info, err := replica.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("the replica is not in sync")
		}
		for _, s := range rs.Sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
			err := c.CkQuorum(ctx, SentinelMaster).Err()
			var replicas []map[string]string
			if err == nil {
				replicas, err = c.Replicas(ctx, SentinelMaster).Result()
			}
			_ = c.Close()
			if err != nil {
				return fmt.Errorf("Sentinel %s: %w", s.Addr(), err)
			}
			if len(replicas) == 0 {
				return fmt.Errorf("Sentinel %s knows no replica yet", s.Addr())
			}
		}
		return nil
	})
}

// SentinelAddrs returns the Sentinels' addresses.
func (rs *RedisSentinel) SentinelAddrs() []string { return addrs(rs.Sentinels) }

// addrs returns the servers' addresses.
func addrs(servers []*Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}

// FailoverOptions returns options for redis.NewFailoverClient that find
// the master through the Sentinels, with short timeouts fit for a test of
// faults (and ContextTimeoutEnabled, as lockkit's backends want).
func (rs *RedisSentinel) FailoverOptions() *redis.FailoverOptions {
	return &redis.FailoverOptions{
		MasterName:            SentinelMaster,
		SentinelAddrs:         rs.SentinelAddrs(),
		DialTimeout:           time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		ContextTimeoutEnabled: true,
	}
}

// MasterAddr returns the master's address as the first Sentinel that
// answers reports it.
func (rs *RedisSentinel) MasterAddr(ctx context.Context) (string, error) {
	var last error
	for _, s := range rs.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		hp, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
		_ = c.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("integration: no Sentinel named the master: %v", last)
}

// WaitFailover waits until every Sentinel names a master other than old
// and that server answers ROLE as a master, and returns its address.
func (rs *RedisSentinel) WaitFailover(ctx context.Context, old string) (string, error) {
	var addr string
	err := poll(ctx, func() error {
		addr = ""
		for _, s := range rs.Sentinels {
			if !s.Running() {
				continue
			}
			c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
			hp, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
			_ = c.Close()
			if err != nil {
				return err
			}
			a := net.JoinHostPort(hp[0], hp[1])
			if a == old || (addr != "" && a != addr) {
				return fmt.Errorf("Sentinel %s still names %s", s.Addr(), a)
			}
			addr = a
		}
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		defer c.Close()
		role, err := c.Do(ctx, "role").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s is not a master yet: %v", addr, role)
		}
		return nil
	})
	return addr, err
}

// Failover makes the first Sentinel promote the replica now (SENTINEL
// FAILOVER: no agreement asked, as an operator forcing a failover), for a
// master that is dead or was killed.
func (rs *RedisSentinel) Failover(ctx context.Context) error {
	c := redis.NewSentinelClient(&redis.Options{Addr: rs.Sentinels[0].Addr(), MaxRetries: -1})
	defer c.Close()
	return c.Failover(ctx, SentinelMaster).Err()
}

// RedisCluster is a Redis Cluster of three masters without replicas, every
// node a private [Server] on 127.0.0.1 whose cluster bus port (its port +
// 10000) was free too. The 16384 slots are split evenly by
// redis-cli --cluster create.
type RedisCluster struct {
	Nodes []*Server
}

// StartRedisCluster starts a three-master Redis Cluster, waits until every
// node reports cluster_state:ok, and removes it when t ends, however it
// ends.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	cli, err := findBinary("redis-cli", "/usr/bin", "/usr/local/bin")
	if err != nil {
		t.Fatal(err)
	}
	rc := &RedisCluster{}
	for range 3 {
		rc.Nodes = append(rc.Nodes, startClusterNode(t))
	}
	args := []string{"--cluster", "create"}
	args = append(args, rc.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if err := run(nil, cli, args...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	err = poll(ctx, func() error {
		for _, n := range rc.Nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
			info, err := c.ClusterInfo(ctx).Result()
			_ = c.Close()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				return fmt.Errorf("node %s: %s", n.Addr(), info)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("integration: Redis Cluster not ready: %v", err)
	}
	return rc
}

// startClusterNode starts a cluster-enabled redis-server for t.
func startClusterNode(t testing.TB) *Server {
	t.Helper()
	port, err := clusterPort()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := launchRedis("redis", port, nil, &serverOptions{args: []string{
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0"}})
	return register(t, srv, err)
}

// AddReplica starts a node for t that joins the cluster as a replica of
// master (one of Nodes), and waits until it is in sync. It is not added to
// Nodes.
func (rc *RedisCluster) AddReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv := startClusterNode(t)
	mc := redis.NewClient(&redis.Options{Addr: master.Addr(), MaxRetries: -1})
	defer mc.Close()
	rc2 := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer rc2.Close()
	id, err := mc.Do(ctx, "cluster", "myid").Text()
	if err == nil {
		err = rc2.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(master.Port())).Err()
	}
	if err == nil {
		// REPLICATE needs the master known to the new node first.
		err = poll(ctx, func() error { return rc2.Do(ctx, "cluster", "replicate", id).Err() })
	}
	if err == nil {
		err = poll(ctx, func() error {
			info, err := rc2.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "master_link_status:up") {
				return errors.New("the new replica is not in sync")
			}
			return nil
		})
	}
	if err != nil {
		t.Fatalf("integration: add a replica of %s: %v", master.Addr(), err)
	}
	return srv
}

// Addrs returns the nodes' addresses, for redis.ClusterOptions.Addrs.
func (rc *RedisCluster) Addrs() []string { return addrs(rc.Nodes) }

// clusterPort finds a port p on 127.0.0.1 such that p and p+10000 (the
// cluster bus) are both free.
func clusterPort() (int, error) {
	for range 100 {
		p := 20000 + rand.IntN(35000)
		a, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		_ = a.Close()
		if err != nil {
			continue
		}
		_ = b.Close()
		return p, nil
	}
	return 0, errors.New("integration: no free port pair for a cluster node")
}

// Rejoin starts old, a master that was killed, again and makes it a
// replica of master (REPLICAOF), as an operator or an orchestrator does
// with a failed master that comes back; it waits until the replica is in
// sync. (The Sentinels would re-point it themselves, but only about 8 s
// after it is back.) old comes back empty: the servers keep no data on
// disk.
func (rs *RedisSentinel) Rejoin(ctx context.Context, old *Server, master string) error {
	if err := old.Start(); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(master)
	if err != nil {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: old.Addr(), MaxRetries: -1})
	defer c.Close()
	if err := c.Do(ctx, "replicaof", host, port).Err(); err != nil {
		return fmt.Errorf("integration: REPLICAOF on %s: %w", old.Addr(), err)
	}
	return poll(ctx, func() error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("the rejoined server is not in sync")
		}
		return nil
	})
}

// KillMaster SIGKILLs the master named Master (the servers as started) and
// waits until the Sentinels have promoted another server on their own; it
// returns the new master's address.
func (rs *RedisSentinel) KillMaster(ctx context.Context) (string, error) {
	old := rs.Master.Addr()
	if err := rs.Master.Kill(); err != nil {
		return "", err
	}
	return rs.WaitFailover(ctx, old)
}
