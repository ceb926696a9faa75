package main

// End-to-end tests of lockkit status --watch, piped and with --json,
// driven by real lockkit run processes on files, PostgreSQL and Redis.

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
)

// readLine reads the next stdout line of p, failing after 20 seconds.
func (p *proc) readLine() string {
	p.t.Helper()
	ch := make(chan string, 1)
	go func() {
		l, _ := p.stdout.ReadString('\n')
		ch <- l
	}()
	select {
	case l := <-ch:
		if l == "" {
			p.t.Fatalf("lockkit %v: stdout ended; stderr:\n%s", p.cmd.Args[1:], p.stderr())
		}
		return strings.TrimSuffix(l, "\n")
	case <-time.After(20 * time.Second):
		p.t.Fatalf("lockkit %v: no line on stdout after 20s", p.cmd.Args[1:])
	}
	return ""
}

// watchArgs are the arguments of lockkit status --watch on bc.
func (bc backendCase) watchArgs(args ...string) []string {
	a := []string{"status", "-b", bc.url, "--watch", "--interval", "100ms"}
	if bc.table {
		a = append(a, "--table")
	}
	return append(a, args...)
}

// startHolder runs lockkit run NAME on bc with a command that prints its
// LOCKKIT_TOKEN (empty without one) and sleeps; it returns the process and
// the token.
func startHolder(t *testing.T, bc backendCase, name string) (*proc, string) {
	t.Helper()
	holder := start(t, bc.env, true, bc.run(name, "--", "sh", "-c", `echo "ready ${LOCKKIT_TOKEN-}"; exec sleep 1000`)...)
	line := holder.readLine()
	token, ok := strings.CutPrefix(line, "ready ")
	if !ok {
		t.Fatalf("holder said %q", line)
	}
	return holder, token
}

// stopHolder stops a holder with SIGTERM, which its sleep dies of.
func stopHolder(t *testing.T, holder *proc) {
	t.Helper()
	if err := holder.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "holder after SIGTERM", holder.wait(), 128+int(syscall.SIGTERM), holder.stderr())
}

