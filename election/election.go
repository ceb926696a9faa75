package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
)

// Defaults of [Config].
const (
	// DefaultPollInterval is how often Observe reads the leader without
	// a wake-up: the bound on how late it sees a change nobody pushed.
	DefaultPollInterval = time.Second
	// DefaultMinBackoff and DefaultMaxBackoff bound Lead's pause before
	// it campaigns again.
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// ErrNoLeader is what [Elector.Leader] returns when nobody leads.
var ErrNoLeader = errors.New("election: no leader")

// Config configures an [Elector]. A nil *Config, like zero fields, means
// the defaults.
type Config struct {
	// PollInterval is how often Observe reads the leader when nothing
	// woke it: on a Locker that pushes changes (a lockkit.Watcher) the
	// safety net for changes nobody announced, elsewhere the bound on how
	// late it reports a change. Default [DefaultPollInterval].
	PollInterval time.Duration

	// MinBackoff and MaxBackoff bound Lead's pause before it campaigns
	// again after a leadership ended or a campaign failed. The pause
	// starts at MinBackoff, doubles with every consecutive failed
	// campaign or leadership shorter than MaxBackoff, is at most
	// MaxBackoff, and is drawn uniformly from its upper half. Defaults
	// [DefaultMinBackoff] and [DefaultMaxBackoff].
	MinBackoff, MaxBackoff time.Duration

	// OnError, when set, is called by Lead with every error it goes on
	// after: a campaign that failed (term 0), and the end of a
	// leadership with fn's error or the loss of the leadership (its
	// term). It must not block for long.
	OnError func(name string, term int64, err error)
}

// Elector runs elections on one Locker. It is safe for concurrent use and
// keeps no state per election: any number of goroutines may campaign,
// lead and observe, on any names.
type Elector struct {
	locker lockkit.Locker
	lister lockkit.Lister     // nil when the Locker cannot list
	data   lockkit.DataLocker // nil when the Locker has no per-acquire data
	push   lockkit.Watcher    // nil when the Locker cannot push changes

	poll, minBackoff, maxBackoff time.Duration
	onError                      func(string, int64, error)

	mu      sync.Mutex
	noTerms error // set once a lock came without a token
}

// New returns an Elector on locker. Leader and Observe need locker to
// implement lockkit.Lister, and a Campaign with a value needs it to
// implement lockkit.DataLocker; see the package documentation. Bad
// configuration is an error matching lockkit.ErrInvalid.
func New(locker lockkit.Locker, cfg *Config) (*Elector, error) {
	if locker == nil {
		return nil, invalid.Errorf("election: nil Locker")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	e := &Elector{
		locker:     locker,
		poll:       c.PollInterval,
		minBackoff: c.MinBackoff,
		maxBackoff: c.MaxBackoff,
		onError:    c.OnError,
	}
	e.lister, _ = locker.(lockkit.Lister)
	e.data, _ = locker.(lockkit.DataLocker)
	e.push, _ = locker.(lockkit.Watcher)
	if e.poll == 0 {
		e.poll = DefaultPollInterval
	}
	if e.minBackoff == 0 {
		e.minBackoff = DefaultMinBackoff
	}
	if e.maxBackoff == 0 {
		e.maxBackoff = max(DefaultMaxBackoff, e.minBackoff)
	}
	switch {
	case e.poll < 0:
		return nil, invalid.Errorf("election: negative PollInterval %v", e.poll)
	case e.minBackoff < 0 || e.maxBackoff < 0:
		return nil, invalid.Errorf("election: negative backoff %v, %v", e.minBackoff, e.maxBackoff)
	case e.maxBackoff < e.minBackoff:
		return nil, invalid.Errorf("election: MaxBackoff %v is below MinBackoff %v", e.maxBackoff, e.minBackoff)
	}
	return e, nil
}

// Campaign waits until this caller leads the election name, or ctx ends,
// and returns the leadership. value is published as the leader's value
// while it leads; see the package documentation.
//
// When ctx ends first, the error is the Locker's: a *lockkit.HeldError whose
// Cause is ctx.Err(), matching lockkit.ErrNotAcquired and the context error.
// A value that the Locker cannot carry (it is no lockkit.DataLocker), and a
// Locker whose locks carry no fencing token, give an error matching
// lockkit.ErrUnsupported that names the fix; the latter is found by the
// first Campaign, which takes the lock, sees no token and gives it back at
// once.
//
// Two Campaigns for one name exclude each other also inside one process and
// one Elector: a caller that already leads and campaigns again waits for
// itself.
func (e *Elector) Campaign(ctx context.Context, name, value string) (*Leadership, error) {
	if err := e.noTermsErr(); err != nil {
		return nil, err
	}
	locker := e.locker
	switch {
	case e.data != nil:
		// Also with an empty value: a view records its holder where
		// the plain Locker does not (advisory).
		locker = e.data.WithData(value)
	case value != "":
		return nil, fmt.Errorf("election: %T cannot store a value per campaign (it is no lockkit.DataLocker); campaign with an empty value, and set the holder data in the backend's Config instead: %w", e.locker, lockkit.ErrUnsupported)
	}
	lk, err := locker.Acquire(ctx, name)
	if err != nil {
		return nil, err
	}
	if lk.Token() == 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockkit.ReleaseTimeout)
		defer cancel()
		relErr := lk.Release(rctx)
		err := fmt.Errorf("election: %T gives its locks no fencing token (Token is 0), and a leader's term is its lock's token; use a backend with tokens (rowlock, redislock or filelock with Config.Fencing, memlock): %w", e.locker, lockkit.ErrUnsupported)
		e.mu.Lock()
		e.noTerms = err
		e.mu.Unlock()
		return nil, errors.Join(err, relErr)
	}
	l := &Leadership{lock: lk, value: value, e: e}
	e.announce(ctx, name)
	if e.push != nil {
		l.lossAnnounced = make(chan struct{})
		l.stopLoss = context.AfterFunc(doneContext{lk}, func() {
			defer close(l.lossAnnounced)
			if lk.Err() != nil && !errors.Is(lk.Err(), lockkit.ErrReleased) {
				e.announce(context.Background(), name)
			}
		})
	}
	return l, nil
}

