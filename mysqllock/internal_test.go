package mysqllock

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestMySQLReleaseResult pins how RELEASE_LOCK's answer is read: only 1 is
// a release. A session can only see 0 or NULL for its own lock when
// something is badly wrong, which no test can provoke on a live server.
func TestMySQLReleaseResult(t *testing.T) {
	for _, tc := range []struct {
		got  sql.NullInt64
		want string // "" for success, else a fragment of the error
	}{
		{sql.NullInt64{Valid: true, Int64: 1}, ""},
		{sql.NullInt64{Valid: true, Int64: 0}, "returned 0"},
		{sql.NullInt64{}, "returned NULL"},
		{sql.NullInt64{Valid: true, Int64: 2}, "returned 2"},
	} {
		err := releaseResult("n", tc.got)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want success", tc.got, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want an error with %q", tc.got, err, tc.want)
		}
	}
}

// FuzzMySQLLockName checks the naming rule for any input: valid names
// render to at most 64 characters and 192 bytes of valid UTF-8, unchanged
// when they fit, and the same input always renders the same.
func FuzzMySQLLockName(f *testing.F) {
	f.Add("test", "job")
	f.Add("", strings.Repeat("x", 65))
	f.Add("shop", strings.Repeat("😀", 47))
	f.Add("a", "é"+strings.Repeat("b", 70))
	f.Fuzz(func(t *testing.T, ns, name string) {
		got, err := UserLockName(ns, name)
		if err != nil {
			return
		}
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > MaxNameChars || len(got) > MaxNameBytes {
			t.Fatalf("UserLockName(%q, %q) = %q: not a valid GET_LOCK name", ns, name, got)
		}
		full := name
		if ns != "" {
			full = ns + "." + name
		}
		fits := utf8.RuneCountInString(full) <= MaxNameChars && len(full) <= MaxNameBytes
		if fits != (got == full) {
			t.Fatalf("UserLockName(%q, %q) = %q; fits %v", ns, name, got, fits)
		}
		if !fits && (utf8.RuneCountInString(got) != MaxNameChars || !strings.HasPrefix(full, got[:strings.LastIndexByte(got, '~')])) {
			t.Fatalf("hashed name %q is not the 31-character prefix of %q, '~' and 32 hex digits", got, full)
		}
	})
}

// A release's context keeps the caller's values, not its cancellation (not
// even through context.Cause), and ends with DeadlineExceeded when the
// Locker's release timer starts it.
func TestMySQLReleaseCtx(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), key{}, "v"))
	c := &releaseCtx{Context: context.WithoutCancel(parent), deadline: time.Now().Add(time.Hour), done: make(chan struct{})}
	cancel(errors.New("the caller gave up"))
	if err, cause := c.Err(), context.Cause(c); err != nil || cause != nil {
		t.Fatalf("after the caller's cancel: Err %v, Cause %v; want nil", err, cause)
	}
	if v := c.Value(key{}); v != "v" {
		t.Errorf("Value = %v, want the caller's", v)
	}
	if d, ok := c.Deadline(); !ok || d != c.deadline {
		t.Errorf("Deadline = %v, %v", d, ok)
	}
	c.Start()
	<-c.Done()
	if err, cause := c.Err(), context.Cause(c); err != context.DeadlineExceeded || cause != context.DeadlineExceeded {
		t.Errorf("after Start: Err %v, Cause %v; want DeadlineExceeded", err, cause)
	}
}
