//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

// queued returns how many acquires of name wait for their turn in l.
func queued(l *Locker, name string) int {
	return l.turns.Waiting(fileName(name))
}

// waitQueued waits until n acquires of name are queued in l.
func waitQueued(t *testing.T, l *Locker, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for queued(l, name) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d acquires of %q queued, want %d", queued(l, name), name, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// wantNoTurns fails unless l keeps no turn state: nothing held, nothing
// queued.
func wantNoTurns(t *testing.T, l *Locker) {
	t.Helper()
	if n := l.turns.Queues(); n != 0 {
		t.Errorf("turn state left for %d names", n)
	}
}

// TestTurnFIFO: the acquires of one name in one Locker get the lock in the
// order they came, and a holder that releases and at once acquires again
// goes behind them.
func TestTurnFIFO(t *testing.T) {
	l := newLocker(t, t.TempDir(), nil)
	const name, waiters = "fifo", 5
	ctx := ctxT(t, 10*time.Second)
	held := mustTry(t, l, name, Exclusive)
	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk, err := l.Acquire(ctx, name)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, strconv.Itoa(i))
			mu.Unlock()
			time.Sleep(time.Millisecond) // the holder's work
			mustRelease(t, lk)
		}()
		waitQueued(t, l, name, i+1)
	}
	mustRelease(t, held)
	again, err := l.Acquire(ctx, name) // already running: may not jump the queue
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	order = append(order, "releaser")
	got := append([]string(nil), order...)
	mu.Unlock()
	mustRelease(t, again)
	wg.Wait()
	want := []string{"0", "1", "2", "3", "4", "releaser"}
	if len(got) != len(want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
	wantNoTurns(t, l)
}

// TestTurnCancelledWaiter: a queued acquire whose context ends leaves the
// queue with a HeldError that names the holder and matches the context's
// error; the acquire behind it moves up, and nothing stays held or queued.
func TestTurnCancelledWaiter(t *testing.T) {
	l := newLocker(t, t.TempDir(), nil)
	const name = "cancel"
	held := mustTry(t, l, name, Exclusive)

	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	errA := make(chan error, 1)
	go func() {
		lk, err := l.Acquire(ctxA, name)
		if err == nil {
			_ = lk.Release(context.Background())
			err = errors.New("acquired while held")
		}
		errA <- err
	}()
	waitQueued(t, l, name, 1)
	gotB := make(chan error, 1)
	go func() {
		lk, err := l.Acquire(ctxT(t, 10*time.Second), name)
		if err == nil {
			err = lk.Release(context.Background())
		}
		gotB <- err
	}()
	waitQueued(t, l, name, 2)

	cancelA()
	err := <-errA
	var he *lockkit.HeldError
	if !errors.As(err, &he) || !errors.Is(err, context.Canceled) || !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("cancelled queued Acquire = %v, want a HeldError matching context.Canceled", err)
	}
	if he.Holder == nil || he.Holder.PID != os.Getpid() {
		t.Errorf("HeldError.Holder = %+v, want this process's holder record", he.Holder)
	}
	waitQueued(t, l, name, 1)
	mustRelease(t, held)
	if err := <-gotB; err != nil {
		t.Fatalf("waiter behind the cancelled one: %v", err)
	}
	wantNoTurns(t, l)
	mustRelease(t, mustTry(t, l, name, Exclusive))
	mustRelease(t, mustTry(t, newLocker(t, l.Dir(), nil), name, Exclusive))
}

