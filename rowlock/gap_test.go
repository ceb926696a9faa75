package rowlock_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit/rowlock"
)

// gapRecorder records, for Lockers contending on one name, when each
// lease was acquired and released, and when each acquire statement was in
// flight (the test hook).
type gapRecorder struct {
	mu        sync.Mutex
	holds     [][2]time.Time // acquired, released (Release returned)
	statement [][2]time.Time // acquire statements: sent, answered
}

func (g *gapRecorder) hook(op string) func() {
	if op != "acquire" {
		return func() {}
	}
	sent := time.Now()
	return func() {
		g.mu.Lock()
		g.statement = append(g.statement, [2]time.Time{sent, time.Now()})
		g.mu.Unlock()
	}
}

// idleGaps returns, for each time the lease changed hands, how long the
// lease was free with no acquire statement in flight: from a release to
// the next acquisition, less the time some Locker's acquire statement was
// running (whose server-side latency — a row lock, a commit — is not the
// waiters' doing).
func (g *gapRecorder) idleGaps() []time.Duration {
	slices.SortFunc(g.holds, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	slices.SortFunc(g.statement, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	var gaps []time.Duration
	for i := 1; i < len(g.holds); i++ {
		from, to := g.holds[i-1][1], g.holds[i][0]
		idle, at := time.Duration(0), from
		for _, s := range g.statement {
			if s[0].After(to) {
				break
			}
			if s[1].Before(at) {
				continue
			}
			if s[0].After(at) {
				idle = max(idle, s[0].Sub(at))
			}
			at = s[1]
		}
		if to.After(at) {
			idle = max(idle, to.Sub(at))
		}
		gaps = append(gaps, idle)
	}
	return gaps
}

// TestMySQLContendedIdleGap: 16 Lockers (a pool each, as 16 processes
// would have) contend on one name for a few seconds, each acquiring and
// releasing in a loop. Once the lease is released, some waiter attempts
// soon: the head in the waiting room is handed the room by the release
// statement and attempts at once, and a head that polls attempts at most
// MaxPoll (100ms) later. So the lease is never free for long with no
// acquire statement running. Free time while an acquire statement runs
// (the server's row lock and commit, which under load took up to 690ms
// here) is not counted: that is the server's latency, not the waiters'.
func TestMySQLContendedIdleGap(t *testing.T) {
	e := setup(t, rowlock.MySQL)
	name := e.name(t)
	var g gapRecorder
	var lockers []*rowlock.Locker
	for range 16 {
		l := e.lockerOn(t, e.open(t, nil), nil)
		rowlock.SetTestHook(l, g.hook)
		lockers = append(lockers, l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range lockers {
		wg.Go(func() {
			for ctx.Err() == nil {
				lk, err := l.Lock(ctx, name, nil)
				if err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					return
				}
				acquired := time.Now()
				time.Sleep(time.Millisecond)
				if err := lk.Release(context.Background()); err != nil {
					t.Error(err)
				}
				g.mu.Lock()
				g.holds = append(g.holds, [2]time.Time{acquired, time.Now()})
				g.mu.Unlock()
			}
		})
	}
	wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	gaps := g.idleGaps()
	var free time.Duration // the longest release-to-acquisition, for the log
	for i := 1; i < len(g.holds); i++ {
		free = max(free, g.holds[i][0].Sub(g.holds[i-1][1]))
	}
	if len(gaps) < 2 {
		t.Fatalf("only %d handoffs in 3s", len(gaps))
	}
	slices.Sort(gaps)
	slices.Reverse(gaps)
	t.Logf("%d handoffs; longest free %v; longest idle %v", len(gaps), free, gaps[:min(8, len(gaps))])
	// MaxPoll, and generous room for a machine under load (a process not
	// scheduled, a statement's round trip).
	const bound = rowlock.DefaultMaxPoll + 400*time.Millisecond
	if gaps[0] > bound {
		t.Errorf("the lease was free with no attempt for %v, more than %v", gaps[0], bound)
	}
}
