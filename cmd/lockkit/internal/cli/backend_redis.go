package cli

import (
	"context"
	"fmt"
	"sync"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/redislock"
	"github.com/redis/go-redis/v9"
)

// redisBackend is a Redis server.
type redisBackend struct {
	e       *env
	c       *redis.Client
	display string
	rl      *redislock.Locker // made by locker or lister; closed by close
}

func openRedis(ctx context.Context, e *env, b *backendURL) (backend, error) {
	connect, err := e.redisConnector(b)
	if err != nil {
		return nil, err
	}
	c := connect()
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("cannot reach Redis: %w", err)
	}
	return &redisBackend{e: e, c: c, display: b.display}, nil
}

// redisConnector parses a redis:// URL and returns what makes a client
// for it: a client of one server or, with master_name, a failover client
// that asks the Sentinels at HOST:PORT (and each addr=) for the master and
// follows it through failovers. Its passwords are added to the scrubber.
// Contexts bound every network wait, as redislock asks: without
// ContextTimeoutEnabled go-redis waits out its ReadTimeout whatever the
// deadline.
func (e *env) redisConnector(b *backendURL) (func() *redis.Client, error) {
	quietRedis.Do(func() { redis.SetLogger(discardLogger{}) })
	if b.u.Query().Has("master_name") {
		opts, err := redis.ParseFailoverURL(b.u.String())
		if err != nil {
			return nil, usagef("%s: %v", b.display, err)
		}
		e.scrub.add(opts.Password)
		e.scrub.add(opts.SentinelPassword)
		opts.DialTimeout = pingTimeout
		opts.ContextTimeoutEnabled = true
		opts.DialerRetries = 1
		return func() *redis.Client { return redis.NewFailoverClient(opts) }, nil
	}
	opts, err := redis.ParseURL(b.u.String())
	if err != nil {
		return nil, usagef("%s: %v", b.display, err)
	}
	e.scrub.add(opts.Password)
	opts.DialTimeout = pingTimeout
	opts.ContextTimeoutEnabled = true
	opts.DialerRetries = 1
	return func() *redis.Client { return redis.NewClient(opts) }, nil
}

// close closes the Locker first: it waits for the give-back of a lease
// that an acquire abandoned by --wait or a signal may still take, which
// the process would otherwise leave held until its TTL.
func (r *redisBackend) close() error {
	if r.rl != nil {
		_ = r.rl.Close()
	}
	return r.c.Close()
}

// locker returns a Redis locker with fencing tokens (LOCKKIT_TOKEN) and an
// automatically renewed lease of --ttl (redislock.DefaultTTL without it).
func (r *redisBackend) locker(opts lockOptions) (lockkit.Locker, error) {
	l, err := redislock.New(r.c, &redislock.Config{TTL: opts.ttl, Fencing: true, Owner: opts.owner})
	if err != nil {
		return nil, err
	}
	r.rl = l
	return l, nil
}

// lister returns a Locker of the default prefix, which lockkit run's
// locks use.
func (r *redisBackend) lister(table bool) (lockkit.Lister, error) {
	l, err := redislock.New(r.c, nil)
	if err != nil {
		return nil, err
	}
	r.rl = l
	return l, nil
}

// quietRedis silences go-redis's process-wide logger once: it prints to
// os.Stderr directly (dial failures, with the address), bypassing lockkit's
// scrubbed output. lockkit reports the errors itself.
var quietRedis sync.Once

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}
