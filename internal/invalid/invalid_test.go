package invalid_test

import (
	"errors"
	"testing"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
)

func TestErrorf(t *testing.T) {
	err := invalid.Errorf("name is %s", "empty")
	if !errors.Is(err, lockkit.ErrInvalid) {
		t.Error("Errorf does not match ErrInvalid")
	}
	if errors.Is(err, lockkit.ErrNotAcquired) {
		t.Error("Errorf matches ErrNotAcquired")
	}
	if err.Error() != "lockkit: invalid argument: name is empty" {
		t.Errorf("Error() = %q", err.Error())
	}
}
