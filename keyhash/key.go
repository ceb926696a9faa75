package keyhash

import (
	"cmp"
	"strconv"
)

// Key is a PostgreSQL advisory lock key in one of the server's two key
// spaces: a single bigint, or a pair of int4 values. The spaces never
// collide: pg_advisory_lock(1) and pg_advisory_lock(0, 1) are different
// locks. In pg_locks a bigint key shows as classid = high 32 bits, objid =
// low 32 bits, objsubid = 1; a pair as classid = first, objid = second,
// objsubid = 2.
//
// The zero Key is the bigint key 0.
type Key struct {
	pair bool
	v    int64 // the bigint key; for a pair, first<<32 | uint32(second)
}

// Int64 returns the bigint key v.
func Int64(v int64) Key { return Key{v: v} }

// Pair returns the two-int key (first, second).
func Pair(first, second int32) Key {
	return Key{pair: true, v: int64(first)<<32 | int64(uint32(second))}
}

// IsPair reports whether k is a two-int key.
func (k Key) IsPair() bool { return k.pair }

// Int64 returns the bigint value of a bigint key. For a pair key it returns
// the two halves packed as first<<32 | second, which is not the same lock.
func (k Key) Int64() int64 { return k.v }

// Pair returns the two halves of the key. For a bigint key they are the high
// and low 32 bits, as pg_locks shows them in classid and objid.
func (k Key) Pair() (first, second int32) { return int32(k.v >> 32), int32(uint32(k.v)) }

// String renders a bigint key as "42" and a pair as "(1,2)".
func (k Key) String() string {
	if !k.pair {
		return strconv.FormatInt(k.v, 10)
	}
	a, b := k.Pair()
	return "(" + strconv.FormatInt(int64(a), 10) + "," + strconv.FormatInt(int64(b), 10) + ")"
}

// Compare orders keys: bigint keys before pairs, then by value. Taking
// several locks in this order in every caller prevents them from deadlocking
// one another.
func Compare(a, b Key) int {
	if a.pair != b.pair {
		if !a.pair {
			return -1
		}
		return 1
	}
	return cmp.Compare(a.v, b.v)
}
