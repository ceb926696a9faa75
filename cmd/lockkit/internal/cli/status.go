package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
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
	)
	fs := newFlagSet("status")
	stringVar(fs, &backendFlag, "b", "backend")
	boolVar(fs, &table, "table")
	boolVar(fs, &js, "json")
	names, code, done := e.parseAll(fs, statusUsage, args)
	if done {
		return code
	}
	for _, n := range names {
		if n == "" {
			return e.usageErr(statusUsage, "empty lock name")
		}
	}
	b, err := e.resolveBackend(backendFlag, fsHas(fs, "b", "backend"))
	if err != nil {
		return e.fail(err, ExitNotAcquired)
	}
	if table && b.kind != kindPostgres && b.kind != kindMySQL {
		return e.usageErr(statusUsage, "--table needs a postgres:// or mysql:// backend, not %s", b.display)
	}

	ctx, stop := e.interruptible(ctx)
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
		locks[i] = heldOf(li, b.kind, table)
	}
	return locks, nil
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
// and TOKEN columns.
func writeTable(w io.Writer, locks []heldLock, leases bool) {
	if len(locks) == 0 {
		fmt.Fprintln(w, "no locks held")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "NAME\tHOLDER\tSINCE"
	if leases {
		header += "\tEXPIRES\tTOKEN"
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
