// Real-media check of a video room whose publishers may live on different servers (the
// proxy's phase 2: publishers mirrored between backends with Janus's remote publishers).
// alice and bob create/join one room and publish audio + video; carol subscribes to BOTH
// feeds on one multistream PeerConnection and must receive RTP on all four streams; alice
// and bob must each see the other as a publisher; bob's unpublish reaches alice.
//
// Usage: node videoroom-mesh.mjs --url ws://127.0.0.1:PORT [--label NAME] [--room N]
//            [--admin-url http://127.0.0.1:PORT --admin-token T [--kill-pids NAME=PID,...]]
//            [--timeout-ms 40000]
//            [--connect-timeout-ms 10000] [--verbose]
// With --admin-url the summary carries the room's servers as the proxy's admin API shows them.
// With --kill-pids too, once the media flows the server of bob's publisher is killed (-9):
// alice must hear bob leave, bob must get the proxy's `leaving` notice, and carol must keep
// receiving alice's streams.
// stdout carries exactly one line: the JSON summary. Exit code 0 on success, 1 on failure.

import { format } from 'node:util';
import Janode from 'janode';
import Handle from 'janode/handle';
import wrtc from '@roamhq/wrtc';

const { RTCPeerConnection, MediaStream } = wrtc;
const { RTCAudioSource, RTCVideoSource } = wrtc.nonstandard;

const toStderr = (...a) => process.stderr.write(format(...a) + '\n');
console.log = console.info = console.debug = console.warn = console.error = toStderr;

