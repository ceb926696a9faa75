package rowlock_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit/rowlock"
)

// copyTable creates a copy of the lock table under a fresh name, as a user
// who wants a table of their own would (from the migration files).
func (e *env) copyTable(t *testing.T) string {
	t.Helper()
	return e.copyTableAs(t, "locks_"+randHex(4))
}

func (e *env) copyTableAs(t *testing.T, table string) string {
	t.Helper()
	q := "CREATE TABLE " + table + " (LIKE lockkit_locks INCLUDING ALL)"
	if e.dialect == rowlock.MySQL {
		q = "CREATE TABLE " + table + " LIKE lockkit_locks"
	}
	if _, err := e.db.Exec(q); err != nil {
		t.Fatal(err)
	}
	return table
}

func TestCustomTable(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		table := e.copyTable(t)
		std := e.locker(t, nil)
		custom := e.locker(t, &rowlock.Config{Table: table})
		other := e.locker(t, &rowlock.Config{Table: table})
		name := e.name(t)
		a := mustTry(t, std, name, nil)
		b := mustTry(t, custom, name, nil) // another table, another lock
		wantHeld(t, other, name)
		var n int
		if err := e.db.QueryRow("SELECT count(*) FROM "+table+" WHERE name = "+e.ph(1), name).Scan(&n); err != nil || n != 1 {
			t.Errorf("rows in %s: %d, %v", table, n, err)
		}
		ctx := ctxT(t, 10*time.Second)
		if err := a.Release(ctx); err != nil {
			t.Error(err)
		}
		if err := b.Release(ctx); err != nil {
			t.Error(err)
		}
	})
}

// TestLongTableName: a table name of the longest length allowed (63
// characters) works, including the PostgreSQL notification a release sends,
// whose channel must stay within PostgreSQL's identifier limit.
func TestLongTableName(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		table := e.copyTableAs(t, "locks_"+randHex(4)+strings.Repeat("t", 63-6-8))
		// The waiter polls at most every 10 s, so a prompt wake-up comes
		// from the release's notification (PostgreSQL) or fails the
		// bound (MySQL, which polls: its bound is the poll).
		holder := e.locker(t, &rowlock.Config{Table: table, TTL: time.Minute})
		maxPoll := 10 * time.Second
		if e.dialect == rowlock.MySQL {
			maxPoll = 100 * time.Millisecond
		}
		waiter := e.locker(t, &rowlock.Config{Table: table, TTL: time.Minute, MaxPoll: maxPoll})
		name := e.name(t)
		held := mustTry(t, holder, name, nil)
		got := make(chan error, 1)
		go func() {
			lk, err := waiter.Acquire(ctxT(t, 30*time.Second), name)
			if err == nil {
				err = lk.Release(context.Background())
			}
			got <- err
		}()
		time.Sleep(300 * time.Millisecond) // the waiter is waiting (and listening)
		released := time.Now()
		if err := held.Release(ctxT(t, 10*time.Second)); err != nil {
			t.Fatalf("Release with a %d-character table: %v", len(table), err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("waiter acquired %v after the release", time.Since(released).Round(time.Millisecond))
		case <-time.After(2 * time.Second):
			t.Fatal("waiter not woken within 2 s of the release")
		}
		if ended, err := holder.ForceRelease(ctxT(t, 10*time.Second), name); err != nil || ended {
			t.Errorf("ForceRelease of a free name = %v, %v; want false, nil", ended, err)
		}
	})
}

// TestListenerKilled terminates the notification listener's backend while
// a waiter waits: the waiter is not stranded; it restarts the listener and
// acquires after the release, long before the holder's lease would end.
func TestListenerKilled(t *testing.T) {
	e := setup(t, rowlock.Postgres)
	table := e.copyTable(t)
	a := e.locker(t, &rowlock.Config{Table: table, TTL: time.Minute})
	b := e.locker(t, &rowlock.Config{Table: table, TTL: time.Minute})
	name := e.name(t)
	ctx := ctxT(t, time.Minute)
	held := mustTry(t, a, name, nil)

	got := make(chan error, 1)
	go func() {
		lk, err := b.Acquire(ctx, name)
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	listener := func() int {
		t.Helper()
		var pid int
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			err := e.db.QueryRowContext(ctx, "SELECT pid FROM pg_stat_activity WHERE query = $1",
				`LISTEN "lockkit.`+table+`"`).Scan(&pid)
			if err == nil {
				return pid
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no listener backend found")
		return 0
	}
	first := listener()
	var ok bool
	if err := e.db.QueryRowContext(ctx, "SELECT pg_terminate_backend($1)", first).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend = %v, %v", ok, err)
	}
	// The waiter restarts the listener.
	deadline := time.Now().Add(10 * time.Second)
	second := 0
	for time.Now().Before(deadline) {
		if p := listener(); p != first {
			second = p
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if second == 0 {
		t.Fatal("listener not restarted")
	}
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("waiter not woken within 20s of the release")
	}
}
