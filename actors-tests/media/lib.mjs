// Shared parts of the real-media scripts (echotest.mjs, videocall.mjs, p2pcall.mjs,
// videoroom.mjs, videoroom-mesh.mjs, ...): the
// command line, stdout kept for the one JSON summary line, the watchdog, connecting with
// retries while the server under test starts, and the wrtc side (synthetic audio + video
// sources, a PeerConnection sending them, RTP / frame counting).
//
// Every script takes: --url ws://HOST:PORT [--label NAME] [--timeout-ms N]
// [--connect-timeout-ms N] [--verbose] (plus the script's own options, see startScript);
// exits 0 on success, 1 on failure, 2 on bad usage.

import { format } from 'node:util';
import Janode from 'janode';
import Handle from 'janode/handle';
import wrtc from '@roamhq/wrtc';

const { RTCPeerConnection, MediaStream } = wrtc;
const { RTCAudioSource, RTCVideoSource } = wrtc.nonstandard;

// ---- logging: keep stdout for the summary line only -------------------------------------
export const toStderr = (...a) => process.stderr.write(format(...a) + '\n');
console.log = console.info = console.debug = console.warn = console.error = toStderr;

export const delay = (ms) => new Promise((r) => setTimeout(r, ms));
export const errorText = (e) => (e && e.message ? e.message : String(e));

// ---- arguments --------------------------------------------------------------------------
function parseArgs(name, argv, defaults, extra) {
  const own = Object.keys(extra).map((a) => ` [${a} ${extra[a][2] || 'V'}]`).join('');
  const usage = (msg) => {
    process.stderr.write(`${name}.mjs: ${msg}\nusage: node ${name}.mjs --url ws://HOST:PORT [--label NAME]${own} [--timeout-ms N] [--connect-timeout-ms N] [--verbose]\n`);
    process.exit(2);
  };
  const opts = { url: null, label: name, timeoutMs: 30000, connectTimeoutMs: 10000, verbose: false, ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--url') opts.url = next();
    else if (a === '--label') opts.label = next();
    else if (a === '--timeout-ms') opts.timeoutMs = Number(next());
    else if (a === '--connect-timeout-ms') opts.connectTimeoutMs = Number(next());
    else if (a === '--verbose') opts.verbose = true;
    else if (Object.hasOwn(extra, a)) opts[extra[a][0]] = extra[a][1](next());
    else usage(`unknown argument ${a}`);
  }
  if (!opts.url) usage('--url is required');
  if (!(opts.timeoutMs > 0) || !(opts.connectTimeoutMs > 0)) usage('bad timeout');
  return opts;
}

/**
 * Parses the command line of script `name` (`defaults` overrides the default options) and
 * returns { opts, t0, log }: `log` writes to stderr with the script's name, label and time.
 * `extra` adds the script's own options: `{ '--flag': [optsKey, parse, 'USAGE'] }`, e.g.
 * `{ '--room': ['room', Number, 'N'] }` sets `opts.room` from `--room 7001`.
 */
export function startScript(name, defaults = {}, extra = {}) {
  const opts = parseArgs(name, process.argv.slice(2), defaults, extra);
  Janode.Logger.setLevel(opts.verbose ? 'debug' : 'warning');
  const t0 = Date.now();
  const log = (...a) => toStderr(`[${name} ${opts.label} +${Date.now() - t0}ms]`, ...a);
  return { opts, t0, log };
}

/**
 * The end of a script: `state` (with an `errors` array) goes into the summary, with what
 * `missing()` still lists. A watchdog ends the script with a failed summary after
 * --timeout-ms whatever hangs. Returns
 *   failed(e): records and logs the error and returns its text,
 *   done(ok, reason): stops the watchdog, prints the summary line and exits,
 *   closeAll(sides): closes every side (closeSide), in order,
 *   abort(e, sides): failed(e), every side closed quietly, done(false, …).
 */
