// Package changes is the subscriber side of lockkit.Watcher that the
// backends share: a goroutine per subscription that reads the backend's
// pushes (notifications, messages, inotify events, watch responses) and
// turns them into wake-ups on a channel with one pending value.
package changes

import "context"

// Feed starts a subscription's goroutine. It calls recv until recv returns
// an error or ctx ends; every call that reports wake leaves a value on the
// channel. Then it calls cleanup (which must not block for long) and closes
// the channel, so a closed channel means the goroutine is gone. recv must
// return once ctx ends.
func Feed(ctx context.Context, recv func(ctx context.Context) (wake bool, err error), cleanup func()) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		if cleanup != nil {
			defer cleanup()
		}
		for ctx.Err() == nil {
			wake, err := recv(ctx)
			if err != nil {
				return
			}
			if wake {
				Signal(ch)
			}
		}
	}()
	return ch
}

// Signal leaves one pending value on ch, if it has none.
func Signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
