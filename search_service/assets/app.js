// logagg dashboard: a small single-page app over the search API. No build step, no
// dependencies, nothing fetched from the internet: the binary serves this file itself.
"use strict";

// Errors the page met, for people (the console) and for the browser test.
window.__logaggErrors = [];
window.addEventListener("error", (event) => window.__logaggErrors.push(String(event.message)));
window.addEventListener("unhandledrejection", (event) => window.__logaggErrors.push(String(event.reason)));

const SEVERITIES = ["trace", "debug", "info", "notice", "warn", "error", "fatal"];
const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const page = document.getElementById("page");
let stopCurrentPage = () => {};

// ---- helpers -------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick" || name === "onsubmit" || name === "onchange") node[name] = value;
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attributes = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

function apiKey() {
  return localStorage.getItem("logagg.apiKey") || "";
}

function headers() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

async function api(path) {
  const response = await fetch(path, { headers: headers() });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(response.status === 401 ? `${message} — set one with the Key button` : message);
  }
  return body;
}

/// A time in the browser's zone, with UTC on hover.
function time(value) {
  if (!value) return el("span", {}, "—");
  const date = new Date(value);
  return el("time", { datetime: date.toISOString(), title: date.toISOString() }, date.toLocaleString());
}

function sev(severity) {
  return el("span", { class: `sev ${severity}` }, severity);
}

function number(value, digits = 0) {
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

function routeParams() {
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  return { path, params: new URLSearchParams(query || "") };
}

function setRoute(path, params) {
  const query = new URLSearchParams([...params].filter(([, value]) => value !== "")).toString();
  const target = `#${path}${query ? "?" + query : ""}`;
  if (location.hash !== target) location.hash = target;
  else render();
}

function errorBox(error) {
  return el("div", { class: "error-box", role: "alert" }, String(error.message || error));
}

function panel(title, ...content) {
  return el("section", { class: "panel" }, el("h2", {}, title), ...content);
}

// ---- charts --------------------------------------------------------------------------

/// Stacked bars: `buckets` [{label, parts: {name: value}}], colours by part name.
function stackedBars(buckets, names, colour, height = 160) {
  const width = 640, bottom = 18;
  const max = Math.max(1, ...buckets.map((b) => names.reduce((sum, name) => sum + (b.parts[name] || 0), 0)));
  const barWidth = width / Math.max(1, buckets.length);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  buckets.forEach((bucket, index) => {
    let y = height - bottom;
    for (const name of names) {
      const value = bucket.parts[name] || 0;
      if (!value) continue;
      const h = (value / max) * (height - bottom - 4);
      y -= h;
      const rect = svgEl("rect", {
        x: index * barWidth + 1, y, width: Math.max(1, barWidth - 2), height: h, fill: colour(name),
      });
      rect.append(svgEl("title", {}, document.createTextNode(`${bucket.label} — ${name}: ${number(value)}`)));
      svg.append(rect);
    }
  });
  const step = Math.ceil(buckets.length / 6);
  buckets.forEach((bucket, index) => {
    if (index % step) return;
    const text = svgEl("text", { x: index * barWidth + 2, y: height - 4, "font-size": 10, fill: "#6b7280" });
    text.textContent = bucket.short || bucket.label;
    svg.append(text);
  });
  return svg;
}

function legend(names, colour) {
  return el("div", { class: "legend" }, names.map((name) => el("span", { style: `--swatch:${colour(name)}` }, name)));
}

function lineChart(points, height = 140) {
  const width = 640, bottom = 18;
  const values = points.map((p) => p.value).filter((v) => v !== null);
  const max = Math.max(1, ...values);
  const x = (index) => (index / Math.max(1, points.length - 1)) * (width - 10) + 5;
  const y = (value) => height - bottom - (value / max) * (height - bottom - 10);
  const path = points
    .map((p, index) => (p.value === null ? null : `${x(index)},${y(p.value)}`))
    .filter(Boolean)
    .join(" ");
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" },
    svgEl("polyline", { points: path, fill: "none", stroke: "#3b82f6", "stroke-width": 2 }));
  points.forEach((p, index) => {
    if (p.value === null) return;
    const dot = svgEl("circle", { cx: x(index), cy: y(p.value), r: 3, fill: "#3b82f6" });
    dot.append(svgEl("title", {}, document.createTextNode(`${p.label}: ${number(p.value, 1)} ms`)));
    svg.append(dot);
    if (index % Math.ceil(points.length / 6) === 0) {
      const text = svgEl("text", { x: x(index), y: height - 4, "font-size": 10, fill: "#6b7280" });
      text.textContent = p.short;
      svg.append(text);
    }
  });
  const top = svgEl("text", { x: 4, y: 12, "font-size": 10, fill: "#6b7280" });
  top.textContent = `${number(max, 0)} ms`;
  svg.append(top);
  return svg;
}

