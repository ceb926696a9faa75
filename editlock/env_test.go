package editlock_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"github.com/lockkit/lockkit/editlock"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/rowlock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/go-sql-driver/mysql.(*mysqlConn).startWatcher.func1"))
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// setup returns a pool on a lock table private to the test: a PostgreSQL
// schema or a MySQL database of its own, dropped when the test ends.
func setup(t testing.TB, d rowlock.Dialect) *sql.DB {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "lkt_el_" + hex.EncodeToString(b[:])
	var driver, dsn string
	switch d {
	case rowlock.Postgres:
		admin := integration.Postgres(t)
		if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
				t.Errorf("drop schema: %v", err)
			}
		})
		base := integration.PostgresDSN(t)
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		driver, dsn = "pgx", base+sep+"search_path="+schema
	case rowlock.MySQL:
		admin := integration.MySQL(t)
		if _, err := admin.Exec("CREATE DATABASE " + schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := admin.Exec("DROP DATABASE " + schema); err != nil {
				t.Errorf("drop database: %v", err)
			}
		})
		cfg, err := mysql.ParseDSN(integration.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName = schema
		driver, dsn = "mysql", cfg.FormatDSN()
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := migrations.Up(ctxT(t, time.Minute), db, migrations.Dialect(d), nil); err != nil {
		t.Fatal(err)
	}
	return db
}

// both runs fn against each dialect, in parallel subtests.
func both(t *testing.T, fn func(t *testing.T, db *sql.DB)) {
	t.Helper()
	for _, d := range []rowlock.Dialect{rowlock.Postgres, rowlock.MySQL} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			fn(t, setup(t, d))
		})
	}
}

// userHeader carries the test user's id; Identify turns "alice" into
// User{ID: "alice", Name: "Alice"}.
const userHeader = "X-Test-User"

func identify(r *http.Request) (editlock.User, bool) {
	id := r.Header.Get(userHeader)
	if id == "" {
		return editlock.User{}, false
	}
	return editlock.User{ID: id, Name: strings.ToUpper(id[:1]) + id[1:]}, true
}

// manager returns a Manager for kind "records" with a short window, closed
// when the test ends. cfg, if not nil, is adjusted first.
func manager(t testing.TB, db *sql.DB, adjust func(*editlock.Config)) *editlock.Manager {
	t.Helper()
	cfg := &editlock.Config{
		Kind:      "records",
		Identify:  identify,
		Window:    5 * time.Second,
		Heartbeat: time.Second,
		Logger:    discardLogger(),
	}
	if adjust != nil {
		adjust(cfg)
	}
	m, err := editlock.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// reply is one answer, with its raw body.
type reply struct {
	code int
	raw  string
	editlock.Answer
	hdr http.Header
}

// call POSTs op with form params as user ("" for nobody) and decodes the
// JSON answer. header adds request headers.
func call(t testing.TB, m http.Handler, user, op string, params url.Values, header ...string) *reply {
	t.Helper()
	return do(t, m, http.MethodPost, user, op, params, header...)
}

func do(t testing.TB, m http.Handler, method, user, op string, params url.Values, header ...string) *reply {
	t.Helper()
	req := httptest.NewRequest(method, "http://app.example/edit-locks/records/"+op, strings.NewReader(params.Encode()))
	req = req.WithContext(ctxT(t, 30*time.Second))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.Header.Set(userHeader, user)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, req)
	r := &reply{code: rec.Code, raw: rec.Body.String(), hdr: rec.Header()}
	if ct := rec.Header().Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.Answer); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, op, r.raw, err)
		}
	}
	return r
}

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func tok(n int64) string { return strconv.FormatInt(n, 10) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// leaks reports whether an answer carries a "token" field, the number
// token as any value other than the two intervals, or the user id in any
// string.
func leaks(t testing.TB, raw string, token int64, userID string) bool {
	t.Helper()
	var v any
	d := json.NewDecoder(strings.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("bad JSON %q: %v", raw, err)
	}
	var walk func(key string, v any) bool
	walk = func(key string, v any) bool {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if k == "token" || walk(k, e) {
					return true
				}
			}
		case json.Number:
			return key != "heartbeat_ms" && key != "window_ms" && v.String() == tok(token)
		case string:
			return strings.Contains(v, userID)
		}
		return false
	}
	return walk("", v)
}
