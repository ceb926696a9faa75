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
	if r := decodeRole(res); r.Replica() {
		return &replicaError{server: l.serverAddr(), master: r.Master}
	}
	l.roleOK.Store(true)
	return nil
}

// Role is a server's reply to ROLE, decoded.
type Role struct {
	// Name is the role the server names: "master", "slave" (or
	// "replica"), "sentinel", or "" for an empty reply.
	Name string
	// Master is a replica's primary as host:port, when it says.
	Master string
	// Replicas is how many replicas a primary lists.
	Replicas int
	// Reply is the reply as the client decoded it.
	Reply []any
}

// Replica says whether the server is a replica, where locks must not be
// taken (ErrReplica).
func (r Role) Replica() bool { return r.Name == "slave" || r.Name == "replica" }

// Primary says whether the server is a primary.
func (r Role) Primary() bool { return r.Name == "master" }

// ServerRole asks the server c reaches for its ROLE, as a Locker does
// before its first acquire. c should reach a single node (a *redis.Client
// or a Sentinel failover client). An error names ROLE.
func ServerRole(ctx context.Context, c Client) (Role, error) {
	res, err := c.Do(ctx, "role").Slice()
	if err != nil {
		return Role{}, fmt.Errorf("ROLE: %w", err)
	}
	return decodeRole(res), nil
}

// decodeRole decodes a ROLE reply.
func decodeRole(res []any) Role {
	r := Role{Reply: res}
	if len(res) == 0 {
		return r
	}
	r.Name, _ = res[0].(string)
	switch {
	case r.Replica() && len(res) >= 3:
		host, _ := res[1].(string)
		if port, ok := res[2].(int64); ok {
			r.Master = fmt.Sprintf("%s:%d", host, port)
		}
	case r.Primary() && len(res) >= 3:
		if l, ok := res[2].([]any); ok {
			r.Replicas = len(l)
		}
	}
	return r
}

// Info returns one section of the server's INFO (e.g. "server",
// "persistence", "clients") as its fields' values by name.
func Info(ctx context.Context, c Client, section string) (map[string]string, error) {
	s, err := c.Do(ctx, "info", section).Text()
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m, nil
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
