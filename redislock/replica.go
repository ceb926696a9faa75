package redislock

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lockkit/lockkit"
	"github.com/redis/go-redis/v9"
)

// ErrReplica means the Redis server the client reaches is a replica. A
// lock must live on the primary: a replica refuses writes (READONLY), or,
// with replica-read-only off, keeps them to itself, where no client of the
// primary sees them and the next resynchronisation erases them. The error
// matches lockkit.ErrUnsupported too and names the server and its primary.
var ErrReplica = errors.New("redislock: the Redis server is a replica")

// replicaError is an ErrReplica with what was seen.
type replicaError struct {
	server string // the client's address, or "" when unknown
	master string // the primary's host:port from ROLE, or ""
	reply  string // the server's READONLY error, or ""
}

func (e *replicaError) Error() string {
	var b strings.Builder
	b.WriteString("redislock: the Redis server")
	if e.server != "" {
		b.WriteString(" at " + e.server)
	}
	b.WriteString(" is a replica")
	if e.master != "" {
		b.WriteString(" of " + e.master)
	}
	if e.reply != "" {
		b.WriteString(" (" + e.reply + ")")
	}
	b.WriteString(": locks must be taken on the primary; point the client at the primary, or use a Sentinel failover client (redis.NewFailoverClient), which follows it")
	return b.String()
}

func (e *replicaError) Is(target error) bool {
	return target == ErrReplica || target == lockkit.ErrUnsupported
}

// serverAddr returns the address the client connects to, when the client
// says.
func (l *Locker) serverAddr() string {
	if o, ok := l.c.(interface{ Options() *redis.Options }); ok {
		return o.Options().Addr
	}
	return ""
}

// checkRole asks the server's ROLE before the Locker's first acquire, and
// again after a replica answered: one round trip, until a primary answers.
// Only a single-node client (*redis.Client, also what a Sentinel failover
// client is) is asked; a cluster or ring client sends commands to many
// nodes. A server that refuses ROLE (renamed, or not allowed by an ACL)
// is not asked again: a replica then still shows itself by refusing the
// writes (READONLY, see readOnly).
func (l *Locker) checkRole(ctx context.Context) error {
	if l.roleOK.Load() {
		return nil
	}
	if _, ok := l.c.(*redis.Client); !ok {
		l.roleOK.Store(true)
		return nil
	}
	res, err := l.c.Do(ctx, "role").Slice()
	if err != nil {
		var rerr redis.Error
		if errors.As(err, &rerr) && !errors.Is(err, redis.Nil) {
			l.roleOK.Store(true)
			return nil
		}
		return err
	}
	if len(res) > 0 {
		if role, _ := res[0].(string); role == "slave" || role == "replica" {
			e := &replicaError{server: l.serverAddr()}
			if len(res) >= 3 {
				host, _ := res[1].(string)
				if port, ok := res[2].(int64); ok {
					e.master = fmt.Sprintf("%s:%d", host, port)
				}
			}
			return e
		}
	}
	l.roleOK.Store(true)
	return nil
}

// readOnly turns a write refused by a replica (READONLY) into a
// replicaError, and makes the next acquire ask ROLE again; other errors
// are returned as they are.
func (l *Locker) readOnly(err error) error {
	var rerr redis.Error
	if err == nil || !errors.As(err, &rerr) || !strings.HasPrefix(rerr.Error(), "READONLY") {
		return err
	}
	l.roleOK.Store(false)
	return &replicaError{server: l.serverAddr(), reply: rerr.Error()}
}
