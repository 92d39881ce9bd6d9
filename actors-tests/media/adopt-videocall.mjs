// The browser proof of issue 21 for videocall: two janus.js pages (adopt-videocall-page.html,
// headless Chromium with fake cameras) in a call; the caller's proxy dies, the caller's page
// reconnects and claims its session, and the call goes on for both. Through --url (both
// pages); once both play the other's video, what follows depends on --mode:
//
//   control   (directly against one Janus) the caller's page talks to Janus through a TCP relay
//             of the driver's, whose connections are then cut: janus.js must reconnect and claim
//             the session on Janus itself, with every check of `adopt` below.
//   adopt     (through the load balancer) the pages must be on different proxies (--proxy-admin
//             `GET /sessions`; the callee's page is opened again until they are, at most 6
//             times). Prints a `ready` line (the caller's session and handle) and waits for the
//             file --killed, which the test writes once it has killed (-9) the proxy holding
//             the caller's session: {"at_ms": <Unix ms of the kill>}.
//
// Then: the caller's page claims its session within --claim-ms of the kill (same session id);
// each page keeps the same and only PeerConnection, connected; frames decoded grow on both
// pages (before the kill < --settle-ms after the kill, once claimed < --later-ms later); no
// page saw a hangup (videocall event or PeerConnection down) nor (the callee) lost its
// connection; the caller's `set` (bitrate) answers with the event `set`; (adopt) a live
// proxy holds the caller's session with the same handle id; the caller's hangup reaches the
// callee as the event `hangup`.
//
// Usage: node adopt-videocall.mjs --url ws://SERVER --mode control|adopt
//          [--proxy-admin NAME=URL,... --admin-token T --killed FILE] [--cut yes|no]
//          [--claim-ms 5000] [--later-ms 3000] [--settle-ms 1000] [--step-ms 30000] [--out DIR]
// stdout: the `ready` line (adopt), then one JSON summary line (media_adopt_videocall.rs).

import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, serveFiles } from './browser.mjs';
import { delay, startScript, superviseRun } from './lib.mjs';
import { pairs } from './janus-raw.mjs';

const MODES = ['control', 'adopt'];
const script = startScript('adopt-videocall',
  { label: 'adopt-videocall', timeoutMs: 90000, mode: null, janusAdmin: {}, proxyAdmin: {}, adminToken: '', killed: null,
    claimMs: 5000, laterMs: 3000, settleMs: 1000, stepMs: 30000, out: null, cut: false }, {
    '--mode': ['mode', String, MODES.join('|')],
    '--janus-admin': ['janusAdmin', pairs, 'NAME=URL,...'],
    '--proxy-admin': ['proxyAdmin', pairs, 'NAME=URL,...'],
    '--admin-token': ['adminToken', String, 'T'],
    '--killed': ['killed', String, 'FILE'],
    '--cut': ['cut', (v) => v === 'yes', 'yes|no'],
    '--claim-ms': ['claimMs', Number, 'MS'],
    '--later-ms': ['laterMs', Number, 'MS'],
    '--settle-ms': ['settleMs', Number, 'MS'],
    '--step-ms': ['stepMs', Number, 'MS'],
    '--out': ['out', String, 'DIR'],
  });
const { opts, log } = script;
if (!MODES.includes(opts.mode) || (opts.mode === 'adopt' && (!opts.killed || !Object.keys(opts.proxyAdmin).length))
  || (opts.mode === 'control' && !opts.cut)) {
  process.stderr.write('adopt-videocall.mjs: --mode control --cut yes, or --mode adopt with --killed and --proxy-admin\n');
  process.exit(2);
}
const HERE = path.dirname(fileURLToPath(import.meta.url));
const FILES = {
  '/page.html': [path.join(HERE, 'adopt-videocall-page.html'), 'text/html; charset=utf-8'],
  '/janus.js': ['/usr/share/javascript/janus-gateway/janus.js', 'text/javascript; charset=utf-8'],
  '/adapter.js': ['/usr/share/javascript/webrtc-adapter/adapter.js', 'text/javascript; charset=utf-8'],
};
const ALICE = `alice-${opts.label}-${process.pid}`;
const BOB = `bob-${opts.label}-${process.pid}`;

// The summary: `step` is the step being run (on a failure: the one that failed).
const state = {
  label: opts.label, mode: opts.mode, step: null, steps: [], session: null, handle: null, bob_session: null,
  proxies: null, bob_reopened: 0,
  frames: { alice: { before: null, after_claim: null, later: null }, bob: { before: null, after_claim: null, later: null } },
  killed_at: null, claim_ms: null, reconnects_failed: null, session_after: null, pcs: null, set_ok: false, holder_after: null,
  hangup_reached_bob: false, pages: null, errors: [],
};
const missing = () => (state.step ? [state.step] : []);
const { failed, done } = superviseRun(script, state, missing);

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

