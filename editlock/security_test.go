package editlock_test

import (
	"database/sql"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/editlock"
	"github.com/lockkit/lockkit/rowlock"
)

// lease is the row of a record's lock as the table has it: who, which
// token, until when.
type lease struct {
	owner   string
	token   int64
	expires time.Time
}

func leaseOf(t *testing.T, m *editlock.Manager, id string) *lease {
	t.Helper()
	held, err := m.Locker().List(ctxT(t, 10*time.Second), m.LockName(id))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range held {
		if h.Held {
			return &lease{h.Holder.Owner, h.Holder.Token, h.Holder.Expires}
		}
	}
	return nil
}

// unchanged fails the test unless the record's lease is still want.
func unchanged(t *testing.T, m *editlock.Manager, id string, want *lease, what string) {
	t.Helper()
	got := leaseOf(t, m, id)
	switch {
	case want == nil && got != nil:
		t.Errorf("%s: record %s is now locked: %+v", what, id, got)
	case want != nil && (got == nil || *got != *want):
		t.Errorf("%s: record %s's lease changed: %+v, was %+v", what, id, got, want)
	}
}

// Without an identity every endpoint answers 401, and nothing is locked,
// renewed, released or taken over.
func TestNoIdentity(t *testing.T) {
	both(t, func(t *testing.T, db *sql.DB) {
		m := manager(t, db, nil)
		for _, op := range []string{"open", "takeover"} {
			if r := call(t, m, "", op, form("id", "9")); r.code != http.StatusUnauthorized || r.State != "" || r.Token != 0 {
				t.Errorf("anonymous %s = %d %s, want 401", op, r.code, r.raw)
			}
		}
		unchanged(t, m, "9", nil, "anonymous open")

		a := call(t, m, "alice", "open", form("id", "7"))
		before := leaseOf(t, m, "7")
		if before == nil || before.token != a.Token || before.owner != "user:alice" {
			t.Fatalf("alice's lease = %+v, answer %s", before, a.raw)
		}
		time.Sleep(20 * time.Millisecond) // a renewal would move the expiry
		for _, op := range []string{"heartbeat", "release", "takeover"} {
			r := call(t, m, "", op, form("id", "7", "token", tok(a.Token)))
			if r.code != http.StatusUnauthorized || r.Holder != nil || strings.Contains(r.raw, "Alice") {
				t.Errorf("anonymous %s = %d %s, want a bare 401", op, r.code, r.raw)
			}
			unchanged(t, m, "7", before, "anonymous "+op)
		}
		if _, err := m.Check(saveRequest(t, ""), "7", a.Token); !errors.Is(err, editlock.ErrNoIdentity) {
			t.Errorf("anonymous Check = %v, want ErrNoIdentity", err)
		}
	})
}

// A heartbeat, release or save with another user's token is refused and
// changes nothing: the owner of a lease is matched with its token.
func TestOtherUsersToken(t *testing.T) {
	both(t, func(t *testing.T, db *sql.DB) {
		m := manager(t, db, nil)
		a := call(t, m, "alice", "open", form("id", "7"))
		before := leaseOf(t, m, "7")
		time.Sleep(20 * time.Millisecond)
		for _, op := range []string{"heartbeat", "release"} {
			r := call(t, m, "mallory", op, form("id", "7", "token", tok(a.Token)))
			if r.code != http.StatusConflict || r.State != editlock.Lost || r.Token != 0 {
				t.Errorf("mallory's %s with alice's token = %d %s, want 409 lost", op, r.code, r.raw)
			}
			if leaks(t, r.raw, a.Token, "alice") {
				t.Errorf("mallory's %s answer leaks alice's token or user id: %s", op, r.raw)
			}
			unchanged(t, m, "7", before, "mallory's "+op)
		}
		if _, err := m.Check(saveRequest(t, "mallory"), "7", a.Token); !errors.Is(err, lockkit.ErrLost) {
			t.Errorf("mallory's Check with alice's token = %v, want ErrLost", err)
		}
		// A token guessed near alice's fares no better.
		for _, guess := range []int64{a.Token - 1, a.Token + 1, a.Token + 1000} {
			if guess <= 0 {
				continue
			}
			if r := call(t, m, "alice", "heartbeat", form("id", "7", "token", tok(guess))); r.State != editlock.Lost {
				t.Errorf("heartbeat with token %d (alice holds %d) = %s", guess, a.Token, r.raw)
			}
		}
		unchanged(t, m, "7", before, "guessed tokens")
	})
}

