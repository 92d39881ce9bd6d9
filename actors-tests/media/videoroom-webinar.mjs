// A webinar through the proxy (issue 18's scale proof, signalling with real SDP): one
// publisher (janode + @roamhq/wrtc, its PeerConnection really up: `webrtcup`, so that the
// proxy can mirror it) and --subscribers viewers, each a light client of its own (one
// WebSocket, one session, one videoroom handle with opaque_id `webinar-sub-<n>`, no publisher
// of its own) joining as `ptype: subscriber` to the publisher's feed, --concurrency joins in
// flight. Every viewer must get its offer (`attached` with a jsep); viewers do not answer (no
// PeerConnection: 300 of them would be the machine's load, not the proxy's).
//
// Then, asked of each Janus directly (--janus-admin: its Admin API; --janus-urls:
// listparticipants): the handles it holds, which viewers are on it (opaque ids), whether it
// has the publisher or its mirror. --leave viewers leave (`leave`, detach, destroy, close),
// taken from the servers that only have the mirror, fewest viewers first, so that whole
// servers empty; once the proxy's `videoroom_mirror_grace_s` has passed the emptied servers
// must lose the mirror (or the room), the others keep it. The proxy's admin room
// (--admin, --admin-token: GET /plugins/videoroom/rooms/R, its `per_server`) and its RSS
// (--proxy-pid) are recorded before, full and after.
//
// Usage: node videoroom-webinar.mjs --url ws://PROXY --janus-urls N=URL,... --janus-admin N=URL,...
//          --admin http://ADMIN --admin-token T [--proxy-pid PID] [--room R] [--subscribers 300]
//          [--leave 150] [--concurrency 10] [--mirror-gone-ms 20000] [--timeout-ms N]
// stdout: one JSON summary line; the Rust test (videoroom_webinar.rs) asserts on it.

import {
  attachPeer, closeQuietly, closeSide, createPeerConnection, expectReply, gatheredDescription,
  newPeer, startScript, superviseRun, waitFor,
} from './lib.mjs';
import { RawJanus, janusHandles, pairs, participantsOn, rssKib } from './janus-raw.mjs';

const script = startScript('videoroom-webinar',
  { label: 'webinar', timeoutMs: 240000, room: 7180, subscribers: 300, leave: 150, concurrency: 10, mirrorGoneMs: 20000 }, {
    '--room': ['room', Number, 'N'],
    '--subscribers': ['subscribers', Number, 'N'],
    '--leave': ['leave', Number, 'N'],
    '--concurrency': ['concurrency', Number, 'N'],
    '--mirror-gone-ms': ['mirrorGoneMs', Number, 'MS'],
    '--janus-urls': ['janusUrls', pairs, 'NAME=URL,...'],
    '--janus-admin': ['janusAdmin', pairs, 'NAME=URL,...'],
    '--admin': ['admin', String, 'URL'],
    '--admin-token': ['adminToken', String, 'T'],
    '--proxy-pid': ['proxyPid', Number, 'PID'],
  });
const { opts, log } = script;
const FEED = 9001;
const OPAQUE = 'webinar-sub-';

const pub = newPeer('publisher');
const viewers = Array.from({ length: opts.subscribers }, (_, n) => ({ n, client: null, handle: null, offer: false, ms: null, gone: false }));
const state = {
  label: opts.label, room: opts.room, subscribers: opts.subscribers, concurrency: opts.concurrency,
  peers: [pub], publisher_server: null, offers: 0, connect_ms: null, place_ms: null, join_ms: null,
  servers: null, per_server: null, rss_kib: {}, leavers: {}, emptied: [], after: null, per_server_after: null,
  errors: [],
};
const missing = () => {
  const m = [];
  if (!pub.webrtcup) m.push('publisher:webrtcup');
  if (state.offers < opts.subscribers) m.push(`offers:${state.offers}/${opts.subscribers}`);
  if (!state.servers) m.push('spread');
  if (state.after === null) m.push('after_leave');
  return m;
};
const { failed, done } = superviseRun(script, state, missing);

