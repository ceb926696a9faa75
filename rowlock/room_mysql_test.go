package rowlock_test

import (
	"database/sql"
	"strconv"
	"testing"
	"time"

	"github.com/lockkit/lockkit/rowlock"
)

// roomUser returns the connection id that holds name's waiting room on
// MySQL (IS_USED_LOCK), waiting until one other than not does.
func roomUser(t *testing.T, e *env, name string, not int64) int64 {
	t.Helper()
	room := rowlock.RoomLockName(rowlock.DefaultTable, name)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		var id sql.NullInt64
		if err := e.db.QueryRow("SELECT IS_USED_LOCK(?)", room).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if id.Valid && id.Int64 != not {
			return id.Int64
		}
		if time.Now().After(deadline) {
			t.Fatalf("nobody (other than %d) holds the waiting room of %q", not, name)
		}
	}
}

// roomWaiters returns how many sessions of the test's database wait in
// GET_LOCK for a waiting room (PROCESSLIST shows a prepared statement's
// placeholders, not the room's name).
func roomWaiters(t *testing.T, e *env) int {
	t.Helper()
	var n int
	if err := e.db.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST
WHERE INFO LIKE 'SELECT IS_FREE_LOCK(%' AND STATE = 'User lock' AND DB = DATABASE()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitRoomWaiters waits until n sessions wait for a room.
func waitRoomWaiters(t *testing.T, e *env, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); roomWaiters(t, e) != n; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for the room, want %d", roomWaiters(t, e), n)
		}
	}
}

// TestMySQLRoomHolderKilled: the session that holds a name's waiting room
// on MySQL is killed while another head waits for the room in GET_LOCK.
// That head gets the room at once (not after its wait's bound), and both
// waiters get the lock after the holder's release.
func TestMySQLRoomHolderKilled(t *testing.T) {
	e := setup(t, rowlock.MySQL)
	name := e.name(t)
	held, b, c, _, _ := heldName(t, e, name)

	bRes := startLock(t, b, name)
	bID := roomUser(t, e, name, 0)
	cRes := startLock(t, c, name)
	waitRoomWaiters(t, e, 1) // c's wait, bounded by the lease's minute
	killed := time.Now()
	if _, err := e.db.Exec("KILL CONNECTION " + strconv.FormatInt(bID, 10)); err != nil {
		t.Fatal(err)
	}
	roomUser(t, e, name, bID) // c's
	if d := time.Since(killed); d > 5*time.Second {
		t.Errorf("the next head got the room %v after the kill", d)
	}
	releaseToBoth(t, held, bRes, cRes)
}

// TestMySQLRoomCancelledWaitsLeaveNothing: a waiter that holds the
// waiting room on MySQL and one that waits for it in GET_LOCK are
// cancelled; both return at once, the room is free (IS_USED_LOCK is NULL,
// nobody waits for it in the server), both pools have every connection
// back, and the lease is still the holder's.
func TestMySQLRoomCancelledWaitsLeaveNothing(t *testing.T) {
	e := setup(t, rowlock.MySQL)
	name := e.name(t)
	room := rowlock.RoomLockName(rowlock.DefaultTable, name)
	user := func() sql.NullInt64 {
		t.Helper()
		var id sql.NullInt64
		if err := e.db.QueryRow("SELECT IS_USED_LOCK(?)", room).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	b, bDB, cDB := cancelledWaiters(t, e, name, func() bool {
		return user().Valid && roomWaiters(t, e) == 1
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		u, w := user(), roomWaiters(t, e)
		inUse := bDB.Stats().InUse + cDB.Stats().InUse
		if !u.Valid && w == 0 && inUse == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the cancellations: room held by %v, %d waiting for it; %d connections in use", u, w, inUse)
		}
	}
	wantHeld(t, b, name)
}

// TestMySQLRoomCloseEndsLinger: a lock taken in the waiting room keeps the
// room for a second after it acquired; closing its Locker gives the room
// back at once instead of waiting for that, and the lock still releases.
//
// Close waits for the lingering rooms it has not ended, so a Close that
// does not end the linger returns after it, with the room free: what tells
// the two apart is that Close returned, and the room was seen free, before
// the linger could have ended on its own. It cannot end before released +
// RoomLingerMySQL (b acquires after the holder's release is sent). An
// attempt that a loaded machine made too slow for that says nothing either
// way and is run again, up to five times.
func TestMySQLRoomCloseEndsLinger(t *testing.T) {
	e := setup(t, rowlock.MySQL)
	name := e.name(t)
	holder := e.locker(t, &rowlock.Config{TTL: time.Minute})
	for attempt := 1; ; attempt++ {
		b := e.lockerOn(t, e.open(t, nil), &rowlock.Config{TTL: time.Minute})
		held := mustTry(t, holder, name, nil)
		bRes := startLock(t, b, name)
		roomUser(t, e, name, 0) // b's
		released := time.Now()  // the linger starts after this
		if err := held.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		r := <-bRes
		if r.err != nil {
			t.Fatal(r.err)
		}
		roomUser(t, e, name, 0) // b's lock keeps it
		start := time.Now()
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		closed := time.Now()
		var user sql.NullInt64
		if err := e.db.QueryRow("SELECT IS_USED_LOCK(?)", rowlock.RoomLockName(rowlock.DefaultTable, name)).Scan(&user); err != nil {
			t.Fatal(err)
		}
		seen := time.Now()
		if user.Valid {
			t.Fatalf("the room is still held by %d after Close", user.Int64)
		}
		if err := r.lk.Release(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		lk := mustTry(t, holder, name, nil)
		_ = lk.Release(ctxT(t, 5*time.Second))
		lingerEnd := released.Add(rowlock.RoomLingerMySQL)
		if seen.Before(lingerEnd) {
			t.Logf("attempt %d: Close took %v and the room was seen free %v before the linger could have ended", attempt, closed.Sub(start), lingerEnd.Sub(seen))
			return
		}
		if attempt == 5 {
			t.Fatalf("Close returned %v after the holder's release (it took %v), and the room was seen free only at %v: not before the %v linger could have ended on its own, in five attempts; a Close that waits for the linger instead of ending it looks like this",
				closed.Sub(released), closed.Sub(start), seen.Sub(released), rowlock.RoomLingerMySQL)
		}
		t.Logf("attempt %d inconclusive: Close returned %v after the holder's release (it took %v), the room was seen free at %v", attempt, closed.Sub(released), closed.Sub(start), seen.Sub(released))
	}
}
