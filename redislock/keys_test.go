package redislock

import (
	"errors"
	"testing"

	"github.com/lockkit/lockkit"
)

// FuzzKeys checks that distinct names never share a key: no two lock keys,
// no two counters, no lock key that is another name's counter, and no two
// release channels are equal.
func FuzzKeys(f *testing.F) {
	for _, seed := range [][2]string{
		{"a", "a:fence"}, {"a", "a}:fence"}, {"a}", "a"}, {"}", "{"}, {"x\x00", "x"}, {"a:released", "a"}, {"}x", "7d78"}, {"}", "}}"},
	} {
		f.Add(seed[0], seed[1])
	}
	l := &Locker{set: settings{prefix: DefaultPrefix}}
	f.Fuzz(func(t *testing.T, a, b string) {
		errA, errB := checkName(a), checkName(b)
		for _, err := range []error{errA, errB} {
			if err != nil && !errors.Is(err, lockkit.ErrInvalid) {
				t.Fatalf("checkName error %v does not match ErrInvalid", err)
			}
		}
		if (a == "" || len(a) > MaxNameLen) != (errA != nil) {
			t.Fatalf("checkName(%q) = %v", a, errA)
		}
		if a == b {
			return
		}
		ka, kb := l.Key(a), l.Key(b)
		switch {
		case ka == kb:
			t.Fatalf("names %q and %q share the key %q", a, b, ka)
		case l.fenceKey(ka) == l.fenceKey(kb):
			t.Fatalf("names %q and %q share a counter", a, b)
		case ka == l.fenceKey(kb) || kb == l.fenceKey(ka):
			t.Fatalf("a lock key of %q or %q is the other's counter", a, b)
		case l.channel(ka) == l.channel(kb):
			t.Fatalf("names %q and %q share a release channel", a, b)
		}
		ownA := []string{ka, l.fenceKey(ka), l.queueKey(ka), l.aliveKey(ka)}
		// One Redis Cluster slot for all of a name's keys, by a tag the
		// keys hold (not the whole key: that differs between them).
		for _, x := range ownA {
			if errA != nil {
				break
			}
			if tag := hashTag(x); tag == x || tag != hashTag(ka) {
				t.Fatalf("name %q: key %q hashes %q, its lock key %q hashes %q", a, x, tag, ka, hashTag(ka))
			}
		}
		if errA == nil && l.nameOf(ka) != a {
			t.Fatalf("nameOf(Key(%q)) = %q", a, l.nameOf(ka))
		}
		for _, x := range ownA {
			for _, y := range []string{kb, l.fenceKey(kb), l.queueKey(kb), l.aliveKey(kb)} {
				if x == y {
					t.Fatalf("names %q and %q share the key %q", a, b, x)
				}
			}
		}
	})
}

// Every key of a name shares one Redis Cluster slot, by a non-empty hash
// tag, under prefixes with and without braces; Key and nameOf agree.
func TestKeysShareASlot(t *testing.T) {
	for _, prefix := range []string{"lockkit:", "{app}:", "a{", "a{b", "x}", "}{"} {
		l := &Locker{set: settings{prefix: prefix}}
		for _, n := range []string{"}x", "}", "}}", "a", "{", "{}", "a}b", "a{b}c", "x}"} {
			k := l.Key(n)
			for _, x := range []string{k, l.fenceKey(k), l.queueKey(k), l.aliveKey(k)} {
				if tag := hashTag(x); tag == x || tag != hashTag(k) {
					t.Errorf("prefix %q, name %q: key %q hashes %q, the lock key %q hashes %q", prefix, n, x, tag, k, hashTag(k))
				}
			}
			if got := l.nameOf(k); got != n {
				t.Errorf("prefix %q: nameOf(Key(%q)) = %q", prefix, n, got)
			}
		}
	}
}
