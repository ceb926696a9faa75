package keyhash_test

import (
	"errors"
	"math"
	"testing"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
)

func FuzzName(f *testing.F) {
	for _, p := range pinnedNames {
		f.Add(p.name, "")
	}
	f.Add("orders:42", "app")
	f.Add("a\x00b", "ns")
	f.Add("\xff\xfe", "\x00")
	f.Fuzz(func(t *testing.T, name, ns string) {
		k := keyhash.Name(name)
		if k.IsPair() {
			t.Fatal("Name returned a pair key")
		}
		if k != keyhash.Name(name) {
			t.Fatal("Name is not stable")
		}
		if k.Int64() != refHash([]byte(name)) || keyhash.HashName(name) != k.Int64() || keyhash.Hash64([]byte(name)) != k.Int64() {
			t.Fatalf("Name(%q) = %v, reference %d", name, k, refHash([]byte(name)))
		}
		nk := keyhash.NamespacedName(ns, name)
		want := refHash([]byte(ns + "\x00" + name))
		if ns == "" {
			want = refHash([]byte(name))
		}
		if nk.Int64() != want || nk.IsPair() {
			t.Fatalf("NamespacedName(%q, %q) = %v, reference %d", ns, name, nk, want)
		}
		// ValidateName: never panics; errors always match ErrInvalid; and it
		// accepts exactly the documented set.
		err := keyhash.ValidateName(name)
		valid := name != "" && len(name) <= keyhash.MaxNameLen && validUTF8NoNUL(name)
		if (err == nil) != valid {
			t.Fatalf("ValidateName(%q) = %v, want valid=%v", name, err, valid)
		}
		if err != nil && !errors.Is(err, lockkit.ErrInvalid) {
			t.Fatalf("ValidateName(%q) = %v, not ErrInvalid", name, err)
		}
		if err := keyhash.ValidateNamespace(ns); err != nil && !errors.Is(err, lockkit.ErrInvalid) {
			t.Fatalf("ValidateNamespace(%q) = %v, not ErrInvalid", ns, err)
		}
	})
}

// validUTF8NoNUL is the documented rule, written out rune by rune.
func validUTF8NoNUL(s string) bool {
	for i, r := range s {
		if r == 0 || (r == '\uFFFD' && !isRealReplacementChar(s[i:])) {
			return false
		}
	}
	return true
}

func isRealReplacementChar(s string) bool {
	return len(s) >= 3 && s[0] == 0xEF && s[1] == 0xBF && s[2] == 0xBD
}

func FuzzPack(f *testing.F) {
	f.Add(int64(0), int64(7), int64(42), int64(7), int64(43))
	f.Add(int64(1000), int64(3), int64(999), int64(4), int64(0))
	f.Add(int64(2), int64(math.MaxInt64/2), int64(1), int64(0), int64(0))
	f.Add(int64(1), int64(1), int64(1), int64(1), int64(1))
	f.Add(int64(-3), int64(1), int64(1), int64(1), int64(1))
	f.Add(int64(0), int64(-1), int64(0), int64(9_223_372_036_854), int64(775_808))
	f.Fuzz(func(t *testing.T, base, t1, r1, t2, r2 int64) {
		p := keyhash.Packer{Base: base}
		k1, err1 := p.Pack(t1, r1)
		k2, err2 := p.Pack(t2, r2)
		for _, c := range []struct {
			tb, rec int64
			k       keyhash.Key
			err     error
		}{{t1, r1, k1, err1}, {t2, r2, k2, err2}} {
			if c.err != nil {
				if !errors.Is(c.err, lockkit.ErrInvalid) {
					t.Fatalf("Pack(%d, %d) base %d: %v, not ErrInvalid", c.tb, c.rec, base, c.err)
				}
				// Refused only when the documented rules say so.
				eb := base
				if eb == 0 {
					eb = keyhash.DefaultBase
				}
				fits := eb > 1 && c.tb >= 0 && c.rec >= 0 && c.rec < eb && c.tb <= (math.MaxInt64-c.rec)/eb
				if fits {
					t.Fatalf("Pack(%d, %d) base %d refused: %v", c.tb, c.rec, base, c.err)
				}
				continue
			}
			if c.k.IsPair() || c.k.Int64() < 0 {
				t.Fatalf("Pack(%d, %d) base %d = %v", c.tb, c.rec, base, c.k)
			}
			gt, gr, err := p.Unpack(c.k)
			if err != nil || gt != c.tb || gr != c.rec {
				t.Fatalf("Unpack(Pack(%d, %d)) base %d = %d, %d, %v", c.tb, c.rec, base, gt, gr, err)
			}
		}
		if err1 == nil && err2 == nil && (t1 != t2 || r1 != r2) && k1 == k2 {
			t.Fatalf("silent collision: (%d, %d) and (%d, %d) both pack to %v with base %d", t1, r1, t2, r2, k1, base)
		}
		// PairRecord never collides either, and round-trips.
		if pk, err := keyhash.PairRecord(t1, r1); err == nil {
			a, b := pk.Pair()
			if int64(a) != t1 || int64(b) != r1 {
				t.Fatalf("PairRecord(%d, %d) = %v", t1, r1, pk)
			}
		} else if t1 >= math.MinInt32 && t1 <= math.MaxInt32 && r1 >= math.MinInt32 && r1 <= math.MaxInt32 {
			t.Fatalf("PairRecord(%d, %d) refused: %v", t1, r1, err)
		}
	})
}