// announceTimeout bounds an announcement of a change to observers: a
// failed one costs only latency, since observers poll as a safety net.
const announceTimeout = 2 * time.Second

// announce tells observers of name, on a Locker that pushes changes, that
// its leader changed. Its error is dropped: observers find the change at
// their next poll.
func (e *Elector) announce(ctx context.Context, name string) {
	if e.push == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), announceTimeout)
	defer cancel()
	_ = e.push.Announce(actx, name)
}

func (e *Elector) noTermsErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.noTerms
}

// Leadership is one term in office, from Campaign. Its methods are safe for
// concurrent use.
type Leadership struct {
	lock  lockkit.Lock
	value string
	e     *Elector

	// On a Locker that pushes changes, a loss is announced to observers
	// as soon as the lock reports it; Resign waits for that announcement.
	stopLoss      func() bool
	lossAnnounced chan struct{} // nil without push
}

// Name returns the election's name.
func (l *Leadership) Name() string { return l.lock.Name() }

// Term returns the leadership's term: its lock's fencing token, strictly
// greater than the term of every earlier leadership of the name. Pass it
// with every write the leader makes, and have the resource refuse terms
// lower than the highest it has seen; see the package documentation.
func (l *Leadership) Term() int64 { return l.lock.Token() }

// Value returns the value the leader campaigned with.
func (l *Leadership) Value() string { return l.value }

