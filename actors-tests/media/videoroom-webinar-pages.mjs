// Real media for a webinar whose publisher's server is drained (issue 18's media proof), in
// headless Chromium (Debian's, through playwright-core) with janus.js (libjs-janus-gateway)
// and a fake camera: one publisher page creates room --room, joins and publishes; once its
// PeerConnection is up (`webrtcup`), with --admin, the server holding it (each Janus's Admin
// API, --janus-admin) is drained through the proxy's admin API; then --viewers pages, each a
// browser context of its own with no publisher, join as subscribers of the publisher's feed,
// answer and play. Each viewer must decode video (frames decoded grow by --frames); each
// Janus is asked (Admin API, the viewers' opaque ids) where the viewers are.
//
// Usage: node videoroom-webinar-pages.mjs --url ws://SERVER --janus-admin NAME=URL,...
//          [--admin http://PROXY_ADMIN --admin-token T] [--room R] [--viewers 6]
//          [--frames 30] [--step-ms 30000] [--timeout-ms 150000] [--out DIR]
// stdout: one JSON summary line (media_videoroom_webinar.rs asserts on it).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, serveFiles } from './browser.mjs';
import { delay, startScript, superviseRun } from './lib.mjs';
import { janusHandles, pairs } from './janus-raw.mjs';

const script = startScript('videoroom-webinar-pages',
  { label: 'pages', timeoutMs: 150000, room: 7190, viewers: 6, frames: 30, stepMs: 30000, out: null }, {
    '--room': ['room', Number, 'N'],
    '--viewers': ['viewers', Number, 'N'],
    '--frames': ['frames', Number, 'N'],
    '--step-ms': ['stepMs', Number, 'MS'],
    '--janus-admin': ['janusAdmin', pairs, 'NAME=URL,...'],
    '--admin': ['admin', String, 'URL'],
    '--admin-token': ['adminToken', String, 'T'],
    '--out': ['out', String, 'DIR'],
  });
const { opts, log } = script;
const FEED = 9101;
const OPAQUE = 'webinar-viewer-';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const FILES = {
  '/page.html': [path.join(HERE, 'webinar-page.html'), 'text/html; charset=utf-8'],
  '/janus.js': ['/usr/share/javascript/janus-gateway/janus.js', 'text/javascript; charset=utf-8'],
  '/adapter.js': ['/usr/share/javascript/webrtc-adapter/adapter.js', 'text/javascript; charset=utf-8'],
};

const state = {
  label: opts.label, room: opts.room, publisher: null, publisher_server: null, drained: null,
  viewers: Array.from({ length: opts.viewers }, (_, n) => ({ n, server: null, frames: null, started: false, tracks: 0, errors: [] })),
  placement: null, errors: [],
};
const missing = () => {
  const m = [];
  if (!state.publisher || !state.publisher.webrtcup) m.push('publisher:webrtcup');
  if (opts.admin && !state.drained) m.push('drain');
  for (const v of state.viewers) {
    if (!v.started) m.push(`viewer${v.n}:started`);
    if (!(v.frames && v.frames[1] >= v.frames[0] + opts.frames)) m.push(`viewer${v.n}:frames_decoded_grow`);
    if (!v.server) m.push(`viewer${v.n}:found_on_a_janus`);
    else if (v.server === state.drained) m.push(`viewer${v.n}:on_the_drained_server`);
  }
  return m;
};
const { failed, done } = superviseRun(script, state, missing);


/** Polls `fn(arg)` in `page` until truthy (step budget), naming `what` on a timeout. */
async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: opts.stepMs, polling: 200 });
  } catch (e) {
    const s = await page.evaluate(() => window.state).catch(() => null);
    throw new Error(`${page.who}: ${what} not within ${opts.stepMs} ms (page state ${JSON.stringify(s)})`);
  }
}

async function openPage(browser, who, baseUrl) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.who = who;
  page.lines = [];
  page.on('console', (m) => { page.lines.push(`${m.type()}: ${m.text()}`); if (page.lines.length > 300) page.lines.shift(); });
  page.on('pageerror', (e) => page.lines.push(`PAGE ERROR: ${e.message}`));
  await page.goto(`${baseUrl}/page.html`, { timeout: opts.stepMs });
  await until(page, 'janus.js loaded', () => typeof Janus === 'function' && typeof window.view === 'function');
  return page;
}

