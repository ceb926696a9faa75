package mysqllock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/mysqllock"
)

func fencingConfig() *mysqllock.Config {
	return &mysqllock.Config{ProbeInterval: testProbeInterval, Fencing: true}
}

func TestMySQLConformanceFencing(t *testing.T) {
	admin := integration.MySQL(t)
	locktest.Run(t, locktest.Config{
		NewLocker: func(t *testing.T) lockkit.Locker {
			m, _ := newMySQL(t, fencingConfig())
			return m
		},
		KillHolder: func(t *testing.T, l lockkit.Lock) {
			killConn(t, admin, l.(*mysqllock.Lock).ConnID())
		},
		LossBound: mysqlLossBound(testProbeInterval),
		Tokens:    true,
	})
}

// TestMySQLFencingTokens: tokens strictly increase per name, across
// Lockers, for waits and tries; List reports the holder's token; several
// names, and Lockers without Fencing, get none.
func TestMySQLFencingTokens(t *testing.T) {
	ctx := ctxT(t, 30*time.Second)
	a, _ := newMySQL(t, fencingConfig())
	b, _ := newMySQL(t, fencingConfig())
	plain, _ := newMySQL(t, nil)
	last := map[string]int64{}
	for i := range 6 {
		for _, name := range []string{"fence.x", "fence.y"} {
			m := a
			if i%2 == 1 {
				m = b
			}
			var (
				l   *mysqllock.Lock
				err error
			)
			if i%3 == 0 {
				l, err = m.TryLock(ctx, name)
			} else {
				l, err = m.Lock(ctx, name)
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Token() <= last[name] {
				t.Fatalf("%s: token %d after %d", name, l.Token(), last[name])
			}
			last[name] = l.Token()
			infos, err := b.List(ctx, name)
			if err != nil || len(infos) != 1 || infos[0].Holder.Token != l.Token() {
				t.Fatalf("List(%q) = %+v, %v; want token %d", name, infos, err, l.Token())
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := a.LockNames(ctx, []string{"fence.x", "fence.y"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Token() != 0 {
		t.Errorf("several names: token %d, want 0", l.Token())
	}
	_ = l.Release(ctx)
	pl, err := plain.Lock(ctx, "fence.x")
	if err != nil {
		t.Fatal(err)
	}
	if pl.Token() != 0 {
		t.Errorf("without Fencing: token %d, want 0", pl.Token())
	}
	_ = pl.Release(ctx)
}

func TestMySQLFencingTableInvalid(t *testing.T) {
	db := integration.MySQL(t)
	for _, s := range []string{"a.b.c", "x-y", "a`b", "."} {
		if _, err := mysqllock.New(db, &mysqllock.Config{Fencing: true, FencingTable: s}); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("FencingTable %q: %v, want ErrInvalid", s, err)
		}
	}
}

// TestMySQLElectionFencing runs the election suite on GET_LOCK with
// Config.Fencing: terms are the name's counter, and Leader reads it back
// through List.
func TestMySQLElectionFencing(t *testing.T) {
	admin := integration.MySQL(t)
	locktest.RunElection(t, locktest.ElectionConfig{
		Config: locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker {
				m, _ := newMySQL(t, fencingConfig())
				return m
			},
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				killConn(t, admin, l.(*mysqllock.Lock).ConnID())
			},
			LossBound: mysqlLossBound(testProbeInterval),
		},
	})
}
