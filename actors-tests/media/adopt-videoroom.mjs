// The browser proof of issue 21 for the videoroom (a dead proxy's participants stay in their
// room), in headless Chromium (Debian's, through playwright-core) with janus.js
// (libjs-janus-gateway) and a fake camera: three pages of adopt-videoroom-page.html join one
// room through --url, each publishing and playing the other two (one subscription each). Once
// every page decodes both remote videos, what follows depends on --mode:
//
//   control  (directly against one Janus) frames decoded grow on every page over --later-ms,
//            a bitrate request on the first page's publisher answers `configured: ok`, its
//            subscription pauses and starts again, and no page saw anyone leave or stop
//            publishing.
//   adopt    (through the load balancer; --proxy-admin) the pages must be spread over both
//            proxies (each proxy's `GET /sessions`); the `ready` line names the first page's
//            session and publisher handle; the driver waits for the file --killed, which the
//            test writes once it has killed (-9) the proxy holding that session:
//            {"at_ms": <Unix ms of the kill>}. Then every page whose proxy died must reconnect
//            and claim its session within --claim-ms of the kill (same session id, no new
//            PeerConnection, both still connected); on every page both remote videos must
//            keep decoding (before the kill < --settle-ms after the kill < --later-ms later);
//            no page may see `leaving`/`unpublished`; the first page's bitrate request must
//            answer, its subscription `pause` and `start` too (and its videos decode again);
//            a live proxy must list its session with the same publisher handle id.
//
// Usage: node adopt-videoroom.mjs --url ws://SERVER --mode control|adopt [--room N]
//          [--proxy-admin NAME=URL,... --admin-token T --killed FILE] [--claim-ms 5000]
//          [--later-ms 3000] [--settle-ms 1000] [--step-ms 30000] [--timeout-ms 90000] [--out DIR]
//          (--janus-admin NAME=URL,... is accepted and unused)
// stdout: the `ready` line (adopt), then one JSON summary line (media_adopt_videoroom.rs).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, serveFiles } from './browser.mjs';
import { delay, startScript, superviseRun } from './lib.mjs';
import { pairs } from './janus-raw.mjs';

const MODES = ['control', 'adopt'];
const script = startScript('adopt-videoroom',
  { label: 'adopt-videoroom', timeoutMs: 90000, mode: null, room: 4321, janusAdmin: {}, proxyAdmin: {}, adminToken: '',
    killed: null, claimMs: 5000, laterMs: 3000, settleMs: 1000, stepMs: 30000, out: null }, {
    '--mode': ['mode', String, MODES.join('|')],
    '--room': ['room', Number, 'N'],
    '--janus-admin': ['janusAdmin', pairs, 'NAME=URL,...'],
    '--proxy-admin': ['proxyAdmin', pairs, 'NAME=URL,...'],
    '--admin-token': ['adminToken', String, 'T'],
    '--killed': ['killed', String, 'FILE'],
    '--claim-ms': ['claimMs', Number, 'MS'],
    '--later-ms': ['laterMs', Number, 'MS'],
    '--settle-ms': ['settleMs', Number, 'MS'],
    '--step-ms': ['stepMs', Number, 'MS'],
    '--out': ['out', String, 'DIR'],
  });
const { opts, log } = script;
if (!MODES.includes(opts.mode) || (opts.mode === 'adopt' && (!opts.killed || !Object.keys(opts.proxyAdmin).length))) {
  process.stderr.write(`adopt-videoroom.mjs: --mode ${MODES.join('|')}; adopt needs --killed and --proxy-admin\n`);
  process.exit(2);
}
const HERE = path.dirname(fileURLToPath(import.meta.url));
const FILES = {
  '/page.html': [path.join(HERE, 'adopt-videoroom-page.html'), 'text/html; charset=utf-8'],
  '/janus.js': ['/usr/share/javascript/janus-gateway/janus.js', 'text/javascript; charset=utf-8'],
  '/adapter.js': ['/usr/share/javascript/webrtc-adapter/adapter.js', 'text/javascript; charset=utf-8'],
};
const NAMES = ['alice', 'bob', 'carol'];
const FEEDS = [101, 102, 103];

// The summary: `step` is the step being run (on a failure: the one that failed).
const state = {
  label: opts.label, mode: opts.mode, room: opts.room, step: null, steps: [],
  pages: NAMES.map((name, i) => ({ name, feed: FEEDS[i], session: null, publisher: null, proxy: null,
    frames: { before: null, after_claim: null, later: null }, claim_ms: null, session_after: null, pcs: null, left: [] })),
  killed_at: null, killed_proxy: null, reconnected: [], request_ok: false, subscription_ok: false, holder_after: null,
  errors: [],
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
    await page.waitForFunction(fn, arg, { timeout: Math.max(1, ms), polling: 100 });
  } catch (e) {
    const s = await page.evaluate(() => window.state).catch(() => null);
    throw new Error(`${what}: not within ${ms} ms (page state ${JSON.stringify(s)})`);
  }
}

