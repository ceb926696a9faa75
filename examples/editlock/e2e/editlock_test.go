package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/lockkit/lockkit/examples/editlock/app"
)

// staleSave submits the user's edit form as a page that had not yet heard
// of the take-over would: fields enabled, the title changed, and the
// fencing token the page was given.
func staleSave(u *user, title, token string) {
	u.e.t.Helper()
	u.do(
		chromedp.Evaluate[chromedp.Void](`(() => {
  const f = document.getElementById("edit");
  for (const el of f.elements) el.disabled = false;
  document.getElementById("title").value = `+jsString(title)+`;
  f.elements.editlock_token.value = `+jsString(token)+`;
  f.submit();
})()`),
		chromedp.WaitVisible(chromedp.CSS("#refused, #saved")),
	)
}

// post sends a save of record 7's form data from the user's page with
// fetch, and returns the HTTP status, or -1 when the request did not get
// through.
func post(u *user, path, title, token string) int {
	u.e.t.Helper()
	return eval[int](u, `fetch(`+jsString(path)+`, {method: "POST", body: new URLSearchParams({
  title: `+jsString(title)+`, body: "from a stale page", editlock_token: `+jsString(token)+`})})
  .then(r => r.status, () => -1)`, chromedp.EvalAwaitPromise)
}

func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "<", `\x3c`)
	return `"` + r.Replace(s) + `"`
}

// Alice opens record 7 and Bob, opening it, sees "Alice is editing since
// HH:MM" with the form disabled. Bob takes over: Alice's page disables its
// form within one heartbeat and names Bob. Alice's stale saves are refused,
// before and after Bob saves, and the record keeps Bob's data.
func TestTakeOver(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.signIn("alice"), e.signIn("bob")

	alice.edit(7)
	alice.waitState("editing", 5*time.Second)
	if !alice.enabled() {
		t.Error("alice's form is disabled while she holds the lock")
	}
	if got := alice.banner(); got != "You are editing this record." {
		t.Errorf("alice's banner = %q", got)
	}
	h := e.holder(7)
	if h == nil || h.Name != "Alice" {
		t.Fatalf("holder of record 7 = %+v, want Alice", h)
	}
	since := h.Since.UTC().Format("15:04")
	aliceToken := eval[string](alice, `document.querySelector("input[name=editlock_token]").value`)
	if aliceToken == "" {
		t.Fatal("alice's form carries no token")
	}

	// The list shows Bob who is editing what.
	bob.do(chromedp.Navigate(e.url + "/"))
	if got, _ := chromedp.Run(bob.ctx, chromedp.Text(chromedp.CSS("#record-7 .editing"))); got != "Alice is editing since "+since {
		t.Errorf("bob's list says %q for record 7", got)
	}

	bob.edit(7)
	bob.waitState("held", 5*time.Second)
	want := "Alice is editing since " + since + "."
	if got := bob.banner(); !strings.HasPrefix(got, want) {
		t.Errorf("bob's banner = %q, want it to start %q", got, want)
	}
	if !bob.disabled() {
		t.Error("bob's form is enabled while alice holds the lock")
	}
	if tok := eval[string](bob, `document.querySelector("input[name=editlock_token]").value`); tok != "" {
		t.Errorf("bob's page has a token (%q) while alice holds the lock", tok)
	}
	// Bob waits a few heartbeats: he keeps seeing Alice, and what he types
	// into the reason box survives the polls.
	bob.do(chromedp.SendKeys(chromedp.CSS(".editlock-reason"), "Alice is out today"))
	time.Sleep(heartbeat + heartbeat/2)
	if got := eval[string](bob, `document.querySelector(".editlock-reason").value`); got != "Alice is out today" || bob.state() != "held" {
		t.Errorf("after a poll: state %q, reason box %q", bob.state(), got)
	}
	bob.screenshot("editlock-banner")

	bob.do(chromedp.Click(chromedp.CSS(".editlock-takeover")))
	bob.waitState("editing", 5*time.Second)
	if got := bob.banner(); got != "You took over from Alice. You are editing this record." {
		t.Errorf("bob's banner after the take-over = %q", got)
	}
	if !bob.enabled() {
		t.Error("bob's form is disabled after his take-over")
	}
	d := alice.waitState("lost", heartbeat+5*time.Second)
	t.Logf("alice's page disabled its form %v after bob's take-over (heartbeat %v)", d, heartbeat)
	// Her page beats every heartbeat, the next beat starting when the
	// last one answered: under twice the interval, it was the first beat
	// after the take-over that found it.
	if d > heartbeat+900*time.Millisecond {
		t.Errorf("alice's page took %v to notice the take-over: not at its first heartbeat (every %v)", d, heartbeat)
	}
	want = "Bob has taken over and is currently editing. Reason: \u201cAlice is out today\u201d. Your changes cannot be saved."
	if got := alice.banner(); got != want {
		t.Errorf("alice's banner = %q, want %q", got, want)
	}
	if !alice.disabled() {
		t.Error("alice's form is still enabled after the take-over")
	}
	if tok := eval[string](alice, `document.querySelector("input[name=editlock_token]").value`); tok != "" {
		t.Errorf("alice's page keeps its token %q after losing the lock", tok)
	}
	alice.screenshot("editlock-taken-over")

	// Alice's stale save, while Bob holds the lock.
	staleSave(alice, "Alice's stale title", aliceToken)
	if got, _ := chromedp.Run(alice.ctx, chromedp.Text(chromedp.ID("refused"))); got != "Bob has taken over and is currently editing." {
		t.Errorf("alice's refused save says %q", got)
	}
	if got := e.title(7); got != "Steel filing cabinet" {
		t.Errorf("record 7's title = %q after alice's stale save, want it unchanged", got)
	}

	// Bob saves.
	bob.saveTitle("Steel filing cabinet, repainted")
	if got := e.title(7); got != "Steel filing cabinet, repainted" {
		t.Errorf("record 7's title after bob's save = %q", got)
	}
	if h := e.holder(7); h != nil {
		t.Errorf("record 7 still locked after bob's save: %+v", h)
	}

	// Alice's stale token is refused after Bob's save too.
	if status := post(alice, "/records/7", "Alice's stale title", aliceToken); status != 409 {
		t.Errorf("alice's stale save after bob's = %d, want 409", status)
	}
	if got := e.title(7); got != "Steel filing cabinet, repainted" {
		t.Errorf("record 7's title = %q, want bob's", got)
	}
}

