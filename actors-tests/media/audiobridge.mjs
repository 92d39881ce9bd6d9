// Real-media end-to-end check of an audio conference through a Janus (or through janus-proxy
// in front of Janus servers): two peers, each with janode signalling and a real libwebrtc
// PeerConnection (@roamhq/wrtc) sending a synthetic audio tone, join one room of
// janus.plugin.audiobridge; the Janus mixes, and each peer hears the other.
//
// Usage: node audiobridge.mjs --url ws://127.0.0.1:PORT [--label NAME]
//                             [--timeout-ms 40000] [--connect-timeout-ms 10000] [--verbose]
//
// Success criteria (all required):
//   - both peers connect, create a session and attach; alice creates a room (random id),
//   - alice `join`s with her offer and gets `joined` with an answer; bob joins as the stock
//     demo does (`join` without SDP, then `configure` with the offer, answered with `ok`),
//   - both PeerConnections reach "connected", both handles get `webrtcup`,
//   - each peer receives audio RTP (the mix): getStats() inbound-rtp packetsReceived > 0,
//   - bob's `leave` gets `left` and alice a `leaving` event; alice's `destroy` succeeds.
// stdout carries exactly one line: the JSON summary. Everything else goes to stderr.
// Exit code 0 on success, 1 on failure, 2 on bad usage.

import { format } from 'node:util';
import Janode from 'janode';
import Handle from 'janode/handle';
import wrtc from '@roamhq/wrtc';

const { RTCPeerConnection, MediaStream } = wrtc;
const { RTCAudioSource } = wrtc.nonstandard;

const toStderr = (...a) => process.stderr.write(format(...a) + '\n');
console.log = console.info = console.debug = console.warn = console.error = toStderr;

