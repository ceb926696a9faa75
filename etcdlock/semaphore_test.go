package etcdlock

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit/locktest"
)

// TestSemaphore runs the semaphore suite on the shared cluster. Deleting a
// holder's key is the kill: the next waiter's watch fires at once, and so
// does the holder's. A crashed holder (its client closed, its lease not
// revoked) frees its permit when the lease runs out. etcd keys carry no
// per-acquire data, so callers that disagree on the number of permits are
// not told apart (the suite says so).
func TestSemaphore(t *testing.T) {
	cfg, crash := suiteConfig(t)
	cfg.Tokens = true
	locktest.RunSemaphore(t, locktest.SemaphoreConfig{
		Config:        cfg,
		FailoverBound: time.Second,
		Crash:         crash,
	})
}
