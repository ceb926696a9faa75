package memlock

import (
	"context"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/changes"
	"github.com/lockkit/lockkit/keyhash"
)

var _ lockkit.Watcher = (*Locker)(nil)

// watcher is one subscription of Changes.
type watcher struct {
	names map[string]bool // nil: every name
	ch    chan struct{}
}

// Changes implements lockkit.Watcher: every grant (a new holder) and every
// name falling free wakes the subscribers of that name, at once and in
// process, so code that observes through lockkit.Watcher (package
// election's Observe) is tested without waiting for polls.
func (l *Locker) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	for _, n := range names {
		if err := keyhash.ValidateName(n); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &watcher{ch: make(chan struct{}, 1)}
	if len(names) > 0 {
		w.names = make(map[string]bool, len(names))
		for _, n := range names {
			w.names[n] = true
		}
	}
	l.mu.Lock()
	if l.watchers == nil {
		l.watchers = map[*watcher]struct{}{}
	}
	l.watchers[w] = struct{}{}
	l.mu.Unlock()
	context.AfterFunc(ctx, func() {
		l.mu.Lock()
		delete(l.watchers, w)
		close(w.ch) // under l.mu: no wake after it
		l.mu.Unlock()
	})
	return w.ch, nil
}

// Announce implements lockkit.Watcher. It does nothing: every change is
// pushed by itself.
func (l *Locker) Announce(ctx context.Context, name string) error { return keyhash.ValidateName(name) }

// changed wakes the subscribers of name. l.mu is held.
func (l *Locker) changed(name string) {
	for w := range l.watchers {
		if w.names == nil || w.names[name] {
			changes.Signal(w.ch)
		}
	}
}