const severityColour = (name) => `var(--${name})`;
const classColour = (name) => `var(--c${name[0]})`;

// ---- overview ------------------------------------------------------------------------

const RANGES = { "1h": "Last hour", "6h": "Last 6 hours", "24h": "Last 24 hours", "7d": "Last 7 days" };

async function overview(params) {
  const range = RANGES[params.get("range")] ? params.get("range") : "24h";
  const picker = el("select", { "aria-label": "time range", onchange: (event) => setRoute("/", new URLSearchParams({ range: event.target.value })) },
    Object.entries(RANGES).map(([value, label]) => {
      const option = el("option", { value }, label);
      option.selected = value === range;
      return option;
    }));
  page.replaceChildren(el("div", { class: "filters" }, picker), el("p", { class: "muted" }, "Loading…"));
  const [stats, firing, recent] = await Promise.all([
    api(`/api/v1/stats?from=${range}`),
    api("/api/v1/alerts?state=firing&limit=20"),
    api("/api/v1/stats?from=1h"),
  ]);
  const buckets = stats.histogram.map((bucket) => {
    const date = new Date(bucket.start);
    return { label: date.toLocaleString(), short: date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }), parts: bucket.by_severity };
  });
  const used = SEVERITIES.filter((name) => stats.by_severity[name]);
  const routes = stats.access.slice(0, 12);
  // The mean over all requests: each service's (or route's) mean weighted by its requests.
  const weighted = (list) => {
    const timed = list.filter((route) => route.latency_ms);
    const requests = timed.reduce((sum, route) => sum + route.requests, 0);
    return requests ? timed.reduce((sum, route) => sum + route.latency_ms.mean * route.requests, 0) / requests : null;
  };
  const current = weighted(recent.access_totals);
  const classCell = (entry, name) => el("td", { class: name === "5xx" ? "" : "optional" }, number(entry.status_classes[name] || 0));
  const grid = el("div", { class: "grid" },
    el("section", { class: "panel wide", id: "volume" }, el("h2", {}, `Log volume by severity (${number(stats.total)} logs)`),
      stackedBars(buckets, used, severityColour), legend(used, severityColour)),
    panel("Top services by errors",
      stats.top_error_services.length
        ? el("table", { id: "top-errors" }, el("tr", {}, el("th", {}, "service"), el("th", {}, "errors")),
          stats.top_error_services.map((entry) => el("tr", {}, el("td", {}, el("a", { href: `#/search?service=${encodeURIComponent(entry.service)}&min_severity=error&from=${range}` }, entry.service)), el("td", {}, number(entry.errors)))))
        : el("p", { class: "muted" }, "No errors in this range.")),
    panel("Alerts firing now",
      firing.alerts.length
        ? el("ul", { id: "firing" }, firing.alerts.map((alert) => el("li", {}, el("a", { href: `#/alerts?id=${encodeURIComponent(alert.id)}` }, `${alert.rule} on ${alert.service}`), " since ", time(alert.started_at))))
        : el("p", { class: "muted", id: "firing" }, "None.")),
    panel("Average response time (last hour)",
      el("div", { class: "big", id: "current-latency" }, current === null ? "—" : `${number(current, 1)} ms`),
      el("p", { class: "muted" }, `${number(recent.access_totals.reduce((s, r) => s + r.requests, 0))} requests`)),
    el("section", { class: "panel wide" }, el("h2", {}, "Requests per service (all endpoints)"),
      stats.access_totals.length ? el("table", { id: "service-totals" },
        el("tr", {}, el("th", {}, "service"), el("th", {}, "endpoints"), el("th", {}, "requests"),
          CLASSES.map((name) => el("th", { class: name === "5xx" ? "" : "optional" }, name)), el("th", {}, "mean"), el("th", { class: "optional" }, "p99")),
        stats.access_totals.map((entry) => el("tr", {}, el("td", {}, entry.service), el("td", {}, number(entry.routes)), el("td", {}, number(entry.requests)),
          CLASSES.map((name) => classCell(entry, name)),
          el("td", {}, entry.latency_ms ? `${number(entry.latency_ms.mean, 1)} ms` : "—"),
          el("td", { class: "optional" }, entry.latency_ms ? `${number(entry.latency_ms.p99, 1)} ms` : "—"))))
        : el("p", { class: "muted" }, "No access logs in this range.")),
    el("section", { class: "panel wide" }, el("h2", {}, "Response time per endpoint"),
      routes.length ? el("table", { id: "endpoints" },
        el("tr", {}, el("th", {}, "service"), el("th", {}, "endpoint"), el("th", {}, "requests"), el("th", {}, "mean"), el("th", {}, "p50"), el("th", { class: "optional" }, "p95"), el("th", { class: "optional" }, "p99")),
        routes.map((route) => el("tr", {}, el("td", {}, route.service), el("td", {}, `${route.method} ${route.path}`), el("td", {}, number(route.requests)),
          el("td", {}, route.latency_ms ? `${number(route.latency_ms.mean, 1)} ms` : "—"),
          el("td", {}, route.latency_ms ? `${number(route.latency_ms.p50, 1)} ms` : "—"),
          el("td", { class: "optional" }, route.latency_ms ? `${number(route.latency_ms.p95, 1)} ms` : "—"),
          el("td", { class: "optional" }, route.latency_ms ? `${number(route.latency_ms.p99, 1)} ms` : "—"))))
        : el("p", { class: "muted" }, "No access logs in this range.")),
    el("section", { class: "panel wide" }, el("h2", {}, "Status codes per endpoint"),
      routes.length ? [stackedBars(routes.map((route) => ({ label: `${route.service} ${route.method} ${route.path}`, short: route.path, parts: route.status_classes })), CLASSES, classColour), legend(CLASSES, classColour)] : el("p", { class: "muted" }, "—")),
    el("section", { class: "panel wide", id: "latency-over-time" }, el("h2", {}, "Average response time per hour, last 24 hours"), el("p", { class: "muted" }, "Loading…")),
  );
  page.replaceChildren(el("div", { class: "filters" }, picker), grid);
  // Access rollups are hourly: one window per hour of the last day, each answered from them.
  const hour = 3600000;
  const thisHour = Math.floor(Date.now() / hour) * hour;
  const windows = Array.from({ length: 24 }, (_, index) => {
    const from = new Date(thisHour - (23 - index) * hour);
    const to = new Date(from.getTime() + hour - 1);
    return { from, to };
  });
  const latencies = await Promise.all(windows.map((w) => api(`/api/v1/stats?from=${w.from.toISOString()}&to=${w.to.toISOString()}`).catch(() => null)));
  const points = windows.map((w, index) => ({
    label: w.from.toLocaleString(), short: w.from.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
    value: latencies[index] ? weighted(latencies[index].access_totals) : null,
  }));
  document.getElementById("latency-over-time").replaceChildren(el("h2", {}, "Average response time per hour, last 24 hours"), lineChart(points));
}

