package keyhash

import (
	"math"

	"github.com/lockkit/lockkit/internal/invalid"
)

// DefaultBase is the base [Record] and the zero [Packer] use:
// key = table*1_000_000 + record.
const DefaultBase int64 = 1_000_000

// Packer packs a (table, record) pair of non-negative ids into one bigint key,
// table*Base + record, the form common in applications that lock rows with
// pg_advisory_lock(bigint).
//
// The packing is only collision-free while every record id is below Base, no
// id is negative and the product fits in an int64; Pack refuses anything else
// with an error matching [lockkit.ErrInvalid] instead of returning a key that
// silently equals another pair's key. Every process that shares the locks must
// use the same Base.
//
// The zero Packer uses [DefaultBase]. A Packer is a plain value, safe for
// concurrent use.
type Packer struct {
	// Base is the multiplier of the table id and the exclusive upper bound
	// of record ids. Zero means DefaultBase; other values must be > 1.
	Base int64
}

func (p Packer) base() (int64, error) {
	switch {
	case p.Base == 0:
		return DefaultBase, nil
	case p.Base <= 1:
		return 0, invalid.Errorf("keyhash: packer base %d must be greater than 1 (or 0 for the default %d)", p.Base, DefaultBase)
	}
	return p.Base, nil
}

// Pack returns the bigint key table*Base + record. It returns an error
// matching [lockkit.ErrInvalid] when the base is invalid, either id is
// negative, record >= Base, or the key would overflow int64.
func (p Packer) Pack(table, record int64) (Key, error) {
	base, err := p.base()
	if err != nil {
		return Key{}, err
	}
	if table < 0 || record < 0 {
		return Key{}, invalid.Errorf("keyhash: negative id (table %d, record %d)", table, record)
	}
	if record >= base {
		return Key{}, invalid.Errorf("keyhash: record id %d is not below the packing base %d; it would collide with table %d", record, base, table+record/base)
	}
	// table*base + record <= MaxInt64  <=>  table <= (MaxInt64-record)/base.
	if table > (math.MaxInt64-record)/base {
		return Key{}, invalid.Errorf("keyhash: table id %d * base %d + record %d overflows int64", table, base, record)
	}
	return Int64(table*base + record), nil
}

// Unpack is the inverse of [Packer.Pack]: it returns the table and record ids
// of a packed key. It returns an error matching [lockkit.ErrInvalid] for a
// pair key, a negative key or an invalid base, none of which Pack produces.
func (p Packer) Unpack(k Key) (table, record int64, err error) {
	base, err := p.base()
	if err != nil {
		return 0, 0, err
	}
	if k.IsPair() {
		return 0, 0, invalid.Errorf("keyhash: %s is a pair key, not a packed bigint key", k)
	}
	if k.Int64() < 0 {
		return 0, 0, invalid.Errorf("keyhash: %s is negative, not a packed key", k)
	}
	return k.Int64() / base, k.Int64() % base, nil
}

// Record packs (table, record) with [DefaultBase]: table*1_000_000 + record.
// It is Packer{}.Pack(table, record).
func Record(table, record int64) (Key, error) { return Packer{}.Pack(table, record) }

// Unpack returns the table and record ids of a key made by [Record]. It is
// Packer{}.Unpack(k).
func Unpack(k Key) (table, record int64, err error) { return Packer{}.Unpack(k) }

// PairRecord returns the two-int key (table, record), which PostgreSQL keeps in
// a key space apart from bigint keys: pg_advisory_lock(table, record). Both
// values must fit in int32 (negative values are allowed: the pair form cannot
// collide); otherwise the error matches [lockkit.ErrInvalid].
func PairRecord(table, record int64) (Key, error) {
	if table < math.MinInt32 || table > math.MaxInt32 || record < math.MinInt32 || record > math.MaxInt32 {
		return Key{}, invalid.Errorf("keyhash: pair (%d, %d) does not fit in two int32 values", table, record)
	}
	return Pair(int32(table), int32(record)), nil
}
