package redislock

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/redis/go-redis/v9"
)

// TestList: with names, an entry per name in the order given with what the
// holder stored, Held false for a free name; without names, the lock keys
// of the prefix ordered by name, and nothing else; never the secret.
func TestList(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	a := newLocker(t, admin, &Config{Prefix: prefix, Fencing: true, Owner: "alice", Data: "edit", TTL: 10 * time.Second})
	b := newLocker(t, admin, &Config{Prefix: prefix})
	n1, n2, free := name(t, ".1"), name(t, ".2"), name(t, ".free")
	odd := "odd}{name\x00with a NUL"

	before := time.Now()
	l1, err := a.TryLock(ctx, n1)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	l2, err := b.TryLock(ctx, n2)
	if err != nil {
		t.Fatal(err)
	}
	lo, err := b.TryLock(ctx, odd)
	if err != nil {
		t.Fatal(err)
	}
	// Keys next to the lock keys are not locks.
	if err := admin.ZAdd(ctx, a.Key("waited")+":queue", redis.Z{Score: 1, Member: "m"}).Err(); err != nil {
		t.Fatal(err)
	}

	got, err := b.List(ctx, n1, free, n2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("List = %+v, want 3 entries", got)
	}
	host, _ := os.Hostname()
	h := got[0]
	if h.Name != n1 || !h.Held || h.Mode != lockkit.Exclusive || h.Key != a.Key(n1) || h.Tool != "" {
		t.Errorf("held entry %+v", h)
	}
	hd := h.Holder
	if hd.Owner != "alice" || hd.Data != "edit" || hd.Host != host || hd.PID != os.Getpid() || hd.Token != l1.Token() || hd.Token == 0 {
		t.Errorf("holder %+v, want alice, edit, %s, pid %d, token %d", hd, host, os.Getpid(), l1.Token())
	}
	if hd.Since.Before(before.Add(-time.Second)) || hd.Since.After(after.Add(time.Second)) {
		t.Errorf("Since %v, want within [%v, %v]", hd.Since, before, after)
	}
	if d := time.Until(hd.Expires); d < 8*time.Second || d > 11*time.Second {
		t.Errorf("Expires in %v, want about the 10s TTL", d)
	}
	if f := got[1]; f.Name != free || f.Held || f.Key != a.Key(free) || f.Holder != (lockkit.Holder{}) {
		t.Errorf("free entry %+v", f)
	}
	if e := got[2]; e.Name != n2 || !e.Held || e.Holder.Token != 0 || e.Holder.Owner != "" {
		t.Errorf("entry of a Locker without fencing or owner: %+v", e)
	}

	all, err := a.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range all {
		names = append(names, e.Name)
	}
	want := []string{n1, n2, odd}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("List() names %q, want %q", names, want)
	}
	e := all[slices.Index(names, n1)]
	if d := e.Holder.Expires.Sub(h.Holder.Expires); d < -time.Second || d > time.Second {
		t.Errorf("List() Expires %v, List(name) Expires %v", e.Holder.Expires, h.Holder.Expires)
	}
	e.Holder.Expires, h.Holder.Expires = time.Time{}, time.Time{}
	if e != h {
		t.Errorf("List() entry %+v, List(name) entry %+v", e, h)
	}

	// The secret, the part of the value before the first "|", shows
	// nowhere.
	v, err := admin.Get(ctx, a.Key(n1)).Result()
	if err != nil {
		t.Fatal(err)
	}
	secret, _, _ := strings.Cut(v, "|")
	if s := fmt.Sprintf("%+v %+v", got, all); len(secret) < 20 || strings.Contains(s, secret) {
		t.Errorf("the secret %q of %q shows in the listing", secret, v)
	}

	for _, l := range []*Lock{l1, l2, lo} {
		mustRelease(t, l)
	}
	if got, err := a.List(ctx, n1); err != nil || len(got) != 1 || got[0].Held {
		t.Errorf("after release: %+v, %v", got, err)
	}
	if all, err := a.List(ctx); err != nil || len(all) != 0 {
		t.Errorf("List() after release = %+v, %v", all, err)
	}
	if _, err := a.List(ctx, n1, ""); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("List with an empty name = %v, want ErrInvalid", err)
	}
}

