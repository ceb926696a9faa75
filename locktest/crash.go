package locktest

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

// Crash is the crash hook that [ElectionConfig] and [SemaphoreConfig]
// share: a way to stop a holder the way a process dies, and the bound on
// how soon a waiter then gets the lock. Leave it zero to skip the check.
type Crash struct {
	// NewCrashingLocker, if set, returns a Locker of its own (its own
	// connections) and a crash function that stops it the way a process
	// dies: no release, no more renewals, its connections gone. With it
	// the suites time how soon a waiter gets the lock after its holder
	// crashed (a waiting candidate leads; a waiting Acquire gets the
	// permit), which on a lease backend waits for the lease to run out.
	NewCrashingLocker func(t *testing.T) (l lockkit.Locker, crash func())

	// CrashFailoverBound is the documented bound on how soon a waiter
	// gets the lock after its holder crashed. Required with
	// NewCrashingLocker.
	CrashFailoverBound time.Duration
}

// check fails t when the hook is set without its bound.
func (c Crash) check(t *testing.T) {
	t.Helper()
	if c.NewCrashingLocker != nil && c.CrashFailoverBound <= 0 {
		t.Fatal("locktest: Crash.CrashFailoverBound is required with Crash.NewCrashingLocker")
	}
}