// TestTurnHandedToEndedWaiter: a waiter handed the turn just as its context
// ends hands it on to the next one instead of keeping it. The release and
// the end of the first waiter's context come together, so either may win;
// both ways, the next waiter gets the lock and nothing stays held.
func TestTurnHandedToEndedWaiter(t *testing.T) {
	l := newLocker(t, t.TempDir(), nil)
	const name = "ended"
	for range 50 {
		held := mustTry(t, l, name, Exclusive)
		ctxA, cancelA := context.WithCancel(context.Background())
		errA := make(chan error, 1)
		go func() {
			lk, err := l.Acquire(ctxA, name)
			if err == nil {
				err = lk.Release(context.Background())
			}
			errA <- err
		}()
		waitQueued(t, l, name, 1)
		gotB := make(chan error, 1)
		go func() {
			lk, err := l.Acquire(ctxT(t, 10*time.Second), name)
			if err == nil {
				err = lk.Release(context.Background())
			}
			gotB <- err
		}()
		waitQueued(t, l, name, 2)
		cancelA()
		mustRelease(t, held) // to the first waiter, whose ctx has ended
		if err := <-errA; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("first waiter: %v", err)
		}
		select {
		case err := <-gotB:
			if err != nil {
				t.Fatalf("next waiter: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("turn not handed on to the next waiter")
		}
		wantNoTurns(t, l)
	}
}

// TestTurnTryAcquire: TryAcquire does not jump the queue: while an
// acquire of this Locker has the name's turn, it fails at once with a
// HeldError, even between a release and the next holder's flock. Another
// Locker is not held back by this one's turns.
func TestTurnTryAcquire(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, &Config{Owner: "turns"})
	const name = "try"
	file := fileName(name)
	held := mustTry(t, l, name, Exclusive)
	ctx := ctxT(t, 10*time.Second)
	got := make(chan error, 1)
	go func() {
		lk, err := l.Acquire(ctx, name)
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	waitQueued(t, l, name, 1)
	lk, err := l.TryAcquire(ctx, name)
	var he *lockkit.HeldError
	if err == nil {
		lk.Release(ctx)
		t.Fatal("TryAcquire succeeded while held")
	}
	if !errors.As(err, &he) || he.Holder == nil || he.Holder.Owner != "turns" {
		t.Errorf("TryAcquire while held and queued = %v, want a HeldError naming the holder", err)
	}
	mustRelease(t, held)
	if err := <-got; err != nil {
		t.Fatal(err)
	}

	// A turn handed to an acquire that has not locked yet.
	turn, ok, _ := l.takeTurn(ctx, file, Exclusive, false)
	if !ok {
		t.Fatal("free turn not taken")
	}
	if lk, err := l.TryAcquire(ctx, name); err == nil || !errors.Is(err, lockkit.ErrNotAcquired) {
		if lk != nil {
			lk.Release(ctx)
		}
		t.Errorf("TryAcquire while this Locker's turn is taken = %v, want ErrNotAcquired", err)
	}
	mustRelease(t, mustTry(t, newLocker(t, dir, nil), name, Exclusive))
	l.passTurn(file, turn)
	mustRelease(t, mustTry(t, l, name, Exclusive))
	wantNoTurns(t, l)
}

// TestTurnShared: shared holders of one Locker share the turn; an
// exclusive acquire queues behind them, and a shared one that comes after
// it queues behind it (FIFO: the exclusive one is not starved). When the
// exclusive one gives up, the shared one behind it gets in at once.
func TestTurnShared(t *testing.T) {
	l := newLocker(t, t.TempDir(), nil)
	const name = "shared"
	s1 := mustTry(t, l, name, Shared)
	s2 := mustTry(t, l, name, Shared)

	exCtx, exCancel := context.WithCancel(context.Background())
	defer exCancel()
	exErr := make(chan error, 1)
	go func() {
		lk, err := l.Acquire(exCtx, name)
		if err == nil {
			_ = lk.Release(context.Background())
			err = errors.New("exclusive acquired while shared holders hold")
		}
		exErr <- err
	}()
	waitQueued(t, l, name, 1)
	if lk, err := l.TryLock(ctxT(t, time.Second), name, &Options{Mode: Shared}); err == nil {
		lk.Release(context.Background())
		t.Error("shared TryAcquire jumped a queued exclusive acquire")
	}
	shGot := make(chan error, 1)
	go func() {
		lk, err := l.Lock(ctxT(t, 10*time.Second), name, &Options{Mode: Shared})
		if err == nil {
			err = lk.Release(context.Background())
		}
		shGot <- err
	}()
	waitQueued(t, l, name, 2)
	select {
	case err := <-shGot:
		t.Fatalf("shared acquire behind a queued exclusive one returned %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	exCancel()
	if err := <-exErr; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled exclusive acquire = %v", err)
	}
	select {
	case err := <-shGot:
		if err != nil {
			t.Fatalf("shared acquire: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shared acquire still queued after the exclusive one ahead of it left")
	}
	mustRelease(t, s1)
	mustRelease(t, s2)
	wantNoTurns(t, l)
}

// TestTurnLostHolder: a holder found lost (its file removed) no longer
// holds the acquires of its Locker back; its Release then reports the loss
// and hands nothing on twice.
func TestTurnLostHolder(t *testing.T) {
	l := newLocker(t, t.TempDir(), nil)
	const name = "lost"
	held := mustTry(t, l, name, Exclusive)
	got := make(chan lockkit.Lock, 1)
	go func() {
		lk, err := l.Acquire(ctxT(t, 10*time.Second), name)
		if err != nil {
			t.Error(err)
		}
		got <- lk
	}()
	waitQueued(t, l, name, 1)
	if err := os.Remove(held.Path()); err != nil {
		t.Fatal(err)
	}
	if err := held.Check(); !errors.Is(err, ErrFileRemoved) {
		t.Fatalf("Check = %v, want ErrFileRemoved", err)
	}
	var next lockkit.Lock
	select {
	case next = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter still queued behind a lost holder")
	}
	if next == nil {
		t.FailNow()
	}
	if err := held.Release(context.Background()); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release of the lost lock = %v", err)
	}
	if _, err := l.TryAcquire(ctxT(t, time.Second), name); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("TryAcquire while the waiter holds = %v, want ErrNotAcquired", err)
	}
	mustRelease(t, next)
	wantNoTurns(t, l)
}

// TestTurnOneWaiterOnTheFile: while another Locker (as another process
// would) holds the lock, only one of a Locker's queued acquires has the
// lock file open and waits on it; the others wait for their turn without a
// descriptor.
func TestTurnOneWaiterOnTheFile(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors through /proc/self/fd")
	}
	dir := t.TempDir()
	other, l := newLocker(t, dir, nil), newLocker(t, dir, nil)
	const name, waiters = "one-on-file", 8
	held := mustTry(t, other, name, Exclusive)
	var wg sync.WaitGroup
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk, err := l.Acquire(ctxT(t, 20*time.Second), name)
			if err == nil {
				err = lk.Release(context.Background())
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	waitQueued(t, l, name, waiters-1)
	// The queue counts the 7 waiting for their turn, not whether the
	// head, which has it, has opened the file yet: wait for that, then
	// look again a while later, in case more were still to come.
	deadline := time.Now().Add(5 * time.Second)
	for openOn(t, held.Path()) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for i := range 2 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if n := openOn(t, held.Path()); n != 2 {
			t.Errorf("%d descriptors open on the lock file, want 2 (the holder, the head of the queue)", n)
		}
	}
	mustRelease(t, held)
	wg.Wait()
	wantNoTurns(t, l)
}

