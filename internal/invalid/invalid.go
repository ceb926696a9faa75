// Package invalid makes the bad-input errors of lockkit's packages: errors
// that match [lockkit.ErrInvalid] and are returned before any I/O.
package invalid

import (
	"fmt"

	"github.com/lockkit/lockkit"
)

// Errorf returns an error matching lockkit.ErrInvalid with a formatted
// message.
func Errorf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

type invalidError struct{ msg string }

func (e *invalidError) Error() string { return "lockkit: invalid argument: " + e.msg }

// Is reports whether target is lockkit.ErrInvalid.
func (e *invalidError) Is(target error) bool { return target == lockkit.ErrInvalid }
