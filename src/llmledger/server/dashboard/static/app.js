// llmledger dashboard: draws the page's chart with plotly.js and shows new calls live.
(function () {
  "use strict";

  function themeColors() {
    var style = getComputedStyle(document.documentElement);
    return {
      fg: style.getPropertyValue("--fg").trim(),
      line: style.getPropertyValue("--line").trim(),
      card: style.getPropertyValue("--card").trim(),
    };
  }

  function drawChart() {
    var holder = document.getElementById("chart");
    var source = document.getElementById("chart-data");
    if (!holder || !source || typeof Plotly === "undefined") return;
    var spec = JSON.parse(source.textContent);
    var colors = themeColors();
    var traces = spec.series.map(function (s) {
      var trace = { name: s.name, x: s.x || spec.x, y: s.y };
      if (spec.kind === "scatter") {
        trace.type = "scatter"; trace.mode = "markers";
      } else if (spec.kind === "line") {
        trace.type = "scatter"; trace.mode = "lines+markers";
      } else {
        trace.type = "bar";
      }
      // A feature's series has the colour of the feature's badges.
      var colour = (spec.colours || {})[s.name];
      if (colour) trace.marker = { color: colour };
      if (spec.barcolours && spec.barcolours.some(Boolean)) {
        trace.marker = { color: spec.barcolours.map(function (c) { return c || undefined; }) };
      }
      return trace;
    });
    var layout = {
      barmode: spec.barmode || "group",
      margin: { t: 20, r: 20, b: 60, l: 70 },
      paper_bgcolor: colors.card,
      plot_bgcolor: colors.card,
      font: { color: colors.fg },
      xaxis: { gridcolor: colors.line, automargin: true },
      yaxis: { title: { text: spec.ytitle || "" }, gridcolor: colors.line, automargin: true },
      legend: { orientation: "h", y: -0.2 },
      showlegend: traces.length > 1,
    };
    Plotly.newPlot(holder, traces, layout, { responsive: true, displaylogo: false });
    holder.setAttribute("data-rendered", "true");
  }

  function liveCalls() {
    var table = document.getElementById("calls");
    var toggle = document.getElementById("live");
    if (!table || table.getAttribute("data-live") !== "on" || !toggle) return;
    var body = table.tBodies[0];
    var status = document.getElementById("live-status");
    var timer = null;

    function newest() {
      var row = body.rows[0];
      return row ? { ts: row.getAttribute("data-ts"), id: row.getAttribute("data-id") } : { ts: "0", id: "" };
    }

    function poll() {
      var last = newest();
      var url = "/calls/new?" + table.getAttribute("data-query") +
        "&after_ts=" + encodeURIComponent(last.ts) + "&after_id=" + encodeURIComponent(last.id);
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (response.redirected || !response.ok) throw new Error("stopped: " + response.status);
          return response.text();
        })
        .then(function (html) {
          var holder = document.createElement("tbody");
          holder.innerHTML = html;
          var rows = Array.prototype.slice.call(holder.querySelectorAll("tr"));
          rows.reverse().forEach(function (row) {
            if (body.querySelector('tr[data-id="' + row.getAttribute("data-id") + '"]')) return;
            row.classList.add("new");
            body.insertBefore(row, body.firstChild);
          });
          if (rows.length) {
            var empty = document.getElementById("no-calls");
            if (empty) empty.remove();
            status.textContent = rows.length + " new call" + (rows.length > 1 ? "s" : "");
          }
        })
        .catch(function (error) {
          status.textContent = "Live updates " + error.message;
          stop();
        });
    }

    function start() { if (!timer) timer = setInterval(poll, 3000); }
    function stop() { if (timer) { clearInterval(timer); timer = null; } }
    toggle.addEventListener("change", function () { toggle.checked ? start() : stop(); });
    if (toggle.checked) start();
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawChart();
    liveCalls();
  });
})();