// State changes accept only POST, and a cross-origin browser request is
// refused: a forged take-over changes nothing.
func TestPostOnlyAndCrossOrigin(t *testing.T) {
	both(t, func(t *testing.T, db *sql.DB) {
		m := manager(t, db, nil)
		a := call(t, m, "alice", "open", form("id", "7"))
		before := leaseOf(t, m, "7")
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete} {
			for _, op := range []string{"open", "heartbeat", "release", "takeover"} {
				r := do(t, m, method, "bob", op, form("id", "7", "token", tok(a.Token)))
				if r.code != http.StatusMethodNotAllowed || r.hdr.Get("Allow") != http.MethodPost {
					t.Errorf("%s %s = %d (Allow %q), want 405 (Allow POST)", method, op, r.code, r.hdr.Get("Allow"))
				}
			}
		}
		unchanged(t, m, "7", before, "non-POST requests")

		forged := [][]string{
			{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"},
			{"Sec-Fetch-Site", "same-site", "Origin", "https://sub.app.example"},
			{"Origin", "https://evil.example"}, // an older browser: no Sec-Fetch-Site
		}
		for _, h := range forged {
			for _, op := range []string{"takeover", "open", "release"} {
				r := call(t, m, "bob", op, form("id", "7", "reason", "forged", "token", tok(a.Token)), h...)
				if r.code != http.StatusForbidden || r.State != "" {
					t.Errorf("%s with %v = %d %s, want 403", op, h, r.code, r.raw)
				}
			}
		}
		unchanged(t, m, "7", before, "forged cross-origin requests")

		// Same-origin browser requests pass.
		r := call(t, m, "alice", "heartbeat", form("id", "7", "token", tok(a.Token)),
			"Sec-Fetch-Site", "same-origin", "Origin", "http://app.example")
		if r.code != http.StatusOK {
			t.Errorf("same-origin heartbeat = %d %s", r.code, r.raw)
		}

		// A trusted origin is the app's choice.
		cop := http.NewCrossOriginProtection()
		if err := cop.AddTrustedOrigin("https://admin.app.example"); err != nil {
			t.Fatal(err)
		}
		m2 := manager(t, db, func(c *editlock.Config) { c.CrossOrigin = cop })
		r = call(t, m2, "bob", "takeover", form("id", "7"), "Sec-Fetch-Site", "cross-site", "Origin", "https://admin.app.example")
		if r.code != http.StatusOK || r.State != editlock.Editing {
			t.Errorf("take-over from a trusted origin = %d %s", r.code, r.raw)
		}
	})
}

// Record ids are validated before any I/O: on a closed database a bad id
// answers 400, while a good one gets as far as the database (500).
func TestRecordIDBeforeIO(t *testing.T) {
	db, err := sql.Open("pgx", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close() // any I/O now fails with "sql: database is closed"
	m := manager(t, db, func(c *editlock.Config) { c.Logger = discardLogger() })
	bad := []string{"", "../7", "7/../8", "a b", "7;DROP TABLE x", "-7", ".7", "%37", "7\x00", "ä", strings.Repeat("7", 65)}
	for _, id := range bad {
		for _, op := range []string{"open", "heartbeat", "release", "takeover"} {
			r := call(t, m, "alice", op, form("id", id, "token", "1"))
			if r.code != http.StatusBadRequest {
				t.Errorf("%s id %q = %d %s, want 400", op, id, r.code, r.raw)
			}
		}
		if _, err := m.Check(saveRequest(t, "alice"), id, 1); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("Check(id %q) = %v, want ErrInvalid", id, err)
		}
		if _, err := m.Status(ctxT(t, time.Second), editlock.User{}, id); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("Status(id %q) = %v, want ErrInvalid", id, err)
		}
	}
	for _, token := range []string{"", "0", "-1", "x", "99999999999999999999"} {
		for _, op := range []string{"heartbeat", "release"} {
			if r := call(t, m, "alice", op, form("id", "7", "token", token)); r.code != http.StatusBadRequest {
				t.Errorf("%s token %q = %d %s, want 400", op, token, r.code, r.raw)
			}
		}
	}
	if r := call(t, m, "alice", "takeover", form("id", "7", "reason", strings.Repeat("x", editlock.MaxReasonChars+1))); r.code != http.StatusBadRequest {
		t.Errorf("take-over with an over-long reason = %d %s, want 400", r.code, r.raw)
	}
	if r := call(t, m, "alice", "open", form("id", "7", "pad", strings.Repeat("x", 9<<10))); r.code != http.StatusBadRequest {
		t.Errorf("open with a 9 KiB body = %d %s, want 400", r.code, r.raw)
	}
	// A well-formed id reaches the database, which is closed.
	if r := call(t, m, "alice", "open", form("id", "7")); r.code != http.StatusInternalServerError || strings.Contains(r.raw, "closed") {
		t.Errorf("open of a good id on a closed database = %d %s, want a bare 500", r.code, r.raw)
	}
	// The app's own id syntax.
	m2 := manager(t, db, func(c *editlock.Config) {
		c.ValidID = func(id string) bool { return id == "A-17" }
		c.Logger = discardLogger()
	})
	if r := call(t, m2, "alice", "open", form("id", "7")); r.code != http.StatusBadRequest {
		t.Errorf("ValidID refusing 7: open = %d", r.code)
	}
	if r := call(t, m2, "alice", "open", form("id", "A-17")); r.code != http.StatusInternalServerError {
		t.Errorf("ValidID accepting A-17: open = %d, want 500 from the closed database", r.code)
	}
}

