package cli

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/lockkit/lockkit/redislock"
	"github.com/redis/go-redis/v9"
)

// listRedis lists the lock keys under redislock's default prefix. A key
// holds "<secret>|<fence>|<since-ms>|<holder JSON>" (see redislock's
// scripts); the secret is never read past its separator.
func (r *redisBackend) list(ctx context.Context, names []string, _ bool) ([]heldLock, error) {
	prefix := redislock.DefaultPrefix
	var keys []string
	if len(names) > 0 {
		l, err := redislock.New(r.c, nil)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			keys = append(keys, l.Key(n))
		}
	} else {
		iter := r.c.Scan(ctx, 0, prefix+"{*}", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := r.c.Pipeline()
	gets := make([]*redis.StringCmd, len(keys))
	pttls := make([]*redis.DurationCmd, len(keys))
	for i, k := range keys {
		gets[i] = pipe.Get(ctx, k)
		pttls[i] = pipe.PTTL(ctx, k)
	}
	now := time.Now()
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, err
	}
	var out []heldLock
	for i, k := range keys {
		name := strings.TrimSuffix(strings.TrimPrefix(k, prefix+"{"), "}")
		if len(names) > 0 {
			name = names[i]
		}
		v, err := gets[i].Result()
		if err != nil {
			if len(names) > 0 {
				out = append(out, heldLock{Name: name}) // free
			}
			continue // released since the scan
		}
		h := parseRedisValue(v)
		h.Name = name
		if d := pttls[i].Val(); d > 0 {
			h.Expires = timePtr(now.Add(d))
		}
		out = append(out, h)
	}
	return out, nil
}

// parseRedisValue reads the holder from a lock key's value.
func parseRedisValue(v string) heldLock {
	h := heldLock{Held: true, Mode: "exclusive"}
	_, info, ok := strings.Cut(v, "|") // drop the secret
	if !ok {
		return h
	}
	parts := strings.SplitN(info, "|", 3)
	if len(parts) != 3 {
		return h
	}
	h.Token, _ = strconv.ParseInt(parts[0], 10, 64)
	if ms, err := strconv.ParseInt(parts[1], 10, 64); err == nil && ms > 0 {
		h.Since = timePtr(time.UnixMilli(ms))
	}
	var meta struct {
		Owner string `json:"owner"`
		Host  string `json:"host"`
		PID   int    `json:"pid"`
		Data  string `json:"data"`
	}
	if json.Unmarshal([]byte(parts[2]), &meta) == nil {
		h.Owner, h.Host, h.PID, h.Data = meta.Owner, meta.Host, meta.PID, meta.Data
	}
	return h
}
