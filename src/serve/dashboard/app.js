// borg dashboard: keeps the server-rendered panels live. The event stream says when
// something changed; the panels are then fetched again as HTML. Log tails of running
// attempts are polled once a second. Buttons send the page's CSRF token.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="borg-csrf"]').content;
  var panels = document.getElementById("panels");
  var live = document.getElementById("live");
  var tails = {};
  var timer = null;

  function refresh() {
    timer = null;
    fetch("/api/dashboard/panels", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { panels.innerHTML = html; paintTails(); })
      .catch(function () {});
  }
  function soon() { if (!timer) { timer = setTimeout(refresh, 150); } }

  function paintTails() {
    panels.querySelectorAll("[data-tail]").forEach(function (el) {
      var t = tails[el.getAttribute("data-tail")];
      if (t !== undefined && el.textContent !== t) { el.textContent = t; el.scrollTop = el.scrollHeight; }
    });
  }
  function pollTails() {
    panels.querySelectorAll("[data-tail]").forEach(function (el) {
      var task = el.getAttribute("data-tail");
      fetch("/api/tasks/" + encodeURIComponent(task) + "/tail", { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (j) { tails[task] = (j.data.lines || []).join("\n"); paintTails(); })
        .catch(function () {});
    });
  }

  var types = ["task-claimed", "task-started", "task-completed", "task-failed", "task-skipped",
    "task-retry", "task-created", "progress-update", "handoff-requested", "handoff-accepted",
    "handoff-rejected", "handoff-dropped", "handoff-awaiting-approval", "breaker-changed",
    "park-changed", "lease-expired", "lock-acquired", "lock-released", "lock-deadlock",
    "lock-violation", "decision-logged", "message", "context-updated", "agent-registered",
    "interrupted", "heartbeat-lost"];
  function connect() {
    var es = new EventSource("/api/events");
    es.onopen = function () { live.textContent = "live"; live.className = "live on"; };
    es.onerror = function () { live.textContent = "reconnecting…"; live.className = "live"; };
    types.forEach(function (t) { es.addEventListener(t, soon); });
    es.onmessage = soon;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Borg-Csrf": csrf },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!j.success) { alert(j.error.code + ": " + j.error.message); }
        refresh();
      });
    });
  }
  panels.addEventListener("click", function (ev) {
    var b = ev.target.closest("button");
    if (!b) { return; }
    if (b.hasAttribute("data-accept")) {
      b.disabled = true;
      post("/api/handoffs/" + b.getAttribute("data-accept") + "/accept");
    } else if (b.hasAttribute("data-reject")) {
      var why = prompt("Why reject this handoff?");
      if (why !== null) { b.disabled = true; post("/api/handoffs/" + b.getAttribute("data-reject") + "/reject", { reason: why }); }
    }
  });

  connect();
  setInterval(pollTails, 1000);
  // Elapsed times and bars move between events too.
  setInterval(function () { if (panels.querySelector("[data-tail]")) { soon(); } }, 2000);
  pollTails();
})();
