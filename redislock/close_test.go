package redislock

import (
	"errors"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
)

// TestClose: after Close, TryLock and Lock fail without touching the
// server, a lock taken before Close can still be released, and Close is
// idempotent. (What Close waits for, the give-back of an abandoned
// attempt, is checked by the reliability suite's
// TestPitfall23_AbandonedAcquiresLeaveNothing with a 30 s lease.)
func TestClose(t *testing.T) {
	c := integration.Redis(t)
	prefix := testPrefix(t, c)
	l := newLocker(t, c, &Config{Prefix: prefix})
	lk := mustLock(t, l, "held")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.TryLock(ctxT(t, 5*time.Second), "other"); !errors.Is(err, ErrClosed) {
		t.Errorf("TryLock after Close = %v, want %v", err, ErrClosed)
	}
	if _, err := l.Lock(ctxT(t, 5*time.Second), "other"); !errors.Is(err, ErrClosed) {
		t.Errorf("Lock after Close = %v, want %v", err, ErrClosed)
	}
	if keys := countKeys(t, c, prefix+"other"); len(keys) != 0 {
		t.Errorf("keys after calls on a closed Locker: %v", keys)
	}
	mustRelease(t, lk)
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
