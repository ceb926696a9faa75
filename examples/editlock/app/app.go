// Package app is the example CRUD application of lockkit's editlock
// package: a list of records and an edit page, with "Alice is editing this
// record — take over?" in action. Package main runs it; the browser tests
// (module examples/editlock/e2e) start it in-process.
//
// Sign-in is a demonstration only: pick a user, and a cookie signed with a
// key made at start-up says who you are.
package app

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/editlock"
	"github.com/lockkit/lockkit/migrations"
)

// Table is the example's table of records.
const Table = "editlock_demo_records"

// LocksPrefix is where the edit-lock endpoints and script are mounted.
const LocksPrefix = "/edit-locks/records/"

// cookieName carries the signed-in user.
const cookieName = "editlock_demo_user"

// Users are the demonstration's users, by id.
var Users = map[string]string{"alice": "Alice", "bob": "Bob", "carol": "Carol"}

// Config configures the application. Zero fields mean editlock's defaults.
type Config struct {
	// Window and Heartbeat are the edit locks' window and heartbeat
	// interval; see editlock.Config.
	Window, Heartbeat time.Duration
	// Logger receives take-overs and errors; default slog.Default().
	Logger *slog.Logger
}

// App is the example application, an http.Handler.
type App struct {
	db     *sql.DB
	locks  *editlock.Manager
	key    []byte
	log    *slog.Logger
	tmpl   *template.Template
	handle http.Handler
}

//go:embed templates/*.html
var templates embed.FS

