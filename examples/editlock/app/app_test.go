package app_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit/editlock"
	"github.com/lockkit/lockkit/examples/editlock/app"
	"github.com/lockkit/lockkit/integration"
)

// server runs the app on a PostgreSQL schema of its own.
func server(t *testing.T) (*httptest.Server, *sql.DB) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "lkt_app_" + hex.EncodeToString(b[:])
	admin := integration.Postgres(t)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
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
	a, err := app.New(ctx, db, app.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(func() { srv.Close(); _ = a.Close() })
	return srv, db
}

// client is a signed-in user with a cookie jar; it follows no redirects.
func client(t *testing.T, srv *httptest.Server, user string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.PostForm(srv.URL+"/login", url.Values{"user": {user}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login as %s: %s", user, res.Status)
	}
	return c
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func post(t *testing.T, c *http.Client, u string, v url.Values) (int, string) {
	t.Helper()
	res, err := c.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func open(t *testing.T, c *http.Client, srv *httptest.Server, id string) editlock.Answer {
	t.Helper()
	_, body := post(t, c, srv.URL+app.LocksPrefix+"open", url.Values{"id": {id}})
	var a editlock.Answer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("open: %q: %v", body, err)
	}
	return a
}

// The app without a browser: pages, the lock endpoints, a guarded save
// and a refused stale one.
func TestApp(t *testing.T) {
	srv, db := server(t)
	alice, bob := client(t, srv, "alice"), client(t, srv, "bob")

	if code, _ := get(t, http.DefaultClient, srv.URL+"/"); code != http.StatusOK {
		// http.DefaultClient follows the redirect to /login.
		t.Errorf("anonymous list = %d", code)
	}
	code, page := get(t, alice, srv.URL+"/records/2/edit")
	if code != http.StatusOK || !strings.Contains(page, `data-editlock="/edit-locks/records/"`) ||
		!strings.Contains(page, `data-editlock-record="2"`) || !strings.Contains(page, `src="/edit-locks/records/editlock.js"`) {
		t.Fatalf("edit page = %d:\n%s", code, page)
	}
	if code, _ := get(t, alice, srv.URL+"/records/99/edit"); code != http.StatusNotFound {
		t.Errorf("edit page of a missing record = %d", code)
	}

	a := open(t, alice, srv, "2")
	if a.State != editlock.Editing {
		t.Fatalf("alice open = %+v", a)
	}
	if b := open(t, bob, srv, "2"); b.State != editlock.Held || b.Holder.Name != "Alice" {
		t.Fatalf("bob open = %+v", b)
	}
	if _, list := get(t, bob, srv.URL+"/"); !strings.Contains(list, "Alice is editing since") {
		t.Errorf("bob's list does not show alice editing:\n%s", list)
	}

	// Bob cannot save with alice's token; alice can.
	save := url.Values{"title": {"Walnut bookcase, tall"}, "body": {"x"}, editlock.TokenField: {strconv.FormatInt(a.Token, 10)}}
	if code, body := post(t, bob, srv.URL+"/records/2", save); code != http.StatusConflict || !strings.Contains(body, "was not saved") {
		t.Errorf("bob's save with alice's token = %d", code)
	}
	if code, _ := post(t, alice, srv.URL+"/records/2", save); code != http.StatusSeeOther {
		t.Fatalf("alice's save = %d", code)
	}
	var title string
	var fence int64
	if err := db.QueryRow(`SELECT title, lock_token FROM `+app.Table+` WHERE id = 2`).Scan(&title, &fence); err != nil {
		t.Fatal(err)
	}
	if title != "Walnut bookcase, tall" || fence != a.Token {
		t.Errorf("record 2 = %q, lock_token %d; want alice's title and token %d", title, fence, a.Token)
	}
	// The save ended the lock; the same token cannot save again.
	if b := open(t, bob, srv, "2"); b.State != editlock.Editing {
		t.Errorf("bob open after alice's save = %+v", b)
	}
	save.Set("title", "stale")
	if code, _ := post(t, alice, srv.URL+"/records/2", save); code != http.StatusConflict {
		t.Errorf("alice's second save with her old token = %d, want 409", code)
	}

	// A cross-origin post of the app's own form is refused.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/records/2", strings.NewReader(save.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := alice.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site save = %s, want 403", res.Status)
	}
}