// Done is closed when the leadership ends: resigned, or lost. A loss is
// reported within the backend's loss bound (see its package documentation
// and RELIABILITY.md); until then a deposed leader may still believe it
// leads, which is what the term is for.
func (l *Leadership) Done() <-chan struct{} { return l.lock.Done() }

// Err is nil while the leadership lasts. After Resign it matches
// lockkit.ErrReleased; after a loss it is the lock's *lockkit.LostError,
// matching lockkit.ErrLost, with the cause.
func (l *Leadership) Err() error { return l.lock.Err() }

// Resign ends the leadership: its lock is released, so that a waiting
// candidate leads next. It has the contract of [lockkit.Lock.Release]: nil
// when the backend confirmed it, the loss error when the leadership had
// been lost, an error matching lockkit.ErrReleased the second time.
//
// On a Locker that pushes changes (a lockkit.Watcher), Resign announces the
// vacancy to observers after the release, and a leadership that is lost is
// announced as soon as the lock reports the loss.
func (l *Leadership) Resign(ctx context.Context) error {
	err := l.lock.Release(ctx)
	if l.lossAnnounced == nil {
		return err
	}
	if l.stopLoss() { // the lock is done, and the loss announcer never ran
		close(l.lossAnnounced)
	}
	<-l.lossAnnounced
	if err == nil { // this call released it
		l.e.announce(ctx, l.Name())
	}
	return err
}

// Lock returns the lock the leadership holds, for the backend's extras (a
// lease's expiry, a Redis key). Resign rather than release it.
func (l *Leadership) Lock() lockkit.Lock { return l.lock }

// Leader is who leads an election, as the Locker's lockkit.Lister reports
// it.
type Leader struct {
	// Name is the election's name.
	Name string
	// Term is the leader's term, its lock's fencing token. It is 0 in
	// the Leader that Observe yields when nobody leads.
	Term int64
	// Value is the value the leader campaigned with: its lock holder's
	// Data (the backend's configured holder data when it campaigned with
	// an empty value).
	Value string
	// Since is when the leader took office, as the backend recorded it.
	Since time.Time
	// Holder is all the backend knows of the leader's lock holder: its
	// owner, host, pid, lease expiry.
	Holder lockkit.Holder
}

// Leader reports who leads the election name now. When nobody does the
// error matches [ErrNoLeader]. A Locker that cannot list its holders (no
// lockkit.Lister) gives an error matching lockkit.ErrUnsupported, and so
// does a holder of name without a fencing token, which no Elector's
// Campaign made.
func (e *Elector) Leader(ctx context.Context, name string) (Leader, error) {
	if e.lister == nil {
		return Leader{}, e.noLister()
	}
	infos, err := e.lister.List(ctx, name)
	if err != nil {
		return Leader{}, fmt.Errorf("election: leader of %q: %w", name, err)
	}
	for _, in := range infos {
		if !in.Held {
			continue
		}
		if in.Holder.Token == 0 {
			return Leader{}, fmt.Errorf("election: %q is held without a fencing token, so it is not an election's lock: %w", name, errNoToken)
		}
		h := in.Holder
		return Leader{Name: name, Term: h.Token, Value: h.Data, Since: h.Since, Holder: h}, nil
	}
	return Leader{}, fmt.Errorf("%w: %q", ErrNoLeader, name)
}

// errNoToken is Leader's error for a holder without a token. It matches
// lockkit.ErrUnsupported; Observe reads again a few times before it
// believes it, since some backends show a holder for an instant before its
// record (and token) is written or after it was cleared.
var errNoToken = noTokenError{}

type noTokenError struct{}

func (noTokenError) Error() string        { return lockkit.ErrUnsupported.Error() }
func (noTokenError) Is(target error) bool { return target == lockkit.ErrUnsupported }

func (e *Elector) noLister() error {
	return fmt.Errorf("election: %T cannot list lock holders (it is no lockkit.Lister), so the leader cannot be read: %w", e.locker, lockkit.ErrUnsupported)
}
