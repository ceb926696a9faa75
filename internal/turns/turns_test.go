package turns

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

// holders returns which of ws hold the turn, as a string of 0s and 1s.
func holders(ws ...*Waiter) string {
	b := make([]byte, len(ws))
	for i, w := range ws {
		b[i] = '0'
		if w.HasTurn() {
			b[i] = '1'
		}
	}
	return string(b)
}

func wantHolders(t *testing.T, want string, ws ...*Waiter) {
	t.Helper()
	if got := holders(ws...); got != want {
		t.Fatalf("holders %s, want %s", got, want)
	}
}

// TestSharedRun: shared waiters at the head of the queue hold the turn
// together; an exclusive one behind them waits until every one of them has
// left, and the shared ones behind it wait for it (first come first
// served across modes), then hold the turn together again.
func TestSharedRun(t *testing.T) {
	var s Set[struct{}]
	q, s1 := s.JoinMode("n", Shared)
	_, s2 := s.JoinMode("n", Shared)
	_, x := s.Join("n")
	_, s3 := s.JoinMode("n", Shared)
	_, s4 := s.JoinMode("n", Shared)
	wantHolders(t, "11000", s1, s2, x, s3, s4)
	if n := s.Waiting("n"); n != 3 {
		t.Fatalf("Waiting = %d, want 3", n)
	}
	s.Leave("n", q, s2)
	wantHolders(t, "1000", s1, x, s3, s4)
	s.Leave("n", q, s1)
	wantHolders(t, "100", x, s3, s4)
	s.Leave("n", q, x)
	wantHolders(t, "11", s3, s4)
	_, x2 := s.Join("n")
	_, s5 := s.JoinMode("n", Shared)
	wantHolders(t, "1100", s3, s4, x2, s5)
	s.Leave("n", q, s4)
	s.Leave("n", q, s3)
	wantHolders(t, "10", x2, s5)
	s.Leave("n", q, x2)
	wantHolders(t, "1", s5)
	if !s.Leave("n", q, s5) || s.Busy("n") {
		t.Fatal("the last waiter must report last and drop the queue")
	}
}

// TestExclusiveLeavesFromBehindSharedHolders: an exclusive waiter that
// gives up while shared waiters hold the turn lets the shared waiters behind
// it join the shared turn at once; the exclusive one behind those still
// waits.
func TestExclusiveLeavesFromBehindSharedHolders(t *testing.T) {
	var s Set[struct{}]
	q, s1 := s.JoinMode("n", Shared)
	_, x := s.Join("n")
	_, s2 := s.JoinMode("n", Shared)
	_, s3 := s.JoinMode("n", Shared)
	_, x2 := s.Join("n")
	wantHolders(t, "10000", s1, x, s2, s3, x2)
	s.Leave("n", q, x)
	wantHolders(t, "1110", s1, s2, s3, x2)
	for _, w := range []*Waiter{s1, s2, s3, x2} {
		s.Leave("n", q, w)
	}
	if s.Busy("n") {
		t.Fatal("queue left behind")
	}
}

// TestExclusiveHeadSharedBehind: a shared waiter behind an exclusive holder
// waits; when the holder leaves, the whole shared run behind it gets the
// turn.
func TestExclusiveHeadSharedBehind(t *testing.T) {
	var s Set[struct{}]
	q, x := s.Join("n")
	_, s1 := s.JoinMode("n", Shared)
	_, s2 := s.JoinMode("n", Shared)
	_, x2 := s.Join("n")
	_, s3 := s.JoinMode("n", Shared)
	wantHolders(t, "10000", x, s1, s2, x2, s3)
	s.Leave("n", q, x)
	wantHolders(t, "1100", s1, s2, x2, s3)
	// A shared holder leaving from behind another passes nothing on.
	s.Leave("n", q, s2)
	wantHolders(t, "100", s1, x2, s3)
	s.Leave("n", q, s1)
	wantHolders(t, "10", x2, s3)
	s.Leave("n", q, x2)
	wantHolders(t, "1", s3)
	s.Leave("n", q, s3)
}

// TestTryJoin: TryJoin joins only with the turn at once, and never jumps
// the queue: a shared one joins shared holders only while nobody waits.
func TestTryJoin(t *testing.T) {
	var s Set[struct{}]
	q, s1, ok := s.TryJoin("n", Shared)
	if !ok || !s1.HasTurn() {
		t.Fatal("TryJoin on a free name")
	}
	_, s2, ok := s.TryJoin("n", Shared)
	if !ok || !s2.HasTurn() {
		t.Fatal("shared TryJoin beside shared holders")
	}
	if _, _, ok := s.TryJoin("n", Exclusive); ok {
		t.Fatal("exclusive TryJoin beside shared holders")
	}
	_, x := s.Join("n")
	if _, _, ok := s.TryJoin("n", Shared); ok {
		t.Fatal("shared TryJoin jumped a queued exclusive waiter")
	}
	if s.Len("n") != 3 || s.Waiting("n") != 1 {
		t.Fatalf("Len %d, Waiting %d after failed TryJoins", s.Len("n"), s.Waiting("n"))
	}
	s.Leave("n", q, s1)
	s.Leave("n", q, s2)
	if _, _, ok := s.TryJoin("n", Shared); ok {
		t.Fatal("shared TryJoin beside an exclusive holder")
	}
	s.Leave("n", q, x)
	if s.Busy("n") {
		t.Fatal("a failed TryJoin left a queue behind")
	}
	if _, _, ok := s.TryJoin("m", Exclusive); !ok || s.Queues() != 1 {
		t.Fatal("exclusive TryJoin on a free name")
	}
}

