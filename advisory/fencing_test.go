package advisory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/locktest"
)

// fencingConformance is pgConformance with Config.Fencing and the token
// checks on.
func TestPostgresConformanceFencing(t *testing.T) {
	admin := pgAdmin(t)
	cfg := &Config{Fencing: true}
	locktest.Run(t, locktest.Config{
		NewLocker: func(t *testing.T) lockkit.Locker {
			p, _ := newPG(t, 8, cfg)
			return p
		},
		LossBound: pgLossBound,
		Tokens:    true,
		KillHolder: func(t *testing.T, l lockkit.Lock) {
			terminateHolder(t, admin, l.(*Lock).Keys()[0], true)
		},
	})
}

// TestFencingTokens: tokens strictly increase across names and Lockers, on
// every statement form (a lean direct connection, several keys); shared
// locks and Lockers without Fencing get none.
func TestFencingTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, _ := newPG(t, 4, &Config{Fencing: true})
	b := newPGPool(t, &Config{Fencing: true})
	plain, _ := newPG(t, 2, nil)
	var last int64
	next := func(l *Lock, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if l.Token() <= last {
			t.Fatalf("token %d after %d", l.Token(), last)
		}
		last = l.Token()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 { // the first statement on a connection, then lean ones
		next(a.Lock(ctx, "fence.a", nil))
		next(b.TryLock(ctx, "fence.b", nil))
		next(a.TryLock(ctx, "fence.a", nil))
		k1, _ := a.Key("fence.k1")
		k2, _ := a.Key("fence.k2")
		next(a.LockKeys(ctx, []keyhash.Key{k1, k2}, nil))
		next(b.TryLockKeys(ctx, []keyhash.Key{k1, k2}, nil))
	}
	sh, err := a.Lock(ctx, "fence.a", &Options{Mode: Shared})
	if err != nil {
		t.Fatal(err)
	}
	if sh.Token() != 0 {
		t.Errorf("shared lock token %d, want 0", sh.Token())
	}
	_ = sh.Release(ctx)
	pl, err := plain.Lock(ctx, "fence.a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Token() != 0 {
		t.Errorf("lock without Fencing: token %d, want 0", pl.Token())
	}
	// A denied try draws nothing.
	if _, err := a.TryLock(ctx, "fence.a", nil); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("TryLock of a held name = %v", err)
	}
	_ = pl.Release(ctx)
	next(a.TryLock(ctx, "fence.a", nil))
}

func TestFencingSequenceInvalid(t *testing.T) {
	for _, s := range []string{"a.b.c", "1x", "x-y", "a;b", "."} {
		if _, err := newLocker(nil, &Config{Fencing: true, FencingSequence: s}); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("FencingSequence %q: %v, want ErrInvalid", s, err)
		}
	}
}

// noList hides a Locker's List from package election: advisory's List
// reads pg_locks, which has no fencing token, so election's Leader (which
// takes the term from the listed holder's Token) cannot read the term
// there yet. The suite then checks everything but Leader and Observe.
type noList struct{ lockkit.Locker }

// TestElectionFencing runs the election suite on advisory locks with
// Config.Fencing: terms are the sequence's values.
func TestElectionFencing(t *testing.T) {
	admin := pgAdmin(t)
	locktest.RunElection(t, locktest.ElectionConfig{
		Config: locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker {
				p, _ := newPG(t, 4, &Config{Fencing: true})
				return noList{p}
			},
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				terminateHolder(t, admin, l.(*Lock).Keys()[0], true)
			},
			LossBound: pgLossBound,
		},
	})
}
