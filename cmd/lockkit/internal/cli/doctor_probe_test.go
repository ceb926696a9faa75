package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
)

// lateRelease is a Locker whose locks' Release returns at once and gives
// the lock up only after delay, as a flock's release does while a child
// process forked at that moment still holds a copy of its descriptor.
type lateRelease struct {
	lockkit.Locker
	delay time.Duration
}

func (l lateRelease) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	lk, err := l.Locker.TryAcquire(ctx, name)
	if err != nil {
		return nil, err
	}
	return lateLock{lk, l.delay}, nil
}

type lateLock struct {
	lockkit.Lock
	delay time.Duration
}

func (l lateLock) Release(context.Context) error {
	time.AfterFunc(l.delay, func() { _ = l.Lock.Release(context.Background()) })
	return nil
}

// The exclusion probe waits for the second holder after the release,
// within its timeout: a release that takes effect a moment after Release
// returned (a flock kept by a descriptor a forked child holds until its
// exec) is not a failure of the backend.
func TestExclusionProbeReleaseTakesEffectLate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, err := filelock.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := filelock.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const delay = 100 * time.Millisecond
	start := time.Now()
	st, detail := exclusionProbe(context.Background(), lateRelease{a, delay}, b, probeName(), "open file description")
	if st != statusOK {
		t.Fatalf("status %q, want %q: %s", st, statusOK, detail)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("the probe passed in %v, before the first lock was given up (%v): the second did not wait for it", took, delay)
	}
	if !strings.Contains(detail, "got it once released") {
		t.Errorf("detail %q", detail)
	}
}
