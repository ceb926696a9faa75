package redislock

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/changes"
)

var _ lockkit.Watcher = (*Locker)(nil)

// changedChannel is the channel Announce publishes on for the lock key key:
// apart from the release channel, so that an announcement wakes no waiter.
func (l *Locker) changedChannel(key string) string { return key + ":changed" }

// Changes implements lockkit.Watcher with a pub/sub connection of its own,
// subscribed to the names' release channels ("<key>:released", where every
// release and every hand-over to a waiter is published) and to their
// "<key>:changed" channels, where Announce publishes. With no names it
// subscribes to the patterns of every name under the Locker's prefix. The
// server has confirmed the subscriptions when Changes returns. A lease
// that runs out and a lock taken by a plain acquire publish nothing: the
// caller's poll sees those, unless whoever took the lock announces it, as
// package election does. A dropped pub/sub connection closes the channel.
func (l *Locker) Changes(ctx context.Context, names ...string) (<-chan struct{}, error) {
	var chans []string
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, err
		}
		key := l.Key(n)
		chans = append(chans, l.channel(key), l.changedChannel(key))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ps := l.c.Subscribe(ctx)
	var err error
	if len(names) == 0 {
		pattern := globEscape(l.set.prefix) + "{*}"
		chans = []string{l.channel(pattern), l.changedChannel(pattern)}
		err = ps.PSubscribe(ctx, chans...)
	} else {
		err = ps.Subscribe(ctx, chans...)
	}
	// The server confirms each channel; then a message published later
	// reaches this connection.
	for confirmed := 0; err == nil && confirmed < len(chans); {
		var msg any
		msg, err = ps.Receive(ctx)
		if _, ok := msg.(*redis.Subscription); ok {
			confirmed++
		}
	}
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("redislock: subscribe to changes: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	recv := func(ctx context.Context) (bool, error) {
		msg, err := ps.Receive(ctx)
		if err != nil {
			return false, err
		}
		_, ok := msg.(*redis.Message)
		return ok, nil
	}
	return changes.Feed(ctx, recv, func() {
		stop()
		_ = ps.Close()
	}), nil
}

// Announce implements lockkit.Watcher: it publishes on the name's
// "<key>:changed" channel, one PUBLISH.
func (l *Locker) Announce(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := l.c.Do(ctx, "PUBLISH", l.changedChannel(l.Key(name)), "changed").Err(); err != nil {
		return fmt.Errorf("redislock: announce %q: %w", name, err)
	}
	return nil
}
