package redislock

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
)

// TestSemaphore runs the semaphore suite with fencing tokens. Deleting a
// holder's key is the kill: a waiter has no release message to wake it, so
// it takes the slot at its next attempt, within TTL/3; the holder learns at
// its next renewal. A crashed holder's lease runs out within its TTL.
func TestSemaphore(t *testing.T) {
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	const ttl, renew = 2 * time.Second, 100 * time.Millisecond
	cfg := &Config{Prefix: prefix, TTL: ttl, RenewInterval: renew, Fencing: true}
	keyOf := newLocker(t, admin, cfg).Key
	locktest.RunSemaphore(t, locktest.SemaphoreConfig{
		Config: locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker {
				return newLocker(t, integration.Redis(t), cfg)
			},
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				if err := admin.Del(ctxT(t, 5*time.Second), l.(*Lock).Key()).Err(); err != nil {
					t.Fatalf("DEL: %v", err)
				}
			},
			LossBound: renew + time.Second,
			Tokens:    true,
			Leftovers: func(t *testing.T, names []string) int {
				keys := make([]string, len(names))
				for i, n := range names {
					keys[i] = keyOf(n)
				}
				n, err := admin.Exists(ctxT(t, 5*time.Second), keys...).Result()
				if err != nil {
					t.Fatalf("EXISTS: %v", err)
				}
				return int(n)
			},
		},
		FailoverBound: ttl/3 + 500*time.Millisecond,
		Crash:         crash(prefix),
	})
}
