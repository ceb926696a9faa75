package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/changes"
)

var _ lockkit.Watcher = (*Locker)(nil)

// Changes implements lockkit.Watcher with an etcd watch: every acquire,
// release, expiry and waiter's key under the names' prefixes (no names:
// under the Locker's whole prefix) wakes the channel, a watch event after
// the raft commit. One name watches that name's prefix; several watch the
// Locker's prefix and pick their names' events. The watch is created on
// the server when Changes returns; a watch the client cannot restore (a
// compacted revision, the client closed) closes the channel.
func (l *Locker) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	for _, n := range names {
		if err := l.check(n); err != nil {
			return nil, err
		}
	}
	key := l.set.prefix
	var want map[string]bool // nil: every name under key
	switch len(names) {
	case 0:
	case 1:
		key = l.Prefix(names[0])
	default:
		want = map[string]bool{}
		for _, n := range names {
			want[url.PathEscape(n)] = true
		}
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := l.c.Watch(wctx, key, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	// The first response says the watch exists on the server.
	select {
	case wr, ok := <-wch:
		if !ok || wr.Err() != nil || !wr.Created {
			cancel()
			for range wch {
			}
			err := errWatchClosed
			if ok && wr.Err() != nil {
				err = wr.Err()
			} else if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("etcdlock: watch %s: %w", key, err)
		}
	case <-ctx.Done():
		cancel()
		for range wch {
		}
		return nil, fmt.Errorf("etcdlock: watch %s: %w", key, ctx.Err())
	}
	recv := func(ctx context.Context) (bool, error) {
		wr, ok := <-wch
		if !ok {
			return false, context.Canceled
		}
		if err := wr.Err(); err != nil {
			return false, err
		}
		for _, ev := range wr.Events {
			rest := strings.TrimPrefix(string(ev.Kv.Key), l.set.prefix)
			esc, _, _ := strings.Cut(rest, "/")
			if want == nil || want[esc] {
				return true, nil
			}
		}
		return false, nil
	}
	return changes.Feed(wctx, recv, func() {
		cancel()
		for range wch { // the client closes it once the watch is gone
		}
	}), nil
}

var errWatchClosed = errors.New("the watch closed before the server created it")

// Announce implements lockkit.Watcher. It does nothing: the watch sees
// every change by itself.
func (l *Locker) Announce(ctx context.Context, name string) error { return l.check(name) }