function parseArgs(argv) {
  const opts = { url: null, label: 'audiobridge', timeoutMs: 40000, connectTimeoutMs: 10000, verbose: false };
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
  process.stderr.write(`audiobridge.mjs: ${msg}\nusage: node audiobridge.mjs --url ws://HOST:PORT [--label NAME] [--timeout-ms N] [--connect-timeout-ms N] [--verbose]\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
Janode.Logger.setLevel(opts.verbose ? 'debug' : 'warning');

const t0 = Date.now();
const log = (...a) => toStderr(`[audiobridge ${opts.label} +${Date.now() - t0}ms]`, ...a);
const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/* A janode handle for janus.plugin.audiobridge: answers (events with our transaction) close
 * the request; the plugin's own events (joined, leaving, destroyed, ...) are emitted. */
class AudioBridgeHandle extends Handle {
  handleMessage(message) {
    const { transaction } = message;
    if (transaction && this.ownsTransaction(transaction)) {
      this.closeTransactionWithSuccess(transaction, message);
    } else if (message.janus === 'event') {
      this.emit('audiobridge_event', message);
    }
    return true;
  }
}

function newPeer(name) {
  return {
    name,
    connect_attempts: 0,
    create_failures: [],
    steps: [],
    events: [],
    webrtcup: false,
    pc_states: [],
    local_candidates: 0,
    packetsReceived: { audio: 0 },
    packetsSent: { audio: 0 },
  };
}
const alice = newPeer('alice');
const bob = newPeer('bob');
const state = { label: opts.label, url: opts.url, room: null, peers: [alice, bob], errors: [] };

const missing = () => {
  const m = [];
  for (const p of state.peers) {
    if (!p.pc_states.includes('connected')) m.push(`${p.name}:pc_connected`);
    if (!p.webrtcup) m.push(`${p.name}:webrtcup`);
    if (!(p.packetsReceived.audio > 0)) m.push(`${p.name}:inbound_rtp_audio`);
  }
  if (!alice.events.includes('leaving')) m.push('alice:leaving_event');
  return m;
};

let finished = false;
function finish(ok, reason) {
  if (finished) return;
  finished = true;
  const summary = { result: ok ? 'ok' : 'fail', reason: reason || null, missing: missing(),
    elapsed_ms: Date.now() - t0, ...state };
  process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(ok ? 0 : 1));
  setTimeout(() => process.exit(ok ? 0 : 1), 2000).unref();
}

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
async function connectAndCreate(peer) {
  const deadline = Date.now() + opts.connectTimeoutMs;
  let lastErr = null;
  Janode.Logger.setLevel(opts.verbose ? 'debug' : 'none');
  try {
    while (Date.now() < deadline) {
      peer.connect_attempts++;
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
        peer.create_failures.push(e && e.message ? e.message : String(e));
        try { await Promise.race([connection.close(), delay(500)]); } catch (_) { /* ignore */ }
        await delay(200);
      }
    }
  } finally {
    Janode.Logger.setLevel(opts.verbose ? 'debug' : 'warning');
  }
  throw new Error(`could not connect to ${opts.url} and create a session within ` +
    `${opts.connectTimeoutMs} ms (${peer.connect_attempts} attempts): ${lastErr && lastErr.message}`);
}

async function waitFor(what, pred, ms, pollMs = 50) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await delay(pollMs);
  }
  throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
}

function startSyntheticSource() {
  const audioSource = new RTCAudioSource();
  const audioTrack = audioSource.createTrack();
  // 10 ms of a 440 Hz tone at 48 kHz mono, every 10 ms.
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
  return {
    audioTrack,
    stop() {
      clearInterval(audioTimer);
      audioTrack.stop();
    },
  };
}

async function collectStats(pc) {
  const stats = await pc.getStats();
  const rx = { audio: 0 };
  const tx = { audio: 0 };
  stats.forEach((s) => {
    const kind = s.kind || s.mediaType;
    if (s.type === 'inbound-rtp' && kind === 'audio') rx.audio += s.packetsReceived || 0;
    if (s.type === 'outbound-rtp' && kind === 'audio') tx.audio += s.packetsSent || 0;
  });
  return { rx, tx };
}

// ---- the test -----------------------------------------------------------------------

/** Connects and attaches one peer; returns its handle and its PeerConnection. */
async function setUp(peer) {
  const { connection, session } = await connectAndCreate(peer);
  peer.steps.push('connect', 'create');
  const handle = await session.attach({ id: 'janus.plugin.audiobridge', Handle: AudioBridgeHandle });
  peer.steps.push('attach');
  handle.on(Janode.EVENT.HANDLE_WEBRTCUP, () => { peer.webrtcup = true; peer.events.push('webrtcup'); });
  handle.on(Janode.EVENT.HANDLE_HANGUP, () => peer.events.push('core_hangup'));
  handle.on(Janode.EVENT.HANDLE_MEDIA, (d) => peer.events.push(`media:${d.type}:${d.receiving}`));
  handle.on('audiobridge_event', (m) => {
    const d = m.plugindata && m.plugindata.data;
    if (d && d.leaving !== undefined) peer.events.push('leaving');
    else if (d) peer.events.push(`event:${d.audiobridge}`);
  });
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addEventListener('connectionstatechange', () => {
    peer.pc_states.push(pc.connectionState);
    log(peer.name, 'pc connectionState', pc.connectionState);
  });
  pc.addEventListener('icecandidate', (ev) => { if (ev.candidate) peer.local_candidates++; });
  const source = startSyntheticSource();
  const stream = new MediaStream([source.audioTrack]);
  pc.addTrack(source.audioTrack, stream);
  return { connection, session, handle, pc, source };
}

/** Half-trickle: the local description once every candidate is in it. */
async function localDescription(pc, peer) {
  await waitFor(`${peer.name}: ICE gathering complete`, () => pc.iceGatheringState === 'complete', 5000);
  if (peer.local_candidates === 0) throw new Error(`${peer.name}: no local ICE candidate gathered`);
  return { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
}

/** As the stock audiobridge demo does: `join` without an SDP, then `configure` with the
 * offer once joined. */
async function joinLikeTheDemo(peer, side, room) {
  const joined = await side.handle.message({ request: 'join', room, display: peer.name });
  const d = joined.plugindata.data;
  if (d.audiobridge !== 'joined') throw new Error(`${peer.name}: join: ${JSON.stringify(d)}`);
  peer.steps.push('joined');
  await side.pc.setLocalDescription(await side.pc.createOffer());
  const offer = await localDescription(side.pc, peer);
  const configured = await side.handle.message({ request: 'configure', muted: false }, offer);
  const c = configured.plugindata.data;
  if (c.result !== 'ok') throw new Error(`${peer.name}: configure: ${JSON.stringify(c)}`);
  if (!configured.jsep || configured.jsep.type !== 'answer') throw new Error(`${peer.name}: configured without an answer`);
  await side.pc.setRemoteDescription(configured.jsep);
  peer.steps.push('configured');
}

async function join(peer, side, room) {
  await side.pc.setLocalDescription(await side.pc.createOffer());
  const offer = await localDescription(side.pc, peer);
  const joined = await side.handle.message({ request: 'join', room, display: peer.name }, offer);
  const d = joined.plugindata.data;
  if (d.audiobridge !== 'joined') throw new Error(`${peer.name}: join: ${JSON.stringify(d)}`);
  if (!joined.jsep || joined.jsep.type !== 'answer') throw new Error(`${peer.name}: joined without an answer`);
  await side.pc.setRemoteDescription(joined.jsep);
  peer.steps.push('joined');
}

async function run() {
  const sides = [];
  try {
    const a = await setUp(alice);
    sides.push(a);
    const b = await setUp(bob);
    sides.push(b);

    const room = 1 + Math.floor(Math.random() * 1e9);
    state.room = room;
    const created = await a.handle.message({ request: 'create', room, description: `media ${opts.label}` });
    if (created.plugindata.data.audiobridge !== 'created') {
      throw new Error(`create: ${JSON.stringify(created.plugindata.data)}`);
    }
    alice.steps.push('created');
    await join(alice, a, room);
    await joinLikeTheDemo(bob, b, room);

    await waitFor(() => `media: ${missing().filter((m) => !m.endsWith('leaving_event')).join(',')}`, async () => {
      for (const [peer, side] of [[alice, a], [bob, b]]) {
        const s = await collectStats(side.pc);
        peer.packetsReceived = s.rx;
        peer.packetsSent = s.tx;
      }
      return missing().filter((m) => !m.endsWith('leaving_event')).length === 0;
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 5000), 200);
    log('audio flowing both ways', JSON.stringify(state.peers.map((p) => p.packetsReceived)));

    const left = await b.handle.message({ request: 'leave' });
    if (left.plugindata.data.audiobridge !== 'left') throw new Error(`leave: ${JSON.stringify(left.plugindata.data)}`);
    bob.steps.push('left');
    await waitFor('alice: leaving event', () => alice.events.includes('leaving'), 5000);
    const destroyed = await a.handle.message({ request: 'destroy', room });
    if (destroyed.plugindata.data.audiobridge !== 'destroyed') {
      throw new Error(`destroy: ${JSON.stringify(destroyed.plugindata.data)}`);
    }
    alice.steps.push('destroyed');

    for (const side of sides) {
      side.source.stop();
      side.pc.close();
      await side.handle.detach();
      await side.session.destroy();
      await side.connection.close();
    }
    clearTimeout(watchdog);
    finish(true, null);
  } catch (e) {
    state.errors.push(e && e.message ? e.message : String(e));
    log('FAILED:', e && e.message ? e.message : e, '| missing:', missing().join(',') || '-');
    for (const side of sides) {
      try { side.source.stop(); } catch (_) { /* ignore */ }
      try { side.pc.close(); } catch (_) { /* ignore */ }
      try { await Promise.race([side.connection.close(), delay(1000)]); } catch (_) { /* ignore */ }
    }
    clearTimeout(watchdog);
    finish(false, e && e.message ? e.message : String(e));
  }
}

run();
