// Drives Janus's STOCK demo pages (Debian package janus-demos, /usr/share/janus/demos) in
// headless Chromium (Debian's, through playwright-core) with fake camera and microphone, as
// a user would: fill the inputs, click the demo's own buttons, then check what the user would
// see and hear (remote <video> elements playing, remote audio with energy, chat lines).
// Used by actors-tests/tests/demo_pages.rs, inside the test's network namespace.
//
//   node demos.mjs --site LABEL=URL ...          pages served elsewhere (the proxy's [demos])
//                  --direct LABEL=WS_PORT ...    pages served by this script, settings.js
//                                                pointing at a Janus on WS_PORT (the control)
//                  --run LABEL=scenario,scenario ...
//                  [--admin LABEL=URL --admin-token T]  the proxy's admin API: the servers
//                                                of room 1234 while the videoroom runs
//                  [--one-by-one LABEL]          that site's videoroom users join one after
//                                                another (each once its own video shows)
//                  [--out DIR] [--parallel N] [--timeout-ms N] [--step-ms N]
//
// Scenarios: echotest, videocall, videoroom, audiobridge, textroom, streaming. Prints one JSON
// line on stdout: {"result": "ok"|"failed", "runs": [{site, scenario, ok, ms, detail, error,
// files}], ...}; logs go to stderr. On a failure, a screenshot and the console log of each page
// of that run are written to --out and named in `files`. Exit 0 when every run passed.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { format } from 'node:util';
import { launchChromium } from './browser.mjs';

const log = (...a) => process.stderr.write(`[demos +${Date.now() - T0}ms] ${format(...a)}\n`);
const T0 = Date.now();
const DEMOS = '/usr/share/janus/demos';

// ---- arguments ----------------------------------------------------------------------------
function parseArgs(argv) {
  const usage = (msg) => {
    process.stderr.write(`demos.mjs: ${msg}\nusage: node demos.mjs --site L=URL | --direct L=PORT ... --run L=s1,s2 ... [--admin L=URL --admin-token T] [--one-by-one L] [--out DIR] [--parallel N] [--timeout-ms N] [--step-ms N]\n`);
    process.exit(2);
  };
  const o = { sites: {}, direct: {}, runs: [], admin: {}, adminToken: '', oneByOne: [], out: null, parallel: 3, timeoutMs: 150000, stepMs: 20000 };
  const pair = (v, flag) => {
    const at = v.indexOf('=');
    if (at <= 0) usage(`${flag} wants LABEL=VALUE, got ${v}`);
    return [v.slice(0, at), v.slice(at + 1)];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => (i + 1 < argv.length ? argv[++i] : usage(`missing value for ${a}`));
    if (a === '--site') { const [k, v] = pair(next(), a); o.sites[k] = v; }
    else if (a === '--direct') { const [k, v] = pair(next(), a); o.direct[k] = Number(v); }
    else if (a === '--admin') { const [k, v] = pair(next(), a); o.admin[k] = v; }
    else if (a === '--run') {
      const [k, v] = pair(next(), a);
      for (const s of v.split(',').filter(Boolean)) o.runs.push({ site: k, scenario: s });
    }
    else if (a === '--admin-token') o.adminToken = next();
    else if (a === '--one-by-one') o.oneByOne.push(next());
    else if (a === '--out') o.out = next();
    else if (a === '--parallel') o.parallel = Number(next());
    else if (a === '--timeout-ms') o.timeoutMs = Number(next());
    else if (a === '--step-ms') o.stepMs = Number(next());
    else usage(`unknown argument ${a}`);
  }
  for (const r of o.runs) {
    if (!(r.site in o.sites) && !(r.site in o.direct)) usage(`--run ${r.site}: no such site`);
    if (!SCENARIOS[r.scenario]) usage(`unknown scenario ${r.scenario}`);
  }
  if (!o.runs.length) usage('nothing to --run');
  if (!(o.parallel >= 1) || !(o.timeoutMs > 0) || !(o.stepMs > 0)) usage('bad number');
  return o;
}

// ---- the control's pages: the demo folder served as it is, settings.js pointing at Janus ---
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.png': 'image/png', '.gif': 'image/gif',
  '.jpg': 'image/jpeg', '.svg': 'image/svg+xml', '.ico': 'image/x-icon',
  '.woff': 'font/woff', '.woff2': 'font/woff2', '.ttf': 'font/ttf', '.eot': 'application/vnd.ms-fontobject',
  '.map': 'application/json', '.json': 'application/json',
};

