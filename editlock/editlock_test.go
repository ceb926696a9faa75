package editlock_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/editlock"
)

// The story on the handlers: Alice edits, Bob sees her, takes over
// with a reason; Alice's heartbeat learns it and her stale save is refused.
func TestOpenTakeOverLost(t *testing.T) {
	both(t, func(t *testing.T, db *sql.DB) {
		var mu sync.Mutex
		var taken []editlock.TakeOver
		m := manager(t, db, func(c *editlock.Config) {
			c.OnTakeOver = func(_ context.Context, to editlock.TakeOver) {
				mu.Lock()
				defer mu.Unlock()
				taken = append(taken, to)
			}
		})

		before := time.Now().Add(-2 * time.Second)
		a := call(t, m, "alice", "open", form("id", "7"))
		if a.code != http.StatusOK || a.State != editlock.Editing || a.Token <= 0 || a.Record != "7" {
			t.Fatalf("alice open = %d %s", a.code, a.raw)
		}
		if a.Holder == nil || a.Holder.Name != "Alice" || !a.Holder.Self || a.Holder.Since.Before(before) {
			t.Errorf("alice's own holder = %+v", a.Holder)
		}
		if a.HeartbeatMS != 1000 || a.WindowMS != 5000 {
			t.Errorf("heartbeat_ms %d window_ms %d, want 1000 and 5000", a.HeartbeatMS, a.WindowMS)
		}

		b := call(t, m, "bob", "open", form("id", "7"))
		if b.code != http.StatusConflict || b.State != editlock.Held || b.Token != 0 || !b.CanTakeOver {
			t.Fatalf("bob open = %d %s", b.code, b.raw)
		}
		if b.Holder == nil || b.Holder.Name != "Alice" || b.Holder.Self || !b.Holder.Since.Equal(a.Holder.Since) {
			t.Errorf("bob sees holder %+v, want Alice since %v", b.Holder, a.Holder.Since)
		}
		// Alice's token and user id never reach Bob.
		if leaks(t, b.raw, a.Token, "alice") {
			t.Errorf("bob's answer leaks alice's token or id: %s", b.raw)
		}

		// Another record is independent.
		if o := call(t, m, "bob", "open", form("id", "8")); o.State != editlock.Editing {
			t.Errorf("bob open 8 = %s", o.raw)
		}

		bt := call(t, m, "bob", "takeover", form("id", "7", "reason", "  Alice is on holiday "))
		if bt.code != http.StatusOK || bt.State != editlock.Editing || bt.Token <= a.Token {
			t.Fatalf("bob takeover = %d %s (alice's token %d)", bt.code, bt.raw, a.Token)
		}
		if bt.Holder == nil || bt.Holder.TookOverFrom != "Alice" || bt.Holder.Reason != "Alice is on holiday" {
			t.Errorf("bob's holder after take-over = %+v", bt.Holder)
		}
		mu.Lock()
		if len(taken) != 1 || taken[0].By.ID != "bob" || taken[0].FromID != "alice" || taken[0].From.Name != "Alice" ||
			taken[0].Reason != "Alice is on holiday" || taken[0].Token != bt.Token || taken[0].Record != "7" {
			t.Errorf("OnTakeOver got %+v", taken)
		}
		mu.Unlock()

		ah := call(t, m, "alice", "heartbeat", form("id", "7", "token", tok(a.Token)))
		if ah.code != http.StatusConflict || ah.State != editlock.Lost || ah.Token != 0 {
			t.Fatalf("alice heartbeat after take-over = %d %s", ah.code, ah.raw)
		}
		if ah.Holder == nil || ah.Holder.Name != "Bob" || ah.Holder.TookOverFrom != "Alice" || ah.Holder.Reason != "Alice is on holiday" {
			t.Errorf("alice learns holder %+v", ah.Holder)
		}
		if leaks(t, ah.raw, bt.Token, "bob") {
			t.Errorf("alice's answer leaks bob's token or id: %s", ah.raw)
		}

		// The write guard: Alice's stale save is refused, Bob's passes.
		_, err := m.Check(saveRequest(t, "alice"), "7", a.Token)
		var lost *lockkit.LostError
		var cause *editlock.LostCause
		if !errors.Is(err, lockkit.ErrLost) || !errors.As(err, &lost) || !errors.As(err, &cause) ||
			cause.Holder == nil || cause.Holder.Name != "Bob" {
			t.Fatalf("Check(alice's token) = %v, want a LostError naming Bob", err)
		}
		if !strings.Contains(err.Error(), "Bob has taken over") {
			t.Errorf("Check error %q does not say Bob has taken over", err)
		}
		lease, err := m.Check(saveRequest(t, "bob"), "7", bt.Token)
		if err != nil || lease.Token() != bt.Token {
			t.Fatalf("Check(bob's token) = %v, %v", lease, err)
		}
		// Bob's token is no good to Alice.
		if _, err := m.Check(saveRequest(t, "alice"), "7", bt.Token); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("Check(bob's token, as alice) = %v, want ErrLost", err)
		}

		// Bob releases; Alice gets a newer token.
		if r := call(t, m, "bob", "release", form("id", "7", "token", tok(bt.Token))); r.code != http.StatusOK || r.State != editlock.Released {
			t.Fatalf("bob release = %d %s", r.code, r.raw)
		}
		if h, err := m.Status(ctxT(t, 10*time.Second), editlock.User{}, "7"); err != nil || h != nil {
			t.Errorf("Status after release = %+v, %v; want nobody", h, err)
		}
		a2 := call(t, m, "alice", "open", form("id", "7"))
		if a2.State != editlock.Editing || a2.Token <= bt.Token {
			t.Errorf("alice reopen = %s, want a token above %d", a2.raw, bt.Token)
		}
		if r := call(t, m, "bob", "release", form("id", "7", "token", tok(bt.Token))); r.code != http.StatusConflict || r.State != editlock.Lost {
			t.Errorf("bob's second release = %d %s, want 409 lost", r.code, r.raw)
		}
	})
}

