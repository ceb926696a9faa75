package redislock

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/redis/go-redis/v9"
)

var _ lockkit.Lister = (*Locker)(nil)

// scanCount is the COUNT hint of List's SCAN.
const scanCount = 1000

// List implements [lockkit.Lister] from the lock keys: the leases held now
// under the Locker's prefix, by any Locker that shares it.
//
// Without names it SCANs the prefix for lock keys ("<prefix>{*}" and
// "<prefix>}{*}", see
// [Locker.Key]) — on every master of a *redis.ClusterClient and every
// shard of a *redis.Ring — and returns them ordered by name; a key released
// between the SCAN and its read is left out. SCAN walks the whole keyspace,
// COUNT keys a call: listing a large database takes time, not memory.
// With names it reads those names' keys: an entry per name in the order
// given, Held false for a free name. Each key is read with GET and PTTL in
// one pipeline.
//
// Key is the lock key and Mode always lockkit.Exclusive. Holder has what the
// holder stored in the key's value — its owner, host, pid and data, its
// fencing token (0 without fencing) and, as Since, its clock at the
// acquire — and, as Expires, the caller's clock plus the lease Redis says is
// left. The secret in the value is never returned. A lease a release handed
// to a waiter is listed as that waiter's. A bad name returns an error
// matching lockkit.ErrInvalid before any I/O.
func (l *Locker) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, err
		}
	}
	var keys []string
	if len(names) > 0 {
		keys = make([]string, len(names))
		for i, n := range names {
			keys[i] = l.Key(n)
		}
	} else {
		var err error
		if keys, err = l.scanLocks(ctx); err != nil {
			return nil, fmt.Errorf("redislock: list: %w", err)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}

	pipe := l.c.Pipeline()
	gets := make([]*redis.StringCmd, len(keys))
	pttls := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		gets[i] = pipe.Get(ctx, k)
		pttls[i] = pipe.Do(ctx, "pttl", k)
	}
	now := time.Now()
	// Exec's error is the first failed command's; each is checked below,
	// where a missing key (redis.Nil) is a free lock.
	_, _ = pipe.Exec(ctx)

	out := make([]lockkit.LockInfo, 0, len(keys))
	for i, k := range keys {
		info := lockkit.LockInfo{Key: k, Mode: lockkit.Exclusive}
		if len(names) > 0 {
			info.Name = names[i]
		} else {
			info.Name = l.nameOf(k)
		}
		v, err := gets[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			if len(names) > 0 {
				out = append(out, info) // free
			}
			continue // released since the scan
		case err != nil:
			return nil, fmt.Errorf("redislock: list: GET %q: %w", k, err)
		}
		info.Held = true
		if rest, ok := valueInfo(v); ok {
			var pttl time.Duration
			if ms, err := pttls[i].Int64(); err == nil {
				pttl = pttlDuration(ms)
			}
			info.Holder = *parseHolder(rest, pttl, now)
		}
		out = append(out, info)
	}
	if len(names) == 0 {
		slices.SortFunc(out, func(a, b lockkit.LockInfo) int { return strings.Compare(a.Name, b.Name) })
	}
	return out, nil
}

// nameOf returns the name whose lock key is key.
func (l *Locker) nameOf(key string) string {
	if h, ok := strings.CutPrefix(key, l.set.prefix+"}{"); ok {
		if b, err := hex.DecodeString(strings.TrimSuffix(h, "}")); err == nil {
			return string(b)
		}
	}
	return strings.TrimSuffix(strings.TrimPrefix(key, l.set.prefix+"{"), "}")
}

// scanLocks returns the lock keys under the prefix, each once.
func (l *Locker) scanLocks(ctx context.Context) ([]string, error) {
	// Lock keys are "<prefix>{<name>}", or "<prefix>}{<hex>}" for names
	// that start with "}" (see Key); one pattern matches both.
	pattern := globEscape(l.set.prefix) + "*{*}"
	var (
		mu   sync.Mutex
		keys []string
	)
	add := func(k string) {
		rest := strings.TrimPrefix(k, l.set.prefix)
		if !strings.HasPrefix(rest, "{") && !strings.HasPrefix(rest, "}{") {
			return // not a lock key
		}
		mu.Lock()
		keys = append(keys, k)
		mu.Unlock()
	}
	node := func(ctx context.Context, c *redis.Client) error { return scanNode(ctx, c, pattern, add) }
	var err error
	switch c := l.c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, node)
	case *redis.Ring:
		err = c.ForEachShard(ctx, node)
	default:
		err = scanNode(ctx, l.c, pattern, add)
	}
	if err != nil {
		return nil, err
	}
	// SCAN may return a key more than once.
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// scanNode runs SCAN over one server's keyspace, passing each key matching
// pattern to add.
func scanNode(ctx context.Context, c interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}, pattern string, add func(string)) error {
	cursor := "0"
	for {
		res, err := c.Do(ctx, "scan", cursor, "match", pattern, "count", scanCount).Slice()
		if err != nil {
			return err
		}
		if len(res) != 2 {
			return fmt.Errorf("SCAN replied %d elements, want 2", len(res))
		}
		next, ok := res[0].(string)
		batch, ok2 := res[1].([]any)
		if !ok || !ok2 {
			return fmt.Errorf("SCAN replied %T and %T, want a cursor and keys", res[0], res[1])
		}
		for _, k := range batch {
			if s, ok := k.(string); ok {
				add(s)
			}
		}
		if next == "0" {
			return nil
		}
		cursor = next
	}
}

// globEscape escapes the characters SCAN's MATCH pattern treats as special,
// so that a prefix matches only itself.
func globEscape(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ { // bytes: a prefix need not be UTF-8
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
