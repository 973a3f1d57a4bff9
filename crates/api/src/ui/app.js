// Kawaii status page. Reads GET /v1/events (server-sent events) with fetch and a bearer token
// kept in sessionStorage; renders every section with textContent only (never HTML from data).
"use strict";

const TOKEN_KEY = "kawaii.token";
const HISTORY_MS = 10 * 60 * 1000;

const ui = {
  role: null,
  abort: null,
  retry: null,
  retryDelay: 1000,
  lastRevision: null,
  pageErrors: [],
  shownProblems: null,
  // "chain/rule" -> [[time ms, packets], ...] over the last 10 minutes.
  history: new Map(),
};

const $ = (id) => document.getElementById(id);

// Script errors are problems too: keep them and show them with the others.
window.addEventListener("error", (e) => {
  ui.pageErrors.push(String(e.message || e));
  showPageErrors();
});
window.addEventListener("unhandledrejection", (e) => {
  ui.pageErrors.push(String((e.reason && e.reason.message) || e.reason));
  showPageErrors();
});

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders() {
  return { Authorization: "Bearer " + token() };
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    if (c instanceof Node) {
      const td = c.tagName === "TD" ? c : el("td");
      if (td !== c) td.appendChild(c);
      tr.appendChild(td);
    } else {
      tr.appendChild(el("td", c === undefined || c === null || c === "" ? "–" : c));
    }
  }
  return tr;
}

function num(value, cls) {
  const td = el("td", value === undefined || value === null ? "–" : fmtNumber(value), "num " + (cls || ""));
  if (typeof value === "number") td.dataset.value = String(value);
  return td;
}

function pill(text, kind) {
  return el("span", text, "pill " + kind);
}

function fill(id, rows, columns, emptyText) {
  const body = $(id);
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const td = el("td", emptyText || "None", "empty");
    td.colSpan = columns;
    const tr = document.createElement("tr");
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function fmtNumber(n) {
  return Number(n).toLocaleString("en-US");
}

function fmtBytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return (u === 0 ? String(v) : v.toFixed(1)) + " " + units[u];
}

function bytesCell(n) {
  const td = el("td", fmtBytes(n), "num");
  if (typeof n === "number") td.dataset.value = String(n);
  return td;
}

function fmtAge(seconds) {
  if (seconds === undefined || seconds === null) return "never";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s ago";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
  return Math.floor(s / 86400) + " d ago";
}

function sinceCell(unixMs) {
  if (!unixMs) return el("td", "–");
  const td = el("td", fmtAge((Date.now() - unixMs) / 1000));
  td.title = new Date(unixMs).toISOString();
  return td;
}

// ---------------------------------------------------------------------------------------------
// Sign in and out
// ---------------------------------------------------------------------------------------------

async function signIn(candidate) {
  let resp;
  try {
    resp = await fetch("/v1/whoami", {
      headers: { Authorization: "Bearer " + candidate },
      cache: "no-store",
    });
  } catch (err) {
    $("login-error").textContent = "The gateway cannot be reached: " + err.message;
    return;
  }
  if (resp.status === 401) {
    $("login-error").textContent = "Token refused: the gateway does not know this token.";
    $("token").value = "";
    $("token").focus();
    return;
  }
  if (!resp.ok) {
    $("login-error").textContent = "Sign-in failed: HTTP " + resp.status;
    return;
  }
  const who = await resp.json();
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $("token").value = "";
  $("login-error").textContent = "";
  start(who);
}

function start(who) {
  ui.role = who.role;
  $("who").textContent = who.name + " (" + who.role + ")";
  $("login").hidden = true;
  $("main").hidden = false;
  $("facts").hidden = false;
  $("logout").hidden = false;
  $("audit").hidden = who.role !== "admin";
  connect();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (ui.abort) ui.abort.abort();
  clearTimeout(ui.retry);
  ui.role = null;
  ui.lastRevision = null;
  ui.shownProblems = null;
  ui.history.clear();
  $("main").hidden = true;
  $("facts").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("gateway").textContent = "";
  for (const id of ["zones-body", "drivers-body", "rules-body", "wg-body", "ipsec-body",
    "routes-body", "pipes-body", "peerings-body", "audit-body", "alert-list"]) {
    $(id).replaceChildren();
  }
  setConn("Not signed in", "");
  $("login-error").textContent = message || "";
  $("token").focus();
}

function setConn(text, cls) {
  const c = $("conn");
  c.textContent = text;
  c.className = "conn " + cls;
}

