package changes

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFeed: wake-ups coalesce into one pending value; an error from recv,
// or the end of ctx, runs cleanup and then closes the channel.
func TestFeed(t *testing.T) {
	events := make(chan error)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cleaned := make(chan struct{})
	ch := Feed(ctx, func(ctx context.Context) (bool, error) {
		select {
		case err := <-events:
			return err == nil, err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}, func() { close(cleaned) })
	events <- nil
	events <- nil
	events <- nil
	events <- errors.New("push broke") // received after the third Signal
	values := 0
	timeout := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
			if open {
				values++
			}
		case <-timeout:
			t.Fatal("not closed after recv failed")
		}
	}
	if values != 1 {
		t.Errorf("%d values for three wake-ups nobody read, want them coalesced into 1", values)
	}
	select {
	case <-cleaned:
	default:
		t.Fatal("closed before cleanup ran")
	}

	ch = Feed(ctx, func(ctx context.Context) (bool, error) {
		<-ctx.Done()
		return false, ctx.Err()
	}, nil)
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a value after ctx ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not closed after ctx ended")
	}
}
