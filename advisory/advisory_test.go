package advisory

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks every test of the package (PostgreSQL and MySQL alike)
// for leaked goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Exclusive: "exclusive", Shared: "shared", Mode(7): "Mode(7)", Mode(-1): "Mode(-1)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
	var o *Options
	if o.mode() != Exclusive {
		t.Errorf("nil *Options mode = %v, want exclusive", o.mode())
	}
}
