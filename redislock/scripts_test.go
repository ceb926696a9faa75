package redislock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
)

// TestScriptsInterop: a lock taken and released with the published
// scripts through the raw client, as a service in another language would,
// and a Locker exclude each other, and the Locker reads the raw holder.
func TestScriptsInterop(t *testing.T) {
	c := integration.Redis(t)
	prefix := testPrefix(t, c)
	l := newLocker(t, c, &Config{Prefix: prefix, Fencing: true})
	lua := Scripts()
	ctx := ctxT(t, 10*time.Second)
	key := l.Key("job")
	keys := []string{key, key + ":queue", key + ":alive", key + ":fence"}
	const secret = "OTHERSERVICESECRET0123456|"

	res, err := redis.NewScript(lua.Acquire).Run(ctx, c, []string{key, key + ":fence"}, secret, 60_000, `|1700000000000|{"owner":"other-service","data":"ui:bob"}`).Slice()
	if err != nil || len(res) < 2 || res[0].(int64) != 1 {
		t.Fatalf("raw Acquire = %v, %v", res, err)
	}
	_, err = l.TryLock(ctx, "job")
	var held *lockkit.HeldError
	if !errors.As(err, &held) || held.Holder == nil || held.Holder.Owner != "other-service" || held.Holder.Data != "ui:bob" || held.Holder.Token == 0 {
		t.Fatalf("TryLock while the raw lock is held = %v", err)
	}
	if n, err := redis.NewScript(lua.Renew).Run(ctx, c, []string{key}, secret, 60_000).Int64(); err != nil || n != 1 {
		t.Errorf("raw Renew = %d, %v", n, err)
	}
	if n, err := redis.NewScript(lua.Release).Run(ctx, c, keys, secret, key+":released", 2000, "").Int64(); err != nil || n != 1 {
		t.Fatalf("raw Release = %d, %v", n, err)
	}
	lk, err := l.TryLock(ctx, "job")
	if err != nil {
		t.Fatalf("TryLock after the raw release: %v", err)
	}
	if lk.Token() <= held.Holder.Token {
		t.Errorf("Locker's token %d not above the raw lock's %d", lk.Token(), held.Holder.Token)
	}
	if n, err := redis.NewScript(lua.Release).Run(ctx, c, keys, secret, key+":released", 2000, "").Int64(); err != nil || n != 0 {
		t.Errorf("raw Release of the Locker's lock = %d, %v; want 0", n, err)
	}
	if err := lk.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}
