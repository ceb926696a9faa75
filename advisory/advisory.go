package advisory

import (
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
)

// Mode says whether an advisory lock is exclusive or shared: [lockkit.Mode].
//
// Any number of sessions may hold a key in Shared mode at once; an
// Exclusive holder excludes every other holder, shared or exclusive.
type Mode = lockkit.Mode

const (
	// Exclusive excludes every other holder of the key. It is the default.
	Exclusive = lockkit.Exclusive
	// Shared admits other Shared holders and excludes Exclusive ones.
	Shared = lockkit.Shared
)

// Options tune one acquire. A nil *Options means the defaults: an
// Exclusive lock.
type Options struct {
	// Mode is Exclusive (the zero value) or Shared.
	Mode Mode
}

// mode returns o's mode, Exclusive for a nil o.
func (o *Options) mode() Mode {
	if o == nil {
		return Exclusive
	}
	return o.Mode
}

// check returns o's mode, or an error matching lockkit.ErrInvalid for a
// mode that is neither Exclusive nor Shared.
func (o *Options) check() (Mode, error) {
	m := o.mode()
	if m != Exclusive && m != Shared {
		return 0, invalid.Errorf("advisory: unknown lock mode %v", m)
	}
	return m, nil
}
