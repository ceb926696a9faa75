package lockkit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

func TestHeldErrorMatchesSentinelAndCause(t *testing.T) {
	err := error(&lockkit.HeldError{Name: "n", Cause: context.DeadlineExceeded})
	if !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Error("HeldError does not match ErrNotAcquired")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("HeldError does not match its cause")
	}
	if errors.Is(err, lockkit.ErrLost) {
		t.Error("HeldError matches ErrLost")
	}
	want := `lockkit: not acquired: "n" is held: context deadline exceeded`
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestLostErrorMatchesSentinelAndCause(t *testing.T) {
	cause := errors.New("connection reset")
	err := error(&lockkit.LostError{Name: "n", Cause: cause})
	if !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, cause) {
		t.Errorf("LostError matches: ErrLost %v, cause %v", errors.Is(err, lockkit.ErrLost), errors.Is(err, cause))
	}
	if errors.Is(err, lockkit.ErrNotAcquired) {
		t.Error("LostError matches ErrNotAcquired")
	}
}

func TestHolderString(t *testing.T) {
	since := time.Date(2026, 11, 25, 10, 2, 11, 0, time.UTC)
	h := &lockkit.Holder{Owner: "alice", Host: "web-3", PID: 4121, Since: since, Data: "product 7"}
	got := h.String()
	for _, part := range []string{"alice", "[product 7]", "on web-3", "(pid 4121)", "since 2026-11-25 10:02:11"} {
		if !strings.Contains(got, part) {
			t.Errorf("Holder.String() = %q, missing %q", got, part)
		}
	}
	if s := (*lockkit.Holder)(nil).String(); s != "unknown holder" {
		t.Errorf("nil Holder.String() = %q", s)
	}
	e := &lockkit.HeldError{Name: "x", Holder: h}
	if !strings.Contains(e.Error(), "held by alice") {
		t.Errorf("HeldError with holder = %q", e.Error())
	}
}