// Bob takes over while his page's poll is due: the take-over's answer is
// slow (1.5 heartbeats), so the page's next "open" poll would go out while
// the take-over is in flight, and its answer ("Alice is editing", or, once
// Bob holds the lock, "you are editing in another window") would win over
// the take-over's. The page sends no poll while a take-over is in flight:
// Bob ends up editing, and stays so.
func TestTakeOverWhilePollDue(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.signIn("alice"), e.signIn("bob")
	alice.edit(4)
	alice.waitState("editing", 5*time.Second)
	bob.edit(4)
	bob.waitState("held", 5*time.Second)

	e.delay(app.LocksPrefix+"takeover", heartbeat+heartbeat/2)
	bob.do(chromedp.Click(chromedp.CSS(".editlock-takeover")))
	bob.waitState("editing", 5*heartbeat)
	e.delay(app.LocksPrefix+"takeover", 0)
	alice.waitState("lost", heartbeat+5*time.Second)

	// Two heartbeats later Bob still edits, and holds the lock.
	time.Sleep(2 * heartbeat)
	if got := bob.state(); got != "editing" || !bob.enabled() {
		t.Fatalf("bob's page %v after his take-over: state %q, enabled %v, banner %q",
			2*heartbeat, got, bob.enabled(), bob.banner())
	}
	if h := e.holder(4); h == nil || h.Name != "Bob" {
		t.Fatalf("holder of record 4 = %+v, want Bob", h)
	}
	bob.saveTitle("Oak desk, waxed")
	if got := e.title(4); got != "Oak desk, waxed" {
		t.Errorf("record 4's title after bob's save = %q", got)
	}
}

