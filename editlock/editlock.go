package editlock

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
	"github.com/lockkit/lockkit/rowlock"
)

// Defaults and limits.
const (
	// DefaultWindow is how long an edit lock outlives its last heartbeat
	// when Config.Window is 0: WordPress's post lock window.
	DefaultWindow = 150 * time.Second
	// DefaultHeartbeat is how often the page renews its lock when
	// Config.Heartbeat is 0: WordPress's Heartbeat API interval.
	DefaultHeartbeat = 15 * time.Second
	// MaxReasonChars is the longest take-over reason, in characters.
	MaxReasonChars = 500
	// MaxUserNameChars is the longest display name, in characters.
	MaxUserNameChars = 200
	// MaxUserIDChars is the longest user id, in characters.
	MaxUserIDChars = 200
	// MaxKindBytes is the longest Config.Kind, in bytes.
	MaxKindBytes = 64
	// TokenField is the name of the hidden form field in which the
	// script puts the fencing token, for the save handler to pass to
	// [Manager.Check].
	TokenField = "editlock_token"
	// maxBody bounds a request body: the parameters are an id, a token
	// and a reason.
	maxBody = 8 << 10
)

// ErrNoIdentity is returned by [Manager.Check] when Config.Identify finds
// no user in the request. The handlers answer 401 then.
var ErrNoIdentity = errors.New("editlock: no identity in the request")

// idRE is the default record id syntax: 1 to 64 letters, digits, '-', '_'
// or '.', starting with a letter or digit.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// User is who makes a request, as Config.Identify says.
type User struct {
	// ID identifies the user; it becomes the lease's owner ("user:" +
	// ID) and is never sent to other users. At most [MaxUserIDChars]
	// characters; an empty ID means no identity.
	ID string
	// Name is what other users see: "Alice is editing since 10:02". At
	// most [MaxUserNameChars] characters; empty means ID.
	Name string
}

// Holder is who holds an edit lock, as shown to users: a display name and
// since when, never the holder's user id or fencing token.
type Holder struct {
	// Name is the holder's display name.
	Name string `json:"name"`
	// Since is when the holder took the lock, on the database clock.
	Since time.Time `json:"since"`
	// Self reports that the asking user is the holder (in another
	// window or tab).
	Self bool `json:"self"`
	// TookOverFrom names the editor the holder took the lock over from,
	// if it was taken over.
	TookOverFrom string `json:"took_over_from,omitempty"`
	// Reason is the reason the holder gave for taking over.
	Reason string `json:"reason,omitempty"`
}

// State is the state of an edit lock as an [Answer] reports it to the
// asking user.
type State string

// The states.
const (
	// Editing: the asking user holds the lock; Answer.Token is its
	// fencing token.
	Editing State = "editing"
	// Held: someone else (or the same user in another window) holds the
	// lock; Answer.Holder says who.
	Held State = "held"
	// Lost: the lease the request named is gone — expired, released, or
	// taken over; Answer.Holder says who holds the lock now, if anyone.
	Lost State = "lost"
	// Released: the lease the request named was released.
	Released State = "released"
)

// Answer is the JSON body of every handler's answer.
type Answer struct {
	State State `json:"state"`
	// Record is the record id the request named.
	Record string `json:"record"`
	// Token is the fencing token of the asking user's lease; set only
	// when State is Editing, and only in the answer to that user.
	Token int64 `json:"token,omitempty"`
	// Holder is who holds the lock: the asking user when Editing,
	// someone else when Held, the new holder (if any) when Lost.
	Holder *Holder `json:"holder,omitempty"`
	// CanTakeOver reports whether the asking user may take the lock
	// over (Config.MayTakeOver), when State is Held.
	CanTakeOver bool `json:"can_take_over,omitempty"`
	// HeartbeatMS and WindowMS are the configured heartbeat interval
	// and lock window, in milliseconds, for the script.
	HeartbeatMS int64 `json:"heartbeat_ms"`
	WindowMS    int64 `json:"window_ms"`
	// Error describes a refused request (400, 401, 403, 405, 500).
	Error string `json:"error,omitempty"`
}

// TakeOver describes one take-over, for Config.OnTakeOver.
type TakeOver struct {
	// Record is the record id.
	Record string
	// By is the user who took over.
	By User
	// FromID is the user id of the previous holder, as given by the
	// owner of its lease ("user:" + ID); the lease's owner when it was
	// not taken through this package.
	FromID string
	// From is the previous holder as users saw it.
	From Holder
	// Reason is the reason given, possibly empty.
	Reason string
	// Token is the fencing token of the new lease.
	Token int64
}

