// The browser proof of issue 21 (a dead proxy's client reconnects and claims its session), in
// headless Chromium (Debian's, through playwright-core) with janus.js (libjs-janus-gateway)
// and a fake camera: adopt-page.html runs an echo test through --url; once the remote video
// plays (and the echo test's handle is found on a Janus through its Admin API, --janus-admin),
// what follows depends on --mode:
//
//   control   (directly against one Janus) frames decoded grow over --later-ms and a request
//             on the handle (bitrate cap) answers with an event `result: ok`. With --cut yes,
//             the page talks to Janus through a TCP relay of the driver's, whose connections
//             are then cut: janus.js must reconnect and claim the session on Janus itself, with
//             every check of `adopt` below (Janus's own claim: proof of those checks). The
//             session is then destroyed.
//   adopt     (through the load balancer) prints a `ready` line (session and handle ids, frames
//             decoded) on stdout and waits for the file --killed, which the test writes once it
//             has killed (-9) the proxy holding the session: {"at_ms": <Unix ms of the kill>}.
//             Then janus.js must reconnect and claim the session within --claim-ms of the kill
//             (same session id, the same and only PeerConnection), frames decoded must grow
//             (before the kill < after the claim and --settle-ms after the kill < --later-ms
//             later), the bitrate request must answer `result: ok`, the handle must still be
//             on its Janus and (with --proxy-admin) a live proxy must list the session with the
//             same handle id.
//   abandon   the page does not reconnect: `ready`, --killed, then the page must have lost its
//             connection and the echo test's handle must be gone from every Janus within
//             --gone-ms of the kill.
//
// Usage: node adopt.mjs --url ws://SERVER --mode control|adopt|abandon --janus-admin NAME=URL,...
//          [--proxy-admin NAME=URL,... --admin-token T] [--killed FILE] [--cut yes|no] [--claim-ms 5000]
//          [--later-ms 3000] [--settle-ms 1000] [--gone-ms 15000] [--step-ms 30000] [--timeout-ms 90000] [--out DIR]
// stdout: the `ready` line (adopt, abandon), then one JSON summary line (media_adopt.rs).

import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, serveFiles } from './browser.mjs';
import { delay, startScript, superviseRun } from './lib.mjs';
import { janusHandles, pairs } from './janus-raw.mjs';

const MODES = ['control', 'adopt', 'abandon'];
const script = startScript('adopt',
  { label: 'adopt', timeoutMs: 90000, mode: null, janusAdmin: {}, proxyAdmin: {}, adminToken: '', killed: null,
    claimMs: 5000, laterMs: 3000, settleMs: 1000, goneMs: 15000, stepMs: 30000, out: null, cut: false }, {
    '--mode': ['mode', String, MODES.join('|')],
    '--janus-admin': ['janusAdmin', pairs, 'NAME=URL,...'],
    '--proxy-admin': ['proxyAdmin', pairs, 'NAME=URL,...'],
    '--admin-token': ['adminToken', String, 'T'],
    '--killed': ['killed', String, 'FILE'],
    '--cut': ['cut', (v) => v === 'yes', 'yes|no'],
    '--claim-ms': ['claimMs', Number, 'MS'],
    '--later-ms': ['laterMs', Number, 'MS'],
    '--settle-ms': ['settleMs', Number, 'MS'],
    '--gone-ms': ['goneMs', Number, 'MS'],
    '--step-ms': ['stepMs', Number, 'MS'],
    '--out': ['out', String, 'DIR'],
  });
const { opts, log } = script;
if (!MODES.includes(opts.mode) || (opts.mode !== 'control' && !opts.killed) || !Object.keys(opts.janusAdmin).length) {
  process.stderr.write(`adopt.mjs: --mode ${MODES.join('|')}, --janus-admin and (but for control) --killed are required\n`);
  process.exit(2);
}
const HERE = path.dirname(fileURLToPath(import.meta.url));
const FILES = {
  '/page.html': [path.join(HERE, 'adopt-page.html'), 'text/html; charset=utf-8'],
  '/janus.js': ['/usr/share/javascript/janus-gateway/janus.js', 'text/javascript; charset=utf-8'],
  '/adapter.js': ['/usr/share/javascript/webrtc-adapter/adapter.js', 'text/javascript; charset=utf-8'],
};
const OPAQUE = `adopt-${opts.label}-${process.pid}`;