/** The proxy's admin view of the room (its `per_server`), or the error text. */
async function proxyRoom() {
  try {
    const r = await fetch(`${opts.admin}/plugins/videoroom/rooms/${opts.room}`,
      { headers: { Authorization: `Bearer ${opts.adminToken}` } });
    const body = await r.json();
    if (!r.ok) return { status: r.status, body };
    return body.per_server ?? { no_per_server: true, servers: body.servers ?? null };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
}

/** The proxy's view of each server (GET /backend_servers): the handles it holds there and
 * its effective load. */
async function proxyServers() {
  try {
    const r = await fetch(`${opts.admin}/backend_servers`, { headers: { Authorization: `Bearer ${opts.adminToken}` } });
    const body = await r.json();
    const list = Array.isArray(body) ? body : (body.servers || []);
    return Object.fromEntries(list.map((s) => [s.name, { handles: s.link ? s.link.handles : null, effective_load: s.effective_load, placed: s.placed_since_report }]));
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
}

/** Per Janus: its handles (Admin API), how many viewers it holds (their numbers in
 * `where[name]`, kept out of the summary), the publisher or its mirror (listparticipants
 * asked directly; null = no room there). */
const where = {};
async function survey() {
  const out = {};
  for (const [name, adminUrl] of Object.entries(opts.janusAdmin)) {
    const handles = await janusHandles(adminUrl);
    const viewersHere = handles.filter((h) => (h.opaque_id || '').startsWith(OPAQUE)).map((h) => Number(h.opaque_id.slice(OPAQUE.length)));
    where[name] = viewersHere.sort((a, b) => a - b);
    const participants = await participantsOn(opts.janusUrls[name], opts.room);
    const feed = participants && participants.find((p) => p.id === FEED);
    // The handles that are neither a viewer nor the publisher: the proxy's own (the room's
    // control handle there), named for the report.
    const others = handles.filter((h) => !(h.opaque_id || '').startsWith(OPAQUE) && h.type !== 'publisher')
      .map((h) => `${h.plugin}:${h.type}:${h.room}`);
    out[name] = {
      handles: handles.length,
      others,
      sessions: new Set(handles.map((h) => h.session)).size,
      subscribers: viewersHere.length,
      subscriber_handles: handles.filter((h) => h.type === 'subscriber').length,
      room: participants !== null,
      feed: feed ? (feed.remote ? 'mirror' : 'publisher') : null,
    };
  }
  return out;
}

async function publish() {
  const side = await attachPeer(opts, pub, { plugin: 'janus.plugin.videoroom', eventName: 'videoroom_event', classify: () => null });
  Object.assign(side, createPeerConnection({ rec: pub, log, tag: 'publisher', seed: 1 }));
  const created = await side.handle.message({ request: 'create', room: opts.room, description: 'webinar', publishers: 4 });
  expectReply(created, 'videoroom', 'created', 'create');
  const joined = await side.handle.message({ request: 'join', room: opts.room, ptype: 'publisher', id: FEED, display: 'speaker' });
  expectReply(joined, 'videoroom', 'joined', 'publisher join');
  await side.pc.setLocalDescription(await side.pc.createOffer());
  const offer = await gatheredDescription(side.pc, pub, 'publisher');
  const configured = await side.handle.message({ request: 'configure', audio: true, video: true }, offer);
  expectReply(configured, 'configured', 'ok', 'publisher configure');
  await side.pc.setRemoteDescription(configured.jsep);
  await waitFor('publisher: webrtcup', () => pub.webrtcup, 15000);
  return side;
}

/** Runs `job(item)` over `items` with `k` in flight; the first error fails it all. */
async function pool(items, k, job) {
  const queue = items.slice();
  await Promise.all(Array.from({ length: Math.min(k, queue.length) }, async () => {
    for (let it = queue.shift(); it !== undefined; it = queue.shift()) await job(it);
  }));
}

async function join(v) {
  const t = Date.now();
  const r = await v.client.message(v.handle, { request: 'join', room: opts.room, ptype: 'subscriber', streams: [{ feed: FEED }] }, { ms: 30000 });
  const d = r.plugindata && r.plugindata.data;
  if (r.janus !== 'event' || !d || d.videoroom !== 'attached' || !r.jsep || r.jsep.type !== 'offer' || !r.jsep.sdp.includes('m=video')) {
    throw new Error(`viewer ${v.n}: no offer: ${JSON.stringify(r).slice(0, 400)}`);
  }
  v.offer = true;
  v.ms = Date.now() - t;
  state.offers++;
}

async function leave(v) {
  const r = await v.client.message(v.handle, { request: 'leave' });
  const d = r.plugindata && r.plugindata.data;
  if (!d || d.error_code !== undefined || r.janus === 'error') throw new Error(`viewer ${v.n} leave: ${JSON.stringify(r)}`);
  await v.client.bye(v.handle);
  v.gone = true;
}

const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];

async function run() {
  let side = null;
  try {
    side = await publish();
    log('publisher up (webrtcup)');
    state.rss_kib.before = await rssKib(opts.proxyPid);
    state.per_server_publisher = await proxyRoom();

    let t = Date.now();
    await pool(viewers, 20, async (v) => {
      v.client = await RawJanus.open(opts.url);
      v.handle = await v.client.attach('janus.plugin.videoroom', { opaqueId: `${OPAQUE}${v.n}` });
    });
    state.connect_ms = Date.now() - t;
    log(`${viewers.length} viewers connected and attached in ${state.connect_ms} ms`);
    state.rss_kib.attached = await rssKib(opts.proxyPid);

    t = Date.now();
    await pool(viewers, opts.concurrency, join);
    state.place_ms = Date.now() - t;
    const ms = viewers.map((v) => v.ms).sort((a, b) => a - b);
    state.join_ms = { p50: pct(ms, 50), p95: pct(ms, 95), max: ms[ms.length - 1] };
    log(`${state.offers} offers in ${state.place_ms} ms`, JSON.stringify(state.join_ms));
    state.rss_kib.full = await rssKib(opts.proxyPid);
    state.servers = await survey();
    state.per_server = await proxyRoom();
    state.proxy_servers = await proxyServers();
    log('spread', JSON.stringify(state.servers));

    // Who leaves: whole mirror-only servers first (fewest viewers first), then from the
    // next ones, the publisher's server last.
    const order = Object.entries(state.servers)
      .sort(([, a], [, b]) => (a.feed === 'publisher') - (b.feed === 'publisher') || a.subscribers - b.subscribers);
    const leavers = [];
    for (const [name, s] of order) {
      const take = where[name].slice(0, opts.leave - leavers.length);
      if (take.length) state.leavers[name] = take.length;
      leavers.push(...take);
    }
    state.publisher_server = order.find(([, s]) => s.feed === 'publisher')?.[0] ?? null;
    await pool(leavers.map((n) => viewers[n]), opts.concurrency, leave);
    const t_left = Date.now();
    state.emptied = order.filter(([name, s]) => s.feed === 'mirror' && state.leavers[name] === s.subscribers).map(([name]) => name);
    log(`${leavers.length} viewers left`, JSON.stringify(state.leavers), 'emptied', JSON.stringify(state.emptied));

    // The emptied servers lose the mirror (or the room) after the grace period.
    await waitFor(() => `mirror gone from ${state.emptied.join(',')}`, async () => {
      for (const name of state.emptied) {
        const p = await participantsOn(opts.janusUrls[name], opts.room);
        if (p && p.some((q) => q.id === FEED)) return false;
      }
      return true;
    }, opts.mirrorGoneMs, 250);
    state.mirror_gone_ms = Date.now() - t_left;
    state.after = await survey();
    state.per_server_after = await proxyRoom();
    state.proxy_servers_after = await proxyServers();
    state.rss_kib.after_leave = await rssKib(opts.proxyPid);
    log('after', JSON.stringify(state.after));

    for (const v of viewers.filter((x) => !x.gone)) v.client.close();
    const destroyed = await side.handle.message({ request: 'destroy', room: opts.room });
    expectReply(destroyed, 'videoroom', 'destroyed', 'destroy');
    await closeSide(side);
    const bad = missing();
    done(bad.length === 0, bad.length ? `missing ${bad.join(',')}` : null);
  } catch (e) {
    const reason = failed(e);
    if (!state.servers) {
      try { state.servers = await survey(); } catch (_) { /* the failure is already reported */ }
    }
    for (const v of viewers) if (v.client) v.client.close();
    if (side) await closeQuietly(side);
    done(false, reason);
  }
}

run();
