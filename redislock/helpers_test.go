package redislock

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// testPrefix returns a key prefix unique to this test, and deletes every key
// under it (lock keys and fence counters) when the test ends.
func testPrefix(t testing.TB, admin *redis.Client) string {
	t.Helper()
	prefix := "lockkit-test:" + strings.ToLower(rand.Text()[:10]) + ":"
	t.Cleanup(func() { deletePrefix(t, admin, prefix) })
	return prefix
}

func deletePrefix(t testing.TB, c *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleanup of %s*: %v", prefix, err)
		return
	}
	if len(keys) > 0 {
		_ = c.Del(ctx, keys...).Err()
	}
}

// countKeys counts the keys under prefix.
func countKeys(t testing.TB, c *redis.Client, prefix string) []string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	var keys []string
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN %s*: %v", prefix, err)
	}
	return keys
}

func newLocker(t testing.TB, c Client, cfg *Config) *Locker {
	t.Helper()
	l, err := New(c, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func mustLock(t testing.TB, l *Locker, name string) *Lock {
	t.Helper()
	lk, err := l.TryLock(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatalf("TryLock(%q) = %v", name, err)
	}
	return lk
}

func mustRelease(t testing.TB, lk *Lock) {
	t.Helper()
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Release(%q) = %v", lk.Name(), err)
	}
}

func wantHeld(t testing.TB, l *Locker, name string) *lockkit.HeldError {
	t.Helper()
	lk, err := l.TryLock(ctxT(t, 10*time.Second), name)
	if err == nil {
		_ = lk.Release(context.Background())
		t.Fatalf("TryLock(%q) succeeded, want it held elsewhere", name)
	}
	var he *lockkit.HeldError
	if !errors.As(err, &he) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("TryLock(%q) = %v, want a *lockkit.HeldError", name, err)
	}
	return he
}

func waitDone(t testing.TB, lk *Lock, within time.Duration) {
	t.Helper()
	select {
	case <-lk.Done():
	case <-time.After(within):
		t.Fatalf("Done of %q not closed within %v", lk.Name(), within)
	}
}

// countingClient passes every call to a real client and counts the script
// calls and pipelines: a seam for "no I/O before validation" and "one round
// trip".
type countingClient struct {
	Client
	evalSha, eval, pipelines, do atomic.Int64
}

func (c *countingClient) Do(ctx context.Context, args ...any) *redis.Cmd {
	c.do.Add(1)
	return c.Client.Do(ctx, args...)
}

func (c *countingClient) Pipeline() redis.Pipeliner {
	c.pipelines.Add(1)
	return c.Client.Pipeline()
}

func (c *countingClient) calls() int64 {
	return c.evalSha.Load() + c.eval.Load() + c.pipelines.Load() + c.do.Load()
}

func (c *countingClient) reset() {
	c.evalSha.Store(0)
	c.eval.Store(0)
	c.pipelines.Store(0)
	c.do.Store(0)
}

func (c *countingClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	c.evalSha.Add(1)
	return c.Client.EvalSha(ctx, sha, keys, args...)
}

func (c *countingClient) Eval(ctx context.Context, src string, keys []string, args ...any) *redis.Cmd {
	c.eval.Add(1)
	return c.Client.Eval(ctx, src, keys, args...)
}

// lostReplyClient runs each script on the real server and then reports an
// error, as when the reply is lost on the way back.
type lostReplyClient struct {
	Client
}

var errReplyLost = errors.New("test: reply lost")

func (c *lostReplyClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	cmd := c.Client.EvalSha(ctx, sha, keys, args...)
	if cmd.Err() == nil || !redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd.SetErr(errReplyLost)
	}
	return cmd
}

func (c *lostReplyClient) Do(ctx context.Context, args ...any) *redis.Cmd {
	cmd := c.Client.Do(ctx, args...)
	cmd.SetErr(errReplyLost)
	return cmd
}

func (c *lostReplyClient) Pipeline() redis.Pipeliner {
	return lostReplyPipeline{c.Client.Pipeline()}
}

type lostReplyPipeline struct{ redis.Pipeliner }

func (p lostReplyPipeline) Exec(ctx context.Context) ([]redis.Cmder, error) {
	cmds, _ := p.Pipeliner.Exec(ctx)
	for _, c := range cmds {
		c.SetErr(errReplyLost)
	}
	return cmds, errReplyLost
}

func (c *lostReplyClient) Eval(ctx context.Context, src string, keys []string, args ...any) *redis.Cmd {
	cmd := c.Client.Eval(ctx, src, keys, args...)
	cmd.SetErr(errReplyLost)
	return cmd
}

// privateRedis is a redis-server this test starts on a free port, without
// persistence, so that it can kill -9 and restart it. The shared server is
// never touched.
type privateRedis struct {
	t    testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

func startPrivateRedis(t testing.TB) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(integration.EnvRequire) == "1" {
			t.Fatalf("redis-server not installed: %v", err)
		}
		t.Skipf("redis-server not installed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	p := &privateRedis{t: t, port: port, dir: t.TempDir()}
	p.start()
	t.Cleanup(p.kill)
	return p
}

func (p *privateRedis) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

func (p *privateRedis) start() {
	p.t.Helper()
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", p.dir,
		"--logfile", filepath.Join(p.dir, "server.log"))
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start redis-server: %v", err)
	}
	p.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: p.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(p.dir, "server.log"))
			p.t.Fatalf("private redis-server on %s not ready: %v\n%s", p.addr(), err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the server with SIGKILL and waits for it.
func (p *privateRedis) kill() {
	if p.cmd == nil {
		return
	}
	p.resume()
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// pause stops the server with SIGSTOP: it keeps its connections but answers
// nothing. resume continues it.
func (p *privateRedis) pause() {
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

func (p *privateRedis) resume() {
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
}

func (p *privateRedis) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: p.addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func name(t testing.TB, suffix ...string) string {
	return fmt.Sprintf("%s%s", integration.Name(t), strings.Join(suffix, "."))
}