async function until(page, what, fn, arg, ms = opts.stepMs) {
  try {
    await page.waitForFunction(fn, arg, { timeout: Math.max(1, ms), polling: 100 });
  } catch (e) {
    const s = await page.evaluate(() => window.state).catch(() => null);
    throw new Error(`${what}: not within ${ms} ms (page state ${JSON.stringify(s)})`);
  }
}

const frames = (page) => page.evaluate(() => window.framesDecoded());
const pageState = (page) => page.evaluate(() => window.state);

/** Which live proxy lists `session` (its admin API), with the handle ids it gives it. */
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

/** A page of its own browser context (its own fake devices) for user `name` on `url`. */
async function openPage(browser, server, url, name, lines) {
  const context = await browser.newContext();
  await context.addInitScript(RECORD_PCS);
  const page = await context.newPage();
  page.on('console', (m) => { lines.push(`${name} +${Date.now() - script.t0}ms ${m.type()}: ${m.text()}`); if (lines.length > 600) lines.shift(); });
  page.on('pageerror', (e) => lines.push(`${name} PAGE ERROR: ${e.message}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/page.html`, { timeout: opts.stepMs });
  await until(page, 'janus.js loaded', () => typeof Janus === 'function' && typeof window.start === 'function');
  await page.evaluate(([u, n]) => window.start(u, n, true), [url, name]);
  await until(page, `${name}: session, handle, registered`, () => window.state.handleId && window.state.registered);
  page.closeAll = () => context.close();
  return page;
}

/** Frames decoded on both pages now. */
async function sample(alice, bob, at) {
  state.frames.alice[at] = await frames(alice);
  state.frames.bob[at] = await frames(bob);
}

function growing(f) {
  return f.before < f.after_claim && f.after_claim < f.later;
}

async function run() {
  let browser = null;
  let server = null;
  let relay = null;
  const pages = [];
  const lines = [];
  const end = async (ok, reason) => {
    state.pages = await Promise.all(pages.map((p) => pageState(p).catch(() => null)));
    if (browser) await browser.close().catch(() => {});
    if (server) server.close();
    if (relay) relay.server.close();
    done(ok, reason);
  };
  let alice = null;
  let bob = null;
  try {
    server = await serveFiles(FILES);
    if (opts.cut) relay = await tcpRelay(opts.url);
    browser = await launchChromium(opts.stepMs);
    log(`chromium ${browser.version()} up`);

    await step('both pages registered (on different proxies)', async () => {
      alice = await openPage(browser, server, relay ? relay.url : opts.url, ALICE, lines);
      pages.push(alice);
      Object.assign(state, { session: (await pageState(alice)).sessionId, handle: (await pageState(alice)).handleId });
      for (let tries = 0; ; tries++) {
        bob = await openPage(browser, server, opts.url, BOB, lines);
        state.bob_session = (await pageState(bob)).sessionId;
        if (opts.mode !== 'adopt') break;
        const [a, b] = [await holder(state.session), await holder(state.bob_session)];
        state.proxies = { alice: a && a.proxy, bob: b && b.proxy };
        if (a && b && a.proxy !== b.proxy) break;
        if (tries >= 5) throw new Error(`both pages on one proxy after ${tries + 1} tries: ${JSON.stringify(state.proxies)}`);
        // The load balancer sends the next connection elsewhere.
        await bob.evaluate(() => window.stop()).catch(() => {});
        await bob.closeAll();
        state.bob_reopened++;
      }
      pages.push(bob);
    });
    await step('alice calls bob: both play the other\'s video (30 frames)', async () => {
      await alice.evaluate((peer) => window.call(peer), BOB);
      await until(bob, 'bob: incomingcall', () => window.state.incoming);
      await until(alice, 'alice: accepted', () => window.state.accepted);
      for (const [name, page] of [['alice', alice], ['bob', bob]]) {
        await until(page, `${name}: webrtcup and a remote video track`, () => window.state.webrtcup && window.state.tracks > 0);
        const deadline = Date.now() + opts.stepMs;
        while ((await frames(page)) < 30) {
          if (Date.now() > deadline) throw new Error(`${name}: ${await frames(page)} frames decoded after ${opts.stepMs} ms`);
          await delay(100);
        }
      }
    });

    await sample(alice, bob, 'before');
    if (relay) {
      state.killed_at = await step('alice\'s socket to Janus cut (the driver)', () => relay.cut());
    } else {
      process.stdout.write(JSON.stringify({ ready: true, session: state.session, handle: state.handle, frames: state.frames.alice.before }) + '\n');
      state.killed_at = await step('alice\'s proxy killed (the test)', killedAt);
    }
    await step('alice\'s janus.js lost the connection', () => until(alice, 'the error callback', () => window.state.lost.length > 0));
    await step('alice claims her session', async () => {
      const left = Math.max(0, state.killed_at + opts.claimMs - Date.now());
      await until(alice, `the claim answered within ${opts.claimMs} ms of the kill`,
        () => window.state.claimed.length + window.state.claimFailed.length > 0, null, left);
      const s = await pageState(alice);
      if (s.claimFailed.length) throw new Error(`claim refused: ${s.claimFailed[0].what}`);
      state.claim_ms = s.claimed[0].at - state.killed_at;
      state.reconnects_failed = s.retried.length;
      state.session_after = s.claimed[0].session;
      if (state.claim_ms > opts.claimMs) throw new Error(`claimed ${state.claim_ms} ms after the kill`);
      if (state.session_after !== state.session) throw new Error(`session ${state.session} became ${state.session_after}`);
    });
    await step('the same and only PeerConnection on each page, connected', async () => {
      state.pcs = { alice: await alice.evaluate(() => window.peerConnections()), bob: await bob.evaluate(() => window.peerConnections()) };
      for (const pcs of Object.values(state.pcs)) {
        if (pcs.made !== 1 || !pcs.same || pcs.state !== 'connected') throw new Error(`PeerConnections: ${JSON.stringify(state.pcs)}`);
      }
    });
    await step('frames decoded grow on both pages across the kill', async () => {
      await delay(Math.max(0, state.killed_at + opts.settleMs - Date.now())); // a measuring interval
      await sample(alice, bob, 'after_claim');
      await delay(opts.laterMs); // a measuring interval, not a wait for an event
      await sample(alice, bob, 'later');
      if (!growing(state.frames.alice) || !growing(state.frames.bob)) throw new Error(`frames decoded ${JSON.stringify(state.frames)}`);
    });
    await step('no hangup on either page, bob never lost his connection', async () => {
      const [a, b] = [await pageState(alice), await pageState(bob)];
      if (a.hangups.length || a.webrtcDown.length || b.hangups.length || b.webrtcDown.length || b.lost.length) {
        throw new Error(`alice ${JSON.stringify({ h: a.hangups, d: a.webrtcDown })}, bob ${JSON.stringify({ h: b.hangups, d: b.webrtcDown, lost: b.lost })}`);
      }
    });
    await step('alice\'s `set` answered (the event `set`)', async () => {
      await alice.evaluate(() => window.setBitrate(128000));
      await until(alice, 'the event `set`', () => window.state.sets > 0);
      state.set_ok = true;
    });
    if (opts.mode === 'adopt') {
      await step('a live proxy holds alice\'s session, with the same handle id', async () => {
        state.holder_after = await holder(state.session);
        if (!state.holder_after || !state.holder_after.handles.includes(state.handle)) {
          throw new Error(`session ${state.session} (handle ${state.handle}) on the live proxies: ${JSON.stringify(state.holder_after)}`);
        }
      });
    }
    await step('alice\'s hangup reaches bob (the event `hangup`)', async () => {
      await alice.evaluate(() => window.hangupCall());
      await until(bob, 'bob: the event hangup', () => window.state.hangups.length > 0);
      state.hangup_reached_bob = true;
    });
    await step('sessions destroyed', async () => {
      for (const page of [alice, bob]) await page.evaluate(() => window.stop());
    });
    state.step = null;
    await end(true, null);
  } catch (e) {
    const reason = failed(`${state.step || 'setup'}: ${e && e.message ? e.message : e}`);
    if (opts.out) {
      const stem = path.join(opts.out, `adopt-videocall-${opts.label}`);
      for (const [name, page] of [['alice', alice], ['bob', bob]]) {
        if (page) await page.screenshot({ path: `${stem}-${name}.png`, fullPage: true, timeout: 5000 }).catch((err) => log(`no screenshot: ${err.message}`));
      }
      try { fs.writeFileSync(`${stem}.console.txt`, lines.join('\n') + '\n'); } catch (_) { /* ignore */ }
    }
    await end(false, reason);
  }
}

run();
