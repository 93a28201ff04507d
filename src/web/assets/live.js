// deploy-tracker's live updates: poll /live for a new ledger mark and, when it
// changes, fetch the page again and swap its <main> in place. Backs off while the
// server is away, catches up once it is back, and reloads into the sign-in form
// when the session ends. Also keeps the "3 min ago" texts current.
(function () {
  "use strict";

  var BASE_MS = 2000;
  var MAX_MS = 30000;
  var mark = document.body.getAttribute("data-live");
  var delay = BASE_MS;
  var down = false;
  var timer = null;

  function ago(seconds) {
    if (seconds < 10) return "just now";
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return Math.floor(seconds / 86400) + " d ago";
  }

  function refreshTimes() {
    var now = Date.now();
    var times = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var at = Date.parse(times[i].getAttribute("datetime"));
      if (!isNaN(at)) times[i].textContent = ago(Math.max(0, Math.floor((now - at) / 1000)));
    }
  }

  function show(state, text) {
    var badge = document.getElementById("live-state");
    if (badge) {
      badge.setAttribute("data-state", state);
      badge.textContent = text;
    }
  }

  function signedOut() {
    window.location.reload();
    throw new Error("signed out");
  }

  // Someone is choosing a filter: leave the page alone until they are done.
  function busy() {
    var el = document.activeElement;
    return !!(el && el.closest && el.closest("#page form"));
  }

  function refresh() {
    return fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" }
    }).then(function (response) {
      if (response.status === 401 || (response.redirected && response.url.indexOf("/login") >= 0)) signedOut();
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById("page");
      var current = document.getElementById("page");
      if (fresh && current) current.replaceWith(document.importNode(fresh, true));
      var freshMark = doc.body.getAttribute("data-live");
      if (freshMark) mark = freshMark;
      document.title = doc.title;
      refreshTimes();
    });
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function poll() {
    fetch("/live?since=" + encodeURIComponent(mark), {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" }
    }).then(function (response) {
      if (response.status === 401) signedOut();
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (answer) {
      // After an outage, fetch the page whatever the mark says: its ages are old.
      var stale = answer.changed || down;
      if (stale && !busy()) return refresh();
    }).then(function () {
      down = false;
      delay = BASE_MS;
      show("live", "live");
      schedule(delay);
    }).catch(function () {
      down = true;
      delay = Math.min(delay * 2, MAX_MS);
      show("down", "reconnecting…");
      schedule(delay);
    });
  }

  if (mark) schedule(BASE_MS);
  setInterval(refreshTimes, 15000);
})();