/** Frames decoded per remote video of a page, as a sorted list (mids in order). */
async function frames(page) {
  const byMid = await page.evaluate(() => window.framesDecoded());
  return Object.keys(byMid).sort().map((mid) => byMid[mid]);
}

/** Every live proxy's sessions (its admin API): session id → { proxy, handles }. */
async function sessionsByProxy() {
  const out = new Map();
  for (const [name, url] of Object.entries(opts.proxyAdmin)) {
    let body;
    try {
      const r = await fetch(`${url}/sessions?limit=10000`, { headers: { Authorization: `Bearer ${opts.adminToken}` } });
      body = await r.json();
    } catch (_) {
      continue; // the dead one
    }
    for (const s of body.sessions || []) out.set(s.id, { proxy: name, handles: (s.handles || []).map((h) => h.id) });
  }
  return out;
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

const grew = (a, b) => a.length === 2 && b.length === 2 && a.every((n, i) => n < b[i]);

/** What every page must show at the end of a run: both remote videos decoded more and more,
 *  and nobody seen leaving. */
async function framesGrowAndNobodyLeft(pages, since) {
  await step('frames decoded grow on every page, for both remote videos', async () => {
    await delay(Math.max(0, since + opts.settleMs - Date.now()));
    for (const [i, page] of pages.entries()) state.pages[i].frames.after_claim = await frames(page);
    await delay(opts.laterMs); // a measuring interval, not a wait for an event
    for (const [i, page] of pages.entries()) state.pages[i].frames.later = await frames(page);
    for (const p of state.pages) {
      const f = p.frames;
      if (!grew(f.before, f.after_claim) || !grew(f.after_claim, f.later)) throw new Error(`${p.name}: frames decoded ${JSON.stringify(f)}`);
    }
  });
  await step('a request on the first page\'s publisher answers', async () => {
    const before = await pages[0].evaluate(() => window.state.configured);
    await pages[0].evaluate(() => window.capBitrate(256000));
    await until(pages[0], 'an event `configured: ok` for the bitrate request', (n) => window.state.configured > n, before);
    state.request_ok = true;
  });
  await step('the first page\'s subscription pauses and starts again', async () => {
    const page = pages[0];
    const seen = await page.evaluate(() => window.state.subscription.length);
    await page.evaluate(() => window.subscription('pause'));
    await until(page, 'an event `paused: ok`', (n) => window.state.subscription.slice(n).includes('paused'), seen);
    await page.evaluate(() => window.subscription('start'));
    await until(page, 'an event `started: ok`', (n) => window.state.subscription.slice(n).includes('started'), seen);
    const before = await frames(page);
    await until(page, 'both remote videos decoding again', async (b) => {
      const f = await window.framesDecoded();
      const now = Object.keys(f).sort().map((mid) => f[mid]);
      return now.length === 2 && now.every((n, i) => n > b[i]);
    }, before);
    state.subscription_ok = true;
  });
  await step('no page saw anyone leave or stop publishing', async () => {
    for (const [i, page] of pages.entries()) {
      state.pages[i].left = await page.evaluate(() => window.state.left);
      if (state.pages[i].left.length) throw new Error(`${NAMES[i]} saw ${JSON.stringify(state.pages[i].left)}`);
    }
  });
}

async function adopt(pages) {
  const held = await step('the pages spread over both proxies', async () => {
    const sessions = await sessionsByProxy();
    for (const p of state.pages) {
      const s = sessions.get(p.session);
      if (!s || !s.handles.includes(p.publisher)) throw new Error(`${p.name}'s session ${p.session} held by ${JSON.stringify(s)}`);
      p.proxy = s.proxy;
    }
    const proxies = new Set(state.pages.map((p) => p.proxy));
    if (proxies.size < 2) throw new Error(`every page on ${[...proxies]}`);
    return sessions;
  });
  const first = state.pages[0];
  state.killed_proxy = first.proxy;
  for (const [i, page] of pages.entries()) state.pages[i].frames.before = await frames(page);
  process.stdout.write(JSON.stringify({ ready: true, session: first.session, handle: first.publisher, proxies: held.size }) + '\n');
  state.killed_at = await step('the proxy killed (the test)', killedAt);
  const orphans = state.pages.map((p, i) => [p, pages[i]]).filter(([p]) => p.proxy === state.killed_proxy);
  state.reconnected = orphans.map(([p]) => p.name);
  for (const [p, page] of orphans) {
    await step(`${p.name} lost the connection and claimed its session`, async () => {
      const left = Math.max(0, state.killed_at + opts.claimMs - Date.now());
      await until(page, `the claim answered within ${opts.claimMs} ms of the kill`,
        () => window.state.claimed.length + window.state.claimFailed.length > 0, null, left);
      const s = await page.evaluate(() => window.state);
      if (s.claimFailed.length) throw new Error(`claim refused: ${s.claimFailed[0].what}`);
      p.claim_ms = s.claimed[0].at - state.killed_at;
      p.session_after = s.claimed[0].session;
      if (p.claim_ms > opts.claimMs) throw new Error(`claimed ${p.claim_ms} ms after the kill`);
      if (p.session_after !== p.session) throw new Error(`session ${p.session} became ${p.session_after}`);
    });
  }
  await step('the same PeerConnections on every page, connected', async () => {
    for (const [i, page] of pages.entries()) {
      const pcs = state.pages[i].pcs = await page.evaluate(() => window.peerConnections());
      if (pcs.made !== 2 || !pcs.same || pcs.states.some((s) => s !== 'connected')) throw new Error(`${NAMES[i]}: PeerConnections ${JSON.stringify(pcs)}`);
    }
  });
  await framesGrowAndNobodyLeft(pages, state.killed_at);
  await step('a live proxy holds the first page\'s session, with the same publisher handle', async () => {
    state.holder_after = (await sessionsByProxy()).get(first.session) || null;
    if (!state.holder_after || !state.holder_after.handles.includes(first.publisher)) {
      throw new Error(`session ${first.session} (handle ${first.publisher}) on the live proxies: ${JSON.stringify(state.holder_after)}`);
    }
  });
}

async function run() {
  let browser = null;
  let server = null;
  const pages = [];
  const end = async (ok, reason) => {
    for (const [i, page] of pages.entries()) state.pages[i].page = await page.evaluate(() => window.state).catch(() => null);
    if (browser) await browser.close().catch(() => {});
    if (server) server.close();
    done(ok, reason);
  };
  try {
    server = await serveFiles(FILES);
    browser = await launchChromium(opts.stepMs);
    log(`chromium ${browser.version()} up`);
    const context = await browser.newContext();
    await context.addInitScript(RECORD_PCS);
    for (const [i, name] of NAMES.entries()) {
      const page = await context.newPage();
      page.lines = [];
      page.on('console', (m) => { page.lines.push(`+${Date.now() - script.t0}ms ${m.type()}: ${m.text()}`); if (page.lines.length > 400) page.lines.shift(); });
      page.on('pageerror', (e) => page.lines.push(`PAGE ERROR: ${e.message}`));
      pages.push(page);
      await page.goto(`http://127.0.0.1:${server.address().port}/page.html`, { timeout: opts.stepMs });
      await until(page, 'janus.js loaded', () => typeof Janus === 'function' && typeof window.start === 'function');
      // One after the other: each publishes before the next joins.
      await step(`${name} joined and publishing`, async () => {
        await page.evaluate((a) => window.start(...a), [opts.url, opts.room, name, FEEDS[i], NAMES.length - 1, opts.mode === 'adopt']);
        await until(page, 'joined, publisher PeerConnection up', () => window.state.joined && window.state.webrtcup > 0);
        const s = await page.evaluate(() => window.state);
        Object.assign(state.pages[i], { session: s.sessionId, publisher: s.publisherId });
      });
    }
    for (const [i, page] of pages.entries()) {
      await step(`${NAMES[i]} plays the other two (30 frames each)`, async () => {
        await until(page, 'subscribed, both PeerConnections up', () => window.state.started && window.state.webrtcup >= 2);
        const deadline = Date.now() + opts.stepMs;
        for (;;) {
          const f = await frames(page);
          if (f.length === 2 && f.every((n) => n >= 30)) break;
          if (Date.now() > deadline) throw new Error(`frames decoded ${JSON.stringify(f)} after ${opts.stepMs} ms`);
          await delay(100);
        }
      });
    }
    if (opts.mode === 'control') {
      for (const [i, page] of pages.entries()) state.pages[i].frames.before = await frames(page);
      await framesGrowAndNobodyLeft(pages, Date.now());
      await step('sessions destroyed', async () => { for (const page of pages) await page.evaluate(() => window.stop()); });
    } else {
      await adopt(pages);
    }
    state.step = null;
    await end(true, null);
  } catch (e) {
    const reason = failed(`${state.step || 'setup'}: ${e && e.message ? e.message : e}`);
    if (opts.out) {
      for (const [i, page] of pages.entries()) {
        const stem = path.join(opts.out, `adopt-videoroom-${opts.label}-${NAMES[i]}`);
        await page.screenshot({ path: `${stem}.png`, fullPage: true, timeout: 5000 }).catch((err) => log(`no screenshot: ${err.message}`));
        try { fs.writeFileSync(`${stem}.console.txt`, page.lines.join('\n') + '\n'); } catch (_) { /* ignore */ }
      }
    }
    await end(false, reason);
  }
}

run();