// ---- search --------------------------------------------------------------------------

const FILTERS = ["service", "severity", "min_severity", "from", "q", "contains", "host"];

function filterForm(params, submit, fields = FILTERS) {
  const inputs = {};
  const field = (name, label, control) => { inputs[name] = control; return el("label", {}, label, control); };
  const severitySelect = (name) => {
    const select = el("select", { name }, el("option", { value: "" }, "any"), SEVERITIES.map((s) => el("option", { value: s }, s)));
    select.value = params.get(name) || "";
    return select;
  };
  const text = (name, placeholder) => el("input", { name, placeholder, value: params.get(name) || "" });
  const form = el("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, control] of Object.entries(inputs)) if (control.value) next.set(name, control.value);
    submit(next);
  } });
  if (fields.includes("service")) form.append(field("service", "service", text("service", "checkout")));
  if (fields.includes("severity")) form.append(field("severity", "severity", severitySelect("severity")));
  if (fields.includes("min_severity")) form.append(field("min_severity", "at least", severitySelect("min_severity")));
  if (fields.includes("from")) form.append(field("from", "since", text("from", "24h, 7d or a time")));
  if (fields.includes("q")) form.append(field("q", "words", text("q", "payment failed")));
  if (fields.includes("contains")) form.append(field("contains", "contains", text("contains", "literal text")));
  if (fields.includes("host")) form.append(field("host", "host", text("host", "web-1")));
  form.append(el("button", { class: "action", type: "submit" }, "Apply"));
  return form;
}

