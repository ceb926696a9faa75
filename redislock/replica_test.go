package redislock

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

// A Locker on a Redis replica is refused before it writes anything, with
// an error that names the replica and its primary: by ROLE, with
// replica-read-only on (the default, where the write would fail with
// READONLY) and off (where the write would succeed on the replica alone,
// unseen by the primary's clients). A primary demoted under a Locker that
// already checked it shows itself by READONLY, which is reported the same
// way.
func TestReplicaRefused(t *testing.T) {
	t.Parallel()
	primary := startPrivateRedis(t)
	replica := startPrivateRedis(t)
	ctx := ctxT(t, 30*time.Second)
	rc := replica.client(t)
	if err := rc.Do(ctx, "replicaof", "127.0.0.1", strconv.Itoa(primary.port)).Err(); err != nil {
		t.Fatal(err)
	}
	n := name(t)

	for _, readOnly := range []string{"yes", "no"} {
		if err := rc.ConfigSet(ctx, "replica-read-only", readOnly).Err(); err != nil {
			t.Fatal(err)
		}
		l := newLocker(t, replica.client(t), nil)
		for what, acquire := range map[string]func() error{
			"TryLock": func() error { _, err := l.TryLock(ctx, n); return err },
			"Lock":    func() error { _, err := l.Lock(ctx, n); return err },
		} {
			err := acquire()
			if !errors.Is(err, ErrReplica) || !errors.Is(err, lockkit.ErrUnsupported) {
				t.Fatalf("replica-read-only %s: %s on a replica = %v, want ErrReplica", readOnly, what, err)
			}
			for _, want := range []string{replica.addr(), "replica of 127.0.0.1:" + strconv.Itoa(primary.port), "primary"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: the error %q does not mention %q", what, err, want)
				}
			}
		}
		if keys, err := rc.Keys(ctx, "*").Result(); err != nil || len(keys) != 0 {
			t.Errorf("replica-read-only %s: keys on the replica after the refusals: %v, %v", readOnly, keys, err)
		}
	}

	// A primary that becomes a replica after the Locker checked it.
	pc := primary.client(t)
	l := newLocker(t, primary.client(t), nil)
	mustRelease(t, mustLock(t, l, n))
	if err := rc.Do(ctx, "replicaof", "no", "one").Err(); err != nil {
		t.Fatal(err)
	}
	if err := pc.Do(ctx, "replicaof", "127.0.0.1", strconv.Itoa(replica.port)).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := l.TryLock(ctx, n)
	if !errors.Is(err, ErrReplica) || !strings.Contains(err.Error(), "READONLY") || !strings.Contains(err.Error(), primary.addr()) {
		t.Fatalf("TryLock on a demoted primary = %v, want ErrReplica with READONLY", err)
	}
	// The next acquire asks ROLE again, and names the new primary.
	_, err = l.TryLock(ctx, n)
	if !errors.Is(err, ErrReplica) || !strings.Contains(err.Error(), "replica of 127.0.0.1:"+strconv.Itoa(replica.port)) {
		t.Fatalf("the next TryLock = %v, want ErrReplica naming the new primary", err)
	}
	t.Logf("refused: %v", err)
}