// ---------------------------------------------------------------------------------------------
// The live feed: text/event-stream read through fetch (EventSource cannot send headers).
// ---------------------------------------------------------------------------------------------

async function connect() {
  if (ui.abort) ui.abort.abort();
  const abort = new AbortController();
  ui.abort = abort;
  let resp;
  try {
    resp = await fetch("/v1/events", {
      headers: { ...authHeaders(), Accept: "text/event-stream" },
      cache: "no-store",
      signal: abort.signal,
    });
  } catch (err) {
    if (!abort.signal.aborted) reconnect("The gateway cannot be reached (" + err.message + ")");
    return;
  }
  if (resp.status === 401) {
    signOut("Token refused: the gateway no longer knows this token.");
    return;
  }
  if (!resp.ok || !resp.body) {
    reconnect("Live feed failed: HTTP " + resp.status);
    return;
  }
  setConn("Live", "live");
  ui.retryDelay = 1000;
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(buffer.slice(cut).match(/^\r?\n\r?\n/)[0].length + cut);
        dispatch(block);
      }
    }
  } catch (err) {
    if (abort.signal.aborted) return;
    reconnect("Live feed interrupted (" + err.message + ")");
    return;
  }
  if (!abort.signal.aborted) reconnect("The gateway closed the live feed");
}

function dispatch(block) {
  let event = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (event === "status" && data.length) render(JSON.parse(data.join("\n")));
}

function reconnect(why) {
  setConn(why + "; reconnecting…", "down");
  clearTimeout(ui.retry);
  ui.retry = setTimeout(connect, ui.retryDelay);
  ui.retryDelay = Math.min(ui.retryDelay * 2, 5000);
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

function render(ev) {
  const s = ev.status || {};
  const d = s.details || {};
  const now = Date.now();
  $("gateway").textContent = s.gateway || "";
  document.title = (s.gateway ? s.gateway + " · " : "") + "Kawaii gateway status";
  $("zone").textContent = s.zone || "(single zone)";
  $("desired").textContent = s.desired_revision;
  const applied = $("applied");
  applied.textContent = s.applied_revision;
  applied.className = s.applied_revision < s.desired_revision ? "bad" : "";
  const store = $("store");
  if (ev.store && ev.store.reachable) {
    store.textContent = "reachable (revision " + ev.store.revision + ")";
    store.className = "";
  } else {
    store.textContent = "unreachable";
    store.className = "bad";
  }

  const problems = [];
  if (ev.store && !ev.store.reachable) problems.push("Store unreachable: " + (ev.store.error || "no answer") + ". The data plane keeps its last applied state.");
  if (s.plan_error) problems.push("Cannot plan the desired state: " + s.plan_error);
  if (s.degraded) problems.push("Degraded: " + s.degraded);
  for (const e of s.rejected_config || []) problems.push("Config file rejected: " + e.path + ": " + e.reason);

  renderZones(s, d.vrrp, ev.instances || {});
  renderDrivers(s.drivers || [], problems);
  renderRules(d.rules, now);
  renderWireguard(d.wireguard);
  renderIpsec(d.ipsec, problems);
  renderRoutes(d.router, problems);
  renderPipes(d.pipes);
  renderPeerings(d.vpc_peerings, problems);
  showProblems(problems);

  if (ui.role === "admin" && s.desired_revision !== ui.lastRevision) {
    ui.lastRevision = s.desired_revision;
    loadAudit();
  }
}

function holderOf(router, thisZone, instances) {
  if (router.state === "master") return thisZone || "this instance";
  if (!router.master) return null;
  return instances[router.master] || router.master;
}

function renderZones(s, vrrp, instances) {
  const rows = [];
  for (const r of vrrp || []) {
    const holder = holderOf(r, s.zone, instances);
    const tr = row([
      el("td", r.zone),
      el("td", (r.vips || []).join(", ")),
      el("td", holder || "unknown", "holder"),
      el("td").appendChild(pill(r.state, r.state === "master" ? "ok" : r.state === "backup" ? "warn" : "bad")).parentNode,
      sinceCell(r.last_transition_ms),
      num(r.priority),
    ]);
    tr.dataset.zone = r.zone;
    if (holder && holder !== r.zone) tr.classList.add("away");
    rows.push(tr);
  }
  $("zones-empty").hidden = Array.isArray(vrrp) && vrrp.length > 0;
  fill("zones-body", rows, 6, "No virtual router");
}

function renderDrivers(drivers, problems) {
  const rows = drivers.map((dr) => {
    if (!dr.ok) problems.push("Driver " + dr.name + " failed to apply: " + (dr.error || "unknown error"));
    const tr = row([
      el("td", dr.name),
      el("td").appendChild(pill(dr.ok ? "ok" : dr.error_kind || "failed", dr.ok ? "ok" : "bad")).parentNode,
      num(dr.applied_revision),
      sinceCell(dr.last_apply ? Date.parse(dr.last_apply) : null),
      el("td", dr.error || ""),
    ]);
    tr.dataset.driver = dr.name;
    return tr;
  });
  fill("drivers-body", rows, 5, "No driver has run yet");
}

function renderRules(rules, now) {
  const rows = [];
  const seen = new Set();
  for (const r of rules || []) {
    const key = r.chain + "/" + r.rule;
    seen.add(key);
    let h = ui.history.get(key);
    if (!h) {
      h = [];
      ui.history.set(key, h);
    }
    const last = h[h.length - 1];
    // A counter that went down was reset (table replaced): start over.
    if (last && r.packets < last[1]) h.length = 0;
    if (!last || last[1] !== r.packets || now - last[0] >= 2000) h.push([now, r.packets]);
    while (h.length > 2 && now - h[0][0] > HISTORY_MS) h.shift();
    const rates = [];
    for (let i = 1; i < h.length; i++) {
      const dt = (h[i][0] - h[i - 1][0]) / 1000;
      rates.push(dt > 0 ? (h[i][1] - h[i - 1][1]) / dt : 0);
    }
    const rate = rates.length ? rates[rates.length - 1] : 0;
    const tr = row([
      el("td", r.chain),
      el("td", r.rule),
      num(r.packets, "packets"),
      bytesCell(r.bytes),
      el("td", rate.toFixed(rate < 10 ? 1 : 0) + " pkt/s", "num"),
      el("td").appendChild(sparkline(rates, key)).parentNode,
    ]);
    tr.dataset.rule = key;
    rows.push(tr);
  }
  for (const key of [...ui.history.keys()]) if (!seen.has(key)) ui.history.delete(key);
  fill("rules-body", rows, 6, rules ? "No counters" : "Counters not read yet");
}

function sparkline(rates, label) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 120 24");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  const max = Math.max(1, ...rates);
  svg.setAttribute("aria-label", "Packet rate of " + label + " over the last 10 minutes, peak " + max.toFixed(1) + " pkt/s");
  const base = document.createElementNS(NS, "line");
  base.setAttribute("x1", "0");
  base.setAttribute("x2", "120");
  base.setAttribute("y1", "23");
  base.setAttribute("y2", "23");
  svg.appendChild(base);
  if (rates.length > 1) {
    const step = 120 / (rates.length - 1);
    const pts = rates.map((v, i) => (i * step).toFixed(1) + "," + (23 - (v / max) * 21).toFixed(1));
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
  }
  return svg;
}

