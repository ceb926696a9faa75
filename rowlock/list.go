package rowlock

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/lockkit/lockkit"
)

var _ lockkit.Lister = (*Locker)(nil)

// List implements [lockkit.Lister] from the lock table: every live lease
// (one whose expiry, by the database clock, is still ahead), whoever took
// it. Without names it returns every live lease, ordered by name; with
// names, an entry per name in the order given, Held false for a name
// without a live lease. A lease is exclusive (Mode lockkit.Exclusive) and
// has no Key beyond its name. Holder has what the holder stored — owner,
// host, pid, data — with the lease's start (Since), end (Expires) and
// fencing token, as the database recorded them. Leases expired but not yet
// cleaned up are not listed. A bad name returns an error matching
// lockkit.ErrInvalid before any I/O.
func (l *Locker) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	if len(names) == 0 {
		return l.listAll(ctx)
	}
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, err
		}
	}
	out := make([]lockkit.LockInfo, len(names))
	for i, n := range names {
		out[i] = lockkit.LockInfo{Name: n}
		h, err := l.holder(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("rowlock: list: %w", noTable(err))
		}
		if h != nil && h.remaining > 0 {
			out[i].Held, out[i].Holder = true, h.Holder
		}
	}
	return out, nil
}

// listAll reads every live lease.
func (l *Locker) listAll(ctx context.Context) ([]lockkit.LockInfo, error) {
	rows, err := l.db.QueryContext(ctx, l.q.list)
	if err != nil {
		return nil, fmt.Errorf("rowlock: list: %w", noTable(err))
	}
	defer rows.Close()
	var out []lockkit.LockInfo
	for rows.Next() {
		var name string
		h, err := scanHolder(rows, &name)
		if err != nil {
			return nil, fmt.Errorf("rowlock: list: %w", noTable(err))
		}
		out = append(out, lockkit.LockInfo{Name: name, Held: true, Holder: h.Holder})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rowlock: list: %w", noTable(err))
	}
	// The table orders by its collation; the contract is byte order.
	slices.SortStableFunc(out, func(a, b lockkit.LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
