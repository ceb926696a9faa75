package lockkit

import "strconv"

// Mode says whether a lock excludes every other holder or admits other
// shared holders. Backends with shared locks (PostgreSQL advisory locks,
// file locks) take it in their Options; the others have no shared mode.
type Mode int

const (
	// Exclusive excludes every other holder, shared or exclusive. It is
	// the default.
	Exclusive Mode = iota
	// Shared admits other Shared holders and excludes Exclusive ones
	// (readers and a writer).
	Shared
)

// String returns "exclusive" or "shared".
func (m Mode) String() string {
	switch m {
	case Exclusive:
		return "exclusive"
	case Shared:
		return "shared"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}