// Config.MayTakeOver decides who may take over; a refusal changes nothing.
func TestMayTakeOver(t *testing.T) {
	both(t, func(t *testing.T, db *sql.DB) {
		m := manager(t, db, func(c *editlock.Config) {
			c.MayTakeOver = func(r *http.Request, u editlock.User, h editlock.Holder) bool {
				return u.ID == "admin" || h.Self
			}
		})
		call(t, m, "alice", "open", form("id", "7"))
		before := leaseOf(t, m, "7")
		b := call(t, m, "bob", "open", form("id", "7"))
		if b.State != editlock.Held || b.CanTakeOver {
			t.Errorf("bob's open = %s, want held without can_take_over", b.raw)
		}
		r := call(t, m, "bob", "takeover", form("id", "7"))
		if r.code != http.StatusForbidden || r.State != editlock.Held || r.Token != 0 || r.Holder == nil || r.Holder.Name != "Alice" {
			t.Errorf("bob's take-over = %d %s, want 403 held by Alice", r.code, r.raw)
		}
		unchanged(t, m, "7", before, "a refused take-over")
		if r := call(t, m, "admin", "takeover", form("id", "7")); r.State != editlock.Editing {
			t.Errorf("admin's take-over = %s", r.raw)
		}
	})
}

func TestScriptAndRoutes(t *testing.T) {
	db, err := sql.Open("pgx", "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	m := manager(t, db, nil)
	r := do(t, m, http.MethodGet, "", "editlock.js", nil)
	if r.code != http.StatusOK || !strings.HasPrefix(r.hdr.Get("Content-Type"), "text/javascript") ||
		r.raw != string(editlock.Script()) || !strings.Contains(r.raw, "sendBeacon") {
		t.Errorf("GET editlock.js = %d %q, %d bytes", r.code, r.hdr.Get("Content-Type"), len(r.raw))
	}
	if r.hdr.Get("X-Content-Type-Options") != "nosniff" || r.hdr.Get("ETag") == "" {
		t.Errorf("script headers %v", r.hdr)
	}
	if r2 := do(t, m, http.MethodGet, "", "editlock.js", nil, "If-None-Match", r.hdr.Get("ETag")); r2.code != http.StatusNotModified {
		t.Errorf("conditional GET = %d, want 304", r2.code)
	}
	if r := do(t, m, http.MethodPost, "alice", "editlock.js", nil); r.code != http.StatusMethodNotAllowed {
		t.Errorf("POST editlock.js = %d", r.code)
	}
	for _, op := range []string{"", "status", "open/x", "forcerelease"} {
		if r := do(t, m, http.MethodPost, "alice", op, form("id", "7")); r.code != http.StatusNotFound {
			t.Errorf("POST %q = %d, want 404", op, r.code)
		}
	}
	// The script never renders server text as HTML.
	if strings.Contains(string(editlock.Script()), "innerHTML") {
		t.Error("the script uses innerHTML")
	}
}

func TestConfig(t *testing.T) {
	db, err := sql.Open("pgx", "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bad := map[string]*editlock.Config{
		"nil":             nil,
		"no kind":         {Identify: identify},
		"no identify":     {Kind: "records"},
		"long kind":       {Kind: strings.Repeat("k", editlock.MaxKindBytes+1), Identify: identify},
		"slow heartbeat":  {Kind: "records", Identify: identify, Window: time.Second, Heartbeat: 600 * time.Millisecond},
		"negative window": {Kind: "records", Identify: identify, Window: -time.Second},
		"bad table":       {Kind: "records", Identify: identify, Table: "x; DROP"},
		"bad dialect":     {Kind: "records", Identify: identify, Dialect: "oracle"},
	}
	for what, cfg := range bad {
		if m, err := editlock.New(db, cfg); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("%s: New = %v, %v; want ErrInvalid", what, m, err)
		}
	}
	m, err := editlock.New(db, &editlock.Config{Kind: "records", Identify: identify})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Window() != editlock.DefaultWindow || m.Heartbeat() != editlock.DefaultHeartbeat {
		t.Errorf("defaults: window %v heartbeat %v", m.Window(), m.Heartbeat())
	}
	if m.LockName("42") != rowlock.RecordName("records", "42") {
		t.Errorf("LockName = %q", m.LockName("42"))
	}
	m2, err := editlock.New(db, &editlock.Config{Kind: "records", Identify: identify, Window: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Heartbeat() != time.Second {
		t.Errorf("heartbeat for a 10 s window = %v, want 1 s", m2.Heartbeat())
	}
}
