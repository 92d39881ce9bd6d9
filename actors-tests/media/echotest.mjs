// Real-media end-to-end check of a Janus (or of janus-proxy in front of one):
// janode signalling + a real libwebrtc PeerConnection (@roamhq/wrtc) with a
// synthetic audio track and a synthetic video track, against janus.plugin.echotest.
//
// Usage: node echotest.mjs --url ws://127.0.0.1:PORT [--label NAME]
//                          [--timeout-ms 30000] [--connect-timeout-ms 10000] [--verbose]
//
// Success criteria (all required):
//   - the WebSocket (subprotocol janus-protocol) connects, possibly after retries while
//     the server is still starting (bounded by --connect-timeout-ms),
//   - create / attach / message with the offer succeed and an answer comes back,
//   - RTCPeerConnection.connectionState reaches "connected",
//   - the server delivers `webrtcup`, at least one `media` event with receiving: true,
//   - the peer receives RTP back: getStats() inbound-rtp packetsReceived > 0 for audio
//     AND for video,
//   - hangup, detach and destroy succeed.
// stdout carries exactly one line: the JSON summary. Everything else goes to stderr.
// Exit code 0 on success, 1 on failure (the summary's "missing" says what was missing),
// 2 on bad usage.

import { format } from 'node:util';
import Janode from 'janode';
import EchoTestPlugin from 'janode/plugins/echotest';
import wrtc from '@roamhq/wrtc';

const { RTCPeerConnection, MediaStream } = wrtc;
const { RTCAudioSource, RTCVideoSource } = wrtc.nonstandard;

// ---- logging: keep stdout for the summary line only -------------------------------
const toStderr = (...a) => process.stderr.write(format(...a) + '\n');
console.log = console.info = console.debug = console.warn = console.error = toStderr;