async function search(params) {
  const detail = el("div", { id: "detail" });
  const results = el("div", { id: "results" }, el("p", { class: "muted" }, "Loading…"));
  page.replaceChildren(filterForm(params, (next) => setRoute("/search", next)), results, detail);
  const cursors = [null];
  const load = async (cursor) => {
    const query = new URLSearchParams([...params].filter(([name]) => FILTERS.includes(name)));
    query.set("limit", "50");
    if (cursor) query.set("cursor", cursor);
    results.replaceChildren(el("p", { class: "muted" }, "Loading…"));
    try {
      const body = await api(`/api/v1/logs?${query}`);
      const table = el("table", { id: "results-table" },
        el("tr", {}, el("th", {}, "time"), el("th", {}, "service"), el("th", {}, "severity"), el("th", {}, "message"), el("th", { class: "optional" }, "host")),
        body.logs.map((log) => el("tr", { class: "row", "data-id": log.id, onclick: () => showRecord(detail, log) },
          el("td", {}, time(log.timestamp)), el("td", {}, log.service), el("td", {}, sev(log.severity)),
          el("td", { class: "message" }, log.message), el("td", { class: "optional" }, log.host || ""))));
      const index = cursors.indexOf(cursor);
      const pager = el("div", { class: "filters" },
        el("button", { class: "action", type: "button", id: "previous", disabled: index > 0 ? null : "disabled", onclick: () => load(cursors[index - 1]) }, "← Newer"),
        el("span", { class: "muted" }, `page ${index + 1} · ${body.logs.length} logs · ${body.took_ms} ms`),
        el("button", { class: "action", type: "button", id: "next", disabled: body.next_cursor ? null : "disabled", onclick: () => {
          if (!cursors.includes(body.next_cursor)) cursors.push(body.next_cursor);
          load(body.next_cursor);
        } }, "Older →"));
      results.replaceChildren(pager, body.logs.length ? table : el("p", { class: "muted" }, "No logs match."));
    } catch (error) {
      results.replaceChildren(errorBox(error));
    }
  };
  await load(null);
}

function showRecord(target, log) {
  target.replaceChildren(panel(`Log ${log.id}`, time(log.timestamp), el("pre", { class: "record" }, JSON.stringify(log, null, 2))));
  target.scrollIntoView({ block: "nearest" });
}

// ---- live tail -----------------------------------------------------------------------