export function superviseRun({ opts, t0, log }, state, missing) {
  let finished = false;
  const finish = (ok, reason) => {
    if (finished) return;
    finished = true;
    const summary = {
      result: ok ? 'ok' : 'fail',
      reason: reason || null,
      missing: missing(),
      elapsed_ms: Date.now() - t0,
      ...state,
    };
    process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(ok ? 0 : 1));
    // In case the write callback never fires (should not happen), force the exit.
    setTimeout(() => process.exit(ok ? 0 : 1), 2000).unref();
  };

  const watchdog = setTimeout(() => {
    log('timeout, missing:', missing().join(',') || '(nothing; cleanup hung)');
    finish(false, `timeout after ${opts.timeoutMs} ms`);
  }, opts.timeoutMs);

  process.on('unhandledRejection', (e) => {
    state.errors.push(`unhandledRejection: ${e && e.message ? e.message : e}`);
    log('unhandledRejection', e);
  });

  const failed = (e) => {
    const text = errorText(e);
    state.errors.push(text);
    log('FAILED:', e && e.message ? e.message : e, '| missing:', missing().join(',') || '-');
    return text;
  };
  const done = (ok, reason) => {
    clearTimeout(watchdog);
    finish(ok, reason);
  };
  return {
    failed,
    done,
    /** Closes every side in order (detach, destroy, close; errors are the script's). */
    async closeAll(sides) {
      for (const side of sides) await closeSide(side);
    },
    /** The run failed with `e`: recorded, every side closed quietly, a failed summary. */
    async abort(e, sides) {
      const reason = failed(e);
      for (const side of sides) await closeQuietly(side);
      done(false, reason);
    },
  };
}

// ---- signalling -------------------------------------------------------------------------
/**
 * Connects and creates a session, retrying both while the server is starting (a proxy may
 * accept WebSockets before its backend is connected and refuse `create` until then). Bounded
 * by --connect-timeout-ms. Janode's own log is muted during the attempts. Counts the attempts
 * in `rec.connect_attempts` and, if `rec` has `create_failures`, records failed `create`s.
 */
export async function connectAndCreate(opts, rec) {
  const deadline = Date.now() + opts.connectTimeoutMs;
  let lastErr = null;
  Janode.Logger.setLevel(opts.verbose ? 'debug' : 'none');
  try {
    while (Date.now() < deadline) {
      rec.connect_attempts++;
      let connection = null;
      try {
        // max_retries: 0 -> one attempt per call; the retry loop is ours.
        connection = await Janode.connect({
          is_admin: false,
          address: { url: opts.url },
          retry_time_secs: 0.1,
          max_retries: 0,
          ws_options: { handshakeTimeout: 2000 },
        });
      } catch (e) {
        lastErr = e;
        await delay(100);
        continue;
      }
      try {
        const session = await connection.create();
        return { connection, session };
      } catch (e) {
        lastErr = e;
        if (rec.create_failures) rec.create_failures.push(errorText(e));
        try { await Promise.race([connection.close(), delay(500)]); } catch (_) { /* ignore */ }
        await delay(200);
      }
    }
  } finally {
    Janode.Logger.setLevel(opts.verbose ? 'debug' : 'warning');
  }
  throw new Error(`could not connect to ${opts.url} and create a session within ` +
    `${opts.connectTimeoutMs} ms (${rec.connect_attempts} attempts): ${lastErr && lastErr.message}`);
}

/** How long a script waits for the answer to one request. */
export const REQUEST_TIMEOUT_MS = 20000;

/** `promise`, or a rejection naming `what` after `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/**
 * A janode Handle class for a plugin: answers (success, or the event with our transaction)
 * close the request, acks of our transactions are skipped, and the plugin's other events
 * are emitted as `eventName`.
 */
export function pluginHandle(eventName) {
  return class extends Handle {
    // An answer that never comes fails the script at once, naming the request, instead of
    // leaving it to the watchdog.
    message(body, jsep) {
      return withTimeout(super.message(body, jsep), REQUEST_TIMEOUT_MS, `"${body && body.request}" request`);
    }

    detach() {
      return withTimeout(super.detach(), REQUEST_TIMEOUT_MS, 'detach');
    }

    handleMessage(message) {
      const { transaction } = message;
      if (transaction && this.ownsTransaction(transaction)) {
        if (message.janus === 'ack') return true;
        this.closeTransactionWithSuccess(transaction, message);
      } else if (message.janus === 'event') {
        this.emit(eventName, message);
      }
      return true;
    }
  };
}