// ---- arguments ------------------------------------------------------------------
function parseArgs(argv) {
  const opts = { url: null, label: 'echotest', timeoutMs: 30000, connectTimeoutMs: 10000, verbose: false };
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
    else usage(`unknown argument ${a}`);
  }
  if (!opts.url) usage('--url is required');
  if (!(opts.timeoutMs > 0) || !(opts.connectTimeoutMs > 0)) usage('bad timeout');
  return opts;
}
function usage(msg) {
  process.stderr.write(`echotest.mjs: ${msg}\nusage: node echotest.mjs --url ws://HOST:PORT [--label NAME] [--timeout-ms N] [--connect-timeout-ms N] [--verbose]\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
Janode.Logger.setLevel(opts.verbose ? 'debug' : 'warning');

const t0 = Date.now();
const log = (...a) => toStderr(`[echotest ${opts.label} +${Date.now() - t0}ms]`, ...a);
const delay = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- state collected for the summary ------------------------------------------------
const state = {
  label: opts.label,
  url: opts.url,
  connect_attempts: 0,
  create_failures: [],  // errors of `create` while retrying (server still starting)
  steps: [],            // signalling steps done, in order
  events: [],           // Janus events seen on the handle / session / connection
  media: [],            // media events {type, mid, receiving}
  webrtcup: false,
  answer: false,
  pc_states: [],        // RTCPeerConnection connectionState history
  ice_states: [],
  local_candidates: 0,
  packetsReceived: { audio: 0, video: 0 },
  packetsSent: { audio: 0, video: 0 },
  framesDecoded: 0,
  remote_tracks: [],
  errors: [],
};

const missing = () => {
  const m = [];
  if (!state.pc_states.includes('connected')) m.push('pc_connected');
  if (!state.webrtcup) m.push('webrtcup');
  if (!state.media.some((e) => e.receiving === true)) m.push('media_receiving_true');
  if (!(state.packetsReceived.audio > 0)) m.push('inbound_rtp_audio');
  if (!(state.packetsReceived.video > 0)) m.push('inbound_rtp_video');
  return m;
};

let finished = false;
function finish(ok, reason) {
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
}

// Global watchdog: whatever hangs, the script ends with a summary within timeoutMs.
const watchdog = setTimeout(() => {
  log('timeout, missing:', missing().join(',') || '(nothing; cleanup hung)');
  finish(false, `timeout after ${opts.timeoutMs} ms`);
}, opts.timeoutMs);

process.on('unhandledRejection', (e) => {
  state.errors.push(`unhandledRejection: ${e && e.message ? e.message : e}`);
  log('unhandledRejection', e);
});

// ---- helpers ----------------------------------------------------------------------
// Connect and create a session, retrying both while the server is starting (a proxy may
// accept WebSockets before its backend is connected and refuse `create` until then).
// Bounded by --connect-timeout-ms. Janode's own log is muted during the attempts.
async function connectAndCreate() {
  const deadline = Date.now() + opts.connectTimeoutMs;
  let lastErr = null;
  Janode.Logger.setLevel(opts.verbose ? 'debug' : 'none');
  try {
    while (Date.now() < deadline) {
      state.connect_attempts++;
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
        state.create_failures.push(e && e.message ? e.message : String(e));
        try { await Promise.race([connection.close(), delay(500)]); } catch (_) { /* ignore */ }
        await delay(200);
      }
    }
  } finally {
    Janode.Logger.setLevel(opts.verbose ? 'debug' : 'warning');
  }
  throw new Error(`could not connect to ${opts.url} and create a session within ` +
    `${opts.connectTimeoutMs} ms (${state.connect_attempts} attempts): ${lastErr && lastErr.message}`);
}

async function waitFor(what, pred, ms, pollMs = 50) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await delay(pollMs);
  }
  throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
}

function startSyntheticSources() {
  const audioSource = new RTCAudioSource();
  const videoSource = new RTCVideoSource();
  const audioTrack = audioSource.createTrack();
  const videoTrack = videoSource.createTrack();

  // Audio: 10 ms of a 440 Hz tone at 48 kHz mono, every 10 ms.
  const sampleRate = 48000;
  const numberOfFrames = sampleRate / 100;
  let phase = 0;
  const audioTimer = setInterval(() => {
    const samples = new Int16Array(numberOfFrames);
    for (let i = 0; i < numberOfFrames; i++) {
      samples[i] = Math.round(Math.sin(phase) * 8000);
      phase += (2 * Math.PI * 440) / sampleRate;
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
      for (let x = 0; x < width; x++) data[row + x] = (x + y + n * 4) & 0xff;
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

async function collectStats(pc) {
  const stats = await pc.getStats();
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
  state.packetsReceived = rx;
  state.packetsSent = tx;
  state.framesDecoded = framesDecoded;
}

// ---- the test -----------------------------------------------------------------------
async function run() {
  let connection = null;
  let session = null;
  let handle = null;
  let pc = null;
  let sources = null;
  try {
    ({ connection, session } = await connectAndCreate());
    state.steps.push('connect', 'create');
    log(`connected after ${state.connect_attempts} attempt(s)`);
    connection.once(Janode.EVENT.CONNECTION_CLOSED, () => state.events.push('connection_closed'));
    connection.on(Janode.EVENT.CONNECTION_ERROR, (e) => {
      state.events.push('connection_error');
      state.errors.push(`connection_error: ${e && e.message}`);
    });

    session.once(Janode.EVENT.SESSION_DESTROYED, () => state.events.push('session_destroyed'));

    handle = await session.attach(EchoTestPlugin);
    state.steps.push('attach');
    log(`session ${session.id} handle ${handle.id}`);

    handle.on(Janode.EVENT.HANDLE_WEBRTCUP, () => {
      state.webrtcup = true;
      state.events.push('webrtcup');
      log('webrtcup');
    });
    handle.on(Janode.EVENT.HANDLE_MEDIA, (d) => {
      state.media.push({ type: d.type, mid: d.mid, receiving: d.receiving });
      state.events.push(`media:${d.type}:${d.receiving}`);
      log('media', JSON.stringify(d));
    });
    handle.on(Janode.EVENT.HANDLE_HANGUP, (d) => {
      state.events.push('hangup');
      log('hangup', JSON.stringify(d));
    });
    handle.on(Janode.EVENT.HANDLE_ICE_FAILED, () => state.events.push('ice_failed'));
    handle.on(Janode.EVENT.HANDLE_SLOWLINK, () => state.events.push('slowlink'));
    handle.once(Janode.EVENT.HANDLE_DETACHED, () => state.events.push('detached'));
    handle.on(EchoTestPlugin.EVENT.ECHOTEST_RESULT, (d) => state.events.push(`echotest_result:${d.result}`));
    handle.on(EchoTestPlugin.EVENT.ECHOTEST_ERROR, (e) => {
      state.events.push('echotest_error');
      state.errors.push(`echotest_error: ${e && e.message}`);
    });

    pc = new RTCPeerConnection({ iceServers: [] });
    pc.addEventListener('connectionstatechange', () => {
      state.pc_states.push(pc.connectionState);
      log('pc connectionState', pc.connectionState);
    });
    pc.addEventListener('iceconnectionstatechange', () => state.ice_states.push(pc.iceConnectionState));
    pc.addEventListener('icecandidate', (ev) => { if (ev.candidate) state.local_candidates++; });
    pc.addEventListener('track', (ev) => state.remote_tracks.push(ev.track.kind));

    sources = startSyntheticSources();
    const stream = new MediaStream([sources.audioTrack, sources.videoTrack]);
    pc.addTrack(sources.audioTrack, stream);
    pc.addTrack(sources.videoTrack, stream);

    // Half-trickle: gather everything, then send the offer with all candidates in it.
    await pc.setLocalDescription(await pc.createOffer());
    await waitFor('ICE gathering complete', () => pc.iceGatheringState === 'complete', 5000);
    if (state.local_candidates === 0) throw new Error('no local ICE candidate gathered');
    const offer = { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
    state.steps.push('offer');

    const result = await handle.start({ audio: true, video: true, jsep: offer });
    if (!result.jsep || result.jsep.type !== 'answer') throw new Error('echotest result without a JSEP answer');
    state.answer = true;
    state.steps.push('answer');
    await pc.setRemoteDescription(result.jsep);

    // Everything below must happen; poll until all of it did (the watchdog bounds it).
    await waitFor(() => `media: ${missing().join(',')}`, async () => {
      await collectStats(pc);
      return missing().length === 0;
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 3000), 200);
    log('media flowing', JSON.stringify({ rx: state.packetsReceived, tx: state.packetsSent, framesDecoded: state.framesDecoded }));

    await handle.hangup();
    state.steps.push('hangup');
    await handle.detach();
    state.steps.push('detach');
    await session.destroy();
    state.steps.push('destroy');
    await connection.close();
    state.steps.push('close');
    sources.stop();
    pc.close();
    clearTimeout(watchdog);
    finish(true, null);
  } catch (e) {
    state.errors.push(e && e.message ? e.message : String(e));
    log('FAILED:', e && e.message ? e.message : e, '| missing:', missing().join(',') || '-');
    if (pc) {
      try { await collectStats(pc); } catch (_) { /* ignore */ }
    }
    try { if (sources) sources.stop(); } catch (_) { /* ignore */ }
    try { if (pc) pc.close(); } catch (_) { /* ignore */ }
    try { if (connection) await Promise.race([connection.close(), delay(1000)]); } catch (_) { /* ignore */ }
    clearTimeout(watchdog);
    finish(false, e && e.message ? e.message : String(e));
  }
}

run();
