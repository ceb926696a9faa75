package rowlock_test

import (
	"context"
	"database/sql"
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

// heldName makes a Locker that holds name with a minute's lease, and two
// more Lockers, b and c, each on a pool of its own (bDB, cDB), to wait
// for it.
func heldName(t *testing.T, e *env, name string) (held *rowlock.Lock, b, c *rowlock.Locker, bDB, cDB *sql.DB) {
	t.Helper()
	holder := e.locker(t, &rowlock.Config{TTL: time.Minute})
	bDB, cDB = e.open(t, nil), e.open(t, nil)
	b = e.lockerOn(t, bDB, &rowlock.Config{TTL: time.Minute})
	c = e.lockerOn(t, cDB, &rowlock.Config{TTL: time.Minute})
	return mustTry(t, holder, name, nil), b, c, bDB, cDB
}

// lockResult is what a Lock started by startLock returned.
type lockResult struct {
	lk  *rowlock.Lock
	err error
}

// startLock runs l.Lock on name in the background, bounded by 30 s.
func startLock(t *testing.T, l *rowlock.Locker, name string) chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		lk, err := l.Lock(ctxT(t, 30*time.Second), name, nil)
		ch <- lockResult{lk, err}
	}()
	return ch
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
	held, b, c, _, _ := heldName(t, e, name)

	bRes := startLock(t, b, name)
	pid := roomHolderPID(t, e, name, 0) // b's
	cRes := startLock(t, c, name)
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
	releaseToBoth(t, held, bRes, cRes)
}

// releaseToBoth releases held and checks that the waiters of b and c then
// acquire, one after the other, each within 10s of the release before.
func releaseToBoth(t *testing.T, held *rowlock.Lock, b, c chan lockResult) {
	t.Helper()
	released := time.Now()
	if err := held.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var r lockResult
		select {
		case r = <-b:
		case r = <-c:
		case <-time.After(10 * time.Second):
			t.Fatal("a waiter did not acquire within 10s of the release before")
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("a waiter acquired %v after the release", time.Since(released).Round(time.Microsecond))
		released = time.Now()
		if err := r.lk.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
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
	b, bDB, cDB := cancelledWaiters(t, e, name, func() bool {
		g, w := locks()
		return g == 1 && w == 1
	})
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

// cancelledWaiters makes two Lockers, b and c, each on a pool of its own,
// wait for name, which a third Locker holds until the test ends. Once
// inRoom reports that one waits in the room and the other for it, it
// cancels both waits and checks that they return context.Canceled within
// 5s. It returns b and the two pools.
func cancelledWaiters(t *testing.T, e *env, name string, inRoom func() bool) (*rowlock.Locker, *sql.DB, *sql.DB) {
	t.Helper()
	held, b, c, bDB, cDB := heldName(t, e, name)
	t.Cleanup(func() { _ = held.Release(context.Background()) })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	for _, l := range []*rowlock.Locker{b, c} {
		go func() {
			_, err := l.Lock(ctx, name, nil)
			done <- err
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); !inRoom(); time.Sleep(5 * time.Millisecond) {
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
	return b, bDB, cDB
}