// The summary: `step` is the step being run (on a failure: the one that failed).
const state = {
  label: opts.label, mode: opts.mode, step: null, steps: [], session: null, handle: null, janus_server: null,
  control_frames: null,
  frames: { before: null, after_claim: null, later: null }, killed_at: null, claim_ms: null,
  session_after: null, pcs: null, request_ok: false, holder_after: null, lost: null, gone_ms: null,
  page: null, errors: [],
};
// What the run did not get to: the step that failed or hung.
const missing = () => (state.step ? [state.step] : []);
const { failed, done } = superviseRun(script, state, missing);

/** Runs step `name` (recorded in the summary; a throw fails the run there). */
async function step(name, fn) {
  state.step = name;
  const t = Date.now();
  const r = await fn();
  state.steps.push(name);
  log(`${name}: ok in ${Date.now() - t} ms`);
  return r;
}

/** A TCP relay to `target` (ws://HOST:PORT) whose `cut()` closes every connection through it
 *  (the listener stays) and returns when, in Unix ms. */
function tcpRelay(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const cut = () => {
    const at = Date.now();
    for (const s of sockets) s.destroy();
    return at;
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, cut, url: `ws://127.0.0.1:${server.address().port}` }));
  });
}


// Every RTCPeerConnection the page makes (janus.js makes one per handle).
const RECORD_PCS = () => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  function Recorded(...args) {
    const pc = new Native(...args);
    window.__pcs.push(pc);
    return pc;
  }
  Recorded.prototype = Native.prototype;
  Object.setPrototypeOf(Recorded, Native);
  window.RTCPeerConnection = Recorded;
};

/** Polls `fn(arg)` in the page until truthy, within `ms` (the step budget by default). */
async function until(page, what, fn, arg, ms = opts.stepMs) {
  try {
    // A timeout of 0 would mean none.
    await page.waitForFunction(fn, arg, { timeout: Math.max(1, ms), polling: 100 });
  } catch (e) {
    const s = await page.evaluate(() => window.state).catch(() => null);
    throw new Error(`${what}: not within ${ms} ms (page state ${JSON.stringify(s)})`);
  }
}

const frames = (page) => page.evaluate(() => window.framesDecoded());

/** The Janus holding the echo test's handle (by its opaque id), or null. */
async function locate() {
  for (const [name, url] of Object.entries(opts.janusAdmin)) {
    const handles = await janusHandles(url);
    if (handles.some((h) => h.opaque_id === OPAQUE)) return name;
  }
  return null;
}

/** Which live proxy lists the session (its admin API), with the handle ids it gives it. */
async function holder(session) {
  for (const [name, url] of Object.entries(opts.proxyAdmin)) {
    let body;
    try {
      const r = await fetch(`${url}/sessions?limit=10000`, { headers: { Authorization: `Bearer ${opts.adminToken}` } });
      body = await r.json();
    } catch (_) {
      continue; // the dead one
    }
    const s = (body.sessions || []).find((x) => x.id === session);
    if (s) return { proxy: name, handles: (s.handles || []).map((h) => h.id) };
  }
  return null;
}

/** A bitrate cap on the handle answers with an event `result: ok` (one more than before). */
async function requestWorks(page) {
  const before = await page.evaluate(() => window.state.results);
  await page.evaluate(() => window.capBitrate(128000));
  await until(page, 'an event `result: ok` for the bitrate request', (n) => window.state.results > n, before);
  state.request_ok = true;
}

/** The --killed file's kill time, once the test has written it. */
async function killedAt() {
  const deadline = Date.now() + opts.stepMs;
  for (;;) {
    try {
      const told = JSON.parse(fs.readFileSync(opts.killed, 'utf8'));
      if (told.error) throw new Error(`the test killed no proxy: ${told.error}`);
      if (Number.isFinite(told.at_ms)) return told.at_ms;
    } catch (e) {
      if (!(e instanceof SyntaxError) && e.code !== 'ENOENT') throw e;
    }
    if (Date.now() > deadline) throw new Error(`no ${opts.killed} within ${opts.stepMs} ms`);
    await delay(50);
  }
}

