package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit/election"
	"github.com/lockkit/lockkit/filelock"
	"github.com/lockkit/lockkit/semaphore"
)

// nextLine reads a line of the watch's output, failing after 20 seconds.
func nextLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		l, _ := r.ReadString('\n')
		ch <- l
	}()
	select {
	case l := <-ch:
		if l == "" {
			t.Fatal("the watch's output ended")
		}
		return strings.TrimSuffix(l, "\n")
	case <-time.After(20 * time.Second):
		t.Fatal("no line from the watch after 20s")
	}
	return ""
}

// wantLine reads a line and checks it against the regular expression re,
// after the line's time.
func wantLine(t *testing.T, r *bufio.Reader, re string) []string {
	t.Helper()
	l := nextLine(t, r)
	m := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) ` + re + `$`).FindStringSubmatch(l)
	if m == nil {
		t.Fatalf("line %q does not match %q", l, re)
	}
	return m
}

// fencedElector is an Elector on the file locks of dir, with terms.
func fencedElector(t *testing.T, dir string) *election.Elector {
	t.Helper()
	l, err := filelock.New(dir, &filelock.Config{Fencing: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	e, err := election.New(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestWatchPipedElection watches an election on files: its leader's term
// and value, a resignation, and a leader replaced between two listings.
func TestWatchPipedElection(t *testing.T) {
	url, dir := fileURL(t)
	holdFile(t, dir, "plain")
	sigs, out, wait := startSignalled(t, "status", "--watch", "--interval", "700ms", "-b", url, "scheduler", "plain")
	wantLine(t, out, `free scheduler`)
	wantLine(t, out, `held plain by \S+ on \S+ \(pid `+strconv.Itoa(os.Getpid())+`, .*\)`)

	ctx := context.Background()
	a, b := fencedElector(t, dir), fencedElector(t, dir)
	la, err := a.Campaign(ctx, "scheduler", "10.0.0.7:8080")
	if err != nil {
		t.Fatal(err)
	}
	m := wantLine(t, out, `acquired scheduler by .*\(pid \d+, .*\), token (\d+), data "10\.0\.0\.7:8080"`)
	if m[2] != strconv.FormatInt(la.Term(), 10) {
		t.Errorf("token %s, want the term %d", m[2], la.Term())
	}
	// Resign and let b lead at once: a takeover when both fall between
	// two listings, else (the resignation pushed and listed first) a
	// release and an acquire.
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	lb, err := b.Campaign(ctx, "scheduler", "10.0.0.8:8080")
	if err != nil {
		t.Fatal(err)
	}
	from := fmt.Sprintf(`.*, token %d, data "10\.0\.0\.7:8080"`, la.Term())
	to := fmt.Sprintf(`.*, token %d, data "10\.0\.0\.8:8080"`, lb.Term())
	m = wantLine(t, out, `(takeover scheduler by `+to+`, from `+from+`|released scheduler, held by `+from+`)`)
	if strings.Contains(m[0], " released ") {
		wantLine(t, out, `acquired scheduler by `+to)
	}
	if err := lb.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	wantLine(t, out, fmt.Sprintf(`released scheduler, held by .*, token %d, data "10\.0\.0\.8:8080"`, lb.Term()))

	sigs <- syscall.SIGTERM
	if r := wait(); r.code != 0 || r.stderr != "" {
		t.Fatalf("after SIGTERM: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestWatchJSONMax watches a semaphore's permits as JSON lines.
func TestWatchJSONMax(t *testing.T) {
	url, dir := fileURL(t)
	sigs, out, wait := startSignalled(t, "status", "-b", url, "--watch", "--json", "--max", "2", "export")
	read := func() watchEvent {
		t.Helper()
		l := nextLine(t, out)
		var ev watchEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%v: %q", err, l)
		}
		if ev.Time.IsZero() {
			t.Errorf("no time: %q", l)
		}
		return ev
	}
	if ev := read(); ev.Event != "free" || ev.Name != "export" || ev.Semaphore != "export" || ev.Permits != 2 || ev.Free == nil || *ev.Free != 2 {
		t.Fatalf("first event %+v", ev)
	}
	l, err := filelock.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := semaphore.New(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := s.Acquire(ctx, "export", 2)
	if err != nil {
		t.Fatal(err)
	}
	ev := read()
	if ev.Event != "acquired" || ev.Name != semaphore.SlotName("export", p.Slot()) || ev.Slot == nil || *ev.Slot != p.Slot() ||
		*ev.Free != 1 || ev.Holder == nil || ev.Holder.PID != os.Getpid() || ev.Previous != nil {
		t.Fatalf("acquire: %+v", ev)
	}
	if err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	ev = read()
	if ev.Event != "released" || *ev.Free != 2 || ev.Holder != nil || ev.Previous == nil || ev.Previous.PID != os.Getpid() {
		t.Fatalf("release: %+v", ev)
	}
	sigs <- syscall.SIGINT
	if r := wait(); r.code != 0 {
		t.Fatalf("after SIGINT: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestWatchPushed: on files, the watch lists again when inotify reports a
// change, so with a 10 s poll an acquire and a release still show within
// 3 s, far from the next poll (unloaded, within a few ms; the bound leaves
// room for a CI machine busy with the rest of the suite).
func TestWatchPushed(t *testing.T) {
	url, dir := fileURL(t)
	sigs, out, wait := startSignalled(t, "status", "--watch", "--interval", "10s", "-b", url, "job")
	wantLine(t, out, `free job`)
	l, err := filelock.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const bound = 3 * time.Second
	start := time.Now()
	lk, err := l.TryAcquire(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	wantLine(t, out, `acquired job by .*`)
	if d := time.Since(start); d > bound {
		t.Errorf("the acquire showed %v after it, above %v", d, bound)
	} else {
		t.Logf("the acquire showed %v after it", d.Round(time.Millisecond))
	}
	start = time.Now()
	if err := lk.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantLine(t, out, `released job, held by .*`)
	if d := time.Since(start); d > bound {
		t.Errorf("the release showed %v after it, above %v", d, bound)
	} else {
		t.Logf("the release showed %v after it", d.Round(time.Millisecond))
	}
	sigs <- syscall.SIGTERM
	if r := wait(); r.code != 0 || r.stderr != "" {
		t.Fatalf("after SIGTERM: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestWatchTerminal: on a terminal the view is redrawn in place, and only
// when it changed.
func TestWatchTerminal(t *testing.T) {
	url, dir := fileURL(t)
	var out syncBuffer
	sigs := make(chan os.Signal, 1)
	p := &Program{Stdout: &out, Signals: sigs, IsTerminal: func(io.Writer) bool { return true }}
	done := make(chan result, 1)
	go func() { done <- runCLI(t, p, "status", "--watch", "--interval", "20ms", "-b", url, "job") }()
	waitOut := func(s string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the view:\n%q", s, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitOut("job   (free)")
	l, err := filelock.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lk, err := l.WithData("v1").TryAcquire(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	waitOut("acquired job by ")
	time.Sleep(200 * time.Millisecond) // ten listings, no change
	if err := lk.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitOut("released job, held by ")
	time.Sleep(100 * time.Millisecond)
	sigs <- syscall.SIGINT
	r := <-done
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	view := out.String()
	if n := strings.Count(view, "\x1b[H\x1b[2J"); n != 3 {
		t.Errorf("drawn %d times, want 3 (free, held, free):\n%q", n, view)
	}
	frames := strings.Split(view, "\x1b[H\x1b[2J")
	held := frames[len(frames)-2]
	for _, want := range []string{"NAME", "TOKEN/TERM", "DATA/VALUE", "(pid " + strconv.Itoa(os.Getpid()) + ", ", "  v1\n"} {
		if !strings.Contains(held, want) {
			t.Errorf("the held frame lacks %q:\n%s", want, held)
		}
	}
}

func TestWatchUsage(t *testing.T) {
	url, _ := fileURL(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "-b", url, "--interval", "1s"}, "--interval needs --watch"},
		{[]string{"status", "-b", url, "--watch", "--interval", "5ms"}, "--interval must be at least 10ms"},
		{[]string{"status", "-b", url, "--watch", "--interval", "soon"}, "not a duration"},
		{[]string{"status", "-b", url, "--watch", "--max", "2"}, "--max needs the NAMEs"},
	} {
		r := runCLI(t, nil, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: exit %d, stderr:\n%s", c.args, r.code, r.stderr)
		}
	}
}

// TestWatchBackendError: a backend that cannot be reached ends the watch
// with exit 69, a signal other than SIGINT and SIGTERM with 128+N.
func TestWatchExits(t *testing.T) {
	r := runCLI(t, nil, "status", "--watch", "-b", "redis://127.0.0.1:1/0")
	if r.code != ExitUnavailable || !strings.Contains(r.stderr, "cannot reach Redis") {
		t.Errorf("unreachable: exit %d, stderr %q", r.code, r.stderr)
	}
	url, _ := fileURL(t)
	sigs, out, wait := startSignalled(t, "status", "--watch", "-b", url, "x")
	wantLine(t, out, "free x")
	sigs <- syscall.SIGHUP
	if r := wait(); r.code != 128+int(syscall.SIGHUP) {
		t.Errorf("SIGHUP: exit %d", r.code)
	}
}

// TestWatchDiff pins how listings become events: shared holders, a
// takeover, and what does not count as a change (a lease renewed, a
// PostgreSQL session's state change).
func TestWatchDiff(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Second)
	w := &watcher{b: &backendURL{kind: kindPostgres}}
	a := heldLock{Name: "n", Held: true, Mode: "shared", PID: 1, Since: &t0}
	b := heldLock{Name: "n", Held: true, Mode: "shared", PID: 2, Since: &t0}
	kinds := func(evs []watchEvent) string {
		var s []string
		for _, ev := range evs {
			s = append(s, ev.line(time.TimeOnly))
		}
		return strings.Join(s, "\n")
	}
	a2 := a
	a2.Since, a2.Expires = &t1, &t1
	if got := w.diff([]heldLock{a, b}, []heldLock{a2, b}, t0); len(got) != 0 {
		t.Errorf("since and expires moved: %s", kinds(got))
	}
	if got := kinds(w.diff([]heldLock{a, b}, []heldLock{b}, t0)); got != "10:00:00 released n (shared), held by (pid 1)" {
		t.Errorf("one shared holder left: %q", got)
	}
	c := heldLock{Name: "n", Held: true, Mode: "exclusive", PID: 3, Token: 9, Data: "x"}
	if got := kinds(w.diff([]heldLock{a, b}, []heldLock{c}, t0)); got != "10:00:00 released n (shared), held by (pid 1)\n10:00:00 released n (shared), held by (pid 2)\n10:00:00 acquired n by (pid 3), token 9, data \"x\"" {
		t.Errorf("two shared replaced by one: %q", got)
	}
	if got := kinds(w.diff([]heldLock{b}, []heldLock{c, {Name: "m"}}, t0)); got != "10:00:00 takeover n by (pid 3), token 9, data \"x\", from (pid 2)" {
		t.Errorf("one replaced by another: %q", got)
	}
	// Elsewhere a new "since" is a new holding.
	w.b.kind = kindRedis
	if got := kinds(w.diff([]heldLock{a}, []heldLock{a2}, t0)); got != "10:00:00 takeover n (shared) by (pid 1), from (pid 1)" {
		t.Errorf("since moved on redis: %q", got)
	}
}

// TestWriteTableFileTokens: a file lock whose holder has a token (an
// election's) shows a TOKEN column; other file locks keep the table as it
// was.
func TestWriteTableFileTokens(t *testing.T) {
	var b strings.Builder
	writeTable(&b, []heldLock{{Name: "scheduler", Held: true, Owner: "alice", Data: "10.0.0.7:8080", Token: 17}, {Name: "plain", Held: true, PID: 5}}, false)
	want := "NAME       HOLDER                 SINCE  TOKEN\nscheduler  alice [10.0.0.7:8080]  -      17\nplain      (pid 5)                -      -\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	writeTable(&b, []heldLock{{Name: "plain", Held: true, PID: 5}}, false)
	if want := "NAME   HOLDER   SINCE\nplain  (pid 5)  -\n"; b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}