// The same shape as the proxy's /settings.js (proxy/src/demos.rs), pointing at Janus itself.
const settingsFor = (wsPort) =>
  `var server = "ws://" + window.location.hostname + ":${wsPort}";\n` +
  'var iceServers = null;\nvar token = null;\nvar apisecret = null;\n';

function serveDirect(wsPort) {
  const server = http.createServer((req, res) => {
    const fail = () => { res.writeHead(404, { 'content-type': 'text/plain' }); res.end('not found\n'); };
    let rel;
    try {
      rel = new URL(req.url, 'http://x').pathname.split('/').slice(1).map(decodeURIComponent);
    } catch { return fail(); }
    if (rel.some((s, i) => s.startsWith('.') || /[/\\\0]/.test(s) || (s === '' && i < rel.length - 1))) return fail();
    if (rel.join('/') === 'settings.js') {
      res.writeHead(200, { 'content-type': TYPES['.js'] });
      return res.end(settingsFor(wsPort));
    }
    let file = path.join(DEMOS, ...rel);
    if (rel[rel.length - 1] === '') file = path.join(file, 'index.html');
    fs.readFile(file, (err, body) => {
      if (err) return fail();
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` }));
  });
}

// ---- pages ----------------------------------------------------------------------------------
// Every RTCPeerConnection a page makes, for its stats (the page's scripts are untouched).
const RECORD_PCS = () => {
  const Native = window.RTCPeerConnection;
  const pcs = [];
  window.__demoPcs = pcs;
  function Recorded(...args) {
    const pc = new Native(...args);
    pcs.push(pc);
    return pc;
  }
  Recorded.prototype = Native.prototype;
  Object.setPrototypeOf(Recorded, Native);
  window.RTCPeerConnection = Recorded;
};

class Run {
  constructor(browser, baseUrl, opts, label) {
    Object.assign(this, { browser, baseUrl, opts, label, pages: [], contexts: [] });
  }

  /** A new user (browser context) on demo page `file`, named `name` in logs and files. */
  async open(file, name) {
    const context = await this.browser.newContext();
    this.contexts.push(context);
    await context.addInitScript(RECORD_PCS);
    const page = await context.newPage();
    page.demoName = name;
    page.consoleLines = [];
    const keep = (line) => {
      page.consoleLines.push(`+${Date.now() - T0}ms ${line}`);
      if (page.consoleLines.length > 400) page.consoleLines.shift();
    };
    page.on('console', (m) => keep(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => keep(`PAGE ERROR: ${e.message}`));
    page.on('requestfailed', (r) => keep(`REQUEST FAILED: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => { if (r.status() >= 400) keep(`HTTP ${r.status()}: ${r.url()}`); });
    this.pages.push(page);
    await page.goto(`${this.baseUrl}/${file}`, { timeout: this.opts.stepMs });
    return page;
  }

  /** Waits (bounded) for `fn(arg)` in the page to be truthy; the error names the step. */
  async until(page, step, fn, arg) {
    try {
      const t = Date.now();
      const r = await page.waitForFunction(fn, arg, { timeout: this.opts.stepMs, polling: 200 });
      this.step(page, step, t);
      return r;
    } catch (e) {
      throw new Error(`${page.demoName}: ${step}: not within ${this.opts.stepMs} ms (${firstLine(e)})`);
    }
  }

  async click(page, selector, step) {
    try {
      const t = Date.now();
      await page.click(selector, { timeout: this.opts.stepMs });
      this.step(page, step || `click ${selector}`, t);
    } catch (e) {
      throw new Error(`${page.demoName}: ${step || `click ${selector}`}: ${firstLine(e)}`);
    }
  }

  async fill(page, selector, text) {
    try {
      await page.fill(selector, text, { timeout: this.opts.stepMs });
    } catch (e) {
      throw new Error(`${page.demoName}: fill ${selector}: ${firstLine(e)}`);
    }
  }

  /** Polls `sample()` until `done(first, now)` holds, bounded; returns the last sample. */
  async poll(page, step, sample, done) {
    const deadline = Date.now() + this.opts.stepMs;
    const first = await sample();
    let now = first;
    while (!done(first, now)) {
      if (Date.now() > deadline) {
        throw new Error(`${page.demoName}: ${step}: not within ${this.opts.stepMs} ms (first ${JSON.stringify(first)}, last ${JSON.stringify(now)})`);
      }
      await new Promise((r) => setTimeout(r, 250));
      now = await sample();
    }
    this.step(page, step, deadline - this.opts.stepMs);
    return { first, now };
  }

  /** Waits until `count` <video> elements under `container` play: each has advanced 1 s
   *  and decoded 15 frames since first seen. Returns what each did. */
  async videosPlay(page, container, count) {
    const sample = () => page.evaluate((sel) => Array.from(document.querySelectorAll(`${sel} video`))
      .filter((v) => v.srcObject && v.srcObject.getVideoTracks().some((t) => t.readyState === 'live'))
      .map((v) => ({ id: v.id, t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames, w: v.videoWidth })), container);
    const seen = {};
    const playing = (now) => {
      for (const v of now) if (!seen[v.id]) seen[v.id] = v;
      return now.filter((v) => v.t - seen[v.id].t >= 1 && v.frames - seen[v.id].frames >= 15 && v.w > 0);
    };
    const { now } = await this.poll(page, `${count} remote video(s) playing in ${container}`, sample,
      (_, n) => playing(n).length >= count);
    return playing(now).map((v) => ({ id: v.id, frames: v.frames, width: v.w }));
  }

  /** Inbound audio of every PeerConnection of the page, summed. */
  static audioIn(page) {
    return page.evaluate(async () => {
      let packets = 0, energy = 0, level = 0;
      for (const pc of window.__demoPcs || []) {
        if (pc.connectionState === 'closed') continue;
        (await pc.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio') {
            packets += s.packetsReceived || 0;
            energy += s.totalAudioEnergy || 0;
            level = Math.max(level, s.audioLevel || 0);
          }
        });
      }
      return { packets, energy, level };
    });
  }

  /** Waits until the page receives audio with sound in it: 25 more packets and energy. */
  async hears(page, what) {
    const { first, now } = await this.poll(page, `hear ${what}`, () => Run.audioIn(page),
      (f, n) => n.packets - f.packets >= 25 && n.energy - f.energy > 0.001);
    return { packets: now.packets - first.packets, energy: +(now.energy - first.energy).toFixed(4) };
  }

  async text(page, selector) {
    return page.evaluate((sel) => document.querySelector(sel)?.textContent ?? '', selector);
  }

  /** On a failure: a screenshot and the console log of every page, in --out. */
  async keep(name) {
    const files = [];
    if (!this.opts.out) return files;
    for (const page of this.pages) {
      const stem = path.join(this.opts.out, `${name}-${page.demoName}`);
      try {
        await page.screenshot({ path: `${stem}.png`, fullPage: true, timeout: 5000 });
        files.push(`${stem}.png`);
      } catch (e) {
        log(`${name}: no screenshot of ${page.demoName}: ${firstLine(e)}`);
      }
      fs.writeFileSync(`${stem}.console.log`, page.consoleLines.join('\n') + '\n');
      files.push(`${stem}.console.log`);
    }
    return files;
  }

  /** Logs a step that took a while (stderr: what a failure message shows). */
  step(page, what, since) {
    const ms = Date.now() - since;
    if (ms >= 500) log(`${this.label} ${page.demoName}: ${what}: ${ms} ms`);
  }

  async close() {
    await Promise.all(this.contexts.map((c) => c.close().catch(() => {})));
  }
}

