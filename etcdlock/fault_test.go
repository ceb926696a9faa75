package etcdlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// faultTTL is the lease of the fault tests' Lockers: longer than a leader
// election of the private clusters (about a second), so that no lock is
// lost to a failover of a minority.
const faultTTL = 5 * time.Second

// contention runs workers on four Lockers (each on a client of its own with
// every endpoint) that take one name in turn and check, under the lock,
// that nobody else is inside and that the tokens grow; fault runs once the
// contention has started. A lock held on another name across the whole run
// must not be lost.
func contention(t *testing.T, c *integration.EtcdCluster, fault func()) {
	t.Helper()
	name := integration.Name(t)
	var lockers []*Locker
	for range 4 {
		lockers = append(lockers, newLocker(t, etcdClient(t, c.Endpoints()...), &Config{TTL: faultTTL, Prefix: "fault/"}))
	}
	longHeld := mustTry(t, lockers[0], name+".long")

	var (
		inside, overlaps, acquired, lost atomic.Int64
		mu                               sync.Mutex
		lastToken                        int64
		backwards                        int
		wg                               sync.WaitGroup
		stop                             = make(chan struct{})
		faulted                          atomic.Bool
		afterFault                       atomic.Int64
	)
	for w := range 8 {
		l := lockers[w%len(lockers)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				lk, err := l.Lock(ctx, name)
				cancel()
				if err != nil {
					t.Errorf("worker %d: Lock: %v", w, err)
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				mu.Lock()
				if lk.Token() <= lastToken {
					backwards++
				}
				lastToken = lk.Token()
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
				inside.Add(-1)
				acquired.Add(1)
				if faulted.Load() {
					afterFault.Add(1)
				}
				rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
				err = lk.Release(rctx)
				rcancel()
				if errors.Is(err, lockkit.ErrLost) {
					lost.Add(1)
					t.Logf("worker %d: %v", w, err)
				} else if err != nil {
					t.Errorf("worker %d: Release: %v", w, err)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	before := acquired.Load()
	faulted.Store(true)
	fault()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d acquisitions before the fault, %d after; %d lost", before, afterFault.Load(), lost.Load())
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d times two holders were inside at once", n)
	}
	if backwards != 0 {
		t.Errorf("%d tokens were not above the previous holder's", backwards)
	}
	if n := lost.Load(); n != 0 {
		t.Errorf("%d locks were lost to the fault of a minority", n)
	}
	if before == 0 || afterFault.Load() == 0 {
		t.Errorf("no progress: %d acquisitions before the fault, %d after", before, afterFault.Load())
	}
	if err := longHeld.Err(); err != nil {
		t.Errorf("the lock held across the fault: %v", err)
	}
	mustRelease(t, longHeld)
}

// The leader member is killed (SIGKILL) under contention, and started
// again: the other two elect a leader and the locks go on.
func TestFaultLeaderKilled(t *testing.T) {
	c := integration.StartEtcdCluster(t, 3)
	contention(t, c, func() {
		leader := c.Leader(ctxT(t, 10*time.Second))
		if leader < 0 {
			t.Fatal("no leader")
		}
		m := c.Members[leader]
		if err := m.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed the leader, member %d", leader)
		time.Sleep(3 * time.Second)
		if err := m.Start(); err != nil {
			t.Error(err)
		}
	})
}

// A follower is killed under contention, and started again.
func TestFaultFollowerKilled(t *testing.T) {
	c := integration.StartEtcdCluster(t, 3)
	contention(t, c, func() {
		leader := c.Leader(ctxT(t, 10*time.Second))
		if leader < 0 {
			t.Fatal("no leader")
		}
		f := (leader + 1) % len(c.Members)
		m := c.Members[f]
		if err := m.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed a follower, member %d", f)
		time.Sleep(3 * time.Second)
		if err := m.Start(); err != nil {
			t.Error(err)
		}
	})
}

// With the whole cluster paused (no quorum), no keepalive succeeds: the
// lock is reported lost with ErrLeaseExpired no later than TTL after the
// last keepalive the server confirmed was sent, and not before TTL after
// it less a margin (it cannot be declared before the lease may have run
// out; declaring it at the first failed keepalive, about two renewal
// intervals after the last success, is too early). After the cluster
// resumes, the name can be taken again.
//
// The times are measured from that keepalive, which a gRPC interceptor
// sees, not from the pause: under load the renewals run late, so the last
// one before the pause may be well over a renewal interval old. The upper
// margin is 100 ms plus three times the worst lateness of a 5 ms sleep in
// this process while it waits, so that a starved machine's late timers
// are allowed for, and only they.
func TestFaultNoQuorumLeaseExpires(t *testing.T) {
	c := integration.StartEtcdCluster(t, 3)
	const ttl = 2 * time.Second
	var ka keepalives
	l := newLocker(t, etcdClientDial(t, []grpc.DialOption{grpc.WithChainStreamInterceptor(ka.intercept)}, c.Endpoints()...), &Config{TTL: ttl})
	name := integration.Name(t)
	lk := mustTry(t, l, name)
	every := l.set.renewEvery
	for deadline := time.Now().Add(30 * time.Second); ka.last().IsZero(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no keepalive was confirmed within 30s")
		}
	}
	for _, m := range c.Members {
		if err := m.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	late := make(chan time.Duration, 1)
	go func() { late <- sleepLateness(lk.Done()) }()
	waitDone(t, lk, 3*ttl)
	lost := time.Now()
	maxLate := <-late
	for _, m := range c.Members {
		if err := m.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	d := lost.Sub(ka.last())
	t.Logf("lost %v after the last confirmed keepalive was sent (a 5 ms sleep was up to %v late): %v", d.Round(time.Millisecond), maxLate.Round(time.Millisecond), lk.Err())
	if !errors.Is(lk.Err(), ErrLeaseExpired) {
		t.Errorf("Err = %v, want ErrLeaseExpired", lk.Err())
	}
	if upper, lower := ttl+100*time.Millisecond+3*maxLate, ttl-every/2; d > upper || d < lower {
		t.Errorf("lost %v after the last confirmed keepalive, want between %v and %v (TTL %v, renewal every %v)", d, lower, upper, ttl, every)
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release = %v, want ErrLost", err)
	}
	if err := c.WaitHealthy(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	mustRelease(t, mustLock(t, l, name))
}

// keepalives records when the last lease keepalive that the server
// confirmed (answered with a TTL) was sent: a gRPC stream interceptor on
// the client (each KeepAliveOnce opens a stream of its own). confirmed, if
// set, is called with the send time of each.
type keepalives struct {
	mu        sync.Mutex
	lastOK    time.Time
	confirmed func(sent time.Time)
}

func (k *keepalives) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	opened := time.Now()
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || method != "/etcdserverpb.Lease/LeaseKeepAlive" {
		return s, err
	}
	return &keepaliveStream{ClientStream: s, k: k, opened: opened}, nil
}

func (k *keepalives) last() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastOK
}

type keepaliveStream struct {
	grpc.ClientStream
	k      *keepalives
	opened time.Time
}

func (s *keepaliveStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	// A lease the server no longer knows is answered with TTL 0.
	if r, ok := m.(*etcdserverpb.LeaseKeepAliveResponse); err == nil && ok && r.TTL > 0 {
		s.k.mu.Lock()
		if s.opened.After(s.k.lastOK) {
			s.k.lastOK = s.opened
		}
		s.k.mu.Unlock()
		if s.k.confirmed != nil {
			s.k.confirmed(s.opened)
		}
	}
	return err
}

// sleepLateness sleeps 5 ms at a time until done closes and returns how
// much later than asked the latest sleep woke: how long this process's
// timers were starved.
func sleepLateness(done <-chan struct{}) time.Duration {
	const step = 5 * time.Millisecond
	var worst time.Duration
	for {
		select {
		case <-done:
			return worst
		default:
		}
		start := time.Now()
		time.Sleep(step)
		worst = max(worst, time.Since(start)-step)
	}
}

// envHolder makes the test binary a lock holder for TestFaultHolderPaused.
const envHolder = "LOCKKIT_ETCD_TEST_HOLDER"

// TestHelperHolder is the child process of TestFaultHolderPaused: it
// prints "start" with the time (µs since the epoch) before its lease can
// have been granted, then takes the lock and prints its token, prints
// "renewed" with the send time of each keepalive the server confirmed, and
// prints "lost" with the time when the lock is lost.
func TestHelperHolder(t *testing.T) {
	spec := os.Getenv(envHolder)
	if spec == "" {
		t.Skip("runs as the child of TestFaultHolderPaused")
	}
	parts := strings.Split(spec, ";") // endpoints;name;ttl seconds
	ttl, _ := strconv.Atoi(parts[2])
	fmt.Printf("start %d\n", time.Now().UnixMicro())
	ka := keepalives{confirmed: func(sent time.Time) { fmt.Printf("renewed %d\n", sent.UnixMicro()) }}
	cli := etcdClientDial(t, []grpc.DialOption{grpc.WithChainStreamInterceptor(ka.intercept)}, strings.Split(parts[0], ",")...)
	l := newLocker(t, cli, &Config{TTL: time.Duration(ttl) * time.Second, Owner: "paused"})
	lk := mustTry(t, l, parts[1])
	fmt.Printf("token %d\n", lk.Token())
	<-lk.Done()
	fmt.Printf("lost %d %v\n", time.Now().UnixMilli(), lk.Err())
	_ = lk.Release(context.Background())
}

// A holder process is paused with SIGSTOP past its lease: the server lets
// the lease go, a waiter elsewhere gets the lock with a larger token, no
// earlier than the lease can have ended (one TTL after the holder sent the
// last keepalive the server confirmed, or after it started if none); when
// the holder resumes it reports the loss at once.
func TestFaultHolderPaused(t *testing.T) {
	endpoints := integration.EtcdEndpoints(t)
	name := integration.Name(t)
	const ttl = 2 * time.Second
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHolder$", "-test.v")
	cmd.Env = append(os.Environ(), envHolder+"="+strings.Join(endpoints, ",")+";"+name+";2")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// from (µs) is the latest time the server can be known to have
	// counted the holder's lease from: the holder's start, then the send
	// time of each confirmed keepalive (the server counts the TTL from
	// when it received it). Lines are read until the holder exits: a
	// keepalive sent before the stop may be confirmed after the resume.
	var token, from, lostAt int64
	scan := func(line string) {
		f := strings.Fields(line)
		if len(f) < 2 {
			return
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return
		}
		switch f[0] {
		case "start", "renewed":
			from = max(from, n)
		case "token":
			token = n
		case "lost":
			lostAt = n
			t.Logf("holder: %s", line)
		}
	}
	for token == 0 {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the holder exited before taking the lock")
			}
			scan(line)
		case <-time.After(30 * time.Second):
			t.Fatal("the holder took no lock within 30s")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()

	b := newLocker(t, etcdClient(t, endpoints...), &Config{Owner: "b"})
	next := mustLock(t, b, name)
	acquired := time.Now()
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	for eof := false; !eof; {
		select {
		case line, ok := <-lines:
			eof = !ok
			scan(line)
		case <-time.After(10 * time.Second):
			t.Fatalf("the resumed holder did not report the loss and exit within 10s (lost at %d)", lostAt)
		}
	}
	if lostAt == 0 {
		t.Fatal("the holder exited without reporting the loss")
	}
	late := time.UnixMilli(lostAt).Sub(resumed)
	leaseFrom := time.UnixMicro(from)
	t.Logf("waiter acquired %v after the holder stopped, %v after the holder's last confirmed keepalive was sent; the holder reported the loss %v after it resumed",
		acquired.Sub(stopped).Round(time.Millisecond), acquired.Sub(leaseFrom).Round(time.Millisecond), late.Round(time.Millisecond))
	if next.Token() <= token {
		t.Errorf("new holder's token %d not above the paused holder's %d", next.Token(), token)
	}
	// The margin covers clock granularity only: no delay on this machine
	// can make the acquire come sooner.
	if waited := acquired.Sub(leaseFrom); waited < ttl-20*time.Millisecond {
		t.Errorf("the waiter acquired %v after the paused holder's last confirmed keepalive was sent, before its lease (%v) can have ended", waited, ttl)
	}
	if late > time.Second {
		t.Errorf("the resumed holder reported the loss %v after it resumed, want within 1s", late)
	}
	mustRelease(t, next)
}

// The member a client took its lock through is killed while the client
// holds the lock: the client knew only that member when it acquired (so
// the lock's watch stream is on it), then learnt the others. The keepalive
// and the watch move to the other endpoints, so the lock is not lost over
// several TTLs, another process still finds it held, and the release goes
// through.
func TestFaultClientEndpointKilled(t *testing.T) {
	c := integration.StartEtcdCluster(t, 3)
	const ttl = 2 * time.Second
	eps := c.Endpoints()
	cli := etcdClient(t, eps[0])
	l := newLocker(t, cli, &Config{TTL: ttl, Owner: "a"})
	other := newLocker(t, etcdClient(t, eps[1:]...), &Config{TTL: ttl})
	name := integration.Name(t)
	lk := mustTry(t, l, name)
	cli.SetEndpoints(eps...)
	if err := c.Members[0].Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lk.Done():
		t.Fatalf("lost after the client's first endpoint was killed: %v", lk.Err())
	case <-time.After(3 * ttl):
	}
	if he := wantHeld(t, other, name); he.Holder == nil || he.Holder.Owner != "a" {
		t.Errorf("holder = %v, want a", he.Holder)
	}
	mustRelease(t, lk)
	mustRelease(t, mustTry(t, other, name))
}