// Heartbeats keep a lock past its window; without them it ends within one
// window and the next user gets it.
func TestHeartbeatsAndWindow(t *testing.T) {
	both(t, func(t *testing.T, db *sql.DB) {
		const window = 800 * time.Millisecond
		m := manager(t, db, func(c *editlock.Config) { c.Window, c.Heartbeat = window, 200*time.Millisecond })
		a := call(t, m, "alice", "open", form("id", "1"))
		if a.State != editlock.Editing {
			t.Fatalf("open = %s", a.raw)
		}
		for end := time.Now().Add(2 * window); time.Now().Before(end); {
			time.Sleep(200 * time.Millisecond)
			if h := call(t, m, "alice", "heartbeat", form("id", "1", "token", tok(a.Token))); h.code != http.StatusOK || h.State != editlock.Editing || h.Token != a.Token {
				t.Fatalf("heartbeat = %d %s", h.code, h.raw)
			}
		}
		if b := call(t, m, "bob", "open", form("id", "1")); b.State != editlock.Held {
			t.Fatalf("bob got a lock alice kept beating: %s", b.raw)
		}
		stopped := time.Now()
		var b *reply
		for {
			b = call(t, m, "bob", "open", form("id", "1"))
			if b.State == editlock.Editing {
				break
			}
			if time.Since(stopped) > window+time.Second {
				t.Fatalf("bob still held out %v after alice's last heartbeat: %s", time.Since(stopped), b.raw)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The slack is for the polling (a database call and 20 ms a
		// round) on a loaded machine; a lock that lived two windows
		// after the last heartbeat (1.6 s) still fails.
		waited := time.Since(stopped)
		t.Logf("bob got the lock %v after alice's last heartbeat; window %v", waited.Round(time.Millisecond), window)
		if waited > window+600*time.Millisecond {
			t.Errorf("bob got the lock %v after alice's last heartbeat; window %v", waited, window)
		}
		// Alice's lock is gone: expired, and Bob (no take-over) holds it.
		h := call(t, m, "alice", "heartbeat", form("id", "1", "token", tok(a.Token)))
		if h.State != editlock.Lost || h.Holder == nil || h.Holder.Name != "Bob" || h.Holder.TookOverFrom != "" {
			t.Errorf("alice's late heartbeat = %s", h.raw)
		}
	})
}

// The same user in two windows: the second sees "you, in another window"
// and may take over from the first.
func TestSameUserTwoWindows(t *testing.T) {
	both(t, func(t *testing.T, db *sql.DB) {
		m := manager(t, db, nil)
		w1 := call(t, m, "alice", "open", form("id", "3"))
		w2 := call(t, m, "alice", "open", form("id", "3"))
		if w2.State != editlock.Held || w2.Holder == nil || !w2.Holder.Self || w2.Token != 0 {
			t.Fatalf("second window = %s", w2.raw)
		}
		t2 := call(t, m, "alice", "takeover", form("id", "3"))
		if t2.State != editlock.Editing || t2.Token <= w1.Token {
			t.Fatalf("take-over from self = %s", t2.raw)
		}
		h := call(t, m, "alice", "heartbeat", form("id", "3", "token", tok(w1.Token)))
		if h.State != editlock.Lost || h.Holder == nil || !h.Holder.Self {
			t.Errorf("first window's heartbeat = %s", h.raw)
		}
	})
}

// A take-over of a free record just takes it, and records no take-over.
func TestTakeOverFree(t *testing.T) {
	both(t, func(t *testing.T, db *sql.DB) {
		called := false
		m := manager(t, db, func(c *editlock.Config) {
			c.OnTakeOver = func(context.Context, editlock.TakeOver) { called = true }
		})
		r := call(t, m, "bob", "takeover", form("id", "4", "reason", "x"))
		if r.State != editlock.Editing || r.Holder == nil || r.Holder.TookOverFrom != "" || called {
			t.Errorf("take-over of a free record = %s (OnTakeOver called: %v)", r.raw, called)
		}
	})
}

func saveRequest(t testing.TB, user string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "http://app.example/records/7", nil)
	req = req.WithContext(ctxT(t, 30*time.Second))
	if user != "" {
		req.Header.Set(userHeader, user)
	}
	return req
}
