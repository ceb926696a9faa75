package redislock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated means fewer replicas than Config.WaitReplicas
// acknowledged an acquire or a renewal within Config.WaitTimeout. An
// acquire that fails with it holds nothing: its key was deleted again. A
// renewal that fails with it leaves the lease's end on the holder's side
// where the last acknowledged renewal put it, and is retried.
var ErrNotReplicated = errors.New("redislock: not acknowledged by enough replicas")

// checkWaitClient refuses Config.WaitReplicas on a client whose pipelines
// may spread over several servers (a Ring, a wrapper): WAIT must follow the
// script on the script's own connection.
func checkWaitClient(c Client, s settings) error {
	if s.waitN == 0 {
		return nil
	}
	switch c.(type) {
	case *redis.Client, *redis.ClusterClient:
		return nil
	}
	return invalid.Errorf("redislock: WaitReplicas needs a *redis.Client (or a Sentinel failover client) or a *redis.ClusterClient, not a %T", c)
}

// runScript runs s like [redis.Script.Run]. With Config.WaitReplicas the
// script is followed by WAIT in one pipeline on the connection to the
// server that holds keys[0], and acks is WAIT's reply: how many replicas
// have every write of that connection so far. Without, acks is
// Config.WaitReplicas (zero).
//
// A script that Redis Cluster answers with TRYAGAIN (its slot is moving) is
// sent again (slotMoving).
func (l *Locker) runScript(ctx context.Context, s *redis.Script, keys []string, args ...any) (cmd *redis.Cmd, acks int) {
	cmd = slotMoving(ctx, func() *redis.Cmd {
		cmd, acks = l.runScriptOnce(ctx, s, keys, args...)
		return cmd
	})
	return cmd, acks
}

func (l *Locker) runScriptOnce(ctx context.Context, s *redis.Script, keys []string, args ...any) (cmd *redis.Cmd, acks int) {
	if l.set.waitN == 0 {
		return s.Run(ctx, l.c, keys, args...), 0
	}
	cmd, acks = l.withWait(ctx, keys[0], func(p redis.Pipeliner) *redis.Cmd { return s.EvalSha(ctx, p, keys, args...) })
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd, acks = l.withWait(ctx, keys[0], func(p redis.Pipeliner) *redis.Cmd { return s.Eval(ctx, p, keys, args...) })
	}
	return cmd, acks
}

// withWait sends the command queue adds, then WAIT, in one pipeline on
// the connection to the server that holds key (the master of key's slot on
// a cluster). An error of WAIT becomes the command's error.
func (l *Locker) withWait(ctx context.Context, key string, queue func(redis.Pipeliner) *redis.Cmd) (*redis.Cmd, int) {
	var pipe redis.Pipeliner
	if cc, ok := l.c.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			cmd := redis.NewCmd(ctx)
			cmd.SetErr(err)
			return cmd, 0
		}
		pipe = node.Pipeline()
	} else {
		pipe = l.c.Pipeline()
	}
	cmd := queue(pipe)
	wait := pipe.Do(ctx, "wait", l.set.waitN, l.set.waitMs)
	_, _ = pipe.Exec(ctx) // each command carries its own error
	n, err := wait.Int64()
	if err != nil && cmd.Err() == nil {
		cmd.SetErr(fmt.Errorf("WAIT: %w", err))
	}
	return cmd, int(n)
}

// notReplicated returns the ErrNotReplicated error of a write that acks
// replicas acknowledged, or nil when that is enough.
func (l *Locker) notReplicated(acks int) error {
	if acks >= l.set.waitN {
		return nil
	}
	return fmt.Errorf("%w: %d of %d replicas acknowledged within %v", ErrNotReplicated, acks, l.set.waitN, time.Duration(l.set.waitMs)*time.Millisecond)
}
