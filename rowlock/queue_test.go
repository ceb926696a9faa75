package rowlock_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/rowlock"
)

// stmtCounter counts a Locker's attempt statements through the test hook,
// started and finished, and the most that were ever in flight at once.
type stmtCounter struct {
	mu       sync.Mutex
	n        map[string]int
	done     map[string]int
	inFlight int
	most     int
}

func countStmts(l *rowlock.Locker) *stmtCounter {
	c := &stmtCounter{n: map[string]int{}, done: map[string]int{}}
	rowlock.SetTestHook(l, func(op string) func() {
		c.mu.Lock()
		c.n[op]++
		c.inFlight++
		c.most = max(c.most, c.inFlight)
		c.mu.Unlock()
		return func() {
			c.mu.Lock()
			c.inFlight--
			c.done[op]++
			c.mu.Unlock()
		}
	})
	return c
}

// finished returns how many op statements have returned.
func (c *stmtCounter) finished(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done[op]
}

func (c *stmtCounter) get() (acquire, holder, most int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n["acquire"], c.n["holder"], c.most
}

// waitQueued waits until n of l's waiters are queued on name.
func waitQueued(t *testing.T, l *rowlock.Locker, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rowlock.QueueLen(l, name) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters queued on %q, want %d", rowlock.QueueLen(l, name), name, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFailedAttemptStatements: a failed attempt is one statement on
// PostgreSQL (the acquire statement returns the holder) and two on MySQL
// (acquire, then the holder read), and the holder it reports is the live
// one.
func TestFailedAttemptStatements(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		a := e.locker(t, &rowlock.Config{TTL: time.Minute})
		b := e.locker(t, nil)
		c := countStmts(b)
		name := e.name(t)
		lk := mustTry(t, a, name, &rowlock.Options{Owner: "user:carol", Data: "Carol"})
		defer lk.Release(context.Background())
		he := wantHeld(t, b, name)
		if h := he.Holder; h == nil || h.Owner != "user:carol" || h.Data != "Carol" || h.Token != lk.Token() {
			t.Errorf("holder = %+v, want carol's lease, token %d", he.Holder, lk.Token())
		}
		acq, hold, _ := c.get()
		wantHold := 0
		if e.dialect == rowlock.MySQL {
			wantHold = 1
		}
		if acq != 1 || hold != wantHold {
			t.Errorf("failed attempt ran %d acquire statements and %d holder reads, want 1 and %d", acq, hold, wantHold)
		}
		// A takeover of an expired lease, then a failed attempt against
		// the new holder: the holder reported is the new one.
		short := mustTry(t, b, name+".x", &rowlock.Options{Owner: "first", TTL: 50 * time.Millisecond, RenewInterval: rowlock.NoRenew})
		time.Sleep(100 * time.Millisecond)
		second := mustTry(t, a, name+".x", &rowlock.Options{Owner: "second"})
		defer second.Release(context.Background())
		if second.Token() <= short.Token() {
			t.Errorf("takeover token %d not above %d", second.Token(), short.Token())
		}
		he = wantHeld(t, b, name+".x")
		if h := he.Holder; h == nil || h.Owner != "second" || h.Token != second.Token() {
			t.Errorf("holder after takeover = %+v, want owner second, token %d", he.Holder, second.Token())
		}
	})
}

// TestQueueOneAtATime: with many waiters on one Locker, one name, only one
// runs statements at a time, while the lock is held elsewhere and while
// the waiters hand it to each other.
func TestQueueOneAtATime(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		const waiters = 8
		holder := e.locker(t, &rowlock.Config{TTL: time.Minute})
		l := e.locker(t, &rowlock.Config{TTL: time.Minute, MaxPoll: 20 * time.Millisecond})
		c := countStmts(l)
		name := e.name(t)
		held := mustTry(t, holder, name, nil)
		ctx := ctxT(t, 30*time.Second)
		var wg sync.WaitGroup
		var acquired atomic.Int32
		errs := make(chan error, waiters)
		for range waiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lk, err := l.Acquire(ctx, name)
				if err != nil {
					errs <- err
					return
				}
				acquired.Add(1)
				time.Sleep(5 * time.Millisecond)
				if err := lk.Release(ctx); err != nil {
					errs <- err
				}
			}()
		}
		waitQueued(t, l, name, waiters)
		// Held elsewhere: the waiters wait (the head polls every 20ms at
		// most on MySQL).
		time.Sleep(300 * time.Millisecond)
		acq, hold, most := c.get()
		t.Logf("while held elsewhere for 300ms: %d acquire statements, %d holder reads", acq, hold)
		// One waiter polling every ≤20ms makes at most ~25 attempts here;
		// eight would make eight times as many.
		if acq > 40 {
			t.Errorf("%d acquire statements in 300ms of waiting: more than one waiter attempts", acq)
		}
		before := acq + hold
		if err := held.Release(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := acquired.Load(); n != waiters {
			t.Errorf("%d of %d waiters acquired", n, waiters)
		}
		acq, hold, most = c.get()
		t.Logf("in all: %d acquire statements, %d holder reads, at most %d in flight", acq, hold, most)
		// On PostgreSQL nobody polls: a handoff is the next head's
		// attempt when it gets the turn, maybe one more on the release's
		// NOTIFY arriving after the local wake-up, and the attempt that
		// acquires, each one statement; waking every waiter on each
		// release costs several per waiter (88 here before the queue).
		if after := acq + hold - before; e.dialect == rowlock.Postgres && after > 4*waiters {
			t.Errorf("%d statements for %d handoffs, want at most %d", after, waiters, 4*waiters)
		}
		if most != 1 {
			t.Errorf("%d attempt statements were in flight at once, want 1", most)
		}
		if n := rowlock.QueueLen(l, name); n != 0 {
			t.Errorf("%d waiters left in the queue", n)
		}
	})
}