async function tail(params) {
  const lines = el("div", { class: "tail", id: "tail-lines" });
  const status = el("span", { class: "muted", id: "tail-status" }, "connecting…");
  let paused = false;
  const held = [];
  const pause = el("button", { class: "action", type: "button", id: "pause", onclick: () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) { held.splice(0).forEach(show); }
    pause.dataset.held = held.length;
  } }, "Pause");
  page.replaceChildren(filterForm(params, (next) => setRoute("/tail", next), ["service", "severity", "min_severity", "q", "contains", "host"]),
    el("div", { class: "filters" }, pause, status), lines);
  const show = (log) => {
    lines.prepend(el("div", {}, time(log.timestamp), " ", sev(log.severity), ` ${log.service} `, log.message));
    while (lines.childElementCount > 500) lines.lastElementChild.remove();
  };
  const controller = new AbortController();
  stopCurrentPage = () => controller.abort();
  const query = new URLSearchParams([...params].filter(([name]) => FILTERS.includes(name) && name !== "from"));
  try {
    const response = await fetch(`/api/v1/tail?${query}`, { headers: headers(), signal: controller.signal });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error(body && body.error ? body.error.message : `HTTP ${response.status}`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (name === "ready") status.textContent = "live";
        else if (name === "log") {
          const log = JSON.parse(data);
          if (paused) { held.push(log); if (held.length > 1000) held.shift(); pause.dataset.held = held.length; } else show(log);
        } else if (name === "dropped") {
          status.textContent = `ended: ${JSON.parse(data).error.message}`;
        }
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") status.replaceWith(errorBox(error));
  }
}

// ---- alerts --------------------------------------------------------------------------

// How often the alerts page asks for news; it redraws only when the alerts changed.
const ALERTS_POLL_MS = 5000;

const loadAlerts = () => Promise.all([api("/api/v1/alerts?state=firing&limit=100"), api("/api/v1/alerts?state=resolved&limit=50")]);

async function alerts(params) {
  const detail = el("div", { id: "alert-detail" });
  const [firing, recent] = await loadAlerts();
  const shown = JSON.stringify([firing.alerts, recent.alerts]);
  const poll = setInterval(async () => {
    try {
      const [nowFiring, nowRecent] = await loadAlerts();
      if (JSON.stringify([nowFiring.alerts, nowRecent.alerts]) !== shown) render();
    } catch (error) {
      // The next poll tries again; the page keeps what it shows.
    }
  }, ALERTS_POLL_MS);
  stopCurrentPage = () => clearInterval(poll);
  const list = (items) => items.length
    ? el("table", {}, el("tr", {}, el("th", {}, "rule"), el("th", {}, "service"), el("th", {}, "value"), el("th", {}, "started"), el("th", { class: "optional" }, "resolved")),
      items.map((alert) => el("tr", { class: `row alert-${alert.state}`, "data-id": alert.id, onclick: () => setRoute("/alerts", new URLSearchParams({ id: alert.id })) },
        el("td", {}, alert.rule), el("td", {}, alert.service), el("td", {}, `${number(alert.value, 2)} / ${number(alert.threshold, 2)}`),
        el("td", {}, time(alert.started_at)), el("td", { class: "optional" }, time(alert.resolved_at)))))
    : el("p", { class: "muted" }, "None.");
  page.replaceChildren(el("div", { class: "grid" }, panel("Firing", list(firing.alerts)), panel("Recently resolved", list(recent.alerts))), detail);
  const id = params.get("id");
  const chosen = [...firing.alerts, ...recent.alerts].find((alert) => alert.id === id);
  if (!chosen) return;
  const samples = await Promise.all(chosen.sample_ids.map((sample) => api(`/api/v1/logs/${encodeURIComponent(sample)}`).catch(() => null)));
  detail.replaceChildren(panel(`${chosen.rule} on ${chosen.service}`,
    el("p", {}, `${chosen.state}: value ${number(chosen.value, 2)} (peak ${number(chosen.peak, 2)}) against threshold ${number(chosen.threshold, 2)} over ${chosen.window_seconds} s; started `, time(chosen.started_at), chosen.resolved_at ? [", resolved ", time(chosen.resolved_at)] : null),
    el("h2", {}, "Sample logs"),
    el("table", { id: "samples" }, samples.filter(Boolean).map((log) => el("tr", {}, el("td", {}, time(log.timestamp)), el("td", {}, sev(log.severity)), el("td", { class: "message" }, log.message))))));
}

// ---- analyzers -----------------------------------------------------------------------

