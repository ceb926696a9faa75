package rowlock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/rowlock"
)

func TestErrNoTable(t *testing.T) {
	for _, d := range []rowlock.Dialect{rowlock.Postgres, rowlock.MySQL} {
		t.Run(string(d), func(t *testing.T) {
			e := setup(t, d)
			ctx := ctxT(t, 30*time.Second)
			missing := e.locker(t, &rowlock.Config{Table: "lockkit_no_such_table"})
			_, err := missing.TryAcquire(ctx, e.name(t))
			if !errors.Is(err, rowlock.ErrNoTable) || errors.Is(err, lockkit.ErrNotAcquired) {
				t.Errorf("TryAcquire on a missing table: %v, want ErrNoTable", err)
			}
			if _, err := missing.List(ctx); !errors.Is(err, rowlock.ErrNoTable) {
				t.Errorf("List on a missing table: %v, want ErrNoTable", err)
			}
			lk, err := e.locker(t, nil).TryAcquire(ctx, e.name(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := lk.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