// TestWait: Wait returns once the turn comes, with and without Spin, to
// the next in line and to one further back, and the turn comes in order.
func TestWait(t *testing.T) {
	for _, spin := range []time.Duration{0, 50 * time.Microsecond, time.Second} {
		t.Run("spin="+spin.String(), func(t *testing.T) {
			s := Set[struct{}]{Spin: spin}
			q, h := s.Join("n")
			const n = 4
			var ws [n]*Waiter
			got := make(chan int, n)
			for i := range ws {
				mode := Exclusive
				if i%2 == 1 {
					mode = Shared
				}
				_, ws[i] = s.JoinMode("n", mode)
			}
			for i, w := range ws {
				go func() {
					if err := w.Wait(context.Background()); err != nil {
						t.Error(err)
					}
					got <- i
					s.Leave("n", q, w)
				}()
			}
			time.Sleep(time.Millisecond)
			select {
			case i := <-got:
				t.Fatalf("waiter %d returned before the turn came", i)
			default:
			}
			s.Leave("n", q, h)
			for want := range n {
				select {
				case i := <-got:
					if i != want {
						t.Fatalf("waiter %d got the turn, want %d", i, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("turn did not come")
				}
			}
			// The last waiter reports its turn before it leaves.
			for deadline := time.Now().Add(5 * time.Second); s.Queues() != 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("queue left behind")
				}
			}
		})
	}
}

// TestWaitEnded: Wait returns ctx.Err() when ctx ends first, the waiter
// still queued; a turn handed to it as its ctx ends is handed on by Leave.
func TestWaitEnded(t *testing.T) {
	for _, spin := range []time.Duration{0, time.Second} {
		t.Run("spin="+spin.String(), func(t *testing.T) {
			s := Set[struct{}]{Spin: spin}
			q, h := s.Join("n")
			_, a := s.Join("n")
			_, b := s.Join("n")
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := a.Wait(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait with an ended ctx = %v", err)
			}
			if s.Waiting("n") != 2 {
				t.Fatal("Wait left the queue")
			}
			s.Leave("n", q, h) // to a, whose ctx has ended
			if err := a.Wait(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
			s.Leave("n", q, a) // what its caller does on either outcome
			wantHolders(t, "1", b)
			s.Leave("n", q, b)
		})
	}
}

// TestNextInLine: with Spin set, a waiter learns that it is next in line
// when it joins as such, and when those ahead of it get the turn or leave.
func TestNextInLine(t *testing.T) {
	isNext := func(w *Waiter) bool {
		select {
		case <-w.next:
			return true
		default:
			return false
		}
	}
	s := Set[struct{}]{Spin: time.Second}
	q, h := s.JoinMode("n", Shared)
	if h.next != nil {
		t.Fatal("a waiter with the turn at once has no need of next")
	}
	_, a := s.Join("n")
	_, b := s.JoinMode("n", Shared)
	_, c := s.Join("n")
	if !isNext(a) || isNext(b) || isNext(c) {
		t.Fatal("only the first waiter without the turn is next")
	}
	s.Leave("n", q, a) // b joins the shared turn: c is next
	wantHolders(t, "110", h, b, c)
	if !isNext(c) {
		t.Fatal("c not told it is next")
	}
	s.Leave("n", q, h)
	s.Leave("n", q, b)
	wantHolders(t, "1", c)
	s.Leave("n", q, c)

	var plain Set[struct{}]
	_, x := plain.Join("n")
	_, y := plain.Join("n")
	if x.next != nil || y.next != nil {
		t.Fatal("next made without Spin")
	}
}

func TestNextMode(t *testing.T) {
	var s Set[struct{}]
	q, a := s.Join("n")
	s.Do(func() {
		if _, ok := q.NextMode(); ok {
			t.Error("NextMode with only the holder: ok")
		}
	})
	_, b := s.JoinMode("n", Shared)
	s.Do(func() {
		if m, ok := q.NextMode(); !ok || m != Shared {
			t.Errorf("NextMode = %v, %v; want Shared, true", m, ok)
		}
	})
	s.Leave("n", q, a)
	if !b.HasTurn() {
		t.Fatal("the shared waiter did not get the turn")
	}
	s.Do(func() {
		if _, ok := q.NextMode(); ok {
			t.Error("NextMode with every waiter holding: ok")
		}
	})
	s.Leave("n", q, b)
}
