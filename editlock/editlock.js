// editlock.js: the browser side of github.com/lockkit/lockkit/editlock.
// No dependencies. Include it on an edit page after a form such as
//
//   <form method="post" action="/products/42"
//         data-editlock="/edit-locks/products/" data-editlock-record="42">
//
// data-editlock is where the Manager is mounted (ending in "/") and
// data-editlock-record the record id. The script takes the edit lock when
// the page opens, renews it every heartbeat, shows a banner before the form
// (or in the element with the attribute data-editlock-banner inside it),
// keeps the form disabled while someone else edits, offers "Take over",
// disables the form and names the new editor when the lock is taken away,
// and releases the lock with navigator.sendBeacon when the page goes away.
// It puts the fencing token in the hidden field editlock_token (made if
// missing) for the save handler's Manager.Check.
//
// The form carries data-editlock-state (opening, editing, held, lost) and
// receives an "editlock:state" event with the server's answer as detail.
(function () {
  "use strict";

  var TOKEN_FIELD = "editlock_token";

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function hhmm(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime()) || d.getTime() <= 0) { return ""; }
    return pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function addStyle(doc) {
    if (doc.getElementById("editlock-style")) { return; }
    var s = doc.createElement("style");
    s.id = "editlock-style";
    // :where() keeps these rules below any of the page's own.
    s.textContent =
      ":where(.editlock-banner){margin:0 0 1em;padding:.6em .9em;border-radius:6px;" +
      "border:1px solid #c9d3df;background:#eef3f8;color:#1c2733;font:inherit}" +
      ":where(.editlock-banner[data-state=held]){border-color:#e0c36a;background:#fff6d6}" +
      ":where(.editlock-banner[data-state=lost]){border-color:#e09a9a;background:#fde8e8}" +
      ":where(.editlock-banner) :where(input){margin:.3em .4em 0 0;min-width:18em;font:inherit;padding:.2em .4em}" +
      ":where(.editlock-banner) :where(button){margin-left:.2em}";
    doc.head.appendChild(s);
  }

  function start(form) {
    var doc = form.ownerDocument;
    var base = form.getAttribute("data-editlock");
    var id = form.getAttribute("data-editlock-record");
    if (!base || !id) { return; }
    if (base.charAt(base.length - 1) !== "/") { base += "/"; }

    var st = {
      state: "opening", token: 0, hb: 15000, win: 150000,
      lastOK: 0, timer: 0, expiry: 0, submitting: false, gone: false,
      taking: false // a take-over is in flight
    };

    var tokenInput = form.elements[TOKEN_FIELD];
    if (!tokenInput) {
      tokenInput = doc.createElement("input");
      tokenInput.type = "hidden";
      tokenInput.name = TOKEN_FIELD;
      form.appendChild(tokenInput);
    }

    var banner = form.querySelector("[data-editlock-banner]");
    if (!banner) {
      banner = doc.createElement("div");
      form.parentNode.insertBefore(banner, form);
    }
    banner.className = (banner.className ? banner.className + " " : "") + "editlock-banner";
    banner.setAttribute("role", "status");
    banner.setAttribute("aria-live", "polite");
    addStyle(doc);

    // Controls the page disabled itself stay disabled.
    var fixed = [];
    for (var i = 0; i < form.elements.length; i++) {
      if (form.elements[i].disabled) { fixed.push(form.elements[i]); }
    }
    function setEnabled(on) {
      for (var i = 0; i < form.elements.length; i++) {
        var el = form.elements[i];
        if (banner.contains(el) || fixed.indexOf(el) >= 0) { continue; }
        el.disabled = !on;
      }
    }

    var shown = "";
    function show(state, parts, takeOver) {
      st.state = state;
      form.setAttribute("data-editlock-state", state);
      banner.setAttribute("data-state", state);
      setEnabled(state === "editing");
      // Unchanged: keep the banner, and what is typed in it.
      var key = state + "\n" + parts.join(" ") + "\n" + !!takeOver;
      if (key === shown) { return; }
      shown = key;
      while (banner.firstChild) { banner.removeChild(banner.firstChild); }
      var msg = doc.createElement("span");
      msg.className = "editlock-message";
      msg.textContent = parts.join(" ");
      banner.appendChild(msg);
      if (takeOver) { banner.appendChild(doc.createElement("br")); }
      if (takeOver) {
        var reason = doc.createElement("input");
        reason.type = "text";
        reason.name = "editlock_reason";
        reason.className = "editlock-reason";
        reason.placeholder = "Reason (optional)";
        reason.maxLength = 500;
        var btn = doc.createElement("button");
        btn.type = "button";
        btn.className = "editlock-takeover";
        btn.textContent = "Take over";
        btn.addEventListener("click", function () {
          btn.disabled = true;
          // No poll while the take-over is in flight: a poll sent after
          // it would be answered "held" (by the old holder, or by this
          // user "in another window") and win over its answer.
          st.taking = true;
          clearTimeout(st.timer);
          request("takeover", { id: id, reason: reason.value }, function () {
            btn.disabled = false;
          });
        });
        banner.appendChild(reason);
        banner.appendChild(btn);
      }
    }

    function send(op, params) {
      var ctl = typeof AbortController === "function" ? new AbortController() : null;
      // A beat or a poll gives up at the next one; a take-over, which the
      // user waits for, is given the window.
      var t = ctl ? setTimeout(function () { ctl.abort(); }, op === "takeover" ? st.win : st.hb) : 0;
      return fetch(base + op, {
        method: "POST",
        body: new URLSearchParams(params),
        credentials: "same-origin",
        headers: { "Accept": "application/json" },
        signal: ctl ? ctl.signal : undefined
      }).then(function (res) {
        clearTimeout(t);
        return res.json().then(function (a) { a.status = res.status; return a; },
          function () { return { status: res.status }; });
      }, function (err) { clearTimeout(t); throw err; });
    }

    function schedule(fn, ms) {
      clearTimeout(st.timer);
      st.timer = setTimeout(fn, ms);
    }

    // stop ends beating and polling, and forgets the token.
    function stop() {
      clearTimeout(st.timer);
      clearTimeout(st.expiry);
      st.token = 0;
      tokenInput.value = "";
    }

    // The lease on the server ends one window after the last renewal
    // that reached it, so the page gives up one window after the last
    // confirmed request was sent: never later than the server.
    function armExpiry(sent) {
      st.lastOK = sent;
      clearTimeout(st.expiry);
      st.expiry = setTimeout(function () {
        if (st.state !== "editing") { return; }
        stop();
        show("lost", ["The server could not be reached, so your edit lock has ended.",
          "Your changes cannot be saved; reload the page to edit again."]);
      }, Math.max(0, sent + st.win - Date.now()));
    }

    // request sends op and hands the answer to handle, unless the answer
    // to a later request was handled already (a poll that crossed a
    // take-over, say). failed runs when the request did not get through.
    var seq = 0, applied = 0;
    function request(op, params, failed) {
      var n = ++seq, sent = Date.now();
      send(op, params).then(function (a) {
        if (op === "takeover") { st.taking = false; }
        if (n < applied || st.gone) { return; }
        applied = n;
        handle(a, sent);
      }, function () {
        if (op === "takeover") { st.taking = false; }
        if (failed) { failed(); }
        if (n >= applied) { retry(); }
      });
    }

    function handle(a, sent) {
      if (a.heartbeat_ms > 0) { st.hb = a.heartbeat_ms; }
      if (a.window_ms > 0) { st.win = a.window_ms; }
      var h = a.holder || {};
      var since = hhmm(h.since);
      var reason = h.reason ? "Reason: \u201c" + h.reason + "\u201d." : "";
      switch (a.state) {
        case "editing":
          st.token = a.token;
          tokenInput.value = String(a.token);
          armExpiry(sent);
          if (a.holder) { // open and takeover name the holder; heartbeats do not
            st.editing = h.took_over_from ?
              "You took over from " + h.took_over_from + ". You are editing this record." :
              "You are editing this record.";
          }
          show("editing", [st.editing || "You are editing this record."]);
          schedule(heartbeat, st.hb);
          break;
        case "held":
          var who = h.self ? "You are editing this record in another window" :
            (h.name || "Someone") + " is editing";
          var parts = [who + (since ? " since " + since : "") + "."];
          if (h.took_over_from) { parts.push("(Took over from " + h.took_over_from + ".)"); }
          if (a.error) { parts.push(a.error + "."); }
          if (!h.self) { parts.push("The form stays read-only until " + (h.name || "they") + " leaves."); }
          show("held", parts, !!a.can_take_over && a.status !== 403);
          schedule(open, st.hb);
          break;
        case "lost":
          stop();
          var lost;
          if (a.holder && h.self) {
            lost = ["You took over this record in another window."];
          } else if (a.holder && h.took_over_from) {
            lost = [(h.name || "Someone") + " has taken over and is currently editing."];
            if (reason) { lost.push(reason); }
            lost.push("Your changes cannot be saved.");
          } else if (a.holder) {
            lost = ["Your edit lock expired; " + (h.name || "someone") + " is editing" +
              (since ? " since " + since : "") + ".", "Your changes cannot be saved."];
          } else {
            lost = ["Your edit lock expired.", "Reload the page to edit again."];
          }
          show("lost", lost);
          break;
        default:
          if (a.status === 401) {
            stop();
            show("lost", ["You are not signed in."]);
            return;
          }
          if (a.status >= 400 && a.status < 500) { // refused for good
            stop();
            show("lost", ["The edit lock was refused" + (a.error ? ": " + a.error : "") + "."]);
            return;
          }
          // A failed request: try again at the next beat.
          retry();
      }
      form.dispatchEvent(new CustomEvent("editlock:state", { detail: a }));
    }

    function retry() {
      if (st.state === "lost" || st.gone) { return; }
      schedule(st.state === "editing" ? heartbeat : open, st.hb);
    }

    function open() {
      if (st.taking) { return; } // the take-over's answer schedules the next
      request("open", { id: id });
    }

    function heartbeat() {
      if (st.state !== "editing") { return; }
      request("heartbeat", { id: id, token: st.token });
    }

    form.addEventListener("submit", function (e) {
      if (st.state !== "editing") { e.preventDefault(); return; }
      // The save handler checks the token and ends the lock itself; a
      // release sent as the page unloads would race with the save.
      st.submitting = true;
    });

    window.addEventListener("pagehide", function () {
      st.gone = true;
      clearTimeout(st.timer);
      clearTimeout(st.expiry);
      if (st.state === "editing" && !st.submitting && navigator.sendBeacon) {
        navigator.sendBeacon(base + "release", new URLSearchParams({ id: id, token: String(st.token) }));
        st.state = "released";
      }
    });
    window.addEventListener("pageshow", function (e) {
      if (e.persisted && st.gone) { // back from the back-forward cache
        st.gone = false;
        st.submitting = false;
        show("opening", ["Opening\u2026"]);
        open();
      }
    });

    show("opening", ["Opening\u2026"]);
    open();
  }

  function init() {
    var forms = document.querySelectorAll("form[data-editlock]");
    for (var i = 0; i < forms.length; i++) { start(forms[i]); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