// TestListPrefixIsLiteral: a prefix with SCAN pattern characters matches
// only itself.
func TestListPrefixIsLiteral(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	admin := integration.Redis(t)
	base := testPrefix(t, admin)
	glob := newLocker(t, admin, &Config{Prefix: base + `a*[b]?\`})
	plain := newLocker(t, admin, &Config{Prefix: base + `ab]x\`})
	lg := mustLock(t, glob, "mine")
	lp := mustLock(t, plain, "theirs")
	defer mustRelease(t, lg)
	defer mustRelease(t, lp)
	all, err := glob.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].Name != "mine" || all[0].Key != glob.Key("mine") {
		t.Errorf("List() = %+v, want only %q", all, "mine")
	}
}

func TestGlobEscape(t *testing.T) {
	if got := globEscape(`a*b?c[d]e\f` + "\xff"); got != `a\*b\?c\[d\]e\\f`+"\xff" {
		t.Errorf("globEscape = %q", got)
	}
}

// TestListRing: on a *redis.Ring, List scans every shard.
func TestListRing(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	admin := integration.Redis(t)
	prefix := testPrefix(t, admin)
	p2 := startPrivateRedis(t)
	opts := admin.Options()
	ring := redis.NewRing(&redis.RingOptions{
		Addrs: map[string]string{"shared": opts.Addr, "private": p2.addr()},
		DB:    opts.DB,
	})
	defer ring.Close()
	l := newLocker(t, ring, &Config{Prefix: prefix})
	var want []string
	for i := range 8 { // over both shards, by the ring's hashing
		n := fmt.Sprintf("n%d", i)
		lk := mustLock(t, l, n)
		defer mustRelease(t, lk)
		want = append(want, n)
	}
	onPrivate, err := p2.client(t).Keys(ctx, "*").Result()
	if err != nil || len(onPrivate) == 0 || len(onPrivate) == len(want) {
		t.Fatalf("keys on the private shard: %q, %v; want some of the %d locks", onPrivate, err, len(want))
	}
	all, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range all {
		got = append(got, e.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List() on a ring = %q, want %q", got, want)
	}
}

// TestListCluster: on a *redis.ClusterClient, List scans every master
// (here three, each with a third of the slots) and reads keys of many
// slots. The cluster comes from integration.StartRedisCluster, whose ports
// leave room for the cluster bus (port + 10000).
func TestListCluster(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	rc := integration.StartRedisCluster(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	defer cc.Close()
	l := newLocker(t, cc, nil)
	var want []string
	for i := range 5 {
		n := fmt.Sprintf("n%d", i)
		lk := mustLock(t, l, n)
		defer mustRelease(t, lk)
		want = append(want, n)
	}
	all, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range all {
		got = append(got, e.Name)
		if !e.Held || e.Holder.PID != os.Getpid() {
			t.Errorf("entry %+v", e)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("List() on a cluster = %q, want %q", got, want)
	}
	if got, err := l.List(ctx, "n4", "n9"); err != nil || len(got) != 2 || !got[0].Held || got[1].Held {
		t.Errorf("List(n4, n9) on a cluster = %+v, %v", got, err)
	}
}

// TestValueHolder reads a stored value the way List does, and never keeps
// its secret.
func TestValueHolder(t *testing.T) {
	v := `SECRETSECRET|1795639869381654|1764100269381|{"owner":"alice (lockkit)","host":"vm","pid":42,"data":"d"}`
	info, ok := valueInfo(v)
	if !ok {
		t.Fatal("no separator found")
	}
	now := time.Now()
	h := parseHolder(info, 1500*time.Millisecond, now)
	if h.Token != 1795639869381654 || h.Owner != "alice (lockkit)" || h.Host != "vm" || h.PID != 42 || h.Data != "d" ||
		h.Since.UnixMilli() != 1764100269381 || !h.Expires.Equal(now.Add(1500*time.Millisecond)) {
		t.Errorf("%+v", h)
	}
	if s := fmt.Sprintf("%+v %s", h, info); strings.Contains(s, "SECRET") {
		t.Errorf("the holder's secret leaks: %s", s)
	}
	if _, ok := valueInfo("no separator"); ok {
		t.Error("a value without a separator parsed")
	}
	if h := parseHolder("garbage", -2, now); h.Token != 0 || !h.Since.IsZero() || !h.Expires.IsZero() {
		t.Errorf("holder of a value in another format: %+v", h)
	}
}
