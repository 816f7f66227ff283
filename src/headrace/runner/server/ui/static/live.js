// headrace dashboard: re-read live regions when runs change; tail a run's logs.
// Every HTML this script inserts was rendered (and escaped) by the server; log lines
// are added as text, never as HTML.
(function () {
  "use strict";
  var regions = document.querySelectorAll("[data-live]");
  var status = document.getElementById("live-status");
  var busy = false, again = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var jobs = Array.prototype.map.call(regions, function (el) {
      return fetch(el.getAttribute("data-live"), { headers: { "X-Fragment": "1" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null && !el.contains(document.activeElement)) { el.innerHTML = html; } });
    });
    Promise.all(jobs).catch(function () {}).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }

  if (regions.length && window.EventSource) {
    var events = new EventSource("/ui/events");
    events.addEventListener("change", refresh);
    events.onopen = function () { if (status) { status.classList.add("on"); status.title = "Live: updates as runs change"; } };
    events.onerror = function () { if (status) { status.classList.remove("on"); status.title = "Reconnecting…"; } };
  }

  var logs = document.getElementById("logs");
  if (logs && window.EventSource) {
    var empty = document.getElementById("logs-empty");
    var logStatus = document.getElementById("log-status");
    var stream = new EventSource(logs.getAttribute("data-follow"));
    stream.onmessage = function (e) {
      var line = JSON.parse(e.data);
      if (empty) { empty.remove(); empty = null; }
      var stick = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      var row = document.createElement("div");
      row.className = "log-line lvl-" + String(line.level_name).toLowerCase();
      var t = document.createElement("span"); t.className = "t";
      t.textContent = new Date(line.timestamp).toLocaleTimeString();
      var l = document.createElement("span"); l.className = "l"; l.textContent = line.level_name;
      var m = document.createElement("span"); m.className = "m"; m.textContent = line.message;
      row.appendChild(t); row.appendChild(l); row.appendChild(m);
      logs.appendChild(row);
      if (stick) { logs.scrollTop = logs.scrollHeight; }
    };
    stream.addEventListener("end", function () {
      stream.close();
      if (logStatus) { logStatus.textContent = ""; }
      refresh();
    });
  }
})();