function parseArgs(argv) {
  const opts = { url: null, label: 'videoroom', room: 7001, timeoutMs: 40000, connectTimeoutMs: 10000, verbose: false };
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
    else if (a === '--room') opts.room = Number(next());
    else if (a === '--admin-url') opts.adminUrl = next();
    else if (a === '--admin-token') opts.adminToken = next();
    else if (a === '--kill-pids') opts.killPids = Object.fromEntries(next().split(',').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
    else if (a === '--verbose') opts.verbose = true;
    else usage(`unknown argument ${a}`);
  }
  if (!opts.url) usage('--url is required');
  if (!(opts.timeoutMs > 0) || !(opts.connectTimeoutMs > 0)) usage('bad timeout');
  return opts;
}
function usage(msg) {
  process.stderr.write(`videoroom-mesh.mjs: ${msg}\nusage: node videoroom-mesh.mjs --url ws://HOST:PORT [--label NAME] [--room N] [--timeout-ms N] [--connect-timeout-ms N] [--verbose]\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
Janode.Logger.setLevel(opts.verbose ? 'debug' : 'warning');

const t0 = Date.now();
const log = (...a) => toStderr(`[videoroom-mesh ${opts.label} +${Date.now() - t0}ms]`, ...a);
const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/* A janode handle for janus.plugin.videoroom: answers (success, or the event with our
 * transaction) close the request; other plugin events are emitted. */
class VideoRoomHandle extends Handle {
  handleMessage(message) {
    const { transaction } = message;
    if (transaction && this.ownsTransaction(transaction)) {
      if (message.janus === 'ack') return true;
      this.closeTransactionWithSuccess(transaction, message);
    } else if (message.janus === 'event') {
      this.emit('videoroom_event', message);
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
    packetsReceived: { audio: 0, video: 0 },
    packetsSent: { audio: 0, video: 0 },
    framesDecoded: 0,
  };
}
function peerState(name) {
  return { ...newPeer(name), seen: new Set(), inboundStreams: 0 };
}
const alice = peerState('alice');
const bob = peerState('bob');
const carol = peerState('carol');
const state = { label: opts.label, url: opts.url, room: opts.room, peers: [alice, bob, carol],
  servers: null, killed: null, carol_undisturbed: null, errors: [] };

const missing = () => {
  const m = [];
  for (const p of state.peers) {
    if (!p.pc_states.includes('connected')) m.push(`${p.name}:pc_connected`);
    if (!p.webrtcup) m.push(`${p.name}:webrtcup`);
  }
  if (!(carol.inboundStreams >= 4)) m.push('carol:inbound_rtp_4_streams');
  if (!alice.seen.has(2002)) m.push('alice:sees_bob');
  if (!bob.seen.has(2001)) m.push('bob:sees_alice');
  if (!alice.events.some((e) => e === 'leaving:2002' || e === 'unpublished:2002')) m.push('alice:bob_gone_event');
  if (state.killed) {
    if (!bob.events.includes('leaving:ok')) m.push('bob:backend_lost_event');
    if (state.carol_undisturbed !== true) m.push('carol:undisturbed');
  }
  return m;
};

let finished = false;
function finish(ok, reason) {
  if (finished) return;
  finished = true;
  const summary = { result: ok ? 'ok' : 'fail', reason: reason || null, missing: missing(),
    elapsed_ms: Date.now() - t0, ...state,
    peers: state.peers.map((p) => ({ ...p, seen: [...(p.seen || [])] })) };
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
  return { rx, tx, framesDecoded };
}

/** Connects and attaches one peer to the videoroom plugin. */
async function setUp(peer) {
  const { connection, session } = await connectAndCreate(peer);
  peer.steps.push('connect', 'create');
  const handle = await session.attach({ id: 'janus.plugin.videoroom', Handle: VideoRoomHandle });
  peer.steps.push('attach');
  handle.on(Janode.EVENT.HANDLE_WEBRTCUP, () => { peer.webrtcup = true; peer.events.push('webrtcup'); });
  handle.on(Janode.EVENT.HANDLE_HANGUP, () => peer.events.push('core_hangup'));
  handle.on(Janode.EVENT.HANDLE_MEDIA, (d) => peer.events.push(`media:${d.type}:${d.receiving}`));
  const events = [];
  handle.on('videoroom_event', (m) => {
    const d = m.plugindata && m.plugindata.data;
    if (d && d.publishers) {
      peer.events.push('publishers');
      for (const p of d.publishers) peer.seen.add(p.id);
    } else if (d && d.leaving !== undefined) peer.events.push(`leaving:${d.leaving}`);
    else if (d && d.unpublished !== undefined) peer.events.push(`unpublished:${d.unpublished}`);
    else peer.events.push(`event:${d && d.videoroom}`);
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
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addEventListener('connectionstatechange', () => {
    peer.pc_states.push(pc.connectionState);
    log(peer.name, 'pc connectionState', pc.connectionState);
  });
  pc.addEventListener('icecandidate', (ev) => { if (ev.candidate) peer.local_candidates++; });
  return { connection, session, handle, pc, sources: null };
}

/** Half-trickle: the local description once every candidate is in it. */
async function localDescription(pc, peer) {
  await waitFor(`${peer.name}: ICE gathering complete`, () => pc.iceGatheringState === 'complete', 5000);
  if (peer.local_candidates === 0) throw new Error(`${peer.name}: no local ICE candidate gathered`);
  return { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
}

function expect(reply, key, value, what) {
  const d = reply.plugindata && reply.plugindata.data;
  if (!d || d[key] !== value) throw new Error(`${what}: ${JSON.stringify(d)}`);
  return d;
}

async function inboundStreams(pc) {
  const stats = await pc.getStats();
  let n = 0;
  stats.forEach((s) => { if (s.type === 'inbound-rtp' && (s.packetsReceived || 0) > 0) n++; });
  return n;
}

async function publish(side, peer, id) {
  const joined = await side.handle.message({ request: 'join', room: opts.room, ptype: 'publisher', display: peer.name, id });
  const d = expect(joined, 'videoroom', 'joined', `${peer.name} join`);
  for (const p of d.publishers || []) peer.seen.add(p.id);
  peer.steps.push('joined');
  side.sources = startSyntheticSources();
  const stream = new MediaStream([side.sources.audioTrack, side.sources.videoTrack]);
  side.pc.addTrack(side.sources.audioTrack, stream);
  side.pc.addTrack(side.sources.videoTrack, stream);
  await side.pc.setLocalDescription(await side.pc.createOffer());
  const offer = await localDescription(side.pc, peer);
  const configured = await side.handle.message({ request: 'configure', audio: true, video: true }, offer);
  expect(configured, 'configured', 'ok', `${peer.name} configure`);
  await side.pc.setRemoteDescription(configured.jsep);
  peer.steps.push('configured');
  await waitFor(`${peer.name}: webrtcup`, () => peer.webrtcup, 10000);
}

async function run() {
  const sides = [];
  try {
    const a = await setUp(alice);
    sides.push(a);
    const b = await setUp(bob);
    sides.push(b);
    const c = await setUp(carol);
    sides.push(c);

    const created = await a.handle.message({ request: 'create', room: opts.room, description: 'mesh', publishers: 6 });
    expect(created, 'videoroom', 'created', 'create');
    await publish(a, alice, 2001);
    await publish(b, bob, 2002);
    // Each publisher learns of the other (through the mirrors when on different servers).
    await waitFor('alice and bob see each other', () => alice.seen.has(2002) && bob.seen.has(2001), 10000);

    const attached = await c.handle.message({ request: 'join', room: opts.room, ptype: 'subscriber',
      streams: [{ feed: 2001 }, { feed: 2002 }] });
    expect(attached, 'videoroom', 'attached', 'subscribe');
    carol.steps.push('attached');
    await c.pc.setRemoteDescription(attached.jsep);
    await c.pc.setLocalDescription(await c.pc.createAnswer());
    const answer = await localDescription(c.pc, carol);
    const started = await c.handle.message({ request: 'start' }, answer);
    expect(started, 'started', 'ok', 'start');
    carol.steps.push('started');

    if (opts.adminUrl) {
      const r = await fetch(`${opts.adminUrl}/plugins/videoroom/rooms/${opts.room}`,
        { headers: { Authorization: `Bearer ${opts.adminToken}` } });
      const room = await r.json();
      state.servers = room.servers || null;
    }

    await waitFor(() => `media: ${missing().filter((m) => !m.endsWith('_event')).join(',')}`, async () => {
      carol.inboundStreams = await inboundStreams(c.pc);
      const s = await collectStats(c.pc);
      carol.packetsReceived = s.rx;
      return carol.inboundStreams >= 4 && carol.webrtcup && carol.pc_states.includes('connected');
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 5000), 200);
    log('carol receives', carol.inboundStreams, 'streams');

    if (opts.killPids && state.servers && state.servers.length === 2) {
      // Kill the server of bob's publisher (the room's second server).
      const victim = state.servers[1];
      const pid = opts.killPids[victim];
      if (!pid) throw new Error(`no pid for ${victim}`);
      const before = (await collectStats(c.pc)).rx;
      process.kill(pid, 'SIGKILL');
      state.killed = victim;
      log('killed', victim, pid);
      await waitFor('alice hears bob go', () => alice.events.includes('leaving:2002'), 5000);
      await waitFor('bob is told', () => bob.events.includes('leaving:ok'), 5000);
      // carol keeps receiving alice's audio and video.
      await waitFor('carol still receives', async () => {
        const now = (await collectStats(c.pc)).rx;
        return now.audio > before.audio + 20 && now.video > before.video + 20;
      }, 5000, 100);
      state.carol_undisturbed = true;
      sides.splice(1, 1); // bob's server is gone: only his PeerConnection is closed below
      b.sources.stop();
      b.pc.close();
      try { await Promise.race([b.connection.close(), delay(1000)]); } catch (_) { /* ignore */ }
    } else {
      const unpublished = await b.handle.message({ request: 'unpublish' });
      expect(unpublished, 'unpublished', 'ok', 'bob unpublish');
      bob.steps.push('unpublished');
      await waitFor('alice hears bob go', () => alice.events.some((e) => e === 'leaving:2002' || e === 'unpublished:2002'), 5000);
    }

    const destroyed = await a.handle.message({ request: 'destroy', room: opts.room });
    expect(destroyed, 'videoroom', 'destroyed', 'destroy');

    for (const side of sides) {
      if (side.sources) side.sources.stop();
      side.pc.close();
      await side.handle.detach();
      await side.session.destroy();
      await side.connection.close();
    }
    clearTimeout(watchdog);
    const bad = missing();
    finish(bad.length === 0, bad.length ? `missing ${bad.join(',')}` : null);
  } catch (e) {
    state.errors.push(e && e.message ? e.message : String(e));
    log('FAILED:', e && e.message ? e.message : e, '| missing:', missing().join(',') || '-');
    for (const side of sides) {
      try { if (side.sources) side.sources.stop(); } catch (_) { /* ignore */ }
      try { side.pc.close(); } catch (_) { /* ignore */ }
      try { await Promise.race([side.connection.close(), delay(1000)]); } catch (_) { /* ignore */ }
    }
    clearTimeout(watchdog);
    finish(false, e && e.message ? e.message : String(e));
  }
}

run();