// openOn counts this process's descriptors open on path.
func openOn(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

// TestTurnBusy: goroutines sharing a Locker take and release one name as
// fast as they can — turns passed to a head that watches for them and to
// one that sleeps — and never hold it two at once; every acquire gets its
// lock, and nothing is left held or queued.
func TestTurnBusy(t *testing.T) {
	for _, spin := range []time.Duration{turnSpin, 0} {
		t.Run("spin="+spin.String(), func(t *testing.T) {
			defer func(old time.Duration) { turnSpin = old }(turnSpin)
			turnSpin = spin
			l := newLocker(t, t.TempDir(), nil)
			const workers, rounds = 6, 100
			ctx := ctxT(t, 30*time.Second)
			var (
				inside, overlap, total int
				mu                     sync.Mutex
				wg                     sync.WaitGroup
			)
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range rounds {
						lk, err := l.Acquire(ctx, "busy")
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						if inside++; inside > 1 {
							overlap++
						}
						total++
						mu.Unlock()
						mu.Lock()
						inside--
						mu.Unlock()
						if err := lk.Release(ctx); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if overlap != 0 || total != workers*rounds {
				t.Errorf("%d overlaps, %d acquisitions; want 0 and %d", overlap, total, workers*rounds)
			}
			wantNoTurns(t, l)
		})
	}
}

// TestTurnHandOver: a Release with an exclusive acquire of the same
// Locker queued leaves it the descriptor still flocked (parked): the
// next holder writes its record on it, nobody else could take the lock in
// between, and nothing is left open afterwards. A shared next waiter, and
// a description flocked for longer than handOverMax, get a real release.
func TestTurnHandOver(t *testing.T) {
	dir := t.TempDir()
	fds0 := countFDs(t)
	l := newLocker(t, dir, &Config{Owner: "first", Fencing: true})
	other := newLocker(t, dir, nil)
	const name = "handover"
	ctx := ctxT(t, 10*time.Second)

	waiter := func(mode Mode) chan *Lock {
		ch := make(chan *Lock, 1)
		go func() {
			lk, err := l.Lock(ctx, name, &Options{Mode: mode})
			if err != nil {
				t.Error(err)
			}
			ch <- lk
		}()
		return ch
	}

	held := mustTry(t, l, name, Exclusive)
	next := waiter(Exclusive)
	waitQueued(t, l, name, 1)
	n0 := handOvers.Load()
	mustRelease(t, held)
	lk := <-next
	if got := handOvers.Load() - n0; got != 1 {
		t.Fatalf("%d hand-overs, want 1", got)
	}
	if lk.Token() <= held.Token() {
		t.Errorf("token after the hand-over %d, want more than %d", lk.Token(), held.Token())
	}
	if lk2, err := other.TryAcquire(ctx, name); err == nil {
		lk2.Release(ctx)
		t.Fatal("another Locker took the lock while a hand-over's receiver held it")
	}
	st, err := other.Inspect(ctx, name)
	if err != nil || !st.Held || st.Holder == nil || st.Holder.Owner != "first" {
		t.Errorf("Inspect after the hand-over = %+v, %v; want held with the holder's record", st, err)
	}

	// A shared waiter next: a real release.
	next = waiter(Shared)
	waitQueued(t, l, name, 1)
	n0 = handOvers.Load()
	mustRelease(t, lk)
	lk = <-next
	if got := handOvers.Load() - n0; got != 0 {
		t.Fatalf("%d hand-overs to a shared waiter, want 0", got)
	}
	mustRelease(t, lk)

	// A chain of hand-overs that started more than handOverMax ago: a
	// real release.
	held = mustTry(t, l, name, Exclusive)
	next = waiter(Exclusive)
	waitQueued(t, l, name, 1)
	n0 = handOvers.Load()
	mustRelease(t, held)
	lk = <-next
	next = waiter(Exclusive)
	waitQueued(t, l, name, 1)
	time.Sleep(handOverMax + 10*time.Millisecond)
	mustRelease(t, lk)
	lk = <-next
	if got := handOvers.Load() - n0; got != 1 {
		t.Fatalf("%d hand-overs in a chain older than %v, want 1 (the first)", got, handOverMax)
	}
	mustRelease(t, lk)
	mustRelease(t, mustTry(t, other, name, Exclusive))

	// A receiver whose context ends as it is handed the lock: the parked
	// descriptor is closed, not leaked.
	for range 20 {
		held = mustTry(t, l, name, Exclusive)
		wctx, cancel := context.WithCancel(ctx)
		got := make(chan error, 1)
		go func() {
			lk, err := l.Acquire(wctx, name)
			if err == nil {
				err = lk.Release(ctx)
			}
			got <- err
		}()
		waitQueued(t, l, name, 1)
		go cancel()
		mustRelease(t, held)
		if err := <-got; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		cancel()
		wantNoTurns(t, l)
		mustRelease(t, mustTry(t, other, name, Exclusive))
	}
	l.Close()
	other.Close()
	if fds := countFDs(t); fds != fds0 {
		t.Errorf("%d descriptors open after, %d before", fds, fds0)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}