// New creates the lock table and the records table (with twelve records)
// if they are missing, and returns the application on db, a PostgreSQL
// database opened with pgx's stdlib driver.
func New(ctx context.Context, db *sql.DB, cfg Config) (*App, error) {
	if err := migrations.Up(ctx, db, migrations.Postgres, nil); err != nil {
		return nil, err
	}
	if err := setup(ctx, db); err != nil {
		return nil, err
	}
	a := &App{db: db, log: cfg.Logger, key: make([]byte, 32)}
	if a.log == nil {
		a.log = slog.Default()
	}
	_, _ = rand.Read(a.key)
	t, err := template.New("").Funcs(template.FuncMap{
		"hhmm": func(t time.Time) string { return t.Local().Format("15:04") },
	}).ParseFS(templates, "templates/*.html")
	if err != nil {
		return nil, err
	}
	a.tmpl = t
	a.locks, err = editlock.New(db, &editlock.Config{
		Kind:      "records",
		Identify:  a.identify,
		Window:    cfg.Window,
		Heartbeat: cfg.Heartbeat,
		Logger:    a.log,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(LocksPrefix, a.locks)
	mux.HandleFunc("GET /{$}", a.list)
	mux.HandleFunc("GET /login", a.loginPage)
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("GET /records/{id}/edit", a.edit)
	mux.HandleFunc("POST /records/{id}", a.save)
	// The app's own forms are protected against cross-origin posts too.
	a.handle = http.NewCrossOriginProtection().Handler(mux)
	return a, nil
}

// Close closes the edit-lock Manager; it never closes the database.
func (a *App) Close() error { return a.locks.Close() }

// Locks returns the application's edit-lock Manager.
func (a *App) Locks() *editlock.Manager { return a.locks }

func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	a.handle.ServeHTTP(w, r)
}

func setup(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+Table+` (
  id         integer PRIMARY KEY,
  title      text NOT NULL,
  body       text NOT NULL DEFAULT '',
  lock_token bigint NOT NULL DEFAULT 0,
  updated_by text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return fmt.Errorf("create %s: %w", Table, err)
	}
	titles := []string{"Oak desk", "Walnut bookcase", "Linen armchair", "Brass floor lamp",
		"Wool rug", "Ash dining table", "Steel filing cabinet", "Pine wardrobe",
		"Cane side chair", "Marble coffee table", "Velvet sofa", "Cherry sideboard"}
	for i, title := range titles {
		_, err := db.ExecContext(ctx, `INSERT INTO `+Table+` (id, title, body) VALUES ($1, $2, $3)
ON CONFLICT (id) DO NOTHING`, i+1, title, "In stock. Ships in 3 to 5 days.")
		if err != nil {
			return fmt.Errorf("seed %s: %w", Table, err)
		}
	}
	return nil
}

// --- identity -------------------------------------------------------------

func (a *App) sign(id string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(id))
	return id + "." + hex.EncodeToString(m.Sum(nil))
}

func (a *App) identify(r *http.Request) (editlock.User, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return editlock.User{}, false
	}
	id, _, ok := strings.Cut(c.Value, ".")
	name, known := Users[id]
	if !ok || !known || !hmac.Equal([]byte(a.sign(id)), []byte(c.Value)) {
		return editlock.User{}, false
	}
	return editlock.User{ID: id, Name: name}, true
}

func (a *App) loginPage(w http.ResponseWriter, r *http.Request) {
	u, _ := a.identify(r)
	a.render(w, http.StatusOK, "login.html", map[string]any{"User": u, "Users": []string{"alice", "bob", "carol"}, "Names": Users})
}

func (a *App) login(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("user")
	if _, ok := Users[id]; !ok {
		http.Error(w, "unknown user", http.StatusBadRequest)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: a.sign(id), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// --- pages ----------------------------------------------------------------

// Record is one row of the records table.
type Record struct {
	ID        int
	Title     string
	Body      string
	LockToken int64
	UpdatedBy string
	UpdatedAt time.Time
	Editor    *editlock.Holder // who is editing it now, if anyone
}

func (a *App) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := a.tmpl.ExecuteTemplate(w, name, data); err != nil {
		a.log.Error("render", "template", name, "err", err)
	}
}

func (a *App) fail(w http.ResponseWriter, err error) {
	a.log.Error("request failed", "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func (a *App) list(w http.ResponseWriter, r *http.Request) {
	u, ok := a.identify(r)
	if !ok {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	rows, err := a.db.QueryContext(r.Context(), `SELECT id, title, body, lock_token, updated_by, updated_at FROM `+Table+` ORDER BY id`)
	if err != nil {
		a.fail(w, err)
		return
	}
	defer rows.Close()
	var recs []*Record
	for rows.Next() {
		rec := &Record{}
		if err := rows.Scan(&rec.ID, &rec.Title, &rec.Body, &rec.LockToken, &rec.UpdatedBy, &rec.UpdatedAt); err != nil {
			a.fail(w, err)
			return
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		a.fail(w, err)
		return
	}
	for _, rec := range recs {
		if rec.Editor, err = a.locks.Status(r.Context(), u, strconv.Itoa(rec.ID)); err != nil {
			a.fail(w, err)
			return
		}
	}
	a.render(w, http.StatusOK, "list.html", map[string]any{"User": u, "Records": recs, "Saved": r.URL.Query().Get("saved")})
}

// record reads the record named by the path, answering 404 itself when
// there is none.
func (a *App) record(w http.ResponseWriter, r *http.Request) (*Record, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id <= 0 {
		http.NotFound(w, r)
		return nil, false
	}
	rec := &Record{ID: id}
	err = a.db.QueryRowContext(r.Context(), `SELECT title, body, lock_token, updated_by, updated_at FROM `+Table+` WHERE id = $1`, id).
		Scan(&rec.Title, &rec.Body, &rec.LockToken, &rec.UpdatedBy, &rec.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		http.NotFound(w, r)
		return nil, false
	}
	if err != nil {
		a.fail(w, err)
		return nil, false
	}
	return rec, true
}

func (a *App) edit(w http.ResponseWriter, r *http.Request) {
	u, ok := a.identify(r)
	if !ok {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	rec, ok := a.record(w, r)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	a.render(w, http.StatusOK, "edit.html", map[string]any{
		"User": u, "Record": rec, "Locks": LocksPrefix, "TokenField": editlock.TokenField,
	})
}

func (a *App) save(w http.ResponseWriter, r *http.Request) {
	u, ok := a.identify(r)
	if !ok {
		http.Error(w, "not signed in", http.StatusUnauthorized)
		return
	}
	rec, ok := a.record(w, r)
	if !ok {
		return
	}
	title, body := strings.TrimSpace(r.PostFormValue("title")), r.PostFormValue("body")
	token, _ := strconv.ParseInt(r.PostFormValue(editlock.TokenField), 10, 64)
	refused := func(why string) {
		a.render(w, http.StatusConflict, "refused.html", map[string]any{
			"User": u, "Record": rec, "Why": why, "Title": title, "Body": body,
		})
	}
	if title == "" || len(title) > 200 || len(body) > 10000 {
		http.Error(w, "a title of 1 to 200 bytes and a body of at most 10000", http.StatusBadRequest)
		return
	}
	// The write guard: the save must come from the current holder of the
	// edit lock, with its token.
	lease, err := a.locks.Check(r, strconv.Itoa(rec.ID), token)
	var cause *editlock.LostCause
	switch {
	case errors.As(err, &cause) && cause.Holder != nil && cause.Holder.TookOverFrom != "" && !cause.Holder.Self:
		refused(cause.Holder.Name + " has taken over and is currently editing.")
		return
	case errors.As(err, &cause) && cause.Holder != nil:
		refused("Your edit lock expired; " + cause.Holder.Name + " is editing now.")
		return
	case errors.Is(err, lockkit.ErrLost):
		refused("Your edit lock expired or was taken over.")
		return
	case errors.Is(err, lockkit.ErrInvalid):
		refused("The form carried no edit lock.")
		return
	case err != nil:
		a.fail(w, err)
		return
	}
	// The database fence: a write from an older lease never lands after
	// a newer holder's.
	res, err := a.db.ExecContext(r.Context(), `UPDATE `+Table+`
SET title = $1, body = $2, lock_token = $3, updated_by = $4, updated_at = now()
WHERE id = $5 AND lock_token <= $3`, title, body, lease.Token(), u.Name, rec.ID)
	if err != nil {
		a.fail(w, err)
		return
	}
	if n, _ := res.RowsAffected(); n == 0 {
		refused("A newer editor saved this record first.")
		return
	}
	if err := lease.Release(r.Context()); err != nil && !errors.Is(err, lockkit.ErrLost) {
		a.log.Warn("release after save", "record", rec.ID, "err", err)
	}
	http.Redirect(w, r, "/?saved="+strconv.Itoa(rec.ID), http.StatusSeeOther)
}
