package keyhash_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
)

// refHash is the documented algorithm written out independently of keyhash:
// the first 16 hex digits of the SHA-256 digest, parsed as an unsigned 64-bit
// number and reinterpreted as two's complement — the same steps as
// keyhash.NameKeySQL.
func refHash(b []byte) int64 {
	sum := sha256.Sum256(b)
	u, err := strconv.ParseUint(hex.EncodeToString(sum[:])[:16], 16, 64)
	if err != nil {
		panic(err)
	}
	return int64(u)
}

// The expected values were computed with Python 3's hashlib, independently of
// Go:
//
//	int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "big", signed=True)
//
// and TestNameSQLAgrees checks the same names against PostgreSQL.
var pinnedNames = []struct {
	name string
	want int64
}{
	{"", -2039914840885289964},
	{"a", -3848465438864589366},
	{"orders:42", -8476019149258318077},
	{"lockkit", 5382756452338406260},
	{"héllo wörld", -6845401627421830825},
	{"日本語", 8606672379249086371},
	{"🔒", 7701668758205862634},
}

func TestNamePinned(t *testing.T) {
	for _, c := range pinnedNames {
		if got := keyhash.Name(c.name); got.IsPair() || got.Int64() != c.want {
			t.Errorf("Name(%q) = %v, want %d", c.name, got, c.want)
		}
		if got := keyhash.HashName(c.name); got != c.want {
			t.Errorf("HashName(%q) = %d, want %d", c.name, got, c.want)
		}
		if got := keyhash.Hash64([]byte(c.name)); got != c.want {
			t.Errorf("Hash64(%q) = %d, want %d", c.name, got, c.want)
		}
		if got := refHash([]byte(c.name)); got != c.want {
			t.Errorf("reference(%q) = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestNamespacedNamePinned(t *testing.T) {
	// Python: int.from_bytes(hashlib.sha256(b"billing\x00nightly-report").digest()[:8], "big", signed=True)
	for _, c := range []struct {
		ns, name string
		want     int64
	}{
		{"billing", "nightly-report", 8192123173007030350},
		{"app", "orders:42", -2052947595140868237},
		{"", "orders:42", -8476019149258318077}, // no namespace: Name("orders:42")
	} {
		if got := keyhash.NamespacedName(c.ns, c.name); got.Int64() != c.want || got.IsPair() {
			t.Errorf("NamespacedName(%q, %q) = %v, want %d", c.ns, c.name, got, c.want)
		}
	}
	// The documented encoding: namespace, one NUL byte, name.
	if keyhash.NamespacedName("a", "b") != keyhash.Int64(refHash([]byte("a\x00b"))) {
		t.Error("NamespacedName(a, b) is not the hash of \"a\\x00b\"")
	}
	// Shifting bytes between namespace and name changes the key.
	if keyhash.NamespacedName("ab", "c") == keyhash.NamespacedName("a", "bc") {
		t.Error("NamespacedName(ab, c) == NamespacedName(a, bc)")
	}
	// A namespaced key differs from the plain name and from the concatenation.
	if keyhash.NamespacedName("a", "b") == keyhash.Name("b") || keyhash.NamespacedName("a", "b") == keyhash.Name("ab") {
		t.Error("namespaced key equals a plain name's key")
	}
}

func TestValidateName(t *testing.T) {
	long := strings.Repeat("x", keyhash.MaxNameLen)
	for _, ok := range []string{"a", "orders:42", "日本語", "🔒", long, strings.Repeat("é", keyhash.MaxNameLen/2), " ", "a\tb"} {
		if err := keyhash.ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%.20q): %v", ok, err)
		}
		if err := keyhash.ValidateNamespace(ok); err != nil {
			t.Errorf("ValidateNamespace(%.20q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", long + "x", strings.Repeat("é", keyhash.MaxNameLen/2) + "x", "\xff", "a\xc3", "a\x00b", "\x00"} {
		err := keyhash.ValidateName(bad)
		if !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("ValidateName(%.20q) = %v, want ErrInvalid", bad, err)
		}
		if bad == "" {
			continue
		}
		if err := keyhash.ValidateNamespace(bad); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("ValidateNamespace(%.20q) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := keyhash.ValidateNamespace(""); err != nil {
		t.Errorf("ValidateNamespace(\"\") = %v, want nil (no namespace)", err)
	}
}

// A name or a namespaced name of up to 256 bytes is hashed without a heap
// allocation (a lock's key is computed on every acquire).
func TestNameHashAllocations(t *testing.T) {
	long := strings.Repeat("n", 200)
	for _, tc := range []struct {
		what string
		f    func()
	}{
		{"a 200-byte name", func() { _ = keyhash.HashName(long) }},
		{"a namespaced 200-byte name", func() { _ = keyhash.NamespacedName("app", long) }},
	} {
		if n := testing.AllocsPerRun(100, tc.f); n != 0 {
			t.Errorf("hashing %s: %.0f allocations, want 0", tc.what, n)
		}
	}
}
