package election

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/lockkit/lockkit"
)

// Observe yields the leader of the election name, then every change: a new
// leader (a greater term) or a vacancy (a Leader with Term 0), in order,
// until ctx ends or the loop stops. It reads the leader every
// Config.PollInterval, so a change is yielded within one PollInterval plus a
// round trip, and a leadership that begins and ends between two reads is
// not yielded at all. Terms are yielded in increasing order: a read that
// shows a term lower than one already yielded is skipped.
//
// A read that fails is yielded as its error (with a Leader of Term 0), and
// the next read that succeeds is yielded even when the leader did not
// change, so that a consumer that showed the error can show the leader
// again. Errors no retry can fix (no lockkit.Lister, a bad name, a holder
// without a token) are yielded and end the loop.
//
//	for ld, err := range e.Observe(ctx, "scheduler") {
//		if err != nil {
//			log.Print(err)
//			continue
//		}
//		if ld.Term == 0 {
//			log.Print("no leader")
//		} else {
//			log.Printf("term %d: %s leads", ld.Term, ld.Value)
//		}
//	}
func (e *Elector) Observe(ctx context.Context, name string) iter.Seq2[Leader, error] {
	return func(yield func(Leader, error) bool) {
		if e.lister == nil {
			yield(Leader{Name: name}, e.noLister())
			return
		}
		var (
			last    int64 = -1 // the term last yielded; -1: none, or an error
			highest int64      // the highest term yielded
			timer   *time.Timer
		)
		for {
			ld, err := e.Leader(ctx, name)
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrNoLeader) {
				ld, err = Leader{Name: name}, nil
			}
			switch {
			case err != nil:
				last = -1
				if !yield(Leader{Name: name}, err) || permanent(err) {
					return
				}
			case ld.Term == last:
			case ld.Term != 0 && (ld.Term < highest || ld.Term == highest && last != -1):
				// Older than what was yielded: a stale read.
			default:
				last, highest = ld.Term, max(highest, ld.Term)
				if !yield(ld, nil) {
					return
				}
			}
			if timer == nil {
				timer = time.NewTimer(e.poll)
				defer timer.Stop()
			} else {
				timer.Reset(e.poll)
			}
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
	}
}

// permanent reports whether err is one no retry can fix.
func permanent(err error) bool {
	return errors.Is(err, lockkit.ErrInvalid) || errors.Is(err, lockkit.ErrUnsupported)
}