function renderWireguard(wg) {
  $("wg-part").hidden = !wg;
  if (!wg) return;
  const rows = (wg.peers || []).map((p) => {
    const tr = row([
      el("td", p.name),
      el("td", p.endpoint || "–"),
      el("td", (p.allowed_ips || []).join(", ")),
      el("td", p.last_handshake_ago === undefined || p.last_handshake_ago === null ? "never" : fmtAge(p.last_handshake_ago)),
      bytesCell(p.rx_bytes),
      bytesCell(p.tx_bytes),
    ]);
    tr.dataset.peer = p.name;
    return tr;
  });
  fill("wg-body", rows, 6, "No peer");
}

function renderIpsec(ipsec, problems) {
  $("ipsec-part").hidden = !ipsec;
  if (!ipsec) return;
  const c = ipsec.charon || {};
  $("charon").textContent = "charon " + (c.running ? "running" : "not running") +
    (c.restarts ? ", " + c.restarts + " restarts" : "") + (c.last_exit ? ", last exit: " + c.last_exit : "");
  if (!c.running) problems.push("IPsec: charon is not running" + (c.last_exit ? " (" + c.last_exit + ")" : ""));
  const rows = (ipsec.connections || []).map((cn) => {
    const up = cn.child_state === "INSTALLED";
    if (!up) problems.push("IPsec tunnel " + cn.name + " is down (IKE " + cn.ike_state + ", child " + cn.child_state + ")");
    const err = cn.last_error ? cn.last_error.reason + ": " + cn.last_error.detail : "";
    const tr = row([
      el("td", cn.name),
      el("td", cn.remote_peer + " → " + cn.remote_subnet + (cn.remote_alias ? " as " + cn.remote_alias : "") +
        (cn.local_alias ? ", sees us as " + cn.local_alias : "")),
      el("td").appendChild(pill(cn.ike_state, cn.ike_state === "ESTABLISHED" ? "ok" : "bad")).parentNode,
      el("td").appendChild(pill(cn.child_state, up ? "ok" : "bad")).parentNode,
      bytesCell(cn.bytes_in),
      bytesCell(cn.bytes_out),
      el("td", err),
    ]);
    tr.dataset.ipsec = cn.name;
    return tr;
  });
  fill("ipsec-body", rows, 7, "No connection");
}