/** The summary record of one peer of a multi-peer script (`extra` adds fields). */
export function newPeer(name, extra = {}) {
  return {
    name,
    connect_attempts: 0,
    create_failures: [],
    steps: [],
    events: [],
    webrtcup: false,
    pc_states: [],
    local_candidates: 0,
    packetsReceived: { audio: 0, video: 0 },
    packetsSent: { audio: 0, video: 0 },
    framesDecoded: 0,
    ...extra,
  };
}

/**
 * Connects (connectAndCreate) and attaches `peer` (a newPeer record) to `plugin` with a
 * pluginHandle(`eventName`) handle; records webrtcup / hangup / media in `peer.events` and
 * each plugin event as `classify(plugindata.data)` (when it returns a string). Sets
 * `peer.nextEvent(pred, what, ms)`: the first plugin event whose data satisfies `pred`
 * (removed from the queue), or throws after `ms`. Returns { connection, session, handle }.
 */
export async function attachPeer(opts, peer, { plugin, eventName, classify }) {
  const { connection, session } = await connectAndCreate(opts, peer);
  peer.steps.push('connect', 'create');
  const handle = await session.attach({ id: plugin, Handle: pluginHandle(eventName) });
  peer.steps.push('attach');
  handle.on(Janode.EVENT.HANDLE_WEBRTCUP, () => { peer.webrtcup = true; peer.events.push('webrtcup'); });
  handle.on(Janode.EVENT.HANDLE_HANGUP, () => peer.events.push('core_hangup'));
  handle.on(Janode.EVENT.HANDLE_MEDIA, (d) => peer.events.push(`media:${d.type}:${d.receiving}`));
  const events = [];
  handle.on(eventName, (m) => {
    const ev = classify(m.plugindata && m.plugindata.data);
    if (typeof ev === 'string') peer.events.push(ev);
    events.push(m);
  });
  peer.nextEvent = async (pred, what, ms) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = events.findIndex((m) => pred(m.plugindata.data));
      if (i >= 0) return events.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`${peer.name}: no ${what} event`);
      await delay(50);
    }
  };
  return { connection, session, handle };
}

/** The plugin data of `reply`, which must have `key` === `value`; else throws (`what`: ...). */
export function expectReply(reply, key, value, what) {
  const d = reply.plugindata && reply.plugindata.data;
  if (!d || d[key] !== value) throw new Error(`${what}: ${JSON.stringify(d)}`);
  return d;
}

/** Polls `pred` (may be async) every `pollMs` until it holds; throws after `ms`. */
export async function waitFor(what, pred, ms, pollMs = 50) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await delay(pollMs);
  }
  throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
}

// ---- media ------------------------------------------------------------------------------
/**
 * A synthetic audio track (a tone, 440 Hz + seed * 110) and video track (a moving luma
 * gradient, shifted by seed); `stop()` ends both.
 */
export function startSyntheticSources(seed = 0) {
  const audioSource = new RTCAudioSource();
  const videoSource = new RTCVideoSource();
  const audioTrack = audioSource.createTrack();
  const videoTrack = videoSource.createTrack();

  // Audio: 10 ms of a tone at 48 kHz mono, every 10 ms.
  const sampleRate = 48000;
  const numberOfFrames = sampleRate / 100;
  const freq = 440 + seed * 110;
  let phase = 0;
  const audioTimer = setInterval(() => {
    const samples = new Int16Array(numberOfFrames);
    for (let i = 0; i < numberOfFrames; i++) {
      samples[i] = Math.round(Math.sin(phase) * 8000);
      phase += (2 * Math.PI * freq) / sampleRate;
    }
    audioSource.onData({ samples, sampleRate, bitsPerSample: 16, channelCount: 1, numberOfFrames });
  }, 10);

  // Video: 320x240 I420 frames at ~30 fps with a moving luma gradient.
  const width = 320;
  const height = 240;
  let n = 0;
  const videoTimer = setInterval(() => {
    const data = new Uint8ClampedArray(width * height * 1.5);
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let x = 0; x < width; x++) data[row + x] = (x + y + n * 4 + seed * 64) & 0xff;
    }
    data.fill(128, width * height);
    n++;
    videoSource.onFrame({ width, height, data });
  }, 33);

  return {
    audioTrack,
    videoTrack,
    stop() {
      clearInterval(audioTimer);
      clearInterval(videoTimer);
      audioTrack.stop();
      videoTrack.stop();
    },
  };
}

