package redislock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
	"github.com/redis/go-redis/v9"
)

// envWaiter tells the test binary to run TestHelperWaiter: "<prefix>;<name>".
const envWaiter = "LOCKKIT_REDISLOCK_HELPER_WAITER"

// TestHelperWaiter is the child process of TestStaleGrantAfterPause: it
// waits for the lock, prints "held" when Lock returns it, and releases it
// and exits when its stdin closes.
func TestHelperWaiter(t *testing.T) {
	spec := os.Getenv(envWaiter)
	if spec == "" {
		t.Skip("runs as the child of TestStaleGrantAfterPause")
	}
	prefix, n, _ := strings.Cut(spec, ";")
	l := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "paused"})
	defer l.Close()
	lk, err := l.Lock(ctxT(t, 60*time.Second), n)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	fmt.Println("held")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	if err := lk.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// A waiting process is paused (SIGSTOP) while a release grants it the lock,
// until the grant's lease has run out and another client has taken the
// lock; then it resumes and reads the grant's message. It must not believe
// it holds the lock: it claims it, finds it held, and waits on. It gets the
// lock at the next release.
func TestStaleGrantAfterPause(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "a"})
	b := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "b"})
	n := name(t)
	held := mustLock(t, a, n)
	key := held.Key()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWaiter$", "-test.v")
	// The child uses this test's server, also when that is a container
	// the child would not find by itself (the last of duplicates wins).
	cmd.Env = append(os.Environ(), integration.EnvRedis+"="+integration.RedisURL(t), envWaiter+"="+prefix+";"+n)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	heldLine := func(within time.Duration) bool {
		deadline := time.After(within)
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatal("the waiter process exited")
				}
				if line == "held" {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}

	ctx := ctxT(t, 30*time.Second)
	// The child is registered in the queue (it subscribed before).
	for {
		if q, err := admin.ZCard(ctx, b.queueKey(key)).Result(); err == nil && q == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the waiter process never registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// kill returns before every thread has stopped: a release now could
	// reach a child still running, which would take a fresh grant.
	awaitStopped(t, cmd.Process.Pid)
	mustRelease(t, held) // grants the paused child the lock, for maxGrant
	raw, err := admin.Get(ctx, key).Result()
	if err != nil || !strings.Contains(raw, `"owner":"paused"`) {
		t.Fatalf("after the release the key holds %q (%v), want it granted to the paused waiter", raw, err)
	}
	for admin.Exists(ctx, key).Val() != 0 {
		if ctx.Err() != nil {
			t.Fatal("the grant to the paused waiter never ran out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	other := mustLock(t, b, n)
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if heldLine(time.Second) {
		t.Fatal("the resumed waiter believes it holds the lock that b holds (it took the grant that ran out while it was paused)")
	}
	if he := wantHeld(t, a, n); he.Holder == nil || he.Holder.Owner != "b" {
		t.Fatalf("holder after the resume = %v, want b", he.Holder)
	}
	mustRelease(t, other)
	if !heldLine(10 * time.Second) {
		t.Fatal("the waiter did not get the lock at the next release")
	}
	if raw, err := admin.Get(ctx, key).Result(); err != nil || !strings.Contains(raw, `"owner":"paused"`) {
		t.Fatalf("the waiter says it holds the lock; the key holds %q (%v)", raw, err)
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("waiter process: %v", err)
	}
}

// awaitStopped waits until every thread of process pid is stopped.
func awaitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			t.Fatal(err)
		}
		stopped := true
		for _, task := range tasks {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			// The state follows the command name, which ends with ")".
			if i := strings.LastIndexByte(string(stat), ')'); err != nil || i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
				stopped = false
				break
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d not stopped 10s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// readGate holds back what a connection has read while it is shut: the
// bytes have arrived, the client sees them when the gate opens.
type readGate struct {
	mu   sync.Mutex
	shut bool
	open chan struct{}
}

func (g *readGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.shut {
		g.shut, g.open = true, make(chan struct{})
	}
}

func (g *readGate) reopen() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		g.shut = false
		close(g.open)
	}
}

func (g *readGate) wait() {
	g.mu.Lock()
	shut, open := g.shut, g.open
	g.mu.Unlock()
	if shut {
		<-open
	}
}

type gatedConn struct {
	net.Conn
	g *readGate
}

func (c gatedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.g.wait()
	return n, err
}

// splitClient sends commands on one client and subscribes on another.
type splitClient struct {
	Client
	sub *redis.Client
}

func (c splitClient) Subscribe(ctx context.Context, channels ...string) *redis.PubSub {
	return c.sub.Subscribe(ctx, channels...)
}

// A grant's message reaches its waiter late (its pub/sub connection's
// reads are held back) after the grant ran out, another client took the
// lock and the waiter registered again in a later attempt. The late grant
// is for the earlier registration: the waiter must not take it.
func TestStaleGrantLateMessage(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	opts, err := redis.ParseURL(integration.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	var gate readGate
	opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return gatedConn{c, &gate}, nil
	}
	sub := redis.NewClient(opts)
	t.Cleanup(func() { gate.reopen(); _ = sub.Close() })

	a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "a", Fencing: true})
	c := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "c", Fencing: true})
	// TTL 15 s: the waiter tries again every 5 s without a message.
	w := newLocker(t, splitClient{integration.Redis(t), sub}, &Config{Prefix: prefix, Owner: "w", TTL: 15 * time.Second, Fencing: true})
	t.Cleanup(func() { gate.reopen(); _ = w.Close() })
	waiting := waitingHook(w)
	n := name(t)
	held := mustLock(t, a, n)
	key := held.Key()
	got := make(chan *Lock, 1)
	go func() {
		lk, err := w.Lock(ctxT(t, 30*time.Second), n)
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		got <- lk
	}()
	awaitWaiting(t, waiting)
	gate.close()
	mustRelease(t, held) // grants w the lock; the message is held back
	ctx := ctxT(t, 20*time.Second)
	for admin.Exists(ctx, key).Val() != 0 {
		if ctx.Err() != nil {
			t.Fatal("the grant never ran out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	other := mustLock(t, c, n)
	// The waiter's next attempt, without a message, registers it again.
	awaitWaiting(t, waiting)
	gate.reopen()
	select {
	case lk := <-got:
		if lk != nil {
			_ = lk.Release(context.Background())
		}
		t.Fatal("the waiter took the late grant of its earlier registration while c holds the lock")
	case <-waiting: // woken by the late message, it tried and waits again
	case <-time.After(10 * time.Second):
		t.Fatal("the late message did not wake the waiter")
	}
	mustRelease(t, other)
	select {
	case lk := <-got:
		if lk == nil {
			t.FailNow()
		}
		if lk.Token() <= other.Token() {
			t.Errorf("token %d not above the previous holder's %d", lk.Token(), other.Token())
		}
		if raw, err := admin.Get(ctx, key).Result(); err != nil || !strings.Contains(raw, `"owner":"w"`) {
			t.Errorf("the waiter holds the lock; the key holds %q (%v)", raw, err)
		}
		mustRelease(t, lk)
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not get the lock at the next release")
	}
}

// The waiter's pub/sub connection is killed (CLIENT KILL) in the same
// transaction as the release that grants it the lock: the grant's message
// is lost. The waiter still gets the lock, well before its own recheck
// (10 s); or, when its context ends at that moment, it returns with nothing
// held.
func TestGrantMessageLost(t *testing.T) {
	for _, cancelled := range []bool{false, true} {
		t.Run(fmt.Sprintf("cancelled=%v", cancelled), func(t *testing.T) {
			admin := integration.Redis(t)
			prefix := testPrefix(t, admin)
			cname := "lockkit-test-" + strings.ToLower(prefix[13:23])
			a := newLocker(t, integration.Redis(t), &Config{Prefix: prefix, Owner: "a"})
			w := newLocker(t, namedClient(t, cname), &Config{Prefix: prefix, Owner: "w"})
			waiting := waitingHook(w)
			n := name(t)
			held := mustLock(t, a, n)
			key := held.Key()
			wctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			type result struct {
				lk  *Lock
				err error
			}
			got := make(chan result, 1)
			go func() {
				lk, err := w.Lock(wctx, n)
				got <- result{lk, err}
			}()
			awaitWaiting(t, waiting)
			ids := pubsubIDs(t, admin, cname)
			if len(ids) != 1 {
				t.Fatalf("pub/sub connections of the waiter: %v, want 1", ids)
			}
			ctx := ctxT(t, 10*time.Second)
			var release *redis.Cmd
			if _, err := admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
				release = p.Eval(ctx, releaseSrc, a.queueKeys(key), held.secret, a.channel(key), maxGrant.Milliseconds(), "")
				p.ClientKillByFilter(ctx, "ID", ids[0])
				return nil
			}); err != nil {
				t.Fatalf("release and CLIENT KILL: %v", err)
			}
			if cancelled {
				cancel()
			}
			if n, err := release.Int64(); err != nil || n != 1 {
				t.Fatalf("release = %d, %v", n, err)
			}
			held.stop() // released above, by hand
			start := time.Now()
			r := <-got
			if cancelled && r.err != nil {
				// Nothing held: its give-back (which Close waits for)
				// deleted the grant, there being nobody else to hand it to.
				t.Logf("waiter: %v", r.err)
				_ = w.Close()
				if raw, err := admin.Get(ctx, key).Result(); !errors.Is(err, redis.Nil) {
					t.Fatalf("the waiter gave up (%v); the key holds %q (%v), want none", r.err, raw, err)
				}
				return
			}
			if r.err != nil {
				t.Fatalf("waiter: %v", r.err)
			}
			t.Logf("waiter got the lock %v after the release", time.Since(start))
			if raw, err := admin.Get(ctx, key).Result(); err != nil || !strings.Contains(raw, `"owner":"w"`) {
				t.Errorf("the waiter holds the lock; the key holds %q (%v)", raw, err)
			}
			mustRelease(t, r.lk)
		})
	}
}
