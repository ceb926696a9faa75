package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit/editlock"
	"github.com/lockkit/lockkit/examples/editlock/app"
	"github.com/lockkit/lockkit/integration"
)

// The example app's edit locks in these tests: short, so that a lock left
// by a silent page ends in seconds.
const (
	window    = 4 * time.Second
	heartbeat = time.Second
)

// EnvChromium names the browser binary; default: chromium on PATH.
const EnvChromium = "LOCKKIT_CHROMIUM"

var screenshots = flag.String("screenshots", "", "write the README's screenshots (PNG) into this directory")

// browser is the one headless Chromium the tests share; every user gets a
// browser context of its own (cookies included) in it.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	err    error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	os.Exit(code)
}

// chromium returns the browser binary, or skips the test (fails it under
// LOCKKIT_TEST_REQUIRE=1) when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(EnvChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium: install Debian's chromium (apt-get install chromium; .ci/run does) or set " + EnvChromium
	if os.Getenv(integration.EnvRequire) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	browser.once.Do(func() {
		dir, err := os.MkdirTemp("", "lockkit-e2e-chromium-")
		if err != nil {
			browser.err = err
			return
		}
		// The flags this machine's closed network needs: nothing may
		// reach out to Google's services.
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("no-first-run", true),
			chromedp.UserDataDir(dir),
			chromedp.WindowSize(880, 560),
			// Times on the page, and in the tests' expectations, are UTC.
			chromedp.Env("TZ=UTC"),
		)
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		browser.ctx = bctx
		browser.cancel = func() {
			cctx, c := context.WithTimeout(bctx, 10*time.Second)
			_ = chromedp.Cancel(cctx)
			c()
			bcancel()
			acancel()
			_ = os.RemoveAll(dir)
		}
		browser.err = chromedp.Do(bctx) // starts the browser
	})
	if browser.err != nil {
		t.Fatalf("start %s: %v", path, browser.err)
	}
	return browser.ctx
}

// env is the example app on a PostgreSQL schema of its own, served on a
// local port.
type env struct {
	t   *testing.T
	app *app.App
	db  *sql.DB
	url string

	mu   sync.Mutex
	slow map[string]time.Duration // a delay before serving requests to a path
}

// delay holds requests to path for d before the app serves them (d 0: no
// longer), as a slow network or server would.
func (e *env) delay(path string, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.slow[path] = d
}

func newEnv(t *testing.T) *env {
	t.Helper()
	startBrowser(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "lkt_e2e_" + hex.EncodeToString(b[:])
	admin := integration.Postgres(t)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	dsn := integration.PostgresDSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sql.Open("pgx", dsn+sep+"search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := app.New(ctx, db, app.Config{
		Window: window, Heartbeat: heartbeat,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, app: a, db: db, slow: map[string]time.Duration{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("E2E_LOG") != "" {
			t.Logf("%s %s", r.Method, r.URL)
		}
		e.mu.Lock()
		d := e.slow[r.URL.Path]
		e.mu.Unlock()
		time.Sleep(d)
		a.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		_ = a.Close()
	})
	e.url = srv.URL
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// title reads a record's title from the database.
func (e *env) title(id int) string {
	e.t.Helper()
	var s string
	if err := e.db.QueryRow(`SELECT title FROM `+app.Table+` WHERE id = $1`, id).Scan(&s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// holder is who holds a record's edit lock now, nil for nobody.
func (e *env) holder(id int) *editlock.Holder {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := e.app.Locks().Status(ctx, editlock.User{}, fmt.Sprint(id))
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// user is one person in a browser context of their own.
type user struct {
	e      *env
	name   string
	ctx    context.Context
	cancel func()
}

// signIn opens a browser context for the user and signs in.
func (e *env) signIn(id string) *user {
	e.t.Helper()
	ctx, cancel := chromedp.NewContext(browser.ctx, chromedp.WithNewBrowserContext())
	u := &user{e: e, name: app.Users[id], ctx: ctx, cancel: cancel}
	e.t.Cleanup(cancel)
	// The first action opens the tab and binds it to its context: run it
	// on ctx itself, not on a context with a deadline.
	if err := chromedp.Do(ctx); err != nil {
		e.t.Fatal(err)
	}
	u.do(
		chromedp.EmulateViewport(880, 540),
		chromedp.Navigate(e.url+"/login"),
		chromedp.Click(chromedp.CSS(`button[value="`+id+`"]`)),
		chromedp.WaitVisible(chromedp.ID("whoami")),
	)
	return u
}

// do runs actions in the user's tab, bounded by 30 seconds.
func (u *user) do(actions ...chromedp.Action[chromedp.Void]) {
	u.e.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		u.e.t.Fatalf("%s: %v", u.name, err)
	}
}

// eval evaluates a JavaScript expression in the user's tab.
func eval[T any](u *user, js string, opts ...chromedp.EvaluateOption) T {
	u.e.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		u.e.t.Fatalf("%s: %s: %v", u.name, js, err)
	}
	return v
}

// edit opens a record's edit page.
func (u *user) edit(id int) {
	u.e.t.Helper()
	u.do(chromedp.Navigate(fmt.Sprintf("%s/records/%d/edit", u.e.url, id)),
		chromedp.WaitVisible(chromedp.ID("edit")))
}

// saveTitle types title into the edit form's title and saves, waiting
// for the saved page.
func (u *user) saveTitle(title string) {
	u.e.t.Helper()
	u.do(
		chromedp.Clear(chromedp.ID("title")),
		chromedp.SendKeys(chromedp.ID("title"), title),
		chromedp.Click(chromedp.ID("save")),
		chromedp.WaitVisible(chromedp.ID("saved")),
	)
}

// state is the edit page's lock state: opening, editing, held or lost.
func (u *user) state() string {
	return eval[string](u, `document.getElementById("edit") ? document.getElementById("edit").dataset.editlockState || "" : ""`)
}

// banner is the text of the edit page's banner.
func (u *user) banner() string {
	return eval[string](u, `(document.querySelector(".editlock-banner .editlock-message") || {}).textContent || ""`)
}

// disabled reports whether the edit form's title, body and save button
// are all disabled.
func (u *user) disabled() bool {
	return eval[bool](u, `["title", "body", "save"].every(id => document.getElementById(id).disabled)`)
}

// enabled reports whether they are all enabled.
func (u *user) enabled() bool {
	return eval[bool](u, `["title", "body", "save"].every(id => !document.getElementById(id).disabled)`)
}

// waitState waits until the page's lock state is want, and returns how
// long that took.
func (u *user) waitState(want string, limit time.Duration) time.Duration {
	u.e.t.Helper()
	start := time.Now()
	for {
		got := u.state()
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			u.e.t.Fatalf("%s: lock state still %q after %v, want %q; banner %q", u.name, got, limit, want, u.banner())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// screenshot saves the user's viewport as name.png in the -screenshots
// directory, when one was given.
func (u *user) screenshot(name string) {
	u.e.t.Helper()
	if *screenshots == "" {
		return
	}
	ctx, cancel := context.WithTimeout(u.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		u.e.t.Fatal(err)
	}
	p := filepath.Join(*screenshots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		u.e.t.Fatal(err)
	}
	u.e.t.Logf("wrote %s", p)
}