/** Which Janus holds each of the viewers (by opaque id), and the publisher's server. */
async function locate() {
  const placement = {};
  for (const [name, url] of Object.entries(opts.janusAdmin)) {
    const handles = await janusHandles(url);
    placement[name] = 0;
    for (const h of handles) {
      if (h.opaque_id === 'webinar-publisher' && h.type === 'publisher') state.publisher_server = name;
      if ((h.opaque_id || '').startsWith(OPAQUE)) {
        const v = state.viewers[Number(h.opaque_id.slice(OPAQUE.length))];
        if (v) v.server = name;
        placement[name]++;
      }
    }
  }
  return placement;
}

async function run() {
  let browser = null;
  let server = null;
  const pages = [];
  // The browser is closed before the summary is written (done() exits the process).
  const end = async (ok, reason) => {
    if (browser) await browser.close().catch(() => {});
    if (server) server.close();
    done(ok, reason);
  };
  try {
    server = await serveFiles(FILES);
    const base = `http://127.0.0.1:${server.address().port}`;
    browser = await launchChromium(opts.stepMs);
    log(`chromium ${browser.version()} up`);

    const pub = await openPage(browser, 'publisher', base);
    pages.push(pub);
    await pub.evaluate(([url, room, id]) => window.publish(url, room, id), [opts.url, opts.room, FEED]);
    await until(pub, 'publisher webrtcup', () => window.state.webrtcup);
    state.publisher = await pub.evaluate(() => window.state);
    log('publisher up');

    if (opts.admin) {
      await locate();
      if (!state.publisher_server) throw new Error('the publisher is on no Janus (Admin API)');
      const r = await fetch(`${opts.admin}/backend_servers/${state.publisher_server}/drain`,
        { method: 'POST', headers: { Authorization: `Bearer ${opts.adminToken}` } });
      if (!r.ok) throw new Error(`drain ${state.publisher_server}: ${r.status} ${await r.text()}`);
      state.drained = state.publisher_server;
      log('drained', state.drained);
    }

    const viewers = [];
    for (const v of state.viewers) {
      const page = await openPage(browser, `viewer${v.n}`, base);
      pages.push(page);
      viewers.push(page);
    }
    await Promise.all(viewers.map((page, n) =>
      page.evaluate(([url, room, feed, opaque]) => window.view(url, room, feed, opaque), [opts.url, opts.room, FEED, `${OPAQUE}${n}`])));
    await Promise.all(viewers.map(async (page, n) => {
      await until(page, 'started and a video track', () => window.state.started && window.state.tracks > 0 && window.state.webrtcup);
      const v = state.viewers[n];
      Object.assign(v, await page.evaluate(() => ({ started: window.state.started, tracks: window.state.tracks, errors: window.state.errors })));
      // Frames decoded, then again once they grew by --frames (or the step budget ends).
      const first = await page.evaluate(() => window.framesDecoded());
      const deadline = Date.now() + opts.stepMs;
      let last = first;
      while (last < first + opts.frames && Date.now() < deadline) {
        await delay(200);
        last = await page.evaluate(() => window.framesDecoded());
      }
      v.frames = [first, last];
    }));
    state.placement = await locate();
    log('viewers placed', JSON.stringify(state.placement), 'frames', JSON.stringify(state.viewers.map((v) => v.frames)));

    const destroyed = await pub.evaluate((room) => window.destroyRoom(room), opts.room);
    if (destroyed.videoroom !== 'destroyed') throw new Error(`destroy: ${JSON.stringify(destroyed)}`);
    const bad = missing();
    await end(bad.length === 0, bad.length ? `missing ${bad.join(',')}` : null);
  } catch (e) {
    const reason = failed(e);
    if (opts.out) {
      for (const page of pages) {
        try { fs.writeFileSync(path.join(opts.out, `${opts.label}-${page.who}.console.txt`), page.lines.join('\n')); } catch (_) { /* ignore */ }
      }
    }
    await end(false, reason);
  }
}

run();