const firstLine = (e) => String(e && e.message ? e.message : e).split('\n')[0];
const unique = (what) => `${what}${Math.random().toString(36).slice(2, 7)}`;

/** Click the demo's Start and wait for the plugin handle (the element `ready` shown). */
async function start(run, page, ready) {
  await run.until(page, 'page loaded', () => typeof Janus === 'function' && document.querySelector('#start'));
  await run.click(page, '#start', 'click Start');
  await run.until(page, `${ready} shown`, (sel) => {
    const e = document.querySelector(sel);
    return e && e.offsetParent !== null;
  }, ready);
}

// ---- scenarios ------------------------------------------------------------------------------
const SCENARIOS = {
  // The echo test: my own video comes back and plays.
  async echotest(run) {
    const page = await run.open('echotest.html', 'echo');
    await run.until(page, 'page loaded', () => typeof Janus === 'function');
    await run.click(page, '#start', 'click Start');
    const videos = await run.videosPlay(page, '#videoright', 1);
    const audio = await run.hears(page, 'the echoed audio');
    return { videos, audio };
  },

  // Two users register, one calls, the other answers; both see each other; then hang up.
  async videocall(run) {
    const [alice, bob] = [unique('alice'), unique('bob')];
    const [pa, pb] = await Promise.all([run.open('videocalltest.html', 'caller'), run.open('videocalltest.html', 'callee')]);
    await Promise.all([[pa, alice], [pb, bob]].map(async ([page, name]) => {
      await start(run, page, '#login');
      await run.fill(page, '#username', name);
      await run.click(page, '#register', 'click Register');
      await run.until(page, 'registered', (n) => (document.querySelector('#youok')?.textContent || '').includes(n), name);
    }));
    await run.fill(pa, '#peer', bob);
    await run.click(pa, '#call', 'click Call');
    await run.click(pb, '.bootbox .btn-success', 'answer the incoming call');
    const [va, vb] = await Promise.all([run.videosPlay(pa, '#videoright', 1), run.videosPlay(pb, '#videoright', 1)]);
    const [ha, hb] = await Promise.all([run.hears(pa, 'the callee'), run.hears(pb, 'the caller')]);
    await run.click(pa, '#call', 'click Hangup');
    for (const page of [pa, pb]) {
      await run.until(page, 'hung up (Call button back, videos hidden)', () =>
        document.querySelector('#call')?.textContent === 'Call' && document.querySelector('#videos')?.offsetParent === null);
    }
    return { caller: { videos: va, audio: ha }, callee: { videos: vb, audio: hb } };
  },

  // Three users join room 1234 (at once, or with --one-by-one each once its own video shows);
  // each sees and plays the two others.
  async videoroom(run) {
    const names = [unique('ann'), unique('ben'), unique('cal')];
    const pages = await Promise.all(names.map((_, i) => run.open('videoroomtest.html', `user${i + 1}`)));
    const join = async (page, i) => {
      await start(run, page, '#registernow');
      await run.fill(page, '#username', names[i]);
      await run.click(page, '#register', 'click Join the room');
    };
    if (run.opts.oneByOne.includes(run.site)) {
      for (const [i, page] of pages.entries()) {
        await join(page, i);
        await run.until(page, 'my own video shown', () => document.querySelector('#videolocal video'));
      }
    } else {
      await Promise.all(pages.map(join));
    }
    const detail = {};
    await Promise.all(pages.map(async (page, i) => {
      const others = names.filter((_, j) => j !== i);
      await run.until(page, `remote labels show ${others.join(' and ')}`, (want) => {
        const shown = Array.from(document.querySelectorAll('[id^=remote]'))
          .filter((e) => /^remote\d$/.test(e.id) && e.offsetParent !== null).map((e) => e.textContent);
        return want.every((w) => shown.includes(w));
      }, others);
      detail[page.demoName] = await run.videosPlay(page, '[id^=videoremote]', 2);
    }));
    const admin = run.opts.admin[run.site];
    if (admin) {
      const r = await fetch(`${admin}/plugins/videoroom/rooms/1234`,
        { headers: { Authorization: `Bearer ${run.opts.adminToken}` } });
      const room = await r.json();
      if (!r.ok || !Array.isArray(room.servers)) throw new Error(`GET ${admin}/plugins/videoroom/rooms/1234: ${r.status} ${JSON.stringify(room)}`);
      detail.servers = room.servers;
    }
    return detail;
  },

  // Two users join the audio room 1234 and hear each other: the mix a user gets leaves out
  // their own voice, so the first one alone gets packets of silence (checked), then sound
  // once the second one is in.
  async audiobridge(run) {
    const names = [unique('ada'), unique('bo')];
    const pages = await Promise.all(names.map((_, i) => run.open('audiobridgetest.html', `user${i + 1}`)));
    const join = async (page, i) => {
      await start(run, page, '#registernow');
      await run.fill(page, '#username', names[i]);
      await run.click(page, '#register', 'click Join the room');
      await run.until(page, 'joined (the room shown)', () => document.querySelector('#room')?.offsetParent !== null);
    };
    await join(pages[0], 0);
    const alone = await run.poll(pages[0], 'the mix while alone', () => Run.audioIn(pages[0]),
      (f, n) => n.packets - f.packets >= 25);
    const silence = alone.now.energy - alone.first.energy;
    if (silence > 0.0001) throw new Error(`user1: alone in the room, yet hears sound (energy ${silence})`);
    await join(pages[1], 1);
    const detail = { alone: { packets: alone.now.packets - alone.first.packets, energy: silence } };
    await Promise.all(pages.map(async (page, i) => {
      const other = names[1 - i];
      await run.until(page, `participants list shows ${other}`, (w) => (document.querySelector('#list')?.textContent || '').includes(w), other);
      detail[page.demoName] = await run.hears(page, other);
    }));
    return detail;
  },

  // Two users join the text room 1234 and read each other's messages.
  async textroom(run) {
    const names = [unique('tom'), unique('tia')];
    const pages = await Promise.all(names.map((_, i) => run.open('textroomtest.html', `user${i + 1}`)));
    await Promise.all(pages.map(async (page, i) => {
      await start(run, page, '#registernow');
      await run.fill(page, '#username', names[i]);
      await run.click(page, '#register', 'click Join the room');
      await run.until(page, 'joined (message box enabled)', () => document.querySelector('#datasend') && !document.querySelector('#datasend').disabled);
    }));
    await Promise.all(pages.map((page, i) => run.until(page, `participants list shows ${names[1 - i]}`,
      (w) => (document.querySelector('#list')?.textContent || '').includes(w), names[1 - i])));
    const said = names.map((n) => `hello from ${n}`);
    for (const [i, page] of pages.entries()) {
      await run.fill(page, '#datasend', said[i]);
      await page.press('#datasend', 'Enter');
    }
    await Promise.all(pages.map((page, i) => run.until(page, `chat shows "${names[1 - i]}: ${said[1 - i]}"`,
      ([who, text]) => (document.querySelector('#chatroom')?.textContent || '').includes(`${who}: ${text}`), [names[1 - i], said[1 - i]])));
    return { messages: said.length };
  },

  // The list shows the stock mountpoints; the on-demand file one (id 3, music) plays.
  async streaming(run) {
    const page = await run.open('streamingtest.html', 'viewer');
    await start(run, page, '#streams');
    await run.until(page, 'the list of streams', () => document.querySelectorAll('#streamslist a').length > 0);
    const list = await page.evaluate(() => Array.from(document.querySelectorAll('#streamslist a')).map((a) => `${a.id}: ${a.textContent}`));
    const want = ['1: Opus/VP8 live stream coming from external source (live)', '2: a-law file source (radio broadcast) (live)',
      '3: mu-law file source (music) (on demand)', '123: Multistream test (1 audio, 2 video) (live)'];
    const missing = want.filter((w) => !list.includes(w));
    if (missing.length) throw new Error(`viewer: the list lacks ${JSON.stringify(missing)}: ${JSON.stringify(list)}`);
    await run.click(page, '#streamset', 'open the streams menu');
    await run.click(page, "#streamslist a[id='3']", 'choose the on-demand music');
    await run.click(page, '#watch', 'click Watch or Listen');
    await run.until(page, 'the audio element plays', () => Array.from(document.querySelectorAll('audio[id^=remotevideo]')).some((a) => a.currentTime > 1));
    const audio = await run.hears(page, 'the music');
    return { list, audio };
  },
};

