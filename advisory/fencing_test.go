package advisory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
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
		LossBound:   pgLossBound,
		LeakOptions: pgLeakOptions,
		Tokens:      true,
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

// TestElectionFencing runs the election suite on advisory locks with
// Config.Fencing: terms are the sequence's values, which candidates record
// (through WithData views) with their values in the holders table, where
// List, and so Leader and Observe, read them. Observers LISTEN for the
// Elector's announcements (Pushed).
func TestElectionFencing(t *testing.T) {
	admin := pgAdmin(t)
	locktest.RunElection(t, locktest.ElectionConfig{
		Config: locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker {
				p, _ := newPG(t, 4, &Config{Fencing: true})
				return p
			},
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				terminateHolder(t, admin, l.(*Lock).Keys()[0], true)
			},
			LossBound:   pgLossBound,
			LeakOptions: pgLeakOptions,
		},
		Pushed: true,
	})
}

// TestFencedStatementsPrepare: every session lock statement has a fenced
// form, with exactly one more parameter, that the server accepts (the
// marker forms of a pooled connection are not reached on a direct one).
func TestFencedStatementsPrepare(t *testing.T) {
	conn, err := integration.PgxPool(t).Acquire(pgCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var all []string
	for f := range leanLockSQL {
		for m := range leanLockSQL[f] {
			all = append(all, leanLockSQL[f][m][shapeInt], leanLockSQL[f][m][shapePair])
			for first := range sessionLockSQL {
				all = append(all, sessionLockSQL[first][f][m][:]...)
			}
		}
	}
	for i, q := range all {
		fq, ok := fencedSQL[q]
		switch {
		case !ok:
			t.Fatalf("no fenced form of %s", q)
		case maxParam(fq) != maxParam(q)+1:
			t.Fatalf("fenced form of %s has %d parameters", q, maxParam(fq))
		}
		base, err := conn.Conn().Prepare(pgCtx(t, 10*time.Second), fmt.Sprintf("base%d", i), q)
		if err != nil {
			t.Fatalf("prepare %s: %v", q, err)
		}
		sd, err := conn.Conn().Prepare(pgCtx(t, 10*time.Second), fmt.Sprintf("fenced%d", i), fq)
		if err != nil {
			t.Fatalf("prepare %s: %v", fq, err)
		}
		if len(sd.Fields) != len(base.Fields)+1 || sd.Fields[len(sd.Fields)-1].DataTypeOID != 20 { // int8
			t.Fatalf("%s: columns %+v, want those of the statement and an int8", fq, sd.Fields)
		}
	}
}

// TestFencingMarkerForms runs the fenced marker forms (those of a pooled
// connection) on a direct connection marked pooled: one key and several,
// wait and try.
func TestFencingMarkerForms(t *testing.T) {
	ctx := pgCtx(t, 30*time.Second)
	p := newPGPoolN(t, 1, &Config{Fencing: true})
	pool := p.src.(poolSource).pool
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Conn().PgConn().CustomData()[connKindKey] = connPooled
	c.Release()
	k1, _ := p.Key("fence.m1")
	k2, _ := p.Key("fence.m2")
	var last int64
	for i := range 4 {
		var (
			l   *Lock
			err error
		)
		switch i {
		case 0:
			l, err = p.Lock(ctx, "fence.m1", nil)
		case 1:
			l, err = p.TryLock(ctx, "fence.m1", nil)
		case 2:
			l, err = p.LockKeys(ctx, []keyhash.Key{k1, k2}, nil)
		case 3:
			l, err = p.TryLockKeys(ctx, []keyhash.Key{k1, k2}, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		if l.form == formLean || l.Token() <= last {
			t.Fatalf("lock %d: form %d, token %d after %d", i, l.form, l.Token(), last)
		}
		last = l.Token()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHoldersTableCreatedConcurrently: the first acquires with data of a
// Locker whose holders table does not exist yet all create it at once;
// PostgreSQL's CREATE ... IF NOT EXISTS then fails in all but one session
// (duplicate_table or a catalog unique violation), which must not fail
// the acquire. A fresh sequence name gives a fresh holders table.
func TestHoldersTableCreatedConcurrently(t *testing.T) {
	seq := "lockkit_fence_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(integration.Name(t)))
	if len(seq) > 40 {
		seq = seq[:40]
	}
	admin := pgAdmin(t)
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), `DROP TABLE IF EXISTS "`+seq+`_holders"`)
		_, _ = admin.ExecContext(context.Background(), `DROP SEQUENCE IF EXISTS "`+seq+`"`)
	})
	p, _ := newPG(t, 20, &Config{Fencing: true, FencingSequence: seq})
	ctx := pgCtx(t, 30*time.Second)
	const n = 16
	errs := make(chan error, n)
	var locks sync.Map
	for i := range n {
		go func() {
			lk, err := p.WithData(fmt.Sprint("worker ", i)).TryAcquire(ctx, fmt.Sprint(seq, "-", i))
			if err == nil {
				locks.Store(i, lk)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	locks.Range(func(_, v any) bool {
		if err := v.(lockkit.Lock).Release(ctx); err != nil {
			t.Error(err)
		}
		return true
	})
}
