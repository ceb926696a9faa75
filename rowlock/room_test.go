package rowlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockkit/lockkit/rowlock"
)

// TestRoomStatementsPrepare: the waiting room's statements are valid SQL
// on the server (the other tests only run them where a room is used).
func TestRoomStatementsPrepare(t *testing.T) {
	e := setup(t, rowlock.Postgres)
	conn, err := e.db.Conn(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, s := range rowlock.RoomStatements(rowlock.DefaultTable) {
		if _, err := conn.ExecContext(ctxT(t, 10*time.Second), "PREPARE room_stmt AS "+s); err != nil {
			t.Errorf("%v\n%s", err, s)
			continue
		}
		if _, err := conn.ExecContext(context.Background(), "DEALLOCATE room_stmt"); err != nil {
			t.Fatal(err)
		}
	}
}

// roomHolderPID returns the pid of the backend that holds name's waiting
// room, waiting for one other than not to hold it.
func roomHolderPID(t *testing.T, e *env, name string, not int) int {
	t.Helper()
	k := rowlock.RoomKeys(rowlock.DefaultTable, name)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var pid int
		err := e.db.QueryRow(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2
  AND classid::int8 = $1 AND objid::int8 = $2 AND granted`, int64(uint32(k[0])), int64(uint32(k[1]))).Scan(&pid)
		if err == nil && pid != not {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("nobody holds the waiting room of %q: %v", name, err)
		}
	}
}

// TestRoomHolderKilled: the waiter that holds a name's waiting room has
// its session terminated. The waiter behind it still gets the lock at the
// holder's release, and the killed one waits on without the room and
// gets it after that: a killed room costs neither of them the lease's TTL.
func TestRoomHolderKilled(t *testing.T) {
	e := setup(t, rowlock.Postgres)
	name := e.name(t)
	holder := e.locker(t, &rowlock.Config{TTL: time.Minute})
	b := e.lockerOn(t, e.open(t, nil), &rowlock.Config{TTL: time.Minute})
	c := e.lockerOn(t, e.open(t, nil), &rowlock.Config{TTL: time.Minute})
	held := mustTry(t, holder, name, nil)

	type result struct {
		lk  *rowlock.Lock
		err error
	}
	start := func(l *rowlock.Locker) chan result {
		ch := make(chan result, 1)
		go func() {
			lk, err := l.Lock(ctxT(t, 30*time.Second), name, nil)
			ch <- result{lk, err}
		}()
		return ch
	}
	bRes := start(b)
	pid := roomHolderPID(t, e, name, 0) // b's
	cRes := start(c)
	// c waits for the room behind b.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var n int
		k := rowlock.RoomKeys(rowlock.DefaultTable, name)
		if err := e.db.QueryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2
  AND classid::int8 = $1 AND objid::int8 = $2 AND NOT granted`, int64(uint32(k[0])), int64(uint32(k[1]))).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second waiter did not wait for the room")
		}
	}
	var ok bool
	if err := e.db.QueryRow("SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
	// c now holds the room; the lease is still held.
	roomHolderPID(t, e, name, pid)
	released := time.Now()
	if err := held.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	var first, second result
	select {
	case first = <-cRes:
	case first = <-bRes:
	case <-time.After(10 * time.Second):
		t.Fatal("no waiter acquired within 10s of the release")
	}
	if first.err != nil {
		t.Fatal(first.err)
	}
	t.Logf("a waiter acquired %v after the release", time.Since(released).Round(time.Microsecond))
	if err := first.lk.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case second = <-cRes:
	case second = <-bRes:
	case <-time.After(10 * time.Second):
		t.Fatal("the other waiter did not acquire within 10s of the release")
	}
	if second.err != nil {
		t.Fatal(second.err)
	}
	if err := second.lk.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestRoomSmallPool: in a pool of two connections a waiter takes no room
// (the listener has one), so that a release through the same pool, of
// the lease the waiter waits for, still finds a connection.
func TestRoomSmallPool(t *testing.T) {
	e := setup(t, rowlock.Postgres)
	db := e.open(t, nil)
	db.SetMaxOpenConns(2)
	l := e.lockerOn(t, db, &rowlock.Config{TTL: time.Minute})
	name := e.name(t)
	held := mustTry(t, l, name, nil)
	got := make(chan error, 1)
	go func() {
		lk, err := l.Lock(ctxT(t, 20*time.Second), name, nil)
		if err == nil {
			err = lk.Release(ctxT(t, 5*time.Second))
		}
		got <- err
	}()
	waitQueued(t, l, name, 1)
	time.Sleep(100 * time.Millisecond) // the waiter is at its wait
	if err := held.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not acquire within 10s of the release")
	}
}

// TestRoomCancelledWaitsLeaveNothing: a waiter that holds the waiting room
// and one that waits for it in the server are cancelled; the room is free
// (no lock on its keys, granted or waiting) and both pools have every
// connection back, at once and without the holder's release.
func TestRoomCancelledWaitsLeaveNothing(t *testing.T) {
	e := setup(t, rowlock.Postgres)
	name := e.name(t)
	holder := e.locker(t, &rowlock.Config{TTL: time.Minute})
	bDB, cDB := e.open(t, nil), e.open(t, nil)
	b := e.lockerOn(t, bDB, &rowlock.Config{TTL: time.Minute})
	c := e.lockerOn(t, cDB, &rowlock.Config{TTL: time.Minute})
	held := mustTry(t, holder, name, nil)
	defer held.Release(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	for _, l := range []*rowlock.Locker{b, c} {
		go func() {
			_, err := l.Lock(ctx, name, nil)
			done <- err
		}()
	}
	k := rowlock.RoomKeys(rowlock.DefaultTable, name)
	locks := func() (granted, waiting int) {
		t.Helper()
		if err := e.db.QueryRow(`SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) FROM pg_locks
  WHERE locktype = 'advisory' AND objsubid = 2 AND classid::int8 = $1 AND objid::int8 = $2`,
			int64(uint32(k[0])), int64(uint32(k[1]))).Scan(&granted, &waiting); err != nil {
			t.Fatal(err)
		}
		return granted, waiting
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if g, w := locks(); g == 1 && w == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the two waiters are not in and at the room")
		}
	}
	cancel()
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled wait = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a cancelled wait did not return within 5s")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		g, w := locks()
		inUse := bDB.Stats().InUse + cDB.Stats().InUse
		if g == 0 && w == 0 && inUse <= 2 { // the two listeners linger
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the cancellations: room locks %d granted, %d waiting; %d connections in use", g, w, inUse)
		}
	}
	// The name is not held by anyone but the holder.
	wantHeld(t, b, name)
}
