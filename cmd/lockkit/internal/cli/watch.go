package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/backoff"
	"github.com/lockkit/lockkit/semaphore"
	"golang.org/x/term"
)

// lockkit status --watch: a live view of the locks, from the backend's
// lockkit.Lister, read again whenever the backend pushes a change (a
// lockkit.Watcher: inotify, an etcd watch, LISTEN/NOTIFY, Redis pub/sub)
// and every --interval as well. Where the backend pushes, the interval is
// a safety net for changes nobody announces (default pushedWatchInterval);
// elsewhere it is the bound on how late a change shows
// (defaultWatchInterval).

const (
	// defaultWatchInterval is how often --watch lists the locks: a change
	// is seen within one interval plus one List round trip.
	defaultWatchInterval = 250 * time.Millisecond
	// pushedWatchInterval is the default --interval where the backend
	// pushes changes: how late a change nobody pushed (an acquire outside
	// elections on PostgreSQL and Redis, an expired lease) shows.
	pushedWatchInterval = 5 * time.Second
	// resubscribeAfter is the least pause between failed subscriptions
	// to the backend's changes; the view polls meanwhile.
	resubscribeAfter = time.Second
	// minWatchInterval is the shortest --interval: each poll is a query
	// on the server, or a flock per lock file.
	minWatchInterval = 10 * time.Millisecond
	// watchLastEvents is how many of the latest changes the terminal view
	// shows under the table.
	watchLastEvents = 5
	// watchTimeLayout is the time of a piped line: RFC 3339 in
	// milliseconds, local time.
	watchTimeLayout = "2006-01-02T15:04:05.000Z07:00"
)

// watchFlags are the flags of lockkit status --watch.
type watchFlags struct {
	on            bool
	interval      time.Duration
	intervalGiven bool
}

func (w *watchFlags) register(fs *flag.FlagSet) {
	w.interval = defaultWatchInterval
	boolVar(fs, &w.on, "watch")
	varFlag(fs, durationValue{&w.interval, &w.intervalGiven}, "interval")
}

// check returns a usage error's message, or "".
func (w *watchFlags) check() string {
	switch {
	case w.intervalGiven && !w.on:
		return "--interval needs --watch"
	case w.interval < minWatchInterval:
		return fmt.Sprintf("--interval must be at least %v", minWatchInterval)
	}
	return ""
}

// watchEvent is one change that lockkit status --watch reports: a line of
// its piped output, a JSON object of its --json output.
type watchEvent struct {
	Time time.Time `json:"time"`
	// Event is "held" or "free" for the state found at the start, then
	// "acquired", "released" or "takeover" (one holder replaced by another
	// between two polls).
	Event string `json:"event"`
	Name  string `json:"name"`
	// Holder is who holds Name after the event (held, acquired, takeover);
	// Previous who held it before (released, takeover). Both are rows of
	// lockkit status --json.
	Holder   *heldLock `json:"holder,omitempty"`
	Previous *heldLock `json:"previous,omitempty"`
	// With --max: the semaphore Name is a slot of, the slot, and the
	// semaphore's permits and how many of them are free after the event.
	Semaphore string `json:"semaphore,omitempty"`
	Slot      *int   `json:"slot,omitempty"`
	Permits   int    `json:"permits,omitempty"`
	Free      *int   `json:"free,omitempty"`
}

// watcher is one lockkit status --watch.
type watcher struct {
	e        *env
	b        *backendURL
	names    []string // the NAMEs; with max, the semaphores' names
	list     []string // the names listed: the NAMEs, or their slots with max
	max      int      // --max N; 0 without
	table    bool
	js       bool
	tty      bool
	interval time.Duration

	be backend
	ls lockkit.Lister

	push      lockkit.Watcher    // nil: the backend does not push
	pushed    <-chan struct{}    // the subscription; nil while none
	unsub     context.CancelFunc // ends the subscription
	subFailed time.Time          // when subscribing last failed
	given     bool               // --interval given

	last   []string // the terminal view's latest changes, oldest first
	frame  string   // the terminal view last drawn
	drawn  bool
	header string
}

