package rowlock_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/rowlock"
)

// TestList: with names, an entry per name in the order given, Held false
// for a free name and for an expired lease; without names, the live
// leases of the table in byte order of their names; holder fields as the
// holder stored them.
func TestList(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		ctx := ctxT(t, 30*time.Second)
		a := e.locker(t, &rowlock.Config{TTL: 10 * time.Second, Data: "report", Host: "web-3", PID: 4121})
		short := e.locker(t, &rowlock.Config{TTL: 50 * time.Millisecond, RenewInterval: rowlock.NoRenew})
		admin := e.locker(t, nil)
		base := e.name(t)
		// ".B" sorts before ".a" in byte order, after it in most
		// collations.
		held, other, free, expired := base+".a", base+".B", base+".free", base+".expired"

		before := time.Now()
		lk := mustTry(t, a, held, nil)
		after := time.Now()
		lo := mustTry(t, a, other, nil)
		mustTry(t, short, expired, nil)
		time.Sleep(300 * time.Millisecond) // the short lease runs out

		got, err := admin.List(ctx, held, free, expired)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("List = %+v, want 3 entries", got)
		}
		h := got[0]
		if h.Name != held || !h.Held || h.Mode != lockkit.Exclusive || h.Key != "" || h.Tool != "" {
			t.Errorf("held entry %+v", h)
		}
		hd := h.Holder
		if hd.Owner != a.Owner() || hd.Host != "web-3" || hd.PID != 4121 || hd.Data != "report" || hd.Token != lk.Token() {
			t.Errorf("holder %+v, want owner %q, web-3, pid 4121, data report, token %d", hd, a.Owner(), lk.Token())
		}
		if hd.Since.Before(before.Add(-time.Second)) || hd.Since.After(after.Add(time.Second)) {
			t.Errorf("Since %v, want within [%v, %v]", hd.Since, before, after)
		}
		if d := hd.Expires.Sub(hd.Since); d < 9*time.Second || d > 11*time.Second {
			t.Errorf("Expires %v is %v after Since, want the 10s TTL", hd.Expires, d)
		}
		for i, n := range []string{free, expired} {
			if f := got[i+1]; f.Name != n || f.Held || f.Holder != (lockkit.Holder{}) {
				t.Errorf("entry of %q: %+v, want free", n, f)
			}
		}

		all, err := admin.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0].Name != other || all[1].Name != held || !all[0].Held || all[0].Holder.Token != lo.Token() || all[1].Holder != hd {
			t.Errorf("List() = %+v, want %q then %q (byte order), not the expired lease", all, other, held)
		}

		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := admin.List(ctx, held); err != nil || len(got) != 1 || got[0].Held {
			t.Errorf("after release: %+v, %v", got, err)
		}
		if _, err := admin.List(ctx, held, ""); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("List with an empty name = %v, want ErrInvalid", err)
		}
	})
}

// TestListDefaultHolder: a Locker's default holder is this host and
// process.
func TestListDefaultHolder(t *testing.T) {
	both(t, func(t *testing.T, e *env) {
		ctx := ctxT(t, 30*time.Second)
		a := e.locker(t, nil)
		name := e.name(t)
		mustTry(t, a, name, nil)
		got, err := e.locker(t, nil).List(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		host, _ := os.Hostname()
		if len(got) != 1 || !got[0].Held || got[0].Holder.PID != os.Getpid() || got[0].Holder.Host != host {
			t.Errorf("List = %+v, want held by pid %d on %s", got, os.Getpid(), host)
		}
	})
}