// Config configures a [Manager]. Kind and Identify are required; zero
// fields otherwise mean the defaults.
type Config struct {
	// Kind names the kind of record, such as "products": the lock of
	// record 42 is rowlock.RecordName(Kind, "42"). At most
	// [MaxKindBytes] bytes.
	Kind string

	// Identify returns the user who makes the request, from the app's
	// session. ok false (or an empty User.ID) means no identity: the
	// handlers answer 401 and lock nothing.
	Identify func(r *http.Request) (u User, ok bool)

	// Window is how long a lock lives after the page's last heartbeat:
	// a page closed without a release, or cut off from the network,
	// gives the record up within Window. Default [DefaultWindow].
	Window time.Duration

	// Heartbeat is how often the page renews its lock and, while
	// someone else holds it, asks again. At most Window/2. Default
	// [DefaultHeartbeat], or Window/10 when that is smaller.
	Heartbeat time.Duration

	// ValidID reports whether a record id is well formed; ids it refuses
	// are answered 400 before any I/O. Default: 1 to 64 letters, digits,
	// '-', '_' or '.', starting with a letter or digit.
	ValidID func(id string) bool

	// MayTakeOver decides whether user may take the lock over from
	// holder. Default: every identified user may.
	MayTakeOver func(r *http.Request, user User, holder Holder) bool

	// OnTakeOver, if set, is called after each take-over, for an audit
	// log. The take-over is also recorded in the new lease's data, where
	// the previous holder's page reads it and rowlock.Locker.List shows
	// it. It runs on the request's goroutine.
	OnTakeOver func(ctx context.Context, t TakeOver)

	// Table and Dialect configure the rowlock.Locker behind the
	// Manager; see rowlock.Config. Create the table with package
	// migrations.
	Table   string
	Dialect rowlock.Dialect

	// CrossOrigin protects the state-changing endpoints from
	// cross-origin requests. Default: a new
	// http.CrossOriginProtection, which allows same-origin requests
	// only; set one to add trusted origins.
	CrossOrigin *http.CrossOriginProtection

	// Logger receives take-overs (Info) and database errors (Error).
	// Default slog.Default().
	Logger *slog.Logger
}

// Manager serves edit locks for one kind of record: the handlers of the
// open, heartbeat, release and takeover endpoints, the script, and the
// write guard [Manager.Check]. It is safe for concurrent use.
type Manager struct {
	db      *sql.DB
	locks   *rowlock.Locker
	holderQ string
	kind    string

	identify    func(*http.Request) (User, bool)
	window      time.Duration
	heartbeat   time.Duration
	validID     func(string) bool
	mayTakeOver func(*http.Request, User, Holder) bool
	onTakeOver  func(context.Context, TakeOver)
	cop         *http.CrossOriginProtection
	log         *slog.Logger
}

