package advisory

import (
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockkit/lockkit/internal/starter"
)

// fakePinned stands in for a session: its "watch" blocks in a read on one
// end of a pipe, which the watcher's stop deadline ends.
type fakePinned struct{ nc net.Conn }

func (f fakePinned) with(func(c *pgx.Conn) error) error {
	_, err := f.nc.Read(make([]byte, 1))
	if isTimeout(err) {
		_ = f.nc.SetReadDeadline(time.Time{})
		return nil
	}
	return err
}
func (fakePinned) release() {}
func (fakePinned) discard() {}

func newFakeWatcher(t *testing.T) *watcher {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	w := &watcher{}
	w.init(fakePinned{a}, a, func(error) { t.Error("loss reported") })
	return w
}

// A burst of grants arms the starter's timer once, not once per lock (see
// package starter); a lock released before its watch began gets no
// goroutine; a lock still held when it is due is watched.
func TestWatchStarterOneTimerPerBurst(t *testing.T) {
	var s starter.Starter
	const delay = 50 * time.Millisecond
	ws := make([]*watcher, 100)
	for i := range ws {
		ws[i] = newFakeWatcher(t)
		s.Add(&ws[i].at, ws[i], delay)
	}
	if n := s.Arms(); n != 1 {
		t.Fatalf("100 grants armed the timer %d times, want 1", n)
	}
	for _, w := range ws[1:] {
		if err := w.stop(); err != nil { // released before the watch began
			t.Fatal(err)
		}
	}
	held := ws[0]
	deadline := time.Now().Add(10 * time.Second)
	// The starter starts the due items after unlinking them, so wait for
	// the held lock's watch too, not only for an empty list.
	for s.Len() != 0 || !isStarted(held) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d watchers pending, the held lock's watch begun: %v", s.Len(), isStarted(held))
		}
		time.Sleep(time.Millisecond)
	}
	for _, w := range ws[1:] {
		if isStarted(w) {
			t.Error("a released lock's watch began")
		}
	}
	if err := held.stop(); err != nil {
		t.Fatal(err)
	}
}

func isStarted(w *watcher) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.started
}

// Under a stream of short holds (one name handed from waiter to waiter)
// the starter's timer fires about once per watchDelay, each fire a
// goroutine and, on an idle runtime, a thread woken: at the 1 ms delay
// this was 0.10-0.14 fires per acquisition of BenchmarkPostgresContended.
// 200 ms of holds of about 100 µs each, one at a time, fire it at most
// 200 ms / 10 ms times and a few more (with a 1 ms delay: 99 fires).
func TestWatchStarterStream(t *testing.T) {
	var s starter.Starter
	const stream = 200 * time.Millisecond
	holds := 0
	for start := time.Now(); time.Since(start) < stream; holds++ {
		w := newFakeWatcher(t)
		s.Add(&w.at, w, watchDelay)
		time.Sleep(100 * time.Microsecond)
		s.Remove(&w.at) // as Lock.unlock does
		if err := w.stop(); err != nil {
			t.Fatal(err)
		}
	}
	s.Stop()
	fires := s.Fires()
	t.Logf("%d holds, %d fires", holds, fires)
	if max := int64(stream/(10*time.Millisecond)) + 3; fires > max {
		t.Errorf("%d holds in %v fired the starter's timer %d times, want at most %d", holds, stream, fires, max)
	}
}

// The same through a Locker: a released lock's watch leaves the Locker's
// starter at once (Lock.unlock), so a stream of short holds on a real
// session fires the starter's timer about once per watchDelay.
func TestWatchStarterStreamLocker(t *testing.T) {
	key := testKeys(t, 1)[0]
	ctx := pgCtx(t, 30*time.Second)
	pool, _ := countedPool(t)
	p, err := NewPool(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	const stream = 300 * time.Millisecond
	holds := 0
	for start := time.Now(); time.Since(start) < stream; holds++ {
		l, err := p.TryLockKey(ctx, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond)
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fires := p.watchStarts.Fires()
	t.Logf("%d holds, %d fires", holds, fires)
	if max := int64(stream/watchDelay) + 5; fires > max {
		t.Errorf("%d holds in %v fired the starter's timer %d times, want at most %d", holds, stream, fires, max)
	}
}
