package turns

import (
	"testing"
)

func TestFIFO(t *testing.T) {
	var s Set[int]
	q, a := s.Join("n")
	_, b := s.Join("n")
	_, c := s.Join("n")
	if !a.HasTurn() || b.HasTurn() || c.HasTurn() {
		t.Fatal("the first waiter must hold the turn, and only it")
	}
	if !s.Busy("n") || s.Busy("other") {
		t.Fatal("Busy")
	}
	// A waiter that leaves from the middle passes nothing on.
	if s.Leave("n", q, b) || b.HasTurn() || c.HasTurn() {
		t.Fatal("leaving from the middle changed the turn")
	}
	// The holder of the turn leaves: the next one gets it.
	if s.Leave("n", q, a) || !c.HasTurn() {
		t.Fatal("the turn did not pass to the next waiter")
	}
	if !s.Leave("n", q, c) || s.Busy("n") {
		t.Fatal("the last waiter must report last and drop the queue")
	}
	if s.Leave("n", q, c) {
		t.Fatal("a second Leave must do nothing")
	}
}

func TestState(t *testing.T) {
	s := Set[*int]{New: func() *int { return new(int) }}
	q, a := s.Join("n")
	s.Do(func() { *q.State = 7 })
	if v, ok := s.Lookup("n"); !ok || *v != 7 {
		t.Fatalf("Lookup = %v, %v", v, ok)
	}
	n := 0
	s.Range(func(v *int) { n += *v })
	if n != 7 {
		t.Fatalf("Range saw %d", n)
	}
	q2, b := s.Join("n")
	if q2 != q {
		t.Fatal("one queue per name")
	}
	s.Leave("n", q, a)
	s.Leave("n", q, b)
	// A new queue gets new state.
	q3, c := s.Join("n")
	if *q3.State != 0 {
		t.Fatal("state kept across queues")
	}
	s.Leave("n", q3, c)
}
