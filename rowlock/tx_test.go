package rowlock_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/rowlock"
)

func begin(t *testing.T, db *sql.DB) *sql.Tx {
	t.Helper()
	tx, err := db.BeginTx(ctxT(t, time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

func wantTxHeld(t *testing.T, err error, what string) *lockkit.HeldError {
	t.Helper()
	var he *lockkit.HeldError
	if !errors.As(err, &he) {
		t.Fatalf("%s = %v, want a *lockkit.HeldError", what, err)
	}
	return he
}

func TestLockTx(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		l := e.locker(t, nil)
		ctx := ctxT(t, time.Minute)
		name := e.name(t) // a name with no row yet

		tx1 := begin(t, e.db)
		if err := l.TryLockTx(ctx, tx1, name); err != nil {
			t.Fatalf("TryLockTx on a new name: %v", err)
		}
		tx2 := begin(t, e.db)
		start := time.Now()
		wantTxHeld(t, l.TryLockTx(ctx, tx2, name), "TryLockTx while another tx holds it")
		t.Logf("TryLockTx conflict answered in %v", time.Since(start).Round(time.Microsecond))
		_ = tx2.Rollback()

		// A waiting LockTx gets it at the first transaction's commit.
		got := make(chan error, 1)
		tx3 := begin(t, e.db)
		go func() { got <- l.LockTx(ctx, tx3, name) }()
		select {
		case err := <-got:
			t.Fatalf("LockTx returned %v while tx1 holds the name", err)
		case <-time.After(200 * time.Millisecond):
		}
		if err := tx1.Commit(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("LockTx after commit: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("LockTx not granted within 10s of the commit")
		}
		// Rollback releases too.
		if err := tx3.Rollback(); err != nil {
			t.Fatal(err)
		}
		tx4 := begin(t, e.db)
		if err := l.TryLockTx(ctx, tx4, name); err != nil {
			t.Fatalf("TryLockTx after rollback: %v", err)
		}
		_ = tx4.Rollback()

		// A live lease blocks transaction locks, naming its holder.
		lk := mustTry(t, l, name, &rowlock.Options{Owner: "lease-holder"})
		for what, fn := range map[string]func(context.Context, *sql.Tx, string) error{"LockTx": l.LockTx, "TryLockTx": l.TryLockTx} {
			tx := begin(t, e.db)
			he := wantTxHeld(t, fn(ctx, tx, name), what+" while a lease is live")
			if he.Holder == nil || he.Holder.Owner != "lease-holder" {
				t.Errorf("%s holder = %+v", what, he.Holder)
			}
			_ = tx.Rollback()
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}

		// Lease operations on a name wait while a transaction holds it.
		name2 := e.name(t)
		tx5 := begin(t, e.db)
		if err := l.LockTx(ctx, tx5, name2); err != nil {
			t.Fatal(err)
		}
		leased := make(chan error, 1)
		go func() {
			lk, err := l.TryAcquire(ctx, name2)
			if err == nil {
				err = lk.Release(ctx)
			}
			leased <- err
		}()
		select {
		case err := <-leased:
			t.Fatalf("a lease attempt returned %v while a transaction holds the name", err)
		case <-time.After(200 * time.Millisecond):
		}
		if err := tx5.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := <-leased; err != nil {
			t.Fatalf("lease after the transaction: %v", err)
		}
	})
}

func TestLockTxTimeout(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		l := e.locker(t, nil)
		ctx := ctxT(t, time.Minute)
		name := e.name(t)
		tx1 := begin(t, e.db)
		if err := l.LockTx(ctx, tx1, name); err != nil {
			t.Fatal(err)
		}
		tx2 := begin(t, e.db)
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := l.LockTx(short, tx2, name)
		he := wantTxHeld(t, err, "LockTx with a 300ms context")
		if !errors.Is(he, context.DeadlineExceeded) {
			t.Errorf("LockTx timeout = %v, want it to match DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("LockTx returned %v after a 300ms context", d)
		}
	})
}

// TestLockTxExcludes: many transactions increment a counter row under
// LockTx with a read-sleep-write; no increment is lost.
func TestLockTxExcludes(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		l := e.locker(t, nil)
		ctx := ctxT(t, time.Minute)
		name := e.name(t)
		var (
			inside, overlap atomic.Int32
			counter         int
			wg              sync.WaitGroup
		)
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					tx, err := e.db.BeginTx(ctx, nil)
					if err != nil {
						errs <- err
						return
					}
					if err := l.LockTx(ctx, tx, name); err != nil {
						_ = tx.Rollback()
						errs <- err
						return
					}
					if inside.Add(1) != 1 {
						overlap.Add(1)
					}
					v := counter
					time.Sleep(200 * time.Microsecond)
					counter = v + 1
					inside.Add(-1)
					if err := tx.Commit(); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if overlap.Load() != 0 || counter != 40 {
			t.Errorf("overlaps %d, counter %d (want 0, 40)", overlap.Load(), counter)
		}
	})
}
