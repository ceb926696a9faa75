// Package backoff holds the jittered pause that lockkit's polling waiters
// and retry loops share, and a pause that ends with its context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter draws a pause uniformly from [d/2, d], so that waiters that
// started together do not retry together. A d of 1ns or less is returned
// as it is.
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2+1)
}

// Sleep waits d, or until ctx ends; it reports whether the whole d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
