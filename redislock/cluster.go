package redislock

import (
	"context"
	"strings"
	"time"

	"github.com/lockkit/lockkit/internal/backoff"
	"github.com/redis/go-redis/v9"
)

// hashTag returns the part of key that Redis Cluster hashes to find its
// slot: what is between the first "{" and the first "}" after it, when that
// is not empty; otherwise the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// maxSlotMove bounds how long a script is retried while its slot moves.
const maxSlotMove = 5 * time.Second

// slotMoving runs send, and again while Redis Cluster answers TRYAGAIN or
// ASK, until ctx ends or maxSlotMove has passed. Both mean the script did
// not run: TRYAGAIN that some of its keys have moved to the slot's new
// node and some not yet, in the middle of a slot migration; ASK that
// go-redis stopped following the migration's redirections. go-redis
// retries a few times itself (MaxRetries, MaxRedirects); a migration that
// moves keys one by one takes longer, and a release that gave up then
// would leave the lock to its lease.
func slotMoving(ctx context.Context, send func() *redis.Cmd) *redis.Cmd {
	var deadline time.Time // from the first TRYAGAIN or ASK
	for {
		cmd := send()
		err := cmd.Err()
		// err == nil is tested first: go-redis's error tests allocate
		// even for a nil error.
		if err == nil || !(redis.IsTryAgainError(err) || redis.HasErrorPrefix(err, "ASK")) {
			return cmd
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(maxSlotMove)
		} else if time.Now().After(deadline) {
			return cmd
		}
		t := time.NewTimer(backoff.Jitter(50 * time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return cmd
		case <-t.C:
		}
	}
}
