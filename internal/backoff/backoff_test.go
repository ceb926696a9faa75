package backoff

import (
	"testing"
	"time"
)

func TestJitterStaysInRange(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 2, 3, 7, time.Millisecond, 101 * time.Millisecond} {
		lo, hi := d/2, d
		if d <= 1 {
			lo = d
		}
		seenLo, seenHi := false, false
		for range 2000 {
			j := Jitter(d)
			if j < lo || j > hi {
				t.Fatalf("Jitter(%v) = %v, want within [%v, %v]", d, j, lo, hi)
			}
			seenLo = seenLo || j < lo+(hi-lo)/4+1
			seenHi = seenHi || j > hi-(hi-lo)/4-1
		}
		if d > 3 && (!seenLo || !seenHi) {
			t.Errorf("Jitter(%v) did not spread over its range in 2000 draws", d)
		}
	}
}
