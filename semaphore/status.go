package semaphore

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/lockkit/lockkit"
)

// Status is a semaphore's permits as a lockkit.Lister found them.
type Status struct {
	// Name is the semaphore's name.
	Name string
	// Permits is the number of permits Status was asked about.
	Permits int
	// Free is how many of them nobody holds.
	Free int
	// Holders are the held permits, by slot.
	Holders []PermitHolder
}

// PermitHolder is one held permit.
type PermitHolder struct {
	// Slot is the permit's slot; its lock is SlotName(name, Slot).
	Slot int
	// Permits is the number of permits the holder acquired the semaphore
	// with, as its holder data records it; 0 where the backend keeps no
	// per-acquire data (advisory, mysqllock) or the slot's lock was not
	// taken through a Semaphore.
	Permits int
	// Key is where the backend keeps the slot's lock: the advisory key,
	// the Redis key, the lock file's path.
	Key string
	// Holder is who holds the permit, as far as the backend knows; its
	// Token is the permit's token.
	Holder lockkit.Holder
}

// Status reports who holds the n permits of the semaphore name, and how
// many are free, from one List of the slots' locks. It needs a Locker that
// implements lockkit.Lister; another gives an error matching
// lockkit.ErrUnsupported. The answer is stale as soon as it is returned.
// A holder that acquired the semaphore with another number of permits is
// listed with it, in PermitHolder.Permits, when it holds one of the n
// slots; Status does not fail for it.
func (s *Semaphore) Status(ctx context.Context, name string, n int) (Status, error) {
	if err := check(name, n); err != nil {
		return Status{}, err
	}
	if s.lister == nil {
		return Status{}, fmt.Errorf("semaphore: %T cannot list lock holders (it is no lockkit.Lister): %w", s.locker, lockkit.ErrUnsupported)
	}
	infos, err := s.lister.List(ctx, slotNames(name, n)...)
	if err != nil {
		return Status{}, fmt.Errorf("semaphore: status of %q: %w", name, err)
	}
	return StatusOf(name, n, infos), nil
}

// StatusOf makes the Status of the n permits of the semaphore name from a
// listing of locks, such as a lockkit.Lister's List of the slots' names.
// Entries that are not held or are not slots of name below n are left
// out; a slot listed several times (shared holders) counts once.
func StatusOf(name string, n int, infos []lockkit.LockInfo) Status {
	st := Status{Name: name, Permits: n, Free: n}
	seen := make(map[int]bool)
	for _, in := range infos {
		if !in.Held {
			continue
		}
		base, slot, ok := ParseSlotName(in.Name)
		if !ok || base != name || slot >= n {
			continue
		}
		if !seen[slot] {
			seen[slot] = true
			st.Free--
		}
		other, _ := PermitsOf(in.Holder.Data)
		st.Holders = append(st.Holders, PermitHolder{Slot: slot, Permits: other, Key: in.Key, Holder: in.Holder})
	}
	slices.SortStableFunc(st.Holders, func(a, b PermitHolder) int { return cmp.Compare(a.Slot, b.Slot) })
	return st
}
