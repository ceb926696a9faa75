package keyhash_test

import (
	"errors"
	"math"
	"testing"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
)

func TestRecordPinned(t *testing.T) {
	for _, c := range []struct {
		table, record, want int64
	}{
		{0, 0, 0},
		{0, 999_999, 999_999},
		{1, 0, 1_000_000},
		{7, 42, 7_000_042},
		{123_456, 789, 123_456_000_789},
		// The largest packable pair: exactly math.MaxInt64.
		{9_223_372_036_854, 775_807, math.MaxInt64},
	} {
		k, err := keyhash.Record(c.table, c.record)
		if err != nil {
			t.Fatalf("Record(%d, %d): %v", c.table, c.record, err)
		}
		if k.IsPair() || k.Int64() != c.want {
			t.Errorf("Record(%d, %d) = %v, want bigint %d", c.table, c.record, k, c.want)
		}
		tb, rec, err := keyhash.Unpack(k)
		if err != nil || tb != c.table || rec != c.record {
			t.Errorf("Unpack(%v) = %d, %d, %v; want %d, %d", k, tb, rec, err, c.table, c.record)
		}
	}
}

func TestPackerBase(t *testing.T) {
	p := keyhash.Packer{Base: 1000}
	k, err := p.Pack(3, 999)
	if err != nil || k != keyhash.Int64(3999) {
		t.Fatalf("Pack(3, 999) = %v, %v; want 3999", k, err)
	}
	if _, err := p.Pack(3, 1000); !errors.Is(err, lockkit.ErrInvalid) {
		t.Fatalf("Pack(3, 1000) with base 1000: err = %v, want ErrInvalid", err)
	}
	tb, rec, err := p.Unpack(keyhash.Int64(3999))
	if err != nil || tb != 3 || rec != 999 {
		t.Fatalf("Unpack(3999) = %d, %d, %v", tb, rec, err)
	}
	// Base 2 is the smallest valid base.
	k, err = keyhash.Packer{Base: 2}.Pack(5, 1)
	if err != nil || k.Int64() != 11 {
		t.Fatalf("base 2: Pack(5, 1) = %v, %v; want 11", k, err)
	}
}

func TestPackRefusesCollisions(t *testing.T) {
	for _, c := range []struct {
		name          string
		base          int64
		table, record int64
	}{
		{"record equals base", 0, 1, 1_000_000},
		{"record above base", 0, 0, 1_000_001},
		{"negative table", 0, -1, 5},
		{"negative record", 0, 5, -1},
		{"min int64 table", 0, math.MinInt64, 0},
		{"overflow by table", 0, 9_223_372_036_855, 0},
		{"overflow by record", 0, 9_223_372_036_854, 775_808},
		{"overflow max table", 0, math.MaxInt64, 0},
		{"overflow custom base", 1 << 32, 1 << 31, 0},
		{"base one", 1, 0, 0},
		{"negative base", -10, 1, 1},
		{"min int64 base", math.MinInt64, 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, err := keyhash.Packer{Base: c.base}.Pack(c.table, c.record)
			if !errors.Is(err, lockkit.ErrInvalid) {
				t.Fatalf("Pack(%d, %d) base %d = %v, %v; want ErrInvalid", c.table, c.record, c.base, k, err)
			}
			if k != (keyhash.Key{}) {
				t.Errorf("refused Pack returned a non-zero key %v", k)
			}
		})
	}
	if _, err := keyhash.Record(1, 1_000_000); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("Record(1, 1_000_000) err = %v", err)
	}
}

// TestPackExhaustiveSmallBase packs every pair of a small domain and checks
// that no two pairs share a key and that each key unpacks to its pair.
func TestPackExhaustiveSmallBase(t *testing.T) {
	p := keyhash.Packer{Base: 10}
	seen := map[keyhash.Key][2]int64{}
	for tb := int64(0); tb < 50; tb++ {
		for rec := int64(-2); rec < 13; rec++ {
			k, err := p.Pack(tb, rec)
			if rec < 0 || rec >= 10 {
				if err == nil {
					t.Fatalf("Pack(%d, %d) accepted with base 10: %v", tb, rec, k)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Pack(%d, %d): %v", tb, rec, err)
			}
			if prev, dup := seen[k]; dup {
				t.Fatalf("Pack(%d, %d) = %v collides with %v", tb, rec, k, prev)
			}
			seen[k] = [2]int64{tb, rec}
			gt, gr, err := p.Unpack(k)
			if err != nil || gt != tb || gr != rec {
				t.Fatalf("Unpack(%v) = %d, %d, %v", k, gt, gr, err)
			}
		}
	}
	if len(seen) != 500 {
		t.Fatalf("%d keys, want 500", len(seen))
	}
}

func TestUnpackRefuses(t *testing.T) {
	for _, k := range []keyhash.Key{keyhash.Pair(1, 2), keyhash.Int64(-1), keyhash.Int64(math.MinInt64)} {
		if _, _, err := keyhash.Unpack(k); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("Unpack(%v) err = %v, want ErrInvalid", k, err)
		}
	}
	if _, _, err := (keyhash.Packer{Base: 1}).Unpack(keyhash.Int64(5)); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("Unpack with base 1: err = %v, want ErrInvalid", err)
	}
}

func TestPairRecord(t *testing.T) {
	for _, c := range [][2]int64{{0, 0}, {1, 2}, {math.MaxInt32, math.MinInt32}, {-5, 7}} {
		k, err := keyhash.PairRecord(c[0], c[1])
		if err != nil {
			t.Fatalf("PairRecord(%d, %d): %v", c[0], c[1], err)
		}
		a, b := k.Pair()
		if !k.IsPair() || int64(a) != c[0] || int64(b) != c[1] {
			t.Errorf("PairRecord(%d, %d) = %v", c[0], c[1], k)
		}
		if k != keyhash.Pair(int32(c[0]), int32(c[1])) {
			t.Errorf("PairRecord(%d, %d) != Pair", c[0], c[1])
		}
	}
	for _, c := range [][2]int64{{math.MaxInt32 + 1, 0}, {0, math.MaxInt32 + 1}, {math.MinInt32 - 1, 0}, {0, math.MinInt64}} {
		if k, err := keyhash.PairRecord(c[0], c[1]); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("PairRecord(%d, %d) = %v, %v; want ErrInvalid", c[0], c[1], k, err)
		}
	}
	// The two key spaces stay apart: the pair (0, 7) is not the bigint 7.
	pk, _ := keyhash.PairRecord(0, 7)
	rk, _ := keyhash.Record(0, 7)
	if pk == rk {
		t.Fatal("pair key equals bigint key")
	}
}
