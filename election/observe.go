package election

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/backoff"
)

// Observe yields the leader of the election name, then every change: a new
// leader (a greater term) or a vacancy (a Leader with Term 0), in order,
// until ctx ends or the loop stops. Terms are yielded in increasing order:
// a read that shows a term lower than one already yielded is skipped.
//
// On a Locker that pushes changes (a lockkit.Watcher: rowlock on
// PostgreSQL, advisory, redislock, filelock, etcdlock) Observe subscribes
// first and reads the leader whenever a change wakes it, so a change is
// yielded about one round trip after it happened; the Elector announces its
// own changes (taking office, resigning, a loss its lock reported). It also
// reads every Config.PollInterval, which bounds how late it sees a change
// that nobody announced, such as a crashed leader's lease running out with
// no successor. Elsewhere (mysqllock, rowlock on MySQL, memlock) it reads
// every PollInterval only. Either way a read sees the leader of that
// moment, so a leadership that begins and ends between two reads is not
// yielded at all.
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
		sub := &subscription{w: e.push, name: name}
		defer sub.close()
		var (
			last    int64 = -1 // the term last yielded; -1: none, or an error
			highest int64      // the highest term yielded
			timer   *time.Timer
		)
		for {
			sub.ensure(ctx) // before the read, so no change after it is missed
			ld, err := e.Leader(ctx, name)
			for pause, waited := tokenRetryPause, time.Duration(0); errors.Is(err, errNoToken) && waited < tokenGrace; pause *= 2 {
				// A holder without a token may be one whose token is
				// being written or cleared (a file lock's record, an
				// advisory lock's holder row).
				if !backoff.Sleep(ctx, pause) {
					return
				}
				waited += pause
				ld, err = e.Leader(ctx, name)
			}
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
			case _, ok := <-sub.ch:
				if !ok { // the push broke: subscribe again before the read
					sub.ended()
				}
			}
		}
	}
}

// Observe reads again, with pauses from tokenRetryPause doubling, for
// about tokenGrace before it believes a holder without a token: a holder
// that is writing its record (one round trip after its lock) has one by
// then.
const (
	tokenRetryPause = 10 * time.Millisecond
	tokenGrace      = 2 * time.Second
)

// subscription is an observer's subscription to a Watcher's changes, made
// again after the push broke.
type subscription struct {
	w    lockkit.Watcher // nil: none
	name string

	cancel context.CancelFunc
	ch     <-chan struct{} // nil while not subscribed: never ready
	failed time.Time       // when the last attempt failed
}

// resubscribeAfter is the least pause between failed subscriptions; the
// observer polls meanwhile.
const resubscribeAfter = time.Second

// ensure subscribes when not subscribed, unless the Locker cannot push
// (then it never tries again) or an attempt failed a moment ago.
func (s *subscription) ensure(ctx context.Context) {
	if s.w == nil || s.ch != nil || time.Since(s.failed) < resubscribeAfter {
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	ch, err := s.w.Changes(sctx, s.name)
	switch {
	case errors.Is(err, lockkit.ErrUnsupported):
		cancel()
		s.w = nil
	case err != nil:
		cancel()
		s.failed = time.Now()
	default:
		s.ch, s.cancel = ch, cancel
	}
}

// ended forgets a subscription whose channel was closed.
func (s *subscription) ended() {
	s.cancel()
	s.ch, s.cancel = nil, nil
}

// close ends the subscription and waits for the Watcher to close its
// channel, so that nothing of it outlives Observe.
func (s *subscription) close() {
	if s.ch == nil {
		return
	}
	s.cancel()
	for range s.ch {
	}
}

// permanent reports whether err is one no retry can fix.
func permanent(err error) bool {
	return errors.Is(err, lockkit.ErrInvalid) || errors.Is(err, lockkit.ErrUnsupported)
}
