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
	for s.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers still pending after 10s", s.Len())
		}
		time.Sleep(time.Millisecond)
	}
	if !isStarted(held) {
		t.Fatal("the held lock's watch did not begin")
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