/**
 * A PeerConnection (no ICE servers) sending synthetic audio + video (`seed` as in
 * startSyntheticSources; with `send: false` it sends nothing and `sources` is null). Records its connectionState history in `rec.pc_states` (logged with
 * `tag` before it when given) and counts gathered candidates in `rec.local_candidates`;
 * `onIceCandidate(candidate or null)` sees every candidate event too. Returns { pc, sources }.
 */
export function createPeerConnection({ rec, log, tag = null, seed = 0, onIceCandidate = null, send = true }) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addEventListener('connectionstatechange', () => {
    rec.pc_states.push(pc.connectionState);
    if (tag) log(tag, 'pc connectionState', pc.connectionState);
    else log('pc connectionState', pc.connectionState);
  });
  pc.addEventListener('icecandidate', (ev) => {
    if (ev.candidate) rec.local_candidates++;
    if (onIceCandidate) onIceCandidate(ev.candidate);
  });
  if (!send) return { pc, sources: null };
  const sources = startSyntheticSources(seed);
  const stream = new MediaStream([sources.audioTrack, sources.videoTrack]);
  pc.addTrack(sources.audioTrack, stream);
  pc.addTrack(sources.videoTrack, stream);
  return { pc, sources };
}

/** Half-trickle: the local description once ICE gathering is complete (every candidate in). */
export async function gatheredDescription(pc, rec, who = '') {
  const prefix = who ? `${who}: ` : '';
  // wrtc may report `complete` before it delivers the candidate events: the candidates in
  // the local description count as well.
  const inSdp = () => (pc.localDescription?.sdp ?? '').includes('a=candidate:');
  const gathered = () => rec.local_candidates > 0 || inSdp();
  await waitFor(`${prefix}ICE gathering complete`, () => pc.iceGatheringState === 'complete', 5000);
  try {
    await waitFor(`${prefix}a local ICE candidate`, gathered, 2000);
  } catch (_) {
    throw new Error(`${prefix}no local ICE candidate gathered`);
  }
  return { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
}

/**
 * RTP counters of `pc` (getStats): inbound packets per kind, outbound packets per kind and
 * decoded video frames, written into `rec` as packetsReceived, packetsSent, framesDecoded.
 */
export async function collectStats(pc, rec) {
  const stats = await withTimeout(pc.getStats(), REQUEST_TIMEOUT_MS, "getStats");
  const rx = { audio: 0, video: 0 };
  const tx = { audio: 0, video: 0 };
  let framesDecoded = 0;
  stats.forEach((s) => {
    const kind = s.kind || s.mediaType;
    if (s.type === 'inbound-rtp' && (kind === 'audio' || kind === 'video')) {
      rx[kind] += s.packetsReceived || 0;
      if (kind === 'video') framesDecoded += s.framesDecoded || 0;
    }
    if (s.type === 'outbound-rtp' && (kind === 'audio' || kind === 'video')) {
      tx[kind] += s.packetsSent || 0;
    }
  });
  rec.packetsReceived = rx;
  rec.packetsSent = tx;
  rec.framesDecoded = framesDecoded;
}

/**
 * The orderly end of a passing run: stops the sources, closes the PeerConnection, detaches the
 * handle, destroys the session and closes the connection (each awaited: a failure fails the
 * run, unlike closeQuietly).
 */
export async function closeSide(side) {
  if (side.sources) side.sources.stop();
  if (side.pc) side.pc.close();
  await side.handle.detach();
  await withTimeout(side.session.destroy(), REQUEST_TIMEOUT_MS, 'session destroy');
  await withTimeout(side.connection.close(), REQUEST_TIMEOUT_MS, 'connection close');
}

/** Stops the sources, closes the PeerConnection and the connection; ignores every error. */
export async function closeQuietly({ sources, pc, connection }) {
  try { if (sources) sources.stop(); } catch (_) { /* ignore */ }
  try { if (pc) pc.close(); } catch (_) { /* ignore */ }
  try { if (connection) await Promise.race([connection.close(), delay(1000)]); } catch (_) { /* ignore */ }
}