// ---- the runner -----------------------------------------------------------------------------
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.out) fs.mkdirSync(opts.out, { recursive: true });
  const results = [];
  let browser = null;
  const servers = [];
  const summary = (reason) => {
    const ok = results.length === opts.runs.length && results.every((r) => r.ok);
    return JSON.stringify({ result: ok ? 'ok' : 'failed', reason: ok ? null : reason, runs: results, elapsed_ms: Date.now() - T0 });
  };
  const watchdog = setTimeout(() => {
    process.stdout.write(summary(`watchdog: not done within ${opts.timeoutMs} ms`) + '\n');
    process.exit(1);
  }, opts.timeoutMs);
  try {
    const bases = { ...opts.sites };
    for (const [label, port] of Object.entries(opts.direct)) {
      const s = await serveDirect(port);
      servers.push(s.server);
      bases[label] = s.url;
    }
    browser = await launchChromium(opts.stepMs);
    log(`chromium ${browser.version()} up; ${opts.runs.length} runs, ${opts.parallel} at a time`);
    const queue = opts.runs.slice();
    const worker = async () => {
      for (let job = queue.shift(); job; job = queue.shift()) {
        const name = `${job.site}-${job.scenario}`;
        const run = new Run(browser, bases[job.site], opts, name);
        run.site = job.site;
        const t = Date.now();
        const result = { site: job.site, scenario: job.scenario, ok: false, ms: 0, detail: null, error: null, files: [] };
        try {
          result.detail = await SCENARIOS[job.scenario](run);
          result.ok = true;
        } catch (e) {
          result.error = firstLine(e);
          result.files = await run.keep(name);
        }
        result.ms = Date.now() - t;
        log(`${name}: ${result.ok ? 'ok' : `FAILED: ${result.error}`} in ${result.ms} ms`);
        await run.close();
        results.push(result);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.parallel, opts.runs.length) }, worker));
  } catch (e) {
    log(`aborted: ${e && e.stack ? e.stack : e}`);
    results.push({ site: null, scenario: null, ok: false, error: `aborted: ${firstLine(e)}` });
  }
  clearTimeout(watchdog);
  if (browser) await browser.close().catch(() => {});
  for (const s of servers) s.close();
  const line = summary('a run failed');
  process.stdout.write(line + '\n');
  process.exit(JSON.parse(line).result === 'ok' ? 0 : 1);
}

main();