// New returns a Manager on db's lock table. Bad configuration is an error
// matching lockkit.ErrInvalid, returned before any I/O. Close the Manager
// when done; it never closes db.
func New(db *sql.DB, cfg *Config) (*Manager, error) {
	if cfg == nil {
		return nil, invalid.Errorf("editlock: nil *Config: Kind and Identify are required")
	}
	switch {
	case cfg.Kind == "":
		return nil, invalid.Errorf("editlock: empty Config.Kind")
	case len(cfg.Kind) > MaxKindBytes || !utf8.ValidString(cfg.Kind) || strings.IndexByte(cfg.Kind, 0) >= 0:
		return nil, invalid.Errorf("editlock: Config.Kind %q is not valid UTF-8 of at most %d bytes", cfg.Kind, MaxKindBytes)
	case cfg.Identify == nil:
		return nil, invalid.Errorf("editlock: nil Config.Identify")
	case cfg.Window < 0 || cfg.Heartbeat < 0:
		return nil, invalid.Errorf("editlock: negative Window %v or Heartbeat %v", cfg.Window, cfg.Heartbeat)
	}
	m := &Manager{
		db:          db,
		kind:        cfg.Kind,
		identify:    cfg.Identify,
		window:      cfg.Window,
		heartbeat:   cfg.Heartbeat,
		validID:     cfg.ValidID,
		mayTakeOver: cfg.MayTakeOver,
		onTakeOver:  cfg.OnTakeOver,
		cop:         cfg.CrossOrigin,
		log:         cfg.Logger,
	}
	if m.window == 0 {
		m.window = DefaultWindow
	}
	if m.heartbeat == 0 {
		m.heartbeat = min(DefaultHeartbeat, m.window/10)
	}
	if m.heartbeat > m.window/2 || m.heartbeat <= 0 {
		return nil, invalid.Errorf("editlock: Heartbeat %v is not well under the Window %v (at most Window/2)", m.heartbeat, m.window)
	}
	if m.validID == nil {
		m.validID = idRE.MatchString
	}
	if m.mayTakeOver == nil {
		m.mayTakeOver = func(*http.Request, User, Holder) bool { return true }
	}
	if m.cop == nil {
		m.cop = http.NewCrossOriginProtection()
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	// Leases are renewed by the page's heartbeats, never in the
	// background: a request ends, the lease stays for one Window.
	locks, err := rowlock.New(db, &rowlock.Config{
		Dialect:       cfg.Dialect,
		Table:         cfg.Table,
		TTL:           m.window,
		RenewInterval: rowlock.NoRenew,
	})
	if err != nil {
		return nil, err
	}
	q, err := rowlock.Statements(locks.Dialect(), cfg.Table)
	if err != nil {
		_ = locks.Close()
		return nil, err
	}
	m.locks, m.holderQ = locks, q.Holder
	return m, nil
}

// Close closes the Manager's rowlock.Locker. Edit locks stay held until
// they are released or their window ends.
func (m *Manager) Close() error { return m.locks.Close() }

// Locker returns the rowlock.Locker behind the Manager, for listing or
// force-releasing edit locks.
func (m *Manager) Locker() *rowlock.Locker { return m.locks }

// Window returns the configured lock window.
func (m *Manager) Window() time.Duration { return m.window }

// Heartbeat returns the configured heartbeat interval.
func (m *Manager) Heartbeat() time.Duration { return m.heartbeat }

// LockName returns the lock name of a record: rowlock.RecordName(Kind, id).
func (m *Manager) LockName(id string) string { return rowlock.RecordName(m.kind, id) }

// owner is the lease owner of a user.
func owner(u User) string { return "user:" + u.ID }

// holderData is what a lease's data holds: the display name, and a
// take-over's record.
type holderData struct {
	Name   string `json:"name"`
	From   string `json:"from,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (d holderData) encode() string {
	b, _ := json.Marshal(d)
	return string(b)
}

// publicHolder turns a lease's holder into what the asking user may see.
func publicHolder(h *lockkit.Holder, asker User) *Holder {
	if h == nil {
		return &Holder{Name: "someone"}
	}
	var d holderData
	if err := json.Unmarshal([]byte(h.Data), &d); err != nil || d.Name == "" {
		// A lease taken other than through this package.
		d = holderData{Name: h.Data}
		if d.Name == "" {
			d.Name = "someone"
		}
	}
	return &Holder{
		Name:         d.Name,
		Since:        h.Since.UTC(),
		Self:         asker.ID != "" && h.Owner == owner(asker),
		TookOverFrom: d.From,
		Reason:       d.Reason,
	}
}

// current reads the live lease of a lock; nil when there is none.
func (m *Manager) current(ctx context.Context, name string) (*lockkit.Holder, error) {
	var (
		h                      lockkit.Holder
		since, expires, remain int64
		pid                    int64
	)
	err := m.db.QueryRowContext(ctx, m.holderQ, name).Scan(&h.Owner, &h.Token, &since, &expires, &h.Host, &pid, &h.Data, &remain)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("editlock: read holder of %q: %w", name, err)
	}
	if remain <= 0 {
		return nil, nil
	}
	h.PID = int(pid)
	h.Since = time.UnixMicro(since)
	h.Expires = time.UnixMicro(expires)
	return &h, nil
}

// Status returns who holds the edit lock of a record now, as user would
// see it (user may be the zero User), or nil when nobody does. A bad id is
// an error matching lockkit.ErrInvalid, returned before any I/O.
func (m *Manager) Status(ctx context.Context, user User, id string) (*Holder, error) {
	if !m.validID(id) {
		return nil, invalid.Errorf("editlock: bad record id %q", id)
	}
	h, err := m.current(ctx, m.LockName(id))
	if err != nil || h == nil {
		return nil, err
	}
	return publicHolder(h, user), nil
}

// LostCause is the cause of the *lockkit.LostError that [Manager.Check]
// returns when the lease it was given is gone. Holder names who holds the
// lock now, nil when nobody does.
type LostCause struct {
	Holder *Holder
}

// Error says who has taken the record over, where known.
func (c *LostCause) Error() string {
	switch {
	case c.Holder == nil:
		return "editlock: the edit lock expired or was released"
	case c.Holder.TookOverFrom != "":
		return fmt.Sprintf("editlock: %s has taken over", c.Holder.Name)
	}
	return fmt.Sprintf("editlock: the edit lock expired; %s is editing now", c.Holder.Name)
}

// Check is the write guard: call it in the save handler, before writing,
// with the record id and the fencing token the form carried (in
// [TokenField]). It succeeds only when the requesting user (from
// Config.Identify) still holds the edit lock with that very token, and
// returns the lease: write with lease.Token() as the fence, then Release
// it if editing ends with the save.
//
// It refuses with ErrNoIdentity when the request has no user, an error
// matching lockkit.ErrInvalid for a bad id or token (before any I/O), and
// a *lockkit.LostError (matching lockkit.ErrLost, with a *LostCause naming
// the new holder) when the lease expired, was released or was taken over —
// also when the token is another user's. A refused save must not be
// written.
//
// A lease can still be taken over between Check and the write. Where that
// matters, fence in the database too: store the token with the record and
// write with
//
//	UPDATE records SET ..., lock_token = $token WHERE id = $id AND lock_token <= $token
//
// so that a write from an older lease never lands after a newer holder's.
func (m *Manager) Check(r *http.Request, id string, token int64) (*rowlock.Lock, error) {
	if !m.validID(id) {
		return nil, invalid.Errorf("editlock: bad record id %q", id)
	}
	if token <= 0 {
		return nil, invalid.Errorf("editlock: fencing token %d is not positive", token)
	}
	user, ok := m.user(r)
	if !ok {
		return nil, ErrNoIdentity
	}
	ctx := r.Context()
	name := m.LockName(id)
	lease, err := m.locks.Resume(ctx, name, owner(user), token)
	if errors.Is(err, lockkit.ErrLost) {
		h, herr := m.current(ctx, name)
		if herr != nil {
			return nil, herr
		}
		cause := &LostCause{}
		if h != nil {
			cause.Holder = publicHolder(h, user)
		}
		return nil, &lockkit.LostError{Name: name, Cause: cause}
	}
	if err != nil {
		return nil, err
	}
	return lease, nil
}

func (m *Manager) user(r *http.Request) (User, bool) {
	u, ok := m.identify(r)
	if !ok || u.ID == "" {
		return User{}, false
	}
	if u.Name == "" {
		u.Name = u.ID
	}
	return u, true
}

// ServeHTTP serves the endpoints, chosen by the last element of the path,
// so mount the Manager under a prefix of its own:
//
//	mux.Handle("/edit-locks/products/", m)
//
// POST open, heartbeat, release and takeover change lock state; GET
// editlock.js is the script. See the package documentation for the
// parameters and answers.
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	op := path.Base(r.URL.Path)
	if op == "editlock.js" {
		m.serveScript(w, r)
		return
	}
	var handle func(http.ResponseWriter, *http.Request, User, string)
	switch op {
	case "open":
		handle = m.open
	case "heartbeat":
		handle = m.heartbeatHandler
	case "release":
		handle = m.release
	case "takeover":
		handle = m.takeover
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		m.refuse(w, http.StatusMethodNotAllowed, "", "use POST")
		return
	}
	if err := m.cop.Check(r); err != nil {
		m.refuse(w, http.StatusForbidden, "", "cross-origin request refused")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		m.refuse(w, http.StatusBadRequest, "", "bad form")
		return
	}
	id := r.PostForm.Get("id")
	if !m.validID(id) {
		m.refuse(w, http.StatusBadRequest, "", "bad record id")
		return
	}
	user, ok := m.user(r)
	if !ok {
		m.refuse(w, http.StatusUnauthorized, id, "not signed in")
		return
	}
	if utf8.RuneCountInString(user.ID) > MaxUserIDChars || utf8.RuneCountInString(user.Name) > MaxUserNameChars {
		m.fail(w, r, id, fmt.Errorf("editlock: user id or name too long (at most %d and %d characters)", MaxUserIDChars, MaxUserNameChars))
		return
	}
	handle(w, r, user, id)
}

func (m *Manager) answer(w http.ResponseWriter, status int, a *Answer) {
	a.HeartbeatMS = m.heartbeat.Milliseconds()
	a.WindowMS = m.window.Milliseconds()
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(a)
}

func (m *Manager) refuse(w http.ResponseWriter, status int, id, msg string) {
	m.answer(w, status, &Answer{Record: id, Error: msg})
}

// fail answers 500 for an error the user cannot act on, and logs it; bad
// input found by rowlock is a 400, and a request its client gave up is
// only logged at debug level.
func (m *Manager) fail(w http.ResponseWriter, r *http.Request, id string, err error) {
	if errors.Is(err, lockkit.ErrInvalid) {
		m.refuse(w, http.StatusBadRequest, id, "bad request")
		return
	}
	level := slog.LevelError
	if r.Context().Err() != nil {
		level = slog.LevelDebug // the client went away: a closed tab, a cut network
	}
	m.log.Log(r.Context(), level, "editlock: request failed", "kind", m.kind, "record", id, "err", err)
	m.refuse(w, http.StatusInternalServerError, id, "internal error")
}

func formToken(r *http.Request) (int64, bool) {
	t, err := strconv.ParseInt(r.PostForm.Get("token"), 10, 64)
	return t, err == nil && t > 0
}

// editing answers the asking user's own lease. since is read from the
// lease's row; the lease was just taken or renewed.
func (m *Manager) editing(w http.ResponseWriter, r *http.Request, user User, id string, token int64) {
	a := &Answer{State: Editing, Record: id, Token: token}
	h, err := m.current(r.Context(), m.LockName(id))
	switch {
	case err != nil:
		m.fail(w, r, id, err)
		return
	case h != nil && h.Token == token:
		a.Holder = publicHolder(h, user)
	default:
		// Gone already (a window shorter than a round trip): the next
		// heartbeat reports it lost.
		a.Holder = &Holder{Name: user.Name, Self: true}
	}
	m.answer(w, http.StatusOK, a)
}

// held answers a lock held by someone else (or the same user elsewhere).
func (m *Manager) held(w http.ResponseWriter, r *http.Request, user User, id string, h *lockkit.Holder) {
	ph := publicHolder(h, user)
	m.answer(w, http.StatusConflict, &Answer{
		State:       Held,
		Record:      id,
		Holder:      ph,
		CanTakeOver: m.mayTakeOver(r, user, *ph),
	})
}

// lost answers a lease that is gone, naming the current holder if any.
func (m *Manager) lost(w http.ResponseWriter, r *http.Request, user User, id string) {
	h, err := m.current(r.Context(), m.LockName(id))
	if err != nil {
		m.fail(w, r, id, err)
		return
	}
	a := &Answer{State: Lost, Record: id}
	if h != nil {
		a.Holder = publicHolder(h, user)
	}
	m.answer(w, http.StatusConflict, a)
}

// open takes the lock, or reports who holds it. Parameters: id.
func (m *Manager) open(w http.ResponseWriter, r *http.Request, user User, id string) {
	ctx := r.Context()
	lease, err := m.locks.TryLock(ctx, m.LockName(id), &rowlock.Options{
		Owner: owner(user),
		Data:  holderData{Name: user.Name}.encode(),
	})
	var held *lockkit.HeldError
	switch {
	case errors.As(err, &held) && held.Cause == nil:
		m.held(w, r, user, id, held.Holder)
	case err != nil:
		m.fail(w, r, id, err)
	default:
		m.editing(w, r, user, id, lease.Token())
	}
}

// heartbeatHandler renews the user's lease for another window, or reports
// it lost. Parameters: id, token.
func (m *Manager) heartbeatHandler(w http.ResponseWriter, r *http.Request, user User, id string) {
	token, ok := formToken(r)
	if !ok {
		m.refuse(w, http.StatusBadRequest, id, "bad token")
		return
	}
	ctx := r.Context()
	lease, err := m.locks.Resume(ctx, m.LockName(id), owner(user), token)
	if err == nil {
		err = lease.Renew(ctx)
	}
	switch {
	case errors.Is(err, lockkit.ErrLost):
		m.lost(w, r, user, id)
	case err != nil:
		m.fail(w, r, id, err)
	default:
		m.answer(w, http.StatusOK, &Answer{State: Editing, Record: id, Token: token})
	}
}

// release ends the user's lease. Parameters: id, token. The script sends
// it with navigator.sendBeacon when the page goes away.
func (m *Manager) release(w http.ResponseWriter, r *http.Request, user User, id string) {
	token, ok := formToken(r)
	if !ok {
		m.refuse(w, http.StatusBadRequest, id, "bad token")
		return
	}
	ctx := r.Context()
	lease, err := m.locks.Resume(ctx, m.LockName(id), owner(user), token)
	if err == nil {
		err = lease.Release(ctx)
	}
	switch {
	case errors.Is(err, lockkit.ErrLost):
		m.lost(w, r, user, id)
	case err != nil:
		m.fail(w, r, id, err)
	default:
		m.answer(w, http.StatusOK, &Answer{State: Released, Record: id})
	}
}

// takeover ends the current holder's lease and takes the lock, when
// Config.MayTakeOver allows it. Parameters: id, reason (optional).
func (m *Manager) takeover(w http.ResponseWriter, r *http.Request, user User, id string) {
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if !utf8.ValidString(reason) || strings.IndexByte(reason, 0) >= 0 || utf8.RuneCountInString(reason) > MaxReasonChars {
		m.refuse(w, http.StatusBadRequest, id, fmt.Sprintf("bad reason (at most %d characters)", MaxReasonChars))
		return
	}
	ctx := r.Context()
	name := m.LockName(id)
	opts := &rowlock.Options{Owner: owner(user), Data: holderData{Name: user.Name}.encode()}
	// Each round: take the lock if it is free; else end the very lease
	// the user may take over (by its owner and token, so that a lease
	// taken in between by someone else is never ended unseen) and try
	// again. Three rounds bound a race with other takers.
	for range 3 {
		lease, err := m.locks.TryLock(ctx, name, opts)
		if err == nil {
			m.editing(w, r, user, id, lease.Token())
			return
		}
		var held *lockkit.HeldError
		if !errors.As(err, &held) || held.Cause != nil {
			m.fail(w, r, id, err)
			return
		}
		prev := held.Holder
		if prev == nil {
			if prev, err = m.current(ctx, name); err != nil {
				m.fail(w, r, id, err)
				return
			}
			if prev == nil {
				continue
			}
		}
		ph := publicHolder(prev, user)
		if !m.mayTakeOver(r, user, *ph) {
			m.answer(w, http.StatusForbidden, &Answer{State: Held, Record: id, Holder: ph, Error: "you may not take over this record"})
			return
		}
		old, err := m.locks.Resume(ctx, name, prev.Owner, prev.Token)
		if err == nil {
			err = old.Release(ctx)
		}
		switch {
		case errors.Is(err, lockkit.ErrLost):
			continue // it ended meanwhile
		case err != nil:
			m.fail(w, r, id, err)
			return
		}
		opts.Data = holderData{Name: user.Name, From: ph.Name, Reason: reason}.encode()
		lease, err = m.locks.TryLock(ctx, name, opts)
		if errors.As(err, &held) && held.Cause == nil {
			continue // someone else was faster
		}
		if err != nil {
			m.fail(w, r, id, err)
			return
		}
		t := TakeOver{
			Record: id, By: user, FromID: strings.TrimPrefix(prev.Owner, "user:"),
			From: *ph, Reason: reason, Token: lease.Token(),
		}
		m.log.Info("editlock: taken over", "kind", m.kind, "record", id,
			"by", user.ID, "from", t.FromID, "reason", reason, "token", t.Token)
		if m.onTakeOver != nil {
			m.onTakeOver(ctx, t)
		}
		m.editing(w, r, user, id, lease.Token())
		return
	}
	// Still contended after three rounds: report the holder now.
	h, err := m.current(ctx, name)
	if err != nil {
		m.fail(w, r, id, err)
		return
	}
	m.held(w, r, user, id, h)
}

//go:embed editlock.js
var script []byte

// Script returns the browser script the Manager serves at editlock.js.
func Script() []byte { return append([]byte(nil), script...) }

var scriptETag = func() string {
	h := fnv.New64a()
	_, _ = h.Write(script)
	return fmt.Sprintf(`"%x"`, h.Sum64())
}()

func (m *Manager) serveScript(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", scriptETag)
	if r.Header.Get("If-None-Match") == scriptETag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(script)
}
