package cli

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/lockkit/lockkit/redislock"
)

// doctorRedis checks a Redis backend.
func (e *env) doctorRedis(ctx context.Context, b *backendURL, r *report) {
	connect, err := e.redisConnector(b)
	if err != nil {
		r.usage = err
		return
	}
	c := connect()
	defer c.Close()
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	err = c.Ping(pctx).Err()
	cancel()
	if err != nil {
		r.unreachable = true
		r.add("connect", statusFail, "cannot reach Redis: %v", err)
		return
	}
	r.add("connect", statusOK, "connected in %s", time.Since(start).Round(time.Millisecond))

	info := func(section string) map[string]string {
		m, _ := redislock.Info(ctx, c, section)
		return m
	}
	srv := info("server")
	mode := srv["redis_mode"]
	switch {
	case srv == nil:
		r.add("server", statusWarn, "INFO server failed")
	case srv["valkey_version"] != "":
		r.add("server", statusOK, "Valkey %s (%s)", srv["valkey_version"], mode)
	default:
		r.add("server", statusOK, "Redis %s (%s)", srv["redis_version"], mode)
	}

	// Replica or primary.
	role, err := redislock.ServerRole(ctx, c)
	switch {
	case err != nil:
		r.add("role", statusWarn, "%v; a replica would show itself by refusing writes (READONLY)", err)
	case role.Replica():
		master := ""
		if role.Master != "" {
			master = " of " + role.Master
		}
		r.add("role", statusFail, "this server is a replica%s: lockkit refuses to lock on it (redislock.ErrReplica); point lockkit at the primary", master)
	case role.Primary():
		r.add("role", statusOK, "primary, with %d replicas; a failover to a replica that had not yet received a lock loses it (use fencing tokens)", role.Replicas)
	default:
		r.add("role", statusFail, "ROLE says %v: not a server to lock on", role.Reply)
	}
	if mode == "cluster" {
		r.add("cluster", statusInfo, "Redis Cluster: each lock's keys share one slot ({name} hash tags), so lockkit's scripts work; a failover can lose a lock")
	}

	// Persistence.
	p := info("persistence")
	save, _ := c.ConfigGet(ctx, "save").Result()
	fsync, _ := c.ConfigGet(ctx, "appendfsync").Result()
	switch {
	case p == nil:
		r.add("persistence", statusWarn, "INFO persistence failed")
	case p["aof_enabled"] == "1":
		r.add("persistence", statusOK, "AOF on (appendfsync %s): a restart keeps the locks, but for up to a second of them with everysec", orUnknown(fsync["appendfsync"]))
	case save == nil:
		r.add("persistence", statusWarn, "AOF off, and CONFIG GET save is not allowed: if RDB snapshots are off too, a restart loses every lock at once, and another client acquires while the holder believes it holds the lock until its next renewal")
	case save["save"] == "":
		r.add("persistence", statusWarn, "no persistence (AOF off, no RDB snapshots): a restart loses every lock at once, and another client acquires while the holder believes it holds the lock until its next renewal; use fencing tokens, or turn AOF on")
	default:
		r.add("persistence", statusWarn, "RDB snapshots only (save %q): a restart loses the locks taken since the last snapshot; turn AOF on", save["save"])
	}

	// The two-client probe.
	c2 := connect()
	defer c2.Close()
	la, errA := redislock.New(c, nil)
	lb, errB := redislock.New(c2, nil)
	if err := errors.Join(errA, errB); err != nil {
		r.add("locks", statusFail, "%v", err)
	} else {
		st, detail := exclusionProbe(ctx, la, lb, probeName(), "client")
		_ = la.Close()
		_ = lb.Close()
		r.add("locks", st, "%s", detail)
	}

	// The clock.
	before := time.Now()
	server, err := c.Time(ctx).Result()
	if err != nil {
		r.add("clock", statusFail, "TIME: %v", err)
	} else {
		clockCheck(r, server, before, time.Now(), " (leases are durations on the server; fencing tokens use its clock)")
	}

	// Clients.
	clients := info("clients")
	maxc, _ := c.ConfigGet(ctx, "maxclients").Result()
	used, err1 := strconv.Atoi(clients["connected_clients"])
	max, err2 := strconv.Atoi(maxc["maxclients"])
	if err1 != nil || err2 != nil {
		r.add("connections", statusInfo, "connected_clients %s, maxclients %s", orUnknown(clients["connected_clients"]), orUnknown(maxc["maxclients"]))
	} else {
		status := statusOK
		if max-used < 10 {
			status = statusWarn
		}
		r.add("connections", status, "%d of maxclients %d in use (held Redis locks pin no connection)", used, max)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
