package advisory

import "strconv"

// Mode says whether an advisory lock is exclusive or shared.
//
// Any number of sessions may hold a key in Shared mode at once; an
// Exclusive holder excludes every other holder, shared or exclusive.
type Mode int

const (
	// Exclusive excludes every other holder of the key. It is the default.
	Exclusive Mode = iota
	// Shared admits other Shared holders and excludes Exclusive ones.
	// Backends without shared locks (MySQL GET_LOCK) return an error
	// matching lockkit.ErrUnsupported.
	Shared
)

// String returns "exclusive" or "shared".
func (m Mode) String() string {
	switch m {
	case Exclusive:
		return "exclusive"
	case Shared:
		return "shared"
	default:
		return "Mode(" + strconv.Itoa(int(m)) + ")"
	}
}

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
