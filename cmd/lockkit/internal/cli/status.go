package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/filelock"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/semaphore"
)

// heldLock is one row of lockkit status: a lock and one of its holders.
type heldLock struct {
	Name    string     `json:"name"`
	Held    bool       `json:"held"`
	Mode    string     `json:"mode,omitempty"` // "exclusive" or "shared", where known
	Key     string     `json:"key,omitempty"`  // the PostgreSQL advisory key
	Scheme  string     `json:"scheme,omitempty"`
	Owner   string     `json:"owner,omitempty"`
	Host    string     `json:"host,omitempty"`
	PID     int        `json:"pid,omitempty"`
	App     string     `json:"app,omitempty"`
	Data    string     `json:"data,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	Token   int64      `json:"token,omitempty"`
	File    string     `json:"file,omitempty"` // the lock file, for file locks
}

// status is lockkit status.
func (e *env) status(ctx context.Context, args []string) int {
	var (
		backendFlag string
		table, js   bool
		maxN        int
		maxGiven    bool
		watch       watchFlags
	)
	fs := newFlagSet("status")
	watch.register(fs)
	stringVar(fs, &backendFlag, "b", "backend")
	boolVar(fs, &table, "table")
	boolVar(fs, &js, "json")
	varFlag(fs, intValue{&maxN, &maxGiven}, "max")
	names, code, done := e.parseAll(fs, statusUsage, args)
	if done {
		return code
	}
	for _, n := range names {
		if n == "" {
			return e.usageErr(statusUsage, "empty lock name")
		}
	}
	switch {
	case maxGiven && (maxN < 1 || maxN > semaphore.MaxPermits):
		return e.usageErr(statusUsage, "--max must be 1 to %d", semaphore.MaxPermits)
	case maxGiven && len(names) == 0:
		return e.usageErr(statusUsage, "--max needs the NAMEs of the semaphores")
	}
	if msg := watch.check(); msg != "" {
		return e.usageErr(statusUsage, "%s", msg)
	}
	b, err := e.resolveBackend(backendFlag, fsHas(fs, "b", "backend"))
	if err != nil {
		return e.fail(err, ExitNotAcquired)
	}
	if table && b.kind != kindPostgres && b.kind != kindMySQL {
		return e.usageErr(statusUsage, "--table needs a postgres:// or mysql:// backend, not %s", b.display)
	}
	if watch.on {
		return e.statusWatch(ctx, b, watch, names, maxN, table, js)
	}

	ctx, stop := e.interruptible(ctx)
	if maxGiven {
		return e.statusPermits(ctx, stop, b, names, maxN, table, js)
	}
	locks, err := e.listLocks(ctx, b, names, table)
	if sig := stop(); sig != nil {
		return signalExit(sig)
	}
	if err != nil {
		return e.fail(fmt.Errorf("%s: %w", b.display, err), ExitNotAcquired)
	}
	if js {
		if locks == nil {
			locks = []heldLock{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(locks); err != nil {
			e.errorf("%v", err)
			return ExitUnavailable
		}
	} else {
		writeTable(e.stdout, locks, table || b.kind == kindRedis || b.kind == kindEtcd)
	}
	for _, l := range locks {
		if !l.Held {
			return 1
		}
	}
	return ExitOK
}

// listLocks asks the backend's Lister about names (all held locks without
// names) and formats its answer.
func (e *env) listLocks(ctx context.Context, b *backendURL, names []string, table bool) ([]heldLock, error) {
	if b.kind == kindFile {
		if _, err := os.Stat(b.dir); errors.Is(err, fs.ErrNotExist) {
			// No directory: nothing was ever locked there. Opening the
			// backend would create it.
			var out []heldLock
			for _, n := range names {
				if _, err := filelock.FileName(n); err != nil {
					return nil, err
				}
				out = append(out, heldLock{Name: n})
			}
			return out, nil
		}
	}
	be, err := e.openBackend(ctx, b)
	if err != nil {
		return nil, err
	}
	defer be.close()
	ls, err := be.lister(table)
	if err != nil {
		return nil, err
	}
	infos, err := ls.List(ctx, names...)
	if err != nil {
		if len(names) == 0 && errors.Is(err, lockkit.ErrUnsupported) {
			// The server cannot list (MySQL without performance_schema):
			// not a usage error, and named locks can still be checked.
			return nil, errors.New(err.Error() + " (lockkit status NAME...)")
		}
		return nil, err
	}
	locks := make([]heldLock, len(infos))
	for i, li := range infos {
		if len(names) == 0 {
			li.Name = slotOfRun(ls, li)
		}
		locks[i] = heldOf(li, b.kind, table)
	}
	return locks, nil
}

// slotOfRun names the advisory key of a permit of lockkit run --max: the
// session of `lockkit run --max N NAME` is named "lockkit run NAME"
// (advisory.RunAppPrefix), by which the advisory Lister names NAME's own
// key but not the keys of its slots, NAME#0 to NAME#N-1. Other locks keep
// their names.
func slotOfRun(ls lockkit.Lister, li lockkit.LockInfo) string {
	keyer, ok := ls.(interface {
		Key(name string) (keyhash.Key, error)
	})
	name, isRun := strings.CutPrefix(li.Holder.App, advisory.RunAppPrefix)
	if !ok || !isRun || name == "" || li.Name != "key "+li.Key {
		return li.Name
	}
	for i := range semaphore.MaxPermits {
		slot := semaphore.SlotName(name, i)
		if k, err := keyer.Key(slot); err == nil && k.String() == li.Key {
			return slot
		}
	}
	return li.Name
}

// heldOf is the status row of a lock as the backend's List reported it.
// Key is shown as the advisory "key" on PostgreSQL and as the "file" of a
// file lock (also when free); file locks show no mode.
func heldOf(li lockkit.LockInfo, kind string, table bool) heldLock {
	h := heldLock{Name: li.Name, Held: li.Held}
	if kind == kindFile {
		h.File = li.Key
	}
	if !li.Held {
		return h
	}
	if kind != kindFile {
		h.Mode = li.Mode.String()
	}
	if (kind == kindPostgres && !table) || kind == kindEtcd {
		h.Key = li.Key
	}
	hd := li.Holder
	h.Scheme = li.Tool
	h.Owner, h.Host, h.PID, h.App, h.Data, h.Token = hd.Owner, hd.Host, hd.PID, hd.App, hd.Data, hd.Token
	h.Since, h.Expires = timePtr(hd.Since), timePtr(hd.Expires)
	return h
}

// writeTable prints locks as an aligned table. leases adds the EXPIRES
// and TOKEN columns; a holder with a token without leases (an election's
// lock file) adds TOKEN alone.
func writeTable(w io.Writer, locks []heldLock, leases bool) {
	if len(locks) == 0 {
		fmt.Fprintln(w, "no locks held")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "NAME\tHOLDER\tSINCE"
	tokens := !leases && slices.ContainsFunc(locks, func(l heldLock) bool { return l.Token != 0 })
	switch {
	case leases:
		header += "\tEXPIRES\tTOKEN"
	case tokens:
		header += "\tTOKEN"
	}
	fmt.Fprintln(tw, header)
	for _, l := range locks {
		name := l.Name
		if l.Mode == "shared" {
			name += " (shared)"
		}
		holder, since := "-", "-"
		if !l.Held {
			holder = "(free)"
		} else if h := l.holder(); h != "" {
			holder = h
		}
		if l.Since != nil {
			since = l.Since.Local().Format(time.DateTime)
		}
		line := name + "\t" + holder + "\t" + since
		if leases {
			expires, token := "-", "-"
			if l.Expires != nil {
				expires = l.Expires.Local().Format("15:04:05.000")
			}
			if l.Token != 0 {
				token = strconv.FormatInt(l.Token, 10)
			}
			line += "\t" + expires + "\t" + token
		} else if tokens {
			token := "-"
			if l.Token != 0 {
				token = strconv.FormatInt(l.Token, 10)
			}
			line += "\t" + token
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// holder renders who holds l: "alice [data] on web-3 (pid 4121, app x)".
func (l heldLock) holder() string {
	var b strings.Builder
	switch {
	case l.Owner != "":
		b.WriteString(l.Owner)
	case l.App != "":
		b.WriteString(l.App)
	}
	if l.Data != "" {
		fmt.Fprintf(&b, " [%s]", l.Data)
	}
	if l.Host != "" {
		fmt.Fprintf(&b, " on %s", l.Host)
	}
	var paren []string
	if l.PID != 0 {
		paren = append(paren, "pid "+strconv.Itoa(l.PID))
	}
	if l.App != "" && l.Owner != "" {
		paren = append(paren, l.App)
	}
	if l.Scheme != "" {
		paren = append(paren, l.Scheme)
	}
	if len(paren) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(paren, ", "))
	}
	return strings.TrimSpace(b.String())
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// permitStatus is what lockkit status --max reports of one semaphore.
type permitStatus struct {
	Name    string     `json:"name"`
	Permits int        `json:"permits"`
	Free    int        `json:"free"`
	Holders []heldLock `json:"holders"`
}

// statusPermits is lockkit status --max N NAME...: the holders of the
// permits of each NAME, and how many are free, from one listing of their
// slots' locks. It exits 1 when a NAME has no permit held.
func (e *env) statusPermits(ctx context.Context, stop func() os.Signal, b *backendURL, names []string, n int, table, js bool) int {
	var slots []string
	for _, name := range names {
		for i := range n {
			slots = append(slots, semaphore.SlotName(name, i))
		}
	}
	locks, err := e.listLocks(ctx, b, slots, table)
	if sig := stop(); sig != nil {
		return signalExit(sig)
	}
	if err != nil {
		return e.fail(fmt.Errorf("%s: %w", b.display, err), ExitNotAcquired)
	}
	out := make([]permitStatus, len(names))
	for i, name := range names {
		out[i] = permitStatus{Name: name, Permits: n, Free: n, Holders: []heldLock{}}
		seen := make(map[string]bool)
		for _, l := range locks {
			if base, _, ok := semaphore.ParseSlotName(l.Name); !ok || base != name || !l.Held {
				continue
			}
			if !seen[l.Name] {
				seen[l.Name] = true
				out[i].Free--
			}
			out[i].Holders = append(out[i].Holders, l)
		}
	}
	if js {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			e.errorf("%v", err)
			return ExitUnavailable
		}
	} else {
		var held []heldLock
		for _, ps := range out {
			held = append(held, ps.Holders...)
		}
		if len(held) > 0 {
			writeTable(e.stdout, held, table || b.kind == kindRedis || b.kind == kindEtcd)
		}
		for _, ps := range out {
			fmt.Fprintf(e.stdout, "%s: %d of %d permits held, %d free%s\n", ps.Name, n-ps.Free, n, ps.Free, otherMax(ps.Holders, n))
		}
	}
	for _, ps := range out {
		if ps.Free == n {
			return 1
		}
	}
	return ExitOK
}

// otherMax notes holders that recorded another number of permits than n.
func otherMax(holders []heldLock, n int) string {
	var others []string
	for _, h := range holders {
		if m, ok := semaphore.PermitsOf(h.Data); ok && m != n {
			_, slot, _ := semaphore.ParseSlotName(h.Name)
			others = append(others, fmt.Sprintf("slot %d by a run of --max %d", slot, m))
		}
	}
	if len(others) == 0 {
		return ""
	}
	return " (" + strings.Join(others, ", ") + ")"
}