/** The test kills the proxy holding the session: the `ready` line, then its --killed file. */
async function killedByTheTest() {
  process.stdout.write(JSON.stringify({ ready: true, session: state.session, handle: state.handle, frames: state.frames.before }) + '\n');
  return step('the proxy killed (the test)', killedAt);
}

/** The connection lost (`kill` returns when, in Unix ms), then janus.js must claim the session
 *  in time and everything must go on as before. */
async function adopt(page, kill) {
  state.frames.before = await frames(page);
  state.killed_at = await kill();
  await step('janus.js lost the connection', () => until(page, 'the error callback', () => window.state.lost.length > 0));
  await step('claim', async () => {
    const left = Math.max(0, state.killed_at + opts.claimMs - Date.now());
    await until(page, `the claim answered within ${opts.claimMs} ms of the kill`,
      () => window.state.claimed.length + window.state.claimFailed.length > 0, null, left);
    const s = await page.evaluate(() => window.state);
    if (s.claimFailed.length) throw new Error(`claim refused: ${s.claimFailed[0].what}`);
    state.claim_ms = s.claimed[0].at - state.killed_at;
    state.session_after = s.claimed[0].session;
    if (state.claim_ms > opts.claimMs) throw new Error(`claimed ${state.claim_ms} ms after the kill`);
  });
  await step('the same session id', () => {
    if (state.session_after !== state.session) throw new Error(`session ${state.session} became ${state.session_after}`);
  });
  await step('the same and only PeerConnection, connected', async () => {
    state.pcs = await page.evaluate(() => window.peerConnections());
    if (state.pcs.made !== 1 || !state.pcs.same || state.pcs.state !== 'connected') {
      throw new Error(`PeerConnections: ${JSON.stringify(state.pcs)}`);
    }
  });
  await step('frames decoded grow across the kill', async () => {
    // At 30 fps a sample a few ms after the kill may see no new frame yet: the one "after the
    // claim" is taken at least --settle-ms after the kill (a measuring interval).
    await delay(Math.max(0, state.killed_at + opts.settleMs - Date.now()));
    state.frames.after_claim = await frames(page);
    await delay(opts.laterMs); // a measuring interval, not a wait for an event
    state.frames.later = await frames(page);
    const f = state.frames;
    if (!(f.before < f.after_claim && f.after_claim < f.later)) throw new Error(`frames decoded ${JSON.stringify(f)}`);
  });
  await step('a request on the handle answers (events reach the client)', () => requestWorks(page));
  await step('the handle still on its Janus', async () => {
    const on = await locate();
    if (on !== state.janus_server) throw new Error(`the handle was on ${state.janus_server}, now on ${on}`);
  });
  if (Object.keys(opts.proxyAdmin).length) {
    await step('a live proxy holds the session, with the same handle id', async () => {
      state.holder_after = await holder(state.session);
      if (!state.holder_after || !state.holder_after.handles.includes(state.handle)) {
        throw new Error(`session ${state.session} (handle ${state.handle}) on the live proxies: ${JSON.stringify(state.holder_after)}`);
      }
    });
  }
}

async function abandon(page) {
  process.stdout.write(JSON.stringify({ ready: true, session: state.session, handle: state.handle, frames: await frames(page) }) + '\n');
  state.killed_at = await step('the proxy killed (the test)', killedAt);
  await step('janus.js lost the connection', async () => {
    await until(page, 'the error callback', () => window.state.lost.length > 0);
    state.lost = await page.evaluate(() => window.state.lost[0].what);
  });
  await step(`the handle gone from every Janus within ${opts.goneMs} ms of the kill`, async () => {
    for (;;) {
      const on = await locate();
      if (!on) break;
      if (Date.now() > state.killed_at + opts.goneMs) throw new Error(`the handle is still on ${on}`);
      await delay(200);
    }
    state.gone_ms = Date.now() - state.killed_at;
  });
  const s = await page.evaluate(() => window.state);
  if (s.claimed.length || s.claimFailed.length) throw new Error(`the page claimed: ${JSON.stringify(s)}`);
}

