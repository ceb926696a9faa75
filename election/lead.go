package election

import (
	"context"
	"errors"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/backoff"
)

// Lead runs fn whenever this caller leads the election name, until ctx
// ends. It campaigns with value; once it leads, it calls fn with the
// leadership's term and a context that is cancelled, with the loss error as
// its cause (context.Cause), when the leadership is lost. When fn returns,
// Lead resigns (on a context detached from ctx's cancellation, bounded by
// lockkit.ReleaseTimeout) and campaigns again after a pause; so it does too
// after a leadership was lost, or a campaign failed (a database that is
// down). The pause grows with consecutive failures and short leaderships,
// within Config.MinBackoff and Config.MaxBackoff, and is jittered.
//
// fn should stop when its context is cancelled, and pass the term with
// every write it makes, so that the resource can refuse the writes of a
// leader that was deposed before it noticed: see the package documentation.
// Errors Lead goes on after are passed to Config.OnError.
//
// Lead returns ctx.Err() when ctx ends, and at once an error no retry can
// fix: a bad name (lockkit.ErrInvalid) or a Locker that cannot give terms or
// carry the value (lockkit.ErrUnsupported). A panic in fn resigns and goes
// on up.
func Lead(ctx context.Context, e *Elector, name, value string, fn func(ctx context.Context, term int64) error) error {
	failures := 0
	for {
		l, err := e.Campaign(ctx, name, value)
		switch {
		case ctx.Err() != nil:
			if err == nil { // won just as ctx ended
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockkit.ReleaseTimeout)
				_ = l.Resign(rctx)
				cancel()
			}
			return ctx.Err()
		case err != nil && permanent(err):
			return err
		case err != nil:
			e.report(name, 0, err)
			failures++
		default:
			start := time.Now()
			err := l.run(ctx, fn)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				e.report(name, l.Term(), err)
			}
			if time.Since(start) >= e.maxBackoff {
				failures = 0
			} else {
				failures++
			}
		}
		t := time.NewTimer(e.backoff(failures))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// run calls fn with a context cancelled on the leadership's loss, then
// resigns. It returns fn's error joined with the loss error, if the
// leadership was lost before fn returned, or the Resign error.
func (l *Leadership) run(ctx context.Context, fn func(context.Context, int64) error) (err error) {
	fnCtx, cancel := context.WithCancelCause(context.WithValue(ctx, leadershipKey{}, l))
	stop := context.AfterFunc(doneContext{l.lock}, func() { cancel(l.Err()) })
	defer func() {
		stop()
		cancel(nil)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), lockkit.ReleaseTimeout)
		defer rcancel()
		err = errors.Join(err, l.Resign(rctx)) // on loss, the loss error
	}()
	return fn(fnCtx, l.Term())
}

type leadershipKey struct{}

// LeadershipFrom returns the leadership under which Lead runs fn, from fn's
// context, for its name, value and the backend's extras (its Lock); nil
// outside Lead.
func LeadershipFrom(ctx context.Context) *Leadership {
	l, _ := ctx.Value(leadershipKey{}).(*Leadership)
	return l
}

// backoff returns Lead's pause after failures consecutive failures.
func (e *Elector) backoff(failures int) time.Duration {
	d := e.minBackoff
	for range failures - 1 {
		if d >= e.maxBackoff/2 {
			d = e.maxBackoff
			break
		}
		d *= 2
	}
	return backoff.Jitter(min(d, e.maxBackoff))
}

func (e *Elector) report(name string, term int64, err error) {
	if e.onError != nil {
		e.onError(name, term, err)
	}
}

// doneContext is a context that is done when the lock is.
type doneContext struct{ l lockkit.Lock }

func (c doneContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c doneContext) Done() <-chan struct{}       { return c.l.Done() }
func (c doneContext) Err() error {
	select {
	case <-c.l.Done():
		return context.Canceled
	default:
		return nil
	}
}
func (c doneContext) Value(any) any { return nil }