// statusWatch is lockkit status --watch: it lists the locks every
// interval and reports each change until a signal or a backend error.
// SIGINT and SIGTERM end it with exit status 0.
func (e *env) statusWatch(ctx context.Context, b *backendURL, w watchFlags, names []string, maxN int, table, js bool) int {
	wt := &watcher{
		e: e, b: b, names: names, list: names, max: maxN, table: table, js: js,
		tty:      !js && e.isTerminal(e.p.Stdout),
		interval: w.interval,
		given:    w.intervalGiven,
	}
	if maxN > 0 {
		wt.list = nil
		for _, name := range names {
			for i := range maxN {
				wt.list = append(wt.list, semaphore.SlotName(name, i))
			}
		}
	}
	wt.header = fmt.Sprintf("lockkit status --watch: %s, every %v (Ctrl-C to stop)", b.display, w.interval)
	ctx, stop := e.interruptible(ctx)
	err := wt.loop(ctx)
	sig := stop()
	wt.unsubscribe()
	if wt.be != nil {
		_ = wt.be.close()
	}
	if sig != nil {
		if sig == syscall.SIGINT || sig == syscall.SIGTERM || sig == os.Interrupt {
			return ExitOK
		}
		return signalExit(sig)
	}
	if err != nil {
		return e.fail(fmt.Errorf("%s: %w", b.display, err), ExitUnavailable)
	}
	return ExitOK
}

