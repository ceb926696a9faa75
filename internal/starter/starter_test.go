package starter

import (
	"sync/atomic"
	"testing"
	"time"
)

type item struct {
	started atomic.Int32
	at      atomic.Int64 // when Start ran, in Unix nanoseconds
}

func (it *item) Start() {
	it.at.Store(time.Now().UnixNano())
	it.started.Add(1)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A burst of Adds arms the timer once; items removed before they are due
// are never started; the others are, once each; and the timer is armed
// again, once, by the next burst.
func TestStarterOneTimerPerBurst(t *testing.T) {
	var s Starter
	const delay = 50 * time.Millisecond
	items := make([]*item, 100)
	entries := make([]Entry, 100)
	for i := range items {
		items[i] = &item{}
		s.Add(&entries[i], items[i], delay)
	}
	if n := s.Arms(); n != 1 {
		t.Fatalf("100 Adds armed the timer %d times, want 1", n)
	}
	for i := 1; i < len(items); i += 2 {
		if !s.Remove(&entries[i]) {
			t.Fatalf("Remove of pending entry %d = false", i)
		}
	}
	// fire unlinks the due items under the lock and starts them after it,
	// so an empty list does not yet mean every item has started.
	waitFor(t, "every entry started or removed", func() bool {
		if s.Len() != 0 {
			return false
		}
		for i := 0; i < len(items); i += 2 {
			if items[i].started.Load() == 0 {
				return false
			}
		}
		return true
	})
	for i, it := range items {
		want := int32(1 - i%2)
		if got := it.started.Load(); got != want {
			t.Errorf("item %d started %d times, want %d", i, got, want)
		}
	}
	if s.Remove(&entries[0]) {
		t.Error("Remove of a started entry = true")
	}
	s.mu.Lock()
	armed := s.armed
	s.mu.Unlock()
	if armed {
		t.Error("timer still armed with nothing pending")
	}
	// An entry may be added again once started or removed.
	s.Add(&entries[0], items[0], time.Hour)
	s.Add(&entries[1], items[1], time.Hour)
	if n := s.Arms(); n != 2 {
		t.Errorf("arms = %d after a second burst, want 2", n)
	}
	s.Remove(&entries[0])
	s.Remove(&entries[1])
	s.timer.Stop()
}

// An item younger than the delay when the timer fires (armed by an
// earlier Add) waits for its own due time.
func TestStarterKeepsYoungItems(t *testing.T) {
	var s Starter
	var e1, e2 Entry
	old, young := &item{}, &item{}
	const delay = 100 * time.Millisecond
	s.Add(&e1, old, delay)
	time.Sleep(delay / 2)
	added := time.Now()
	s.Add(&e2, young, delay)
	waitFor(t, "both items started", func() bool { return old.started.Load() == 1 && young.started.Load() == 1 })
	if early := added.Add(delay).Sub(time.Unix(0, young.at.Load())); early > 0 {
		t.Errorf("the young item started %v before it was due", early)
	}
	if s.Arms() != 1 {
		t.Errorf("arms = %d, want 1 (the timer re-arms itself for the young item)", s.Arms())
	}
}
