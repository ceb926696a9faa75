package lockkit

import "context"

// Watcher is implemented by Lockers that can push news of changes to their
// locks instead of being polled: PostgreSQL LISTEN/NOTIFY, Redis pub/sub,
// inotify, an etcd watch. A change only wakes the reader, which then reads
// the locks again through its [Lister]; what it reads is the truth, the
// wake-up is a hint. Package election's Observe and lockkit status --watch
// are built on it.
//
// Which changes a backend pushes by itself differs (see its package
// documentation): an etcd watch and inotify see every acquire and release,
// while PostgreSQL and Redis push only what a statement or script of
// lockkit announces (releases, on the lock table and Redis). Callers that
// need the rest announced, as package election does after it takes office
// and after it resigns or loses, call Announce. Changes nobody announced
// (an acquire by a plain lock, a session killed with nobody to announce)
// are seen by the reader's next poll, which a reader keeps as a slower
// safety net.
type Watcher interface {
	// Changes subscribes to changes of the named locks; with no names,
	// to changes of every lock where the backend can (else an error
	// matching ErrUnsupported). The subscription is active when Changes
	// returns: every change announced after that sends a value on the
	// channel, which holds one pending value, so that changes in quick
	// succession may arrive as one. The channel is closed when ctx ends,
	// or when the push broke (a dropped connection): changes may then have
	// been missed, and the caller reads again, polls, and may subscribe
	// anew. A backend that cannot push in its present setup (MySQL, a
	// pooler in the way) returns an error matching ErrUnsupported.
	Changes(ctx context.Context, names ...string) (<-chan struct{}, error)

	// Announce tells the subscribers of name that it changed. It is a
	// no-op where the backend pushes every change by itself.
	Announce(ctx context.Context, name string) error
}