/// Weight against what each analyzer was delivered over the last minute: two bars each.
function shareBars(analyzers) {
  const width = 640, row = 34, label = 140;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${Math.max(1, analyzers.length) * row}`, role: "img", id: "share-bars" });
  analyzers.forEach((analyzer, index) => {
    const y = index * row;
    const name = svgEl("text", { x: 0, y: y + 20, "font-size": 12, fill: "#1d2330" });
    name.textContent = analyzer.id;
    svg.append(name);
    [["share", "var(--c1)", 4], ["observed_share_last_minute", "var(--info)", 17]].forEach(([field, fill, offset]) => {
      const value = analyzer[field] || 0;
      const rect = svgEl("rect", { x: label, y: y + offset, width: Math.max(1, value * (width - label - 60)), height: 11, fill });
      rect.append(svgEl("title", {}, document.createTextNode(`${analyzer.id} — ${field === "share" ? "weight" : "last minute"}: ${number(value * 100, 1)} %`)));
      svg.append(rect);
    });
  });
  return svg;
}

async function analyzers() {
  const list = (await api("/api/v1/analyzers")).analyzers;
  const poll = setInterval(() => render(), ALERTS_POLL_MS);
  stopCurrentPage = () => clearInterval(poll);
  if (!list.length) {
    page.replaceChildren(panel("Analyzers", el("p", { class: "muted" }, "No analyzer is registered (PUT /api/v1/analyzers/{id} on analyzer_service).")));
    return;
  }
  const percent = (value) => `${number(value * 100, 1)} %`;
  const target = (analyzer) => (analyzer.target && analyzer.target.url) || "queue";
  page.replaceChildren(el("div", { class: "grid" },
    panel("Weight and share over the last minute", legend(["weight", "last minute"], (name) => (name === "weight" ? "var(--c1)" : "var(--info)")), shareBars(list)),
    el("section", { class: "panel wide" }, el("h2", {}, "Analyzers"),
      el("table", { id: "analyzers" },
        el("tr", {}, el("th", {}, "analyzer"), el("th", { class: "optional" }, "target"), el("th", {}, "weight"), el("th", {}, "share"),
          el("th", {}, "last minute"), el("th", { class: "optional" }, "since registered"), el("th", {}, "delivered"), el("th", {}, "state"),
          el("th", { class: "optional" }, "failures"), el("th", { class: "optional" }, "heartbeat")),
        list.map((analyzer) => el("tr", { class: analyzer.online ? "analyzer-online" : "analyzer-offline", "data-id": analyzer.id },
          el("td", {}, analyzer.id), el("td", { class: "optional message" }, target(analyzer)), el("td", {}, number(analyzer.weight, 2)),
          el("td", {}, percent(analyzer.share)), el("td", {}, percent(analyzer.observed_share_last_minute)),
          el("td", { class: "optional" }, percent(analyzer.observed_share)), el("td", {}, number(analyzer.delivered)),
          el("td", {}, analyzer.online ? "online" : "offline"),
          el("td", { class: "optional" }, `${analyzer.failures} in a row, ${number(analyzer.failed_total)} in all`),
          el("td", { class: "optional" }, time(analyzer.last_heartbeat))))))));
}

// ---- routing -------------------------------------------------------------------------

const PAGES = { "/": overview, "/search": search, "/tail": tail, "/alerts": alerts, "/analyzers": analyzers };

async function render() {
  stopCurrentPage();
  stopCurrentPage = () => {};
  const { path, params } = routeParams();
  const show = PAGES[path] || overview;
  const name = Object.keys(PAGES).find((key) => PAGES[key] === show);
  document.querySelectorAll("nav a").forEach((link) => link.classList.toggle("active", link.getAttribute("href") === `#${name}`));
  try {
    await show(params);
  } catch (error) {
    page.replaceChildren(errorBox(error));
  }
}

document.getElementById("key-button").onclick = () => {
  const key = prompt("API key for this dashboard (empty to clear):", apiKey());
  if (key === null) return;
  if (key) localStorage.setItem("logagg.apiKey", key); else localStorage.removeItem("logagg.apiKey");
  render();
};
window.addEventListener("hashchange", render);
// Leaving the page must end a live tail's stream: a page kept alive (back/forward cache)
// would otherwise hold one of the browser's few connections to this host.
window.addEventListener("pagehide", () => stopCurrentPage());
render();