// TestQueueFIFO: local waiters get the lock in the order they asked for it.
func TestQueueFIFO(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		const waiters = 6
		holder := e.locker(t, &rowlock.Config{TTL: time.Minute})
		l := e.locker(t, &rowlock.Config{TTL: time.Minute, MaxPoll: 20 * time.Millisecond})
		name := e.name(t)
		held := mustTry(t, holder, name, nil)
		ctx := ctxT(t, 30*time.Second)
		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		errs := make(chan error, waiters)
		for i := range waiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lk, err := l.Acquire(ctx, name)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				if err := lk.Release(ctx); err != nil {
					errs <- err
				}
			}()
			waitQueued(t, l, name, i+1)
		}
		if err := held.Release(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		want := []int{0, 1, 2, 3, 4, 5}
		if !slices.Equal(order, want) {
			t.Errorf("acquired in order %v, want %v", order, want)
		}
	})
}

// TestQueueCancelled: a head whose context ends passes the turn to the
// next waiter, a queued waiter whose context ends leaves the queue, and
// both report the holder and their context's error.
func TestQueueCancelled(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		holder := e.locker(t, &rowlock.Config{TTL: time.Minute})
		l := e.locker(t, &rowlock.Config{TTL: time.Minute, MaxPoll: 20 * time.Millisecond})
		c := countStmts(l)
		name := e.name(t)
		held := mustTry(t, holder, name, &rowlock.Options{Owner: "user:dave"})

		type result struct {
			lk  *rowlock.Lock
			err error
		}
		start := func(ctx context.Context) chan result {
			ch := make(chan result, 1)
			go func() {
				lk, err := l.Lock(ctx, name, nil)
				ch <- result{lk, err}
			}()
			return ch
		}
		headCtx, cancelHead := context.WithCancel(context.Background())
		defer cancelHead()
		head := start(headCtx)
		waitQueued(t, l, name, 1)
		// The head has attempted and seen the holder before the next
		// waiters queue: its attempt's last statement has returned (the
		// acquire statement, which returns the holder on PostgreSQL; the
		// holder read on MySQL). Its start is not enough where a round
		// trip can take longer than the third waiter's 100 ms (a loaded
		// machine, a container's published port).
		lastOp := "acquire"
		if e.dialect == rowlock.MySQL {
			lastOp = "holder"
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			if c.finished(lastOp) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the head made no attempt")
			}
		}
		next := start(ctxT(t, 30*time.Second))
		waitQueued(t, l, name, 2)
		queuedCtx, cancelQueued := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancelQueued()
		queued := start(queuedCtx)
		waitQueued(t, l, name, 3)

		// The third waiter's context ends while it is queued.
		r := <-queued
		checkHeld(t, r.err, context.DeadlineExceeded, held.Token())
		waitQueued(t, l, name, 2)

		// The head gives up; the second waiter becomes the head.
		acqBefore, _, _ := c.get()
		cancelHead()
		r = <-head
		checkHeld(t, r.err, context.Canceled, held.Token())
		waitQueued(t, l, name, 1)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			if acq, _, _ := c.get(); acq > acqBefore {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the new head made no attempt after the old one gave up")
			}
		}
		released := time.Now()
		if err := held.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		select {
		case r = <-next:
		case <-time.After(10 * time.Second):
			t.Fatal("the second waiter did not acquire within 10s of the release")
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("second waiter acquired %v after the release", time.Since(released).Round(time.Microsecond))
		if r.lk.Token() <= held.Token() {
			t.Errorf("token %d not above the released %d", r.lk.Token(), held.Token())
		}
		if err := r.lk.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if n := rowlock.QueueLen(l, name); n != 0 {
			t.Errorf("%d waiters left in the queue", n)
		}
	})
}

func checkHeld(t *testing.T, err, cause error, token int64) {
	t.Helper()
	var he *lockkit.HeldError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v, want a *lockkit.HeldError", err)
	}
	if !errors.Is(err, cause) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("err = %v, want it to match %v and ErrNotAcquired", err, cause)
	}
	if he.Holder == nil || he.Holder.Owner != "user:dave" || he.Holder.Token != token {
		t.Errorf("holder = %+v, want user:dave's lease, token %d", he.Holder, token)
	}
}
