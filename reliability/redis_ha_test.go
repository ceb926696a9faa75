package reliability

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/redislock"
)

// The tests of redislock on replicated Redis: a master with a replica
// under three Sentinels, and a three-master Redis Cluster, each started
// for the test on loopback (integration.StartRedisSentinel,
// integration.StartRedisCluster). RELIABILITY.md, "Replicated servers and
// failover", has the results.

// failoverClient returns a Sentinel failover client on rs, closed when t
// ends.
func failoverClient(t *testing.T, rs *integration.RedisSentinel, tune ...func(*redis.FailoverOptions)) *redis.Client {
	t.Helper()
	o := rs.FailoverOptions()
	for _, f := range tune {
		f(o)
	}
	c := redis.NewFailoverClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func redisLocker(t *testing.T, c redislock.Client, cfg *redislock.Config) *redislock.Locker {
	t.Helper()
	l, err := redislock.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// rmwStats counts what fenced read-modify-write workers saw.
type rmwStats struct {
	ops         atomic.Int64 // accepted read-modify-writes
	fenced      atomic.Int64 // reads or writes the resource refused for a stale token
	violations  atomic.Int64 // a fenced write accepted over another holder's write
	acquireErrs atomic.Int64 // acquires that failed (the master was down)
}

// fencedRMW runs one worker per Locker until ctx ends: each takes name,
// reads the resource in dir, pauses, and writes back the counter plus one,
// with the lock's token checked by the resource on the read and on the
// write (resource_test.go): a token below the newest it accepted is
// refused. A write accepted over another holder's write (the counter moved
// since the read) is a violation. It returns when every worker has
// stopped.
func fencedRMW(ctx context.Context, lockers []lockkit.Locker, name, dir string, st *rmwStats) {
	var wg sync.WaitGroup
	for _, l := range lockers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				lk, err := l.Acquire(actx, name)
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						st.acquireErrs.Add(1)
						time.Sleep(20 * time.Millisecond)
					}
					continue
				}
				var c0 int64
				entered := false
				err = updateResource(dir, func(rs *resState) error {
					if lk.Token() < rs.Token {
						st.fenced.Add(1)
						return nil
					}
					rs.Token, c0, entered = lk.Token(), rs.Counter, true
					return nil
				})
				if err == nil && entered {
					time.Sleep(2 * time.Millisecond)
					err = updateResource(dir, func(rs *resState) error {
						if lk.Token() < rs.Token {
							st.fenced.Add(1)
							return nil
						}
						if rs.Counter != c0 {
							st.violations.Add(1)
						}
						rs.Counter, rs.Writes = c0+1, rs.Writes+1
						st.ops.Add(1)
						return nil
					})
				}
				if err != nil {
					panic(err) // the resource's file: not a lock fault
				}
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = lk.Release(rctx) // may report a loss the fault caused
				cancel()
			}
		}()
	}
	wg.Wait()
}

