//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

func TestWithData(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, &Config{Owner: "svc", Data: "default"})
	ctx := ctxT(t, 10*time.Second)
	holder := func() *lockkit.Holder {
		t.Helper()
		s, err := l.Inspect(ctx, "leader")
		if err != nil || !s.Held || s.Holder == nil {
			t.Fatalf("Inspect = %+v, %v; want a holder", s, err)
		}
		return s.Holder
	}
	lk, err := l.WithData("10.0.0.1:8080").TryAcquire(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	if h := holder(); h.Data != "10.0.0.1:8080" || h.Owner != "svc" {
		t.Errorf("holder %+v, want the view's data and the Locker's owner", h)
	}
	if _, err := l.TryAcquire(ctx, "leader"); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Errorf("the Locker's TryAcquire while its view holds = %v, want ErrNotAcquired", err)
	}
	_ = lk.Release(ctx)
	for _, v := range []lockkit.Locker{l.WithData(""), l} {
		lk, err := v.TryAcquire(ctx, "leader")
		if err != nil {
			t.Fatal(err)
		}
		if h := holder(); h.Data != "default" {
			t.Errorf("holder %+v, want Config.Data", h)
		}
		_ = lk.Release(ctx)
	}
	v := l.WithData(strings.Repeat("d", maxRecordMeta))
	if _, err := v.Acquire(ctx, "leader"); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("Acquire with too much data = %v, want ErrInvalid", err)
	}
}