// Alice closes her tab while Bob waits: Bob gets the lock within the
// window — at once when the browser sends the release beacon.
func TestClosedTab(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.signIn("alice"), e.signIn("bob")
	alice.edit(3)
	alice.waitState("editing", 5*time.Second)
	bob.edit(3)
	bob.waitState("held", 5*time.Second)

	// Page.close closes the tab as a user does, running its unload
	// handlers (pagehide, and so the beacon).
	closed := time.Now()
	if _, err := chromedp.Call(alice.ctx, page.Close, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	for e.holder(3) != nil && time.Since(closed) < window+time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	released := time.Since(closed)
	t.Logf("the lock ended %v after alice closed her tab (window %v)", released, window)
	if released > window/2 {
		t.Errorf("the lock ended %v after the tab closed: no release beacon arrived", released)
	}
	d := bob.waitState("editing", window+heartbeat+2*time.Second)
	got := time.Since(closed)
	t.Logf("bob got the lock %v after alice closed her tab (waited %v)", got, d)
	if got > window {
		t.Errorf("bob got the lock %v after alice closed her tab, beyond the window %v", got, window)
	}
	if !bob.enabled() || bob.banner() != "You are editing this record." {
		t.Errorf("bob's page: enabled %v, banner %q", bob.enabled(), bob.banner())
	}
}

// Alice's network is cut (every request of her tab blocked): her page
// gives the lock up within the window, the lock ends on the server within
// the window and Bob, waiting, gets it; nothing Alice sends afterwards is
// saved.
func TestNetworkCut(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.signIn("alice"), e.signIn("bob")
	alice.edit(5)
	alice.waitState("editing", 5*time.Second)
	aliceToken := eval[string](alice, `document.querySelector("input[name=editlock_token]").value`)
	bob.edit(5)
	bob.waitState("held", 5*time.Second)

	block := func(patterns ...*network.BlockPattern) {
		t.Helper()
		if _, err := chromedp.Call(alice.ctx, network.Enable, network.EnableParams{}); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Call(alice.ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: patterns}); err != nil {
			t.Fatal(err)
		}
	}
	block(&network.BlockPattern{URLPattern: "*://*:*/*", Block: true})
	cut := time.Now()
	if status := post(alice, "/records/5", "Alice offline", aliceToken); status != -1 {
		t.Fatalf("a save from alice's cut-off page got through: %d", status)
	}

	d := alice.waitState("lost", window+heartbeat+2*time.Second)
	t.Logf("alice's page gave the lock up %v after the cut (window %v)", d, window)
	if d > window+500*time.Millisecond {
		t.Errorf("alice's page gave the lock up %v after the cut, beyond the window %v", d, window)
	}
	if got := alice.banner(); !strings.Contains(got, "could not be reached") || !alice.disabled() {
		t.Errorf("alice's page: disabled %v, banner %q", alice.disabled(), got)
	}

	bob.waitState("editing", window+heartbeat+2*time.Second)
	got := time.Since(cut)
	t.Logf("bob got the lock %v after alice's network was cut", got)
	if got > window+heartbeat+time.Second {
		t.Errorf("bob got the lock %v after the cut; the window is %v and he asks every %v", got, window, heartbeat)
	}
	bob.saveTitle("Wool rug, washed")

	// Alice's network comes back: her page stays disabled, and her save
	// with the token of her lost lease is refused.
	block()
	if status := post(alice, "/records/5", "Alice back online", aliceToken); status != 409 {
		t.Errorf("alice's save after the cut = %d, want 409", status)
	}
	time.Sleep(heartbeat + heartbeat/2)
	if alice.state() != "lost" || !alice.disabled() {
		t.Errorf("alice's page after the network came back: state %q, disabled %v", alice.state(), alice.disabled())
	}
	if got := e.title(5); got != "Wool rug, washed" {
		t.Errorf("record 5's title = %q, want bob's", got)
	}
}
