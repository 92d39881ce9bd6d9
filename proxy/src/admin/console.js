// The janus-proxy console: polls the admin API's JSON routes and draws them. No build step,
// no library. The token is asked once and kept in sessionStorage (this tab only).
"use strict";

const TOKEN_KEY = "janus-proxy-admin-token";
const POLL_MS = 2000;
const FETCH_LIMIT_MS = 4000;
const STATUS_NAMES = ["normal", "abnormal", "maintenance", "high-water-mark"];

const $ = (id) => document.getElementById(id);
let lastHistoryT = 0;
let samples = [];
let historyCapacity = 180;
let failedSince = null;
let failures = 0;

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function askToken(why) {
  $("auth").hidden = false;
  if (why) notice(why);
  $("token").focus();
}

function notice(text) { $("notice").textContent = text || ""; }

// A JSON request to the admin API. Throws {unreachable} when the proxy does not answer,
// {status, error} for an HTTP error.
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_LIMIT_MS);
  let response;
  try {
    response = await fetch(path, { ...options, headers, signal: abort.signal, cache: "no-store" });
  } catch (e) {
    throw { unreachable: true, error: String(e) };
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    throw { status: response.status, error: (body && body.error) || response.statusText };
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

function ago(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

// A small line chart of `values` (numbers, nulls skipped) as SVG.
function chart(key, label, values, format = (v) => v) {
  const width = 240, height = 48, pad = 3;
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("data-chart", key);
  const points = values.map((v, i) => [i, v]).filter(([, v]) => typeof v === "number");
  svg.setAttribute("data-points", points.length);
  const max = Math.max(1e-9, ...points.map(([, v]) => v));
  const span = Math.max(1, historyCapacity - 1);
  const line = document.createElementNS(svgNs, "polyline");
  line.setAttribute("points", points.map(([i, v]) => {
    // The newest sample at the right edge; the window is the history's capacity.
    const x = width - pad - ((values.length - 1 - i) / span) * (width - 2 * pad);
    const y = height - pad - (v / max) * (height - 2 * pad);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(" "));
  svg.append(line);
  const last = points.length ? points[points.length - 1][1] : null;
  const caption = el("figcaption", {}, `${label}: ${last === null ? "–" : format(last)}`
    + ` (max ${points.length ? format(max) : "–"})`);
  return el("figure", {}, svg, caption);
}

function drawCharts() {
  const proxy = $("proxy-charts");
  proxy.replaceChildren(
    chart("sessions", "client sessions", samples.map((s) => s.sessions)),
    chart("handles", "client handles", samples.map((s) => s.handles)),
    chart("connections", "connections", samples.map((s) => s.connections)));
  const names = new Set();
  for (const s of samples) for (const srv of s.servers) names.add(srv.name);
  const holder = $("server-charts");
  holder.replaceChildren();
  for (const name of [...names].sort()) {
    const of = samples.map((s) => s.servers.find((x) => x.name === name) || null);
    const pick = (f) => of.map((x) => (x === null ? null : f(x)));
    holder.append(el("div", {}, el("strong", {}, name),
      el("div", { class: "charts" },
        chart(`load:${name}`, "load", pick((x) => x.load), (v) => v.toFixed(2)),
        chart(`handles:${name}`, "handles here", pick((x) => x.handles)),
        chart(`sessions:${name}`, "reported sessions", pick((x) => x.reported_sessions)),
        chart(`reported-handles:${name}`, "reported handles", pick((x) => x.reported_handles)))));
  }
}

async function act(name, action) {
  if (action === "remove" && !confirm(`Forget backend server ${name}?`)) return;
  const path = action === "remove"
    ? `backend_servers/${encodeURIComponent(name)}`
    : `backend_servers/${encodeURIComponent(name)}/${action}`;
  try {
    await api(path, { method: action === "remove" ? "DELETE" : "POST" });
    notice(`${action} ${name}: done`);
  } catch (e) {
    if (e.status === 401) askToken("The admin token is needed for that.");
    else notice(`${action} ${name}: ${e.error || e.status}`);
  }
  refresh();
}

function breakerCell(b) {
  const cls = b.state === "closed" ? "ok" : b.state === "open" ? "bad" : "warn";
  const td = el("td", {}, el("span", { class: cls }, b.state));
  if (b.trips) td.append(el("span", { class: "muted" }, ` (${b.trips} trips)`));
  if (b.transitions && b.transitions.length) {
    td.append(el("ul", { class: "transitions" },
      ...b.transitions.slice(0, 4).map((t) => el("li", {}, `${t.to} ${ago(t.ago_ms)}`))));
  }
  return td;
}

function drawServers(servers) {
  const body = $("servers");
  body.replaceChildren();
  for (const s of servers) {
    const status = STATUS_NAMES[s.status] ?? s.status;
    const reported = `${s.session_num ?? "–"} / ${s.handle_num ?? "–"}`;
    const actions = el("td", {},
      el("button", { type: "button", "data-action": s.draining ? "undrain" : "drain",
        "data-server": s.name, onclick: () => act(s.name, s.draining ? "undrain" : "drain") },
      s.draining ? "undrain" : "drain"),
      el("button", { type: "button", "data-action": "remove", "data-server": s.name,
        onclick: () => act(s.name, "remove") }, "remove"));
    body.append(el("tr", { "data-server": s.name },
      el("td", {}, s.name), el("td", {}, s.url),
      el("td", { class: s.status === 0 ? "ok" : "bad" }, status),
      el("td", { class: s.selectable ? "ok" : "bad" },
        s.selectable ? "yes" : `no (${s.unselectable_because})`),
      el("td", { class: s.link.ready ? "ok" : "bad" }, s.link.phase,
        s.link.last_error ? el("div", { class: "muted" }, s.link.last_error) : ""),
      breakerCell(s.breaker),
      el("td", { class: "num" }, s.effective_load.toFixed(3)),
      el("td", { class: "num" }, s.link.handles),
      el("td", { class: "num" }, reported),
      el("td", { class: s.draining ? "warn" : "", "data-draining": String(s.draining) },
        s.draining ? "yes" : "no"),
      actions));
  }
  if (!servers.length) body.append(el("tr", {}, el("td", { colSpan: 11 }, "no backend server")));
}

async function showParticipants(room, cell) {
  try {
    const r = await api(`plugins/videoroom/rooms/${room}/participants`);
    cell.replaceChildren(el("ul", { class: "transitions" }, ...r.participants.map((p) =>
      el("li", {}, `${p.display ?? p.id} on ${p.server}${p.publisher ? " (publishing)" : ""}`))));
    if (!r.participants.length) cell.textContent = "nobody";
  } catch (e) {
    cell.textContent = e.error || String(e.status);
  }
}

function drawOverview(o) {
  const p = o.proxy;
  $("proxy").textContent = `${p.id ? `id ${p.id}, ` : ""}version ${p.version}, up ${p.uptime_s} s,`
    + ` policy ${p.policy}${p.draining ? ", SHUTTING DOWN" : ""}`;
  const sessions = o.sessions;
  $("sessions-total").textContent = `${sessions.total} client sessions (${sessions.connected}`
    + ` connected${sessions.counted < sessions.total ? `; ${sessions.counted} counted` : ""})`;
  $("plugins").replaceChildren(...Object.entries(sessions.by_plugin).map(([name, c]) =>
    el("tr", { "data-plugin": name }, el("td", {}, name),
      el("td", { class: "num" }, c.sessions), el("td", { class: "num" }, c.handles))));
  const vr = o.rooms.videoroom;
  $("videoroom-total").textContent = vr ? `${vr.total} rooms` : "plugin off";
  $("videoroom").replaceChildren(...(vr ? vr.rooms : []).map((r) => {
    const where = r.publishers_by_server.map((s) => `${s.server}: ${s.here + s.elsewhere}`
      + `${s.elsewhere ? ` (${s.elsewhere} via other proxies)` : ""}`
      + `${s.mirrors ? `, ${s.mirrors} mirrored in` : ""}`).join("; ") || "not placed yet";
    const cell = el("td", {});
    cell.append(el("button", { type: "button", onclick: () => showParticipants(r.room, cell) },
      "participants"));
    return el("tr", { "data-room": r.room }, el("td", {}, r.room), el("td", {}, r.description),
      el("td", {}, where), cell);
  }));
  const ab = o.rooms.audiobridge;
  $("audiobridge-total").textContent = ab ? `${ab.total} rooms (participants: this proxy's)`
    : "plugin off";
  $("audiobridge").replaceChildren(...(ab ? ab.rooms : []).map((r) => {
    const joined = Object.entries(r.participants_by_server ?? {})
      .map(([server, n]) => `${n} on ${server}`)
      .concat(r.participants_elsewhere ? [`${r.participants_elsewhere} through other proxies`] : [])
      .join(", ") || "none";
    return el("tr", { "data-room": r.room }, el("td", {}, r.room), el("td", {}, r.description),
      el("td", {}, r.server ?? "not placed yet"), el("td", {}, r.ready ? "created" : "pending"),
      el("td", {}, joined));
  }));
  const calls = $("calls");
  calls.replaceChildren();
  const p2p = o.calls.p2pcall;
  if (p2p) {
    calls.append(el("p", {}, `p2pcall: ${p2p.registered} registered, ${p2p.calls.length} calls`),
      el("ul", {}, ...p2p.calls.map((c) => el("li", {}, `${c.users[0]} ↔ ${c.users[1]}`
        + `${c.peer_proxy ? ` (peer on proxy ${c.peer_proxy})` : ""}`))));
  }
  const vc = o.calls.videocall;
  if (vc) {
    calls.append(el("p", {}, `videocall: ${vc.registered} registered, ${vc.calls.length} calls`),
      el("ul", {}, ...vc.calls.map((c) => el("li", {}, `${c.users[0]} ↔ ${c.users[1]}`))));
  }
  const st = o.store.status;
  const cluster = $("cluster");
  cluster.replaceChildren(el("p", {}, `store: ${st.kind}, `,
    el("span", { class: st.state === "ok" ? "ok" : "bad" }, st.state),
    `, ${st.proxies} live prox${st.proxies === 1 ? "y" : "ies"}`,
    st.reaped_proxies ? `, ${st.reaped_proxies} dead ones reaped` : "",
    st.error ? el("span", { class: "bad" }, ` (${st.error})`) : ""));
  if (o.store.peers.length) {
    cluster.append(el("ul", {}, ...o.store.peers.map((peer) => el("li", { "data-peer": peer.id },
      `${peer.id}${peer.id === st.proxy_id ? " (this one)" : ""}: `,
      el("span", { class: peer.subscribed ? "ok" : "bad" },
        peer.subscribed ? "subscribed" : "not subscribed")))));
  }
}

function unreachable(why) {
  failures += 1;
  if (failedSince === null) failedSince = new Date();
  document.body.classList.add("stale");
  const banner = $("banner");
  banner.textContent = `The proxy does not answer since ${failedSince.toLocaleTimeString()}`
    + ` (${failures} failed polls): ${why}. The figures below are the last it gave.`;
  banner.classList.add("shown");
  $("status").textContent = "not answering";
  $("status").className = "bad";
}

function answering() {
  failures = 0;
  failedSince = null;
  document.body.classList.remove("stale");
  $("banner").classList.remove("shown");
}

async function refresh() {
  if (!token()) {
    // Only the open liveness route without a token: the page logs no refused request.
    try {
      await api("livez");
      answering();
      $("status").textContent = "answering; give a token to see more";
      $("status").className = "";
    } catch (e) {
      unreachable(e.error || e.status);
    }
    askToken("");
    return;
  }
  try {
    const [servers, overview, history] = await Promise.all([
      api("backend_servers"), api("overview"), api(`history?since=${lastHistoryT}`)]);
    answering();
    $("auth").hidden = true;
    const ready = overview.ready;
    if (ready) {
      $("status").textContent = `${ready.status}: ${ready.selectable} of ${ready.servers}`
        + " servers selectable";
      $("status").className = ready.status === "ready" ? "ok" : "bad";
    }
    drawServers(servers);
    drawOverview(overview);
    historyCapacity = history.capacity;
    samples = samples.concat(history.samples).slice(-history.capacity);
    if (samples.length) lastHistoryT = samples[samples.length - 1].t;
    drawCharts();
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e.unreachable) unreachable(e.error);
    else if (e.status === 401) askToken(token() ? "That token was refused." : "");
    else if (e.status === 403) askToken(e.error);
    else notice(e.error || String(e.status));
  }
}

$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  notice("");
  refresh();
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  samples = [];
  lastHistoryT = 0;
  askToken("");
});

refresh();
setInterval(refresh, POLL_MS);
