package lockstate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lockkit/lockkit"
)

func TestReleaseRunsUnlockOnce(t *testing.T) {
	var calls atomic.Int32
	h := New("n", 7, func(context.Context, bool) error { calls.Add(1); return nil })
	var wg sync.WaitGroup
	var nils atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := h.Release(context.Background())
			switch {
			case err == nil:
				nils.Add(1)
			case !errors.Is(err, lockkit.ErrReleased):
				t.Errorf("Release = %v", err)
			}
		}()
	}
	wg.Wait()
	if calls.Load() != 1 || nils.Load() != 1 {
		t.Errorf("unlock ran %d times, %d Release calls returned nil; want 1 and 1", calls.Load(), nils.Load())
	}
	if !errors.Is(h.Err(), lockkit.ErrReleased) || h.Token() != 7 || h.Name() != "n" {
		t.Errorf("after release: Err %v Token %d Name %q", h.Err(), h.Token(), h.Name())
	}
}

func TestFailedUnlockMeansLost(t *testing.T) {
	cause := errors.New("unlock returned false")
	h := New("n", 0, func(context.Context, bool) error { return cause })
	err := h.Release(context.Background())
	if !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, cause) {
		t.Fatalf("Release = %v, want ErrLost wrapping the cause", err)
	}
	select {
	case <-h.Done():
	default:
		t.Fatal("Done open after a failed release")
	}
	if err := h.Release(context.Background()); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("second Release = %v, want the loss again", err)
	}
}

func TestReleaseAfterLossFreesAndReportsLoss(t *testing.T) {
	var sawLost bool
	h := New("n", 0, func(_ context.Context, lost bool) error { sawLost = lost; return nil })
	cause := errors.New("session terminated")
	if !h.MarkLost(cause) || h.MarkLost(errors.New("again")) {
		t.Fatal("MarkLost must end the lock exactly once")
	}
	if err := h.Release(context.Background()); !errors.Is(err, cause) {
		t.Errorf("Release of a lost lock = %v, want its loss", err)
	}
	if !sawLost {
		t.Error("unlock was not told the lock was lost")
	}
}

func TestLossDuringUnlockWins(t *testing.T) {
	var h *Handle
	h = New("n", 0, func(context.Context, bool) error {
		h.MarkLost(errors.New("killed mid-release"))
		return nil
	})
	if err := h.Release(context.Background()); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release = %v, want ErrLost", err)
	}
}