function renderRoutes(router, problems) {
  $("routes-part").hidden = !router;
  if (!router) return;
  const rows = [];
  for (const r of router.routes || []) {
    for (const b of r.backends || []) {
      if (!b.healthy) problems.push("Route " + r.domain + ": backend " + b.address + " is unhealthy");
      const health = b.health_checked ? (b.healthy ? pill("healthy", "ok") : pill("unhealthy", "bad")) : pill("not checked", "warn");
      rows.push(row([
        el("td", r.domain),
        el("td", r.protocol),
        el("td", b.address),
        el("td").appendChild(health).parentNode,
        num(b.active_connections),
        num(b.total_connections),
      ]));
    }
  }
  fill("routes-body", rows, 6, "No route");
}

function renderPipes(pipes) {
  $("pipes-part").hidden = !pipes;
  if (!pipes) return;
  const rows = pipes.map((p) => {
    const errors = Object.entries(p.errors || {}).map(([k, v]) => k + ": " + v).join(", ");
    return row([
      el("td", p.name),
      el("td", p.listen),
      el("td", p.target),
      num(p.active),
      num(p.connections),
      bytesCell(p.bytes_in),
      bytesCell(p.bytes_out),
      el("td", errors),
    ]);
  });
  fill("pipes-body", rows, 8, "No pipe");
}

function renderPeerings(peerings, problems) {
  $("peerings-part").hidden = !peerings;
  if (!peerings) return;
  const rows = peerings.map((p) => {
    if (p.state === "down") problems.push("VPC peering " + p.name + " is down: the other side stopped answering");
    if (p.state === "failed") problems.push("VPC peering " + p.name + " failed: " + (p.error || "not applied"));
    const tr = row([
      el("td", p.name),
      el("td").appendChild(pill(p.state, p.state === "active" ? "ok" : p.state === "pending" ? "warn" : "bad")).parentNode,
      sinceCell(p.since ? p.since * 1000 : null),
    ]);
    tr.dataset.peering = p.name;
    return tr;
  });
  fill("peerings-body", rows, 3, "No peering");
}

function showProblems(problems) {
  const all = problems.concat(ui.pageErrors.map((e) => "Page error: " + e));
  // The list is a live region: touch it only when it changes, so it is announced once.
  const key = JSON.stringify(all);
  if (key === ui.shownProblems) return;
  ui.shownProblems = key;
  $("alert-list").replaceChildren(...all.map((p) => el("li", p)));
}

function showPageErrors() {
  if (!$("main").hidden) showProblems([]);
}

async function loadAudit() {
  let resp;
  try {
    resp = await fetch("/v1/audit?limit=20", { headers: authHeaders(), cache: "no-store" });
  } catch (err) {
    fill("audit-body", [], 5, "Cannot read the audit trail: " + err.message);
    return;
  }
  if (!resp.ok) {
    fill("audit-body", [], 5, "Cannot read the audit trail: HTTP " + resp.status);
    return;
  }
  const entries = await resp.json();
  const rows = entries.map((a) => row([
    el("td", a.at),
    num(a.revision),
    el("td", a.actor),
    el("td", a.action),
    el("td", (a.changes || []).map((c) => c.op + " " + c.path).join("; ")),
  ]));
  fill("audit-body", rows, 5, "No change recorded");
}

// ---------------------------------------------------------------------------------------------

function init() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("token").value.trim();
    if (t) signIn(t);
  });
  $("logout").addEventListener("click", () => signOut(""));
  const saved = token();
  if (saved) {
    // A reload within the tab: check the token again before showing anything.
    signIn(saved);
  } else {
    $("token").focus();
  }
}

init();