const lineTime = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) `

// watchPiped: piped, lockkit status --watch prints one line per change.
func watchPiped(t *testing.T, bc backendCase) {
	name := integration.Name(t)
	w := start(t, bc.env, true, bc.watchArgs(name)...)
	match := func(re string) {
		t.Helper()
		l := w.readLine()
		if !regexp.MustCompile("^" + lineTime + re + "$").MatchString(l) {
			t.Fatalf("watch line %q does not match %q", l, re)
		}
	}
	q := regexp.QuoteMeta(name)
	match("free " + q)
	holder, token := startHolder(t, bc, name)
	tok := ""
	if token != "" {
		tok = ", token " + token
	}
	match("acquired " + q + " by .+" + tok)
	stopHolder(t, holder)
	match("released " + q + ", held by .+" + tok)
	// Once more: a second holder is a new acquisition.
	holder, token2 := startHolder(t, bc, name)
	if token != "" {
		tok = ", token " + token2
	}
	match("acquired " + q + " by .+" + tok)
	stopHolder(t, holder)
	match("released " + q + ", held by .+" + tok)
	if err := w.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "watch after SIGINT", w.wait(), 0, w.stderr())
	if s := w.stderr(); s != "" {
		t.Errorf("watch stderr %q", s)
	}
}

// watchJSON: with --json, one JSON object per line per change, whose
// holder is a row of lockkit status --json with the holder's token.
func watchJSON(t *testing.T, bc backendCase) {
	name := integration.Name(t)
	w := start(t, bc.env, true, bc.watchArgs("--json", name)...)
	type event struct {
		Time     time.Time       `json:"time"`
		Event    string          `json:"event"`
		Name     string          `json:"name"`
		Holder   *map[string]any `json:"holder"`
		Previous *map[string]any `json:"previous"`
	}
	read := func(want string) event {
		t.Helper()
		l := w.readLine()
		var ev event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%v: %q", err, l)
		}
		if ev.Event != want || ev.Name != name || ev.Time.IsZero() || time.Since(ev.Time) > time.Minute {
			t.Fatalf("event %q, want %q of %q", l, want, name)
		}
		return ev
	}
	if ev := read("free"); ev.Holder != nil || ev.Previous != nil {
		t.Fatalf("free: %+v", ev)
	}
	holder, token := startHolder(t, bc, name)
	tokenOf := func(h *map[string]any) string {
		if h == nil {
			t.Fatal("no holder")
		}
		if (*h)["held"] != true || (*h)["name"] != name {
			t.Errorf("holder %v", *h)
		}
		if tk, ok := (*h)["token"].(float64); ok {
			return strconv.FormatInt(int64(tk), 10)
		}
		return ""
	}
	ev := read("acquired")
	if got := tokenOf(ev.Holder); got != token || ev.Previous != nil {
		t.Errorf("acquired: token %q, want LOCKKIT_TOKEN %q; %+v", got, token, ev)
	}
	stopHolder(t, holder)
	ev = read("released")
	if got := tokenOf(ev.Previous); got != token || ev.Holder != nil {
		t.Errorf("released: token %q, want %q; %+v", got, token, ev)
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "watch after SIGTERM", w.wait(), 0, w.stderr())
}

// watchPushed: where the backend pushes changes, the watch shows a
// lockkit run's acquire and release although it polls only every hour:
// inotify on files, and on PostgreSQL and Redis what lockkit run announces
// (NOTIFY, PUBLISH). Each change must show within readLine's 20 s, far
// from the next poll; how long it took is logged but not bounded (it was
// 1 s, which a CI machine busy with the rest of the suite overran: up to
// 650 ms were seen at load 24, for the first line mostly lockkit's start).
func watchPushed(t *testing.T, bc backendCase) {
	name := integration.Name(t)
	args := []string{"status", "-b", bc.url, "--watch", "--interval", "1h"}
	if bc.table {
		args = append(args, "--table")
	}
	w := start(t, bc.env, true, append(args, name)...)
	match := func(re string, since time.Time, what string) {
		t.Helper()
		l := w.readLine()
		if !regexp.MustCompile("^" + lineTime + re + "$").MatchString(l) {
			t.Fatalf("watch line %q does not match %q", l, re)
		}
		t.Logf("the %s showed %v after it", what, time.Since(since).Round(time.Millisecond))
	}
	q := regexp.QuoteMeta(name)
	match("free "+q, time.Now(), "start")
	holder, _ := startHolder(t, bc, name)
	match("acquired "+q+" by .+", time.Now(), "acquire")
	stopHolder(t, holder)
	match("released "+q+", held by .+", time.Now(), "release")
	if err := w.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	wantExit(t, "watch after SIGINT", w.wait(), 0, w.stderr())
}

func TestFileWatchPushed(t *testing.T)     { t.Parallel(); watchPushed(t, fileCase(t)) }
func TestPostgresWatchPushed(t *testing.T) { t.Parallel(); watchPushed(t, pgCase(t)) }
func TestPostgresTableWatchPushed(t *testing.T) {
	t.Parallel()
	watchPushed(t, withTable(pgTableCase(t)))
}
func TestRedisWatchPushed(t *testing.T) { t.Parallel(); watchPushed(t, redisCase(t)) }

func TestFileWatchPiped(t *testing.T)     { t.Parallel(); watchPiped(t, fileCase(t)) }
func TestFileWatchJSON(t *testing.T)      { t.Parallel(); watchJSON(t, fileCase(t)) }
func TestPostgresWatchPiped(t *testing.T) { t.Parallel(); watchPiped(t, pgCase(t)) }
func TestPostgresWatchJSON(t *testing.T)  { t.Parallel(); watchJSON(t, pgCase(t)) }
func TestRedisWatchPiped(t *testing.T)    { t.Parallel(); watchPiped(t, redisCase(t)) }
func TestRedisWatchJSON(t *testing.T)     { t.Parallel(); watchJSON(t, redisCase(t)) }
func TestPostgresTableWatchJSON(t *testing.T) {
	t.Parallel()
	watchJSON(t, withTable(pgTableCase(t)))
}

// TestWatchUnreachable: a watch on a server that does not answer ends
// with exit 69.
func TestWatchUnreachable(t *testing.T) {
	t.Parallel()
	code, _, errOut := lockkit(t, baseEnv(t), "status", "--watch", "-b", "redis://"+closedPort(t)+"/0")
	wantExit(t, "watch on a closed port", code, 69, errOut)
}