// The master is SIGKILLed while locks are held and fenced
// read-modify-writes run; the Sentinels promote the replica on their own.
//
//   - A lock taken with WaitReplicas: 1 (so the replica had it) is still
//     held on the new master: its next renewal there succeeds, and another
//     Locker's TryLock is refused, naming it.
//   - The Lockers follow the new master through the failover client: the
//     workers keep completing read-modify-writes after the failover.
//   - Fenced read-modify-writes, with and without WaitReplicas, see no
//     violation.
//   - A failover client routed to the replica (ReplicaOnly) is refused with
//     ErrReplica, before and after the failover: the ROLE check works on
//     the node the client reaches.
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	rs := integration.StartRedisSentinel(t, integration.SentinelConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	replicaOnly := func(o *redis.FailoverOptions) { o.ReplicaOnly = true }
	if _, err := redisLocker(t, failoverClient(t, rs, replicaOnly), nil).TryLock(ctx, "x"); !errors.Is(err, redislock.ErrReplica) {
		t.Fatalf("TryLock through a ReplicaOnly failover client = %v, want ErrReplica", err)
	}

	waited := &redislock.Config{Fencing: true, WaitReplicas: 1, TTL: 10 * time.Second, RenewInterval: 500 * time.Millisecond}
	holder := redisLocker(t, failoverClient(t, rs), waited)
	other := redisLocker(t, failoverClient(t, rs), waited)
	held, err := holder.TryLock(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}

	// Fenced read-modify-writes on two resources: one by Lockers that wait
	// for the replica, one by Lockers that do not.
	plain := &redislock.Config{Fencing: true, TTL: 3 * time.Second}
	var workers sync.WaitGroup
	rmwCtx, stopRMW := context.WithCancel(ctx)
	defer stopRMW()
	stats := map[string]*rmwStats{"WaitReplicas 1": {}, "no WaitReplicas": {}}
	for what, st := range stats {
		cfg := plain
		if what == "WaitReplicas 1" {
			cfg = &redislock.Config{Fencing: true, TTL: 3 * time.Second, WaitReplicas: 1}
		}
		var lockers []lockkit.Locker
		for range 3 {
			lockers = append(lockers, redisLocker(t, failoverClient(t, rs), cfg))
		}
		dir := t.TempDir()
		workers.Add(1)
		go func() { defer workers.Done(); fencedRMW(rmwCtx, lockers, "rmw", dir, st) }()
	}
	time.Sleep(time.Second)

	old := rs.Master.Addr()
	killed := time.Now()
	addr, err := rs.KillMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failover := time.Since(killed)
	// The old master comes back (empty: no persistence) as a replica of
	// the new one. Until then the new master has no replica, and
	// WaitReplicas 1 refuses to acquire or renew.
	if err := rs.Rejoin(ctx, rs.Master, addr); err != nil {
		t.Fatal(err)
	}
	rejoined := time.Since(killed)
	before := map[string]int64{}
	for what, st := range stats {
		before[what] = st.ops.Load()
	}

	// The held lock: renewed on the new master once it has a replica
	// again, within its lease of 10 s from the last renewal before the kill.
	var renewErr error
	for time.Since(killed) < 9*time.Second {
		if renewErr = held.Renew(ctx); renewErr == nil || errors.Is(renewErr, lockkit.ErrLost) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if renewErr != nil {
		t.Fatalf("the lock acquired with WaitReplicas 1 after the failover: Renew = %v, want it still held", renewErr)
	}
	renewed := time.Since(killed)
	_, err = other.TryLock(ctx, "held")
	var he *lockkit.HeldError
	if !errors.As(err, &he) || he.Holder == nil || he.Holder.Token != held.Token() {
		t.Fatalf("another Locker's TryLock of the held lock after the failover = %v, want it held with token %d", err, held.Token())
	}

	time.Sleep(1500 * time.Millisecond)
	stopRMW()
	workers.Wait()
	if _, err := redisLocker(t, failoverClient(t, rs, replicaOnly), nil).TryLock(ctx, "x"); !errors.Is(err, redislock.ErrReplica) {
		t.Errorf("TryLock through a ReplicaOnly failover client after the failover = %v, want ErrReplica", err)
	}
	if err := held.Release(ctx); err != nil {
		t.Errorf("Release after the failover: %v", err)
	}
	next, err := other.TryLock(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	if next.Token() <= held.Token() {
		t.Errorf("token after the failover %d, not above the one before, %d", next.Token(), held.Token())
	}
	_ = next.Release(ctx)

	t.Logf("master %s killed; %s promoted after %v; the old master back as its replica after %v; the held lock renewed there %v after the kill",
		old, addr, failover.Round(time.Millisecond), rejoined.Round(time.Millisecond), renewed.Round(time.Millisecond))
	for what, st := range stats {
		t.Logf("%s: %d read-modify-writes (%d after the failover), %d refused for a stale token, %d violations, %d acquire errors",
			what, st.ops.Load(), st.ops.Load()-before[what], st.fenced.Load(), st.violations.Load(), st.acquireErrs.Load())
		if v := st.violations.Load(); v != 0 {
			t.Errorf("%s: %d fenced writes accepted over another write", what, v)
		}
		if st.ops.Load() == before[what] {
			t.Errorf("%s: no read-modify-write after the failover: the Lockers did not follow the new master", what)
		}
	}
}

// The replica replicates through a proxy that is stalled, so that what
// the master writes next never reaches it (a partition between them);
// then the master is SIGKILLed and the replica promoted (SENTINEL
// FAILOVER). Every write of the stall is lost.
//
// Tokens are max(counter+1, server time in µs), so a lost counter write is
// harmless while the counter follows the clock. The counter here is set
// an hour ahead of the clock first, as a master whose clock ran an hour
// fast leaves it (or a clock stepped back): then only the counter orders
// tokens.
//
//   - Without WaitReplicas, a lock acquired during the stall is lost in the
//     failover: its holder reports it lost (ErrNotOwner) at its next
//     renewal, and the next holder gets the same token again — the hazard,
//     shown to happen.
//   - With WaitReplicas: 1 the acquire during the stall fails with
//     ErrNotReplicated, holding nothing; the first token after the failover
//     is above every token handed out before it.
func TestRedisSentinelLostWrites(t *testing.T) {
	t.Parallel()
	// The Sentinels do not fail over on their own (the test forces it),
	// and a long failover-timeout keeps them from re-pointing the replica
	// at the master around the proxy meanwhile.
	rs := integration.StartRedisSentinel(t, integration.SentinelConfig{
		ProxyLink: true, DownAfter: time.Minute, FailoverTimeout: 5 * time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	const renew = 200 * time.Millisecond
	plainCfg := &redislock.Config{Fencing: true, TTL: 5 * time.Second, RenewInterval: renew}
	waitCfg := &redislock.Config{Fencing: true, TTL: 5 * time.Second, RenewInterval: renew,
		WaitReplicas: 1, WaitTimeout: 300 * time.Millisecond}
	plain := redisLocker(t, failoverClient(t, rs), plainCfg)
	waiting := redisLocker(t, failoverClient(t, rs), waitCfg)

	// The counters, an hour ahead of the clock, on master and replica.
	admin := redis.NewClient(&redis.Options{Addr: rs.Master.Addr()})
	defer admin.Close()
	now, err := admin.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	ahead := now.Add(time.Hour).UnixMicro()
	for _, name := range []string{"plain", "waited"} {
		if err := admin.Set(ctx, plain.Key(name)+":fence", ahead, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Tokens handed out before the stall.
	p1, err := plain.TryLock(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	mustReleaseRedis(t, p1)
	w1, err := waiting.TryLock(ctx, "waited")
	if err != nil {
		t.Fatal(err)
	}
	mustReleaseRedis(t, w1)

	// Every write so far on the replica: a write, then WAIT for it.
	if err := admin.Set(ctx, "mark", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := admin.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
	rs.Link.Stall()
	p2, err := plain.TryLock(ctx, "plain") // on the master alone
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	w2, err := waiting.TryLock(ctx, "waited")
	if !errors.Is(err, redislock.ErrNotReplicated) {
		t.Fatalf("TryLock with WaitReplicas 1 while the replica gets nothing = %v, %v; want ErrNotReplicated", w2, err)
	}
	t.Logf("with WaitReplicas 1 during the stall: %v after %v", err, time.Since(start).Round(time.Millisecond))
	if n, err := admin.Exists(ctx, waiting.Key("waited")).Result(); err != nil || n != 0 {
		t.Fatalf("the refused acquire left its key on the master: EXISTS %d, %v", n, err)
	}

	old := rs.Master.Addr()
	killed := time.Now()
	if err := rs.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	rs.Link.CutAll() // what the stalled link held is gone with the master
	if err := rs.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	addr, err := rs.WaitFailover(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()

	// The lock acquired during the stall is not on the new master: its
	// holder says so at its next renewal.
	select {
	case <-p2.Done():
	case <-time.After(renew + 3*time.Second):
		t.Fatal("the lock lost in the failover is still reported held 3 s after the promotion")
	}
	if err := p2.Err(); !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, redislock.ErrNotOwner) {
		t.Fatalf("Err of the lock lost in the failover = %v, want ErrLost with ErrNotOwner", err)
	}
	t.Logf("promoted %v after the kill; the lock lost in the failover reported lost %v after the kill", promoted.Sub(killed).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	p3, err := plain.TryLock(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	mustReleaseRedis(t, p3)
	if p3.Token() > p2.Token() {
		t.Fatalf("without WaitReplicas, token %d after the failover is above the lost one, %d: the counter write was not lost, so this test shows nothing", p3.Token(), p2.Token())
	}
	t.Logf("without WaitReplicas: tokens %d, %d (lost), then %d after the failover: handed out twice", p1.Token(), p2.Token(), p3.Token())

	// WaitReplicas 1 needs a replica: the old master rejoins as one.
	if err := rs.Rejoin(ctx, rs.Master, addr); err != nil {
		t.Fatal(err)
	}
	var w3 *redislock.Lock
	for start := time.Now(); ; {
		// Refused until the new master counts the replica as online.
		w3, err = waiting.TryLock(ctx, "waited")
		if !errors.Is(err, redislock.ErrNotReplicated) || time.Since(start) > 10*time.Second {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	mustReleaseRedis(t, w3)
	if w3.Token() <= w1.Token() {
		t.Fatalf("with WaitReplicas 1: token %d after the failover, not above %d handed out before it", w3.Token(), w1.Token())
	}
	t.Logf("with WaitReplicas 1: tokens %d, then %d after the failover", w1.Token(), w3.Token())
}

func mustReleaseRedis(t *testing.T, lk *redislock.Lock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lk.Release(ctx); err != nil {
		t.Fatalf("Release(%q): %v", lk.Name(), err)
	}
}

// clusterClient returns a cluster client on rc, closed when t ends.
func clusterClient(t *testing.T, rc *integration.RedisCluster) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs(), ContextTimeoutEnabled: true,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// keySlot is the Redis Cluster slot of key: CRC16 (XMODEM) of its hash
// tag, modulo 16384. The test checks it against CLUSTER KEYSLOT.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// redislock on a three-master Redis Cluster through cluster clients. Not
// parallel: the conformance suite's leak check counts every goroutine
// started while a check runs, a parallel test's too.
func TestRedisCluster(t *testing.T) {
	rc := integration.StartRedisCluster(t)
	admin := clusterClient(t, rc)
	// The admin client's node clients (each with a goroutine of go-redis's
	// own), made now, not in a check that looks for leaked goroutines.
	if err := admin.ForEachShard(context.Background(), func(ctx context.Context, c *redis.Client) error {
		return c.Ping(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	cfg := &redislock.Config{Fencing: true, TTL: 3 * time.Second, RenewInterval: 200 * time.Millisecond}

	// The conformance suite, every Locker on a cluster client of its own.
	t.Run("conformance", func(t *testing.T) {
		keyOf := redisLocker(t, admin, cfg).Key
		locktest.Run(t, locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker { return redisLocker(t, clusterClient(t, rc), cfg) },
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				if err := admin.Del(context.Background(), l.(*redislock.Lock).Key()).Err(); err != nil {
					t.Fatalf("DEL: %v", err)
				}
			},
			LossBound: time.Second + 200*time.Millisecond,
			Tokens:    true,
			Leftovers: func(t *testing.T, names []string) int {
				n := 0
				for _, name := range names { // one slot each: no multi-key EXISTS
					k, err := admin.Exists(context.Background(), keyOf(name)).Result()
					if err != nil {
						t.Fatalf("EXISTS: %v", err)
					}
					n += int(k)
				}
				return n
			},
		})
	})

	// One lock in every one of the 16384 slots, all held at once.
	t.Run("every slot", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		l := redisLocker(t, clusterClient(t, rc), &redislock.Config{Fencing: true, Prefix: "slots:"})
		names := make([]string, 16384)
		for i, found := 0, 0; found < len(names); i++ {
			n := "n" + strconv.Itoa(i)
			if s := keySlot(l.Key(n)); names[s] == "" {
				names[s] = n
				found++
			}
		}
		for _, s := range []int{0, 1, 5460, 5461, 10922, 10923, 16383} {
			got, err := admin.ClusterKeySlot(ctx, l.Key(names[s])).Result()
			if err != nil || int(got) != s {
				t.Fatalf("CLUSTER KEYSLOT %s = %d, %v; want %d", l.Key(names[s]), got, err, s)
			}
		}
		locks := make([]*redislock.Lock, len(names))
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(names); i += 16 {
					lk, err := l.TryLock(ctx, names[i])
					if err != nil {
						errs <- err
						return
					}
					locks[i] = lk
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var held int64
		for _, n := range rc.Nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Addr()})
			keys, err := c.DBSize(ctx).Result()
			_ = c.Close()
			if err != nil {
				t.Fatal(err)
			}
			held += keys
		}
		if held < 2*16384 { // a lock key and a fence counter each
			t.Errorf("the nodes hold %d keys, want at least %d", held, 2*16384)
		}
		for _, lk := range locks {
			if err := lk.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})

	// Names with braces: every key of a name in one slot, chosen by the
	// library. A name starting with "}" would give "{}", an empty hash
	// tag, and the queue and release scripts' keys different slots. A
	// waiter queued in Redis gets the lock handed over by the release.
	t.Run("braces", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a := redisLocker(t, clusterClient(t, rc), cfg)
		b := redisLocker(t, clusterClient(t, rc), cfg)
		for _, n := range []string{"}x", "}", "}}", "{a}b", "a{b}c", "x}", "{", "{}"} {
			held, err := a.TryLock(ctx, n)
			if err != nil {
				t.Fatalf("TryLock(%q): %v", n, err)
			}
			if list, err := a.List(ctx); err != nil || len(list) != 1 || list[0].Name != n || !list[0].Held {
				t.Errorf("List while %q is held = %+v, %v", n, list, err)
			}
			got := make(chan *redislock.Lock, 1)
			go func() {
				lk, err := b.Lock(ctx, n)
				if err != nil {
					t.Errorf("Lock(%q): %v", n, err)
				}
				got <- lk
			}()
			time.Sleep(100 * time.Millisecond) // b queues in Redis
			if err := held.Release(ctx); err != nil {
				t.Fatalf("Release(%q): %v", n, err)
			}
			next := <-got
			if next == nil {
				t.FailNow()
			}
			if next.Token() <= held.Token() {
				t.Errorf("%q: token %d after %d", n, next.Token(), held.Token())
			}
			if err := next.Release(ctx); err != nil {
				t.Fatalf("Release(%q): %v", n, err)
			}
			list, err := a.List(ctx)
			if err != nil || len(list) != 0 {
				t.Errorf("List after releasing %q = %v, %v", n, list, err)
			}
		}
	})
	// A waiter's release channel stays subscribed after its wait, on the
	// Locker's one pub/sub connection (to one node: a plain PUBLISH reaches
	// every node of a cluster), and later waits on names in every master's
	// slots are woken through it. A 30 s lease and a 5 s wait: only a
	// release message can wake them.
	t.Run("lingering subscriptions", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		long := &redislock.Config{Fencing: true, Prefix: "linger:"}
		a := redisLocker(t, clusterClient(t, rc), long)
		b := redisLocker(t, clusterClient(t, rc), long)
		masters := map[string]bool{}
		for i := 0; len(masters) < 3; i++ {
			n := "n" + strconv.Itoa(i)
			node, err := admin.MasterForKey(ctx, a.Key(n))
			if err != nil {
				t.Fatal(err)
			}
			if masters[node.Options().Addr] {
				continue
			}
			masters[node.Options().Addr] = true
			for round := range 2 { // the second round finds the channel subscribed
				held, err := a.TryLock(ctx, n)
				if err != nil {
					t.Fatalf("TryLock(%q): %v", n, err)
				}
				got := make(chan error, 1)
				go func() {
					wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
					defer wcancel()
					lk, err := b.Lock(wctx, n)
					if err == nil {
						err = lk.Release(ctx)
					}
					got <- err
				}()
				time.Sleep(100 * time.Millisecond) // b queues in Redis
				if err := held.Release(ctx); err != nil {
					t.Fatalf("Release(%q): %v", n, err)
				}
				if err := <-got; err != nil {
					t.Fatalf("waiter on %q (slot on %s), round %d: %v", n, node.Options().Addr, round, err)
				}
			}
		}
	})
	// WaitReplicas on a cluster waits for the replicas of the master of
	// the name's slot: acquires succeed on the master that has a replica
	// and fail with ErrNotReplicated, holding nothing, on the others.
	t.Run("WaitReplicas", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		with := rc.Nodes[0]
		rc.AddReplica(t, with)
		l := redisLocker(t, clusterClient(t, rc), &redislock.Config{Fencing: true, WaitReplicas: 1, WaitTimeout: 300 * time.Millisecond})
		var ok, refused int
		for i := 0; ok == 0 || refused == 0; i++ {
			n := "wait" + strconv.Itoa(i)
			node, err := admin.MasterForKey(ctx, l.Key(n))
			if err != nil {
				t.Fatal(err)
			}
			lk, err := l.TryLock(ctx, n)
			switch onReplicated := node.Options().Addr == with.Addr(); {
			case onReplicated && err == nil:
				ok++
				mustReleaseRedis(t, lk)
			case !onReplicated && errors.Is(err, redislock.ErrNotReplicated):
				refused++
				if k, err := admin.Exists(ctx, l.Key(n)).Result(); err != nil || k != 0 {
					t.Fatalf("the refused acquire of %q left its key: %d, %v", n, k, err)
				}
			default:
				t.Fatalf("TryLock(%q) on %s (the replicated master: %v) = %v", n, node.Options().Addr, onReplicated, err)
			}
		}
	})

	// A lock held, fenced read-modify-writes running and a contender trying
	// all along while the lock's slot moves to another node, one key at a
	// time (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE):
	// the holder keeps the lock, renewing it through ASK and MOVED
	// redirections; the contender never gets it; no fenced write is
	// accepted over another.
	t.Run("slot migration", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		l := redisLocker(t, clusterClient(t, rc), cfg)
		contender := redisLocker(t, clusterClient(t, rc), cfg)
		const name = "moving"
		key := l.Key(name)
		slot := keySlot(key)
		rmwName := ""
		for i := 0; rmwName == ""; i++ {
			if n := "rmw" + strconv.Itoa(i); keySlot(l.Key(n)) == slot {
				rmwName = n
			}
		}
		srcClient, err := admin.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		nodes := map[string]*redis.Client{} // by address
		ids := map[string]string{}
		for _, n := range rc.Nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Addr()})
			defer c.Close()
			id, err := c.Do(ctx, "cluster", "myid").Text()
			if err != nil {
				t.Fatal(err)
			}
			nodes[n.Addr()], ids[n.Addr()] = c, id
		}
		src := srcClient.Options().Addr
		var dst string
		for a := range nodes {
			if a != src {
				dst = a
				break
			}
		}

		held, err := l.TryLock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var (
			st         rmwStats
			workers    sync.WaitGroup
			contenders sync.WaitGroup
			won, tries atomic.Int64
			otherErrs  atomic.Int64
		)
		rmwCtx, stop := context.WithCancel(ctx)
		defer stop()
		var lockers []lockkit.Locker
		for range 3 {
			lockers = append(lockers, redisLocker(t, clusterClient(t, rc), cfg))
		}
		dir := t.TempDir()
		workers.Add(1)
		go func() { defer workers.Done(); fencedRMW(rmwCtx, lockers, rmwName, dir, &st) }()
		contenders.Add(1)
		go func() {
			defer contenders.Done()
			for rmwCtx.Err() == nil {
				tries.Add(1)
				lk, err := contender.TryLock(rmwCtx, name)
				switch {
				case err == nil:
					won.Add(1)
					_ = lk.Release(context.Background())
				case !errors.Is(err, lockkit.ErrNotAcquired):
					otherErrs.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		time.Sleep(300 * time.Millisecond)

		do := func(addr string, args ...any) *redis.Cmd {
			t.Helper()
			cmd := nodes[addr].Do(ctx, args...)
			if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
				t.Fatalf("%v on %s: %v", args, addr, err)
			}
			return cmd
		}
		started := time.Now()
		do(dst, "cluster", "setslot", slot, "importing", ids[src])
		do(src, "cluster", "setslot", slot, "migrating", ids[dst])
		host, port, _ := strings.Cut(dst, ":")
		moved := 0
		for {
			keys, err := nodes[src].ClusterGetKeysInSlot(ctx, slot, 100).Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) == 0 {
				break
			}
			// One key at a time, with a pause: renewals, acquires and
			// releases meet the slot half moved.
			if err := nodes[src].Migrate(ctx, host, port, keys[0], 0, 5*time.Second).Err(); err != nil && !strings.Contains(err.Error(), "NOKEY") {
				t.Fatalf("MIGRATE %s: %v", keys[0], err)
			}
			moved++
			time.Sleep(100 * time.Millisecond)
		}
		for _, a := range []string{dst, src} {
			do(a, "cluster", "setslot", slot, "node", ids[dst])
		}
		migration := time.Since(started)
		before := st.ops.Load()
		time.Sleep(time.Second)
		stop()
		workers.Wait()
		contenders.Wait()

		if err := held.Renew(ctx); err != nil {
			t.Fatalf("Renew after the migration: %v", err)
		}
		if n, err := nodes[dst].Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Fatalf("the lock key on the node the slot moved to: EXISTS %d, %v", n, err)
		}
		if w := won.Load(); w != 0 {
			t.Errorf("the contender acquired the held lock %d times during the migration", w)
		}
		if v := st.violations.Load(); v != 0 {
			t.Errorf("%d fenced writes accepted over another write", v)
		}
		if st.ops.Load() == before {
			t.Error("no read-modify-write after the migration")
		}
		if err := held.Release(ctx); err != nil {
			t.Fatal(err)
		}
		next, err := contender.TryLock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if next.Token() <= held.Token() {
			t.Errorf("token %d after the migration, not above %d", next.Token(), held.Token())
		}
		_ = next.Release(ctx)
		t.Logf("slot %d moved from %s to %s in %v (%d keys, one at a time); held throughout; contender: %d tries, 0 won, %d errors other than not-acquired; "+
			"read-modify-writes: %d (%d after), %d refused for a stale token, %d violations, %d acquire errors",
			slot, src, dst, migration.Round(time.Millisecond), moved, tries.Load(), otherErrs.Load(),
			st.ops.Load(), st.ops.Load()-before, st.fenced.Load(), st.violations.Load(), st.acquireErrs.Load())
	})
}
