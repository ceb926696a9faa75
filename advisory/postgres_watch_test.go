package advisory

import (
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

func (s *watchStarter) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// A burst of grants arms the starter's timer once, not once per lock; a
// lock released before its watch began is dropped without a goroutine; a
// lock still held when it is due is watched; and the timer is not re-armed
// once nothing is pending.
func TestWatchStarterOneTimerPerBurst(t *testing.T) {
	var s watchStarter
	const delay = 50 * time.Millisecond
	ws := make([]*watcher, 100)
	for i := range ws {
		ws[i] = newFakeWatcher(t)
		s.add(ws[i], delay)
	}
	if n := s.arms.Load(); n != 1 {
		t.Fatalf("100 grants armed the timer %d times, want 1", n)
	}
	for _, w := range ws[1:] {
		if err := w.stop(); err != nil { // released before the watch began
			t.Fatal(err)
		}
	}
	held := ws[0]
	deadline := time.Now().Add(10 * time.Second)
	for s.pendingLen() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers still pending after 10s", s.pendingLen())
		}
		time.Sleep(time.Millisecond)
	}
	held.mu.Lock()
	started := held.started
	held.mu.Unlock()
	if !started {
		t.Fatal("the held lock's watch did not begin")
	}
	for _, w := range ws[1:] {
		w.mu.Lock()
		if w.started {
			t.Error("a released lock's watch began")
		}
		w.mu.Unlock()
	}
	if err := held.stop(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	armed := s.armed
	s.mu.Unlock()
	if armed {
		t.Error("timer still armed with nothing pending")
	}
	// The next grant arms it again, once.
	w := newFakeWatcher(t)
	s.add(w, time.Hour)
	s.add(newFakeWatcher(t), time.Hour)
	if n := s.arms.Load(); n != 2 {
		t.Errorf("arms = %d after a second burst, want 2", n)
	}
	s.timer.Stop()
}

// A watcher whose grant is younger than the delay when the timer fires
// (armed by an earlier grant) waits for its own due time.
func TestWatchStarterKeepsYoungWatchers(t *testing.T) {
	var s watchStarter
	old := newFakeWatcher(t)
	s.add(old, 20*time.Millisecond)
	young := newFakeWatcher(t)
	time.Sleep(10 * time.Millisecond)
	s.add(young, 200*time.Millisecond)
	for !isStarted(old) {
		time.Sleep(time.Millisecond)
	}
	if isStarted(young) {
		t.Error("a watcher began before its due time")
	}
	if n := s.pendingLen(); n != 1 {
		t.Errorf("pending = %d, want the young watcher", n)
	}
	for !isStarted(young) {
		time.Sleep(time.Millisecond)
	}
	for _, w := range []*watcher{old, young} {
		if err := w.stop(); err != nil {
			t.Fatal(err)
		}
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
	var s watchStarter
	const stream = 200 * time.Millisecond
	holds := 0
	for start := time.Now(); time.Since(start) < stream; holds++ {
		w := newFakeWatcher(t)
		s.add(w, watchDelay)
		time.Sleep(100 * time.Microsecond)
		if err := w.stop(); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	fires := s.fires.Load()
	t.Logf("%d holds, %d fires", holds, fires)
	if max := int64(stream/(10*time.Millisecond)) + 3; fires > max {
		t.Errorf("%d holds in %v fired the starter's timer %d times, want at most %d", holds, stream, fires, max)
	}
}
