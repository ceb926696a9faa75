// Package editlock puts "Alice is editing this record — take over?" into a
// net/http application: per-record edit locks held by a browser page, on
// top of package rowlock's leases.
//
// A [Manager] serves one kind of record (Config.Kind, such as "products").
// Mount it under a prefix of its own, include its script on the edit page,
// and call [Manager.Check] in the save handler:
//
//	locks, err := editlock.New(db, &editlock.Config{
//		Kind:     "products",
//		Identify: func(r *http.Request) (editlock.User, bool) { ... from the session ... },
//	})
//	mux.Handle("/edit-locks/products/", locks)
//
//	<form method="post" action="/products/42"
//	      data-editlock="/edit-locks/products/" data-editlock-record="42"> ... </form>
//	<script src="/edit-locks/products/editlock.js"></script>
//
//	// POST /products/42
//	token, _ := strconv.ParseInt(r.FormValue(editlock.TokenField), 10, 64)
//	lease, err := locks.Check(r, "42", token)
//	if err != nil { ... refuse the save: errors.Is(err, lockkit.ErrLost) ... }
//	... write, fenced by lease.Token() ...
//	lease.Release(ctx)
//
// The lock table must exist: run migrations.Up once at start-up.
//
// # How a lock lives
//
// Opening the page takes the lock (a lease of Config.Window, 150 s by
// default) or shows who holds it. The page renews the lease every
// Config.Heartbeat (15 s by default); a page that stops — closed without a
// release, a laptop shut, a network cut — gives the record up within one
// Window of its last heartbeat. Closing the page releases the lock at once
// through navigator.sendBeacon, when the browser sends it. Nothing is
// renewed in the background on the server: a lock lives exactly as long as
// its page keeps beating.
//
// While someone else holds the lock the page shows "Alice is editing since
// 10:02", keeps its form disabled, asks again every heartbeat (so it gets
// the lock as soon as Alice leaves) and offers "Take over" with an optional
// reason. A take-over ends Alice's lease by its owner and token and takes a
// new one; Alice's next heartbeat finds her lease gone and her page disables
// the form and says "Bob has taken over and is currently editing." Who may
// take over is Config.MayTakeOver's decision (default: anyone signed in);
// each take-over is recorded in the new lease's data (who from, the reason:
// rowlock.Locker.List and lockkit status show it), logged, and passed to
// Config.OnTakeOver for an audit log.
//
// # Endpoints
//
// Each takes POST parameters as application/x-www-form-urlencoded (what
// the script's fetch and sendBeacon send) and answers JSON, an [Answer]:
//
//	POST open       id            200 editing (token) | 409 held (holder, can_take_over)
//	POST heartbeat  id, token     200 editing         | 409 lost (holder now, if any)
//	POST release    id, token     200 released        | 409 lost
//	POST takeover   id, reason    200 editing (token) | 403 not allowed | 409 held
//	GET  editlock.js              the script
//
// For example, Bob opening record 7 while Alice edits it gets
//
//	409 {"state":"held","record":"7","holder":{"name":"Alice","since":"2026-11-02T10:02:11.5Z",
//	     "self":false},"can_take_over":true,"heartbeat_ms":15000,"window_ms":150000}
//
// and Alice, at her next heartbeat after Bob took over,
//
//	409 {"state":"lost","record":"7","holder":{"name":"Bob","since":"...","self":false,
//	     "took_over_from":"Alice","reason":"Alice is on holiday"},...}
//
// # Security
//
// Every endpoint acts only for the user Config.Identify returns: without one
// it answers 401 and locks nothing. The owner of a lease is "user:" + the
// user's ID, and a heartbeat, release or [Manager.Check] matches it together
// with the fencing token, so a token is of no use to anyone else. State
// changes are POST only (405 otherwise) and go through
// http.CrossOriginProtection (403 for a cross-origin browser request; set
// Config.CrossOrigin to trust other origins). A fencing token goes only into
// the answer to the user it belongs to; other users see the holder's display
// name, since when and a take-over's reason, never the holder's user id or
// token. Record ids are checked by Config.ValidID (by default 1 to 64
// letters, digits, '-', '_' or '.') and refused with 400 before any I/O;
// bodies are limited to 8 KiB and reasons to [MaxReasonChars] characters.
// The script renders names and reasons as text, never as HTML.
//
// # Fencing the write
//
// [Manager.Check] refuses a save whose lease expired, was released or was
// taken over. A lease can still end between Check and the write; where that
// matters, keep the token with the record and let the database refuse an
// older writer:
//
//	UPDATE products SET title = $1, lock_token = $2
//	WHERE id = $3 AND lock_token <= $2
//
// A write carrying an older token than the record's affects no row. The
// same holder may write more than once (<=).
package editlock