// loop lists the locks, reports the changes, and waits for a pushed
// change or the interval, until ctx ends (nil) or an error.
func (w *watcher) loop(ctx context.Context) error {
	var prev []heldLock
	first := true
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	pushed := false // this listing follows a pushed change
	for {
		cur, err := w.poll(ctx)
		for pause := settlePause; err == nil && pushed && pause <= maxSettle && w.unsettled(cur); pause *= 2 {
			// A lock file locked a moment ago whose holder has not
			// written its record yet: look again, rather than
			// report a holder that is about to change.
			if !backoff.Sleep(ctx, pause) {
				return nil
			}
			cur, err = w.poll(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		now := time.Now()
		var events []watchEvent
		if first {
			events = w.initial(cur, now)
		} else {
			events = w.diff(prev, cur, now)
		}
		if err := w.report(cur, events, first); err != nil {
			return err
		}
		prev, first = cur, false
		timer.Reset(w.interval)
		pushed = false
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case _, ok := <-w.pushed:
			timer.Stop()
			if !ok { // the push broke: subscribe again before the next List
				w.unsubscribe()
				break
			}
			// Changes come in bursts (a record cleared, a file
			// closed, another locked): list once they settled.
			pushed = true
			if !backoff.Sleep(ctx, settlePause) {
				return nil
			}
		}
	}
}

// settlePause is how long the view waits after a pushed change before it
// lists, and the first pause before it lists again while a lock file's
// holder has no record yet; the pauses double up to maxSettle.
const (
	settlePause = 5 * time.Millisecond
	maxSettle   = 160 * time.Millisecond
)

// unsettled reports whether cur has a lock file held exclusively whose
// holder wrote no record (yet).
func (w *watcher) unsettled(cur []heldLock) bool {
	if w.b.kind != kindFile {
		return false
	}
	for _, l := range cur {
		if l.Held && l.Mode != "shared" && l.PID == 0 {
			return true
		}
	}
	return false
}

// subscribe subscribes to the backend's changes of the listed names when
// it pushes and the view is not subscribed, before a List, so that no
// change after that List goes unseen. Where the backend pushes, the poll
// slows to pushedWatchInterval unless --interval was given.
func (w *watcher) subscribe(ctx context.Context) {
	if w.push == nil || w.pushed != nil || time.Since(w.subFailed) < resubscribeAfter {
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	ch, err := w.push.Changes(sctx, w.list...)
	switch {
	case errors.Is(err, lockkit.ErrUnsupported):
		cancel()
		w.push = nil // this backend, in this setup, cannot push
		return
	case err != nil:
		cancel()
		w.subFailed = time.Now()
		return
	}
	w.pushed, w.unsub = ch, cancel
	if !w.given {
		w.interval = pushedWatchInterval
	}
	w.header = fmt.Sprintf("lockkit status --watch: %s, changes pushed, a poll every %v (Ctrl-C to stop)", w.b.display, w.interval)
}

// unsubscribe ends the subscription, if any, and waits for its end.
func (w *watcher) unsubscribe() {
	if w.pushed == nil {
		return
	}
	w.unsub()
	for range w.pushed {
	}
	w.pushed, w.unsub = nil, nil
}

// poll lists the locks once. The file backend's directory is not created
// by watching it: until it exists, every lock is free.
func (w *watcher) poll(ctx context.Context) ([]heldLock, error) {
	if w.ls == nil {
		if w.b.kind == kindFile {
			if _, err := os.Stat(w.b.dir); errors.Is(err, fs.ErrNotExist) {
				var out []heldLock
				for _, n := range w.list {
					out = append(out, heldLock{Name: n})
				}
				return out, nil
			}
		}
		be, err := w.e.openBackend(ctx, w.b)
		if err != nil {
			return nil, err
		}
		w.be = be
		ls, err := be.lister(w.table)
		if err != nil {
			return nil, err
		}
		w.ls = ls
		w.push, _ = ls.(lockkit.Watcher)
	}
	w.subscribe(ctx)
	infos, err := w.ls.List(ctx, w.list...)
	if err != nil {
		if len(w.list) == 0 && errors.Is(err, lockkit.ErrUnsupported) {
			return nil, errors.New(err.Error() + " (lockkit status --watch NAME...)")
		}
		return nil, err
	}
	locks := make([]heldLock, len(infos))
	for i, li := range infos {
		if len(w.list) == 0 {
			li.Name = slotOfRun(w.ls, li)
		}
		locks[i] = heldOf(li, w.b.kind, w.table)
	}
	return locks, nil
}

// identity is what tells one holding of a lock from another: everything
// List reports of the holder but its lease's expiry, which renewals move
// (and which Redis reports as the caller's clock plus the lease left), and
// on PostgreSQL advisory locks its "since", which is when the session last
// changed state.
func (w *watcher) identity(l heldLock) string {
	l.Expires = nil
	if w.b.kind == kindPostgres && !w.table {
		l.Since = nil
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// initial reports the state found at the start: each held lock, and with
// NAMEs each free one.
func (w *watcher) initial(cur []heldLock, now time.Time) []watchEvent {
	var out []watchEvent
	for i := range cur {
		l := cur[i]
		if l.Held {
			out = append(out, w.event(now, "held", l.Name, &l, nil, cur))
		} else if w.max == 0 {
			out = append(out, w.event(now, "free", l.Name, nil, nil, cur))
		}
	}
	if w.max > 0 {
		// A semaphore with no permit held is one "free" line, not N.
		for _, name := range w.names {
			if w.free(name, cur) == w.max {
				ev := w.event(now, "free", name, nil, nil, cur)
				ev.Semaphore, ev.Permits, ev.Free = name, w.max, intPtr(w.max)
				out = append(out, ev)
			}
		}
	}
	return out
}

// diff reports what changed from prev to cur, name by name in the order of
// cur (then the names gone from the listing): the holdings that ended as
// "released", the new ones as "acquired", and one ended and one begun on
// the same name as "takeover".
func (w *watcher) diff(prev, cur []heldLock, now time.Time) []watchEvent {
	type holdings struct{ prev, cur []heldLock }
	by := map[string]*holdings{}
	var order []string
	add := func(l heldLock, isCur bool) {
		if !l.Held {
			return
		}
		h := by[l.Name]
		if h == nil {
			h = &holdings{}
			by[l.Name] = h
			order = append(order, l.Name)
		}
		if isCur {
			h.cur = append(h.cur, l)
		} else {
			h.prev = append(h.prev, l)
		}
	}
	for _, l := range cur {
		add(l, true)
	}
	for _, l := range prev {
		add(l, false)
	}
	var out []watchEvent
	for _, name := range order {
		h := by[name]
		gone, begun := w.minus(h.prev, h.cur), w.minus(h.cur, h.prev)
		if len(gone) == 1 && len(begun) == 1 {
			out = append(out, w.event(now, "takeover", name, &begun[0], &gone[0], cur))
			continue
		}
		for i := range gone {
			out = append(out, w.event(now, "released", name, nil, &gone[i], cur))
		}
		for i := range begun {
			out = append(out, w.event(now, "acquired", name, &begun[i], nil, cur))
		}
	}
	return out
}

// minus returns the holdings of a that b does not have, counted as a
// multiset of identities.
func (w *watcher) minus(a, b []heldLock) []heldLock {
	left := map[string]int{}
	for _, l := range b {
		left[w.identity(l)]++
	}
	var out []heldLock
	for _, l := range a {
		id := w.identity(l)
		if left[id] > 0 {
			left[id]--
			continue
		}
		out = append(out, l)
	}
	return out
}

// event makes an event, with the semaphore's permits after it with --max.
func (w *watcher) event(now time.Time, kind, name string, holder, previous *heldLock, cur []heldLock) watchEvent {
	ev := watchEvent{Time: now, Event: kind, Name: name, Holder: holder, Previous: previous}
	if w.max > 0 {
		if base, slot, ok := semaphore.ParseSlotName(name); ok {
			ev.Semaphore, ev.Slot, ev.Permits = base, intPtr(slot), w.max
			ev.Free = intPtr(w.free(base, cur))
		}
	}
	return ev
}

// free counts the permits of the semaphore name that nobody holds in cur.
func (w *watcher) free(name string, cur []heldLock) int {
	held := map[string]bool{}
	for _, l := range cur {
		if base, _, ok := semaphore.ParseSlotName(l.Name); ok && base == name && l.Held {
			held[l.Name] = true
		}
	}
	return w.max - len(held)
}

func intPtr(n int) *int { return &n }

// report writes the events: one JSON object or one line each, or on a
// terminal the view redrawn in place when it changed.
func (w *watcher) report(cur []heldLock, events []watchEvent, first bool) error {
	out := w.e.stdout
	switch {
	case w.js:
		enc := json.NewEncoder(out)
		for _, ev := range events {
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
		return nil
	case !w.tty:
		for _, ev := range events {
			if _, err := fmt.Fprintln(out, ev.line(watchTimeLayout)); err != nil {
				return err
			}
		}
		return nil
	}
	if !first {
		for _, ev := range events {
			w.last = append(w.last, ev.line(time.TimeOnly))
		}
		if n := len(w.last); n > watchLastEvents {
			w.last = slices.Clone(w.last[n-watchLastEvents:])
		}
	}
	frame := w.render(cur)
	if w.drawn && frame == w.frame {
		return nil
	}
	w.frame, w.drawn = frame, true
	width, height := w.size()
	// Home, clear the screen, draw the frame cut to the terminal's size.
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	lines := strings.Split(strings.TrimSuffix(frame, "\n"), "\n")
	if height > 1 && len(lines) > height-1 {
		more := len(lines) - (height - 2)
		lines = append(lines[:height-2], fmt.Sprintf("(%d more lines; make the terminal taller)", more))
	}
	for _, l := range lines {
		b.WriteString(cut(l, width))
		b.WriteString("\n")
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// size is the terminal's size, or 0, 0 when unknown.
func (w *watcher) size() (width, height int) {
	f, ok := w.e.p.Stdout.(*os.File)
	if !ok {
		return 0, 0
	}
	width, height, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0, 0
	}
	return width, height
}

// cut shortens s to width characters (0: no limit).
func cut(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width])
}

// render is the terminal view: who holds each lock, since when, with the
// token (an election's term) and the holder's data (an election leader's
// value); with --max the permits of each semaphore; and the latest changes.
func (w *watcher) render(cur []heldLock) string {
	var b strings.Builder
	b.WriteString(w.header + "\n\n")
	var rows []string
	for _, l := range cur {
		if w.max > 0 && !l.Held {
			continue // a free slot: counted below
		}
		name, holder, since, token, data := l.Name, "(free)", "-", "-", "-"
		if l.Mode == "shared" {
			name += " (shared)"
		}
		if l.Held {
			holder = holderText(l)
		}
		if l.Since != nil {
			since = l.Since.Local().Format(time.DateTime)
		}
		if l.Token != 0 {
			token = strconv.FormatInt(l.Token, 10)
		}
		if l.Data != "" {
			data = l.Data
		}
		rows = append(rows, name+"\t"+holder+"\t"+since+"\t"+token+"\t"+data)
	}
	switch {
	case len(rows) > 0:
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tHOLDER\tSINCE\tTOKEN/TERM\tDATA/VALUE")
		for _, r := range rows {
			fmt.Fprintln(tw, r)
		}
		tw.Flush()
	case w.max > 0:
		b.WriteString("no permits held\n")
	default:
		b.WriteString("no locks held\n")
	}
	if w.max > 0 {
		b.WriteString("\n")
		for _, name := range w.names {
			free := w.free(name, cur)
			fmt.Fprintf(&b, "%s: %d of %d permits held, %d free\n", name, w.max-free, w.max, free)
		}
	}
	if len(w.last) > 0 {
		b.WriteString("\nlatest changes:\n")
		for _, l := range w.last {
			b.WriteString("  " + l + "\n")
		}
	}
	return b.String()
}

// holderText is who holds l without its data, which the view shows apart.
func holderText(l heldLock) string {
	l.Data = ""
	if h := l.holder(); h != "" {
		return h
	}
	return "unknown holder"
}

// line is the event as one line of text, its time in layout:
//
//	2026-01-02T10:02:11.250+01:00 acquired nightly by alice on web-3 (pid 4121), token 17, data "10.0.0.7:8080"
//	2026-01-02T10:02:14.500+01:00 released nightly, held by alice on web-3 (pid 4121), token 17
//	2026-01-02T10:02:15.000+01:00 takeover nightly by bob (pid 5), token 18, from alice on web-3 (pid 4121), token 17
func (ev watchEvent) line(layout string) string {
	var b strings.Builder
	b.WriteString(ev.Time.Local().Format(layout))
	b.WriteString(" " + ev.Event + " " + ev.Name)
	lk := ev.Holder
	if lk == nil {
		lk = ev.Previous
	}
	if lk != nil && lk.Mode == "shared" {
		b.WriteString(" (shared)")
	}
	switch ev.Event {
	case "released":
		b.WriteString(", held by " + holdingText(*ev.Previous))
	case "takeover":
		b.WriteString(" by " + holdingText(*ev.Holder) + ", from " + holdingText(*ev.Previous))
	case "held", "acquired":
		b.WriteString(" by " + holdingText(*ev.Holder))
	}
	if ev.Free != nil {
		fmt.Fprintf(&b, "; %s: %d of %d permits held, %d free", ev.Semaphore, ev.Permits-*ev.Free, ev.Permits, *ev.Free)
	}
	return b.String()
}

// holdingText is a holder with its token and data: "alice (pid 5), token
// 17, data "x"".
func holdingText(l heldLock) string {
	s := holderText(l)
	if l.Token != 0 {
		s += ", token " + strconv.FormatInt(l.Token, 10)
	}
	if l.Data != "" {
		s += ", data " + strconv.Quote(l.Data)
	}
	return s
}