async function run() {
  let browser = null;
  let server = null;
  let page = null;
  let relay = null;
  const end = async (ok, reason) => {
    if (page) state.page = await page.evaluate(() => window.state).catch(() => null);
    if (browser) await browser.close().catch(() => {});
    if (server) server.close();
    if (relay) relay.server.close();
    done(ok, reason);
  };
  try {
    server = await serveFiles(FILES);
    if (opts.cut) relay = await tcpRelay(opts.url);
    const url = relay ? relay.url : opts.url;
    browser = await launchChromium(opts.stepMs);
    log(`chromium ${browser.version()} up`);
    const context = await browser.newContext();
    await context.addInitScript(RECORD_PCS);
    page = await context.newPage();
    page.lines = [];
    page.on('console', (m) => { page.lines.push(`+${Date.now() - script.t0}ms ${m.type()}: ${m.text()}`); if (page.lines.length > 400) page.lines.shift(); });
    page.on('pageerror', (e) => page.lines.push(`PAGE ERROR: ${e.message}`));
    await page.goto(`http://127.0.0.1:${server.address().port}/page.html`, { timeout: opts.stepMs });
    await until(page, 'janus.js loaded', () => typeof Janus === 'function' && typeof window.start === 'function');

    await step('echo test up (session, handle, webrtcup, remote video)', async () => {
      await page.evaluate(([url, opaque, reconnect]) => window.start(url, opaque, reconnect), [url, OPAQUE, opts.mode === 'adopt' || !!relay]);
      await until(page, 'session, handle, webrtcup and a remote video track',
        () => window.state.handleId && window.state.webrtcup && window.state.tracks > 0);
      const s = await page.evaluate(() => window.state);
      Object.assign(state, { session: s.sessionId, handle: s.handleId });
    });
    await step('remote video decoded (30 frames)', async () => {
      const deadline = Date.now() + opts.stepMs;
      while ((await frames(page)) < 30) {
        if (Date.now() > deadline) throw new Error(`${await frames(page)} frames decoded after ${opts.stepMs} ms`);
        await delay(100);
      }
    });
    await step('the handle found on a Janus (Admin API)', async () => {
      state.janus_server = await locate();
      if (!state.janus_server) throw new Error(`no handle with opaque id ${OPAQUE} on ${Object.keys(opts.janusAdmin)}`);
    });

    if (opts.mode === 'control') {
      await step('frames decoded grow', async () => {
        const before = await frames(page);
        await delay(opts.laterMs); // a measuring interval, not a wait for an event
        state.control_frames = [before, await frames(page)];
        if (!(state.control_frames[1] > before)) throw new Error(`frames decoded ${JSON.stringify(state.control_frames)}`);
      });
      await step('a request on the handle answers', () => requestWorks(page));
      if (relay) {
        // Janus's own claim: the page's socket to Janus cut, janus.js reconnects and claims.
        await adopt(page, () => step('the socket to Janus cut (the driver)', () => relay.cut()));
      }
      await step('session destroyed', () => page.evaluate(() => window.stop()));
    } else if (opts.mode === 'adopt') {
      await adopt(page, killedByTheTest);
    } else {
      await abandon(page);
    }
    state.step = null;
    await end(true, null);
  } catch (e) {
    const reason = failed(`${state.step || 'setup'}: ${e && e.message ? e.message : e}`);
    if (opts.out && page) {
      const stem = path.join(opts.out, `adopt-${opts.label}`);
      await page.screenshot({ path: `${stem}.png`, fullPage: true, timeout: 5000 }).catch((err) => log(`no screenshot: ${err.message}`));
      try { fs.writeFileSync(`${stem}.console.txt`, page.lines.join('\n') + '\n'); } catch (_) { /* ignore */ }
    }
    await end(false, reason);
  }
}

run();
