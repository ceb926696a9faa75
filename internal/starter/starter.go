// Package starter runs a delayed action for many items from one timer.
//
// Arming a runtime timer per item (time.AfterFunc for each lock's first
// probe or watch) costs each item a cross-thread wake-up: a timer earlier
// than the sleeping netpoller's deadline makes the runtime wake another
// thread (wakeNetPoller). A Starter arms its one timer only when its list
// goes from empty to non-empty, so a loop of short critical sections arms
// it about once per delay, and an item removed before it is due costs a
// list unlink and nothing else.
package starter

import (
	"sync"
	"sync/atomic"
	"time"
)

// Item is what a Starter starts.
type Item interface {
	// Start runs when the item is due, in the Starter's timer goroutine
	// and outside its lock, once per Add. It must not block: an item
	// with work to do starts a goroutine.
	Start()
}

// Entry is an item's place in a Starter's list. The item embeds it (or
// holds it) and passes it to Add and Remove; its zero value is ready. An
// Entry is in at most one Starter at a time.
type Entry struct {
	prev, next *Entry
	item       Item
	due        time.Time
	linked     bool
}

// Starter starts each added item delay after its Add. Every Add on one
// Starter must use the same delay, so that the list, in the order of
// Add, is in the order of due time. The zero value is ready; a Starter
// holds no goroutine, and between bursts only a stopped timer is left.
type Starter struct {
	mu         sync.Mutex
	head, tail *Entry
	n          int  // entries linked
	armed      bool // the timer will fire
	timer      *time.Timer
	arms       atomic.Int64 // how often Add armed the timer
	fires      atomic.Int64 // how often the timer fired
}

// Add arranges for it.Start to run delay from now. e must not be in a
// list already.
func (s *Starter) Add(e *Entry, it Item, delay time.Duration) {
	s.mu.Lock()
	e.item, e.due, e.linked = it, time.Now().Add(delay), true
	e.prev, e.next = s.tail, nil
	if s.tail != nil {
		s.tail.next = e
	} else {
		s.head = e
	}
	s.tail = e
	s.n++
	if !s.armed {
		s.armed = true
		s.arms.Add(1)
		if s.timer == nil {
			s.timer = time.AfterFunc(delay, s.fire)
		} else {
			s.timer.Reset(delay)
		}
	}
	s.mu.Unlock()
}

// Remove takes e out of the list, if it is still there, so that its item
// is not started; it reports whether it was.
func (s *Starter) Remove(e *Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !e.linked {
		return false
	}
	s.unlink(e)
	return true
}

func (s *Starter) unlink(e *Entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next, e.item, e.linked = nil, nil, nil, false
	s.n--
}

// fire starts the items that are due and re-arms the timer for the rest.
func (s *Starter) fire() {
	s.fires.Add(1)
	s.mu.Lock()
	now := time.Now()
	var due []Item
	for e := s.head; e != nil && !now.Before(e.due); e = s.head {
		due = append(due, e.item)
		s.unlink(e)
	}
	if s.head != nil {
		s.timer.Reset(s.head.due.Sub(now))
	} else {
		s.armed = false
	}
	s.mu.Unlock()
	for _, it := range due {
		it.Start()
	}
}

// Len returns the number of items not yet started, for tests.
func (s *Starter) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Arms returns how often Add armed the timer, for tests.
func (s *Starter) Arms() int64 { return s.arms.Load() }

// Fires returns how often the timer fired, for tests.
func (s *Starter) Fires() int64 { return s.fires.Load() }

// Stop stops the timer, for tests: the items not yet started are not.
func (s *Starter) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.armed = false
}
