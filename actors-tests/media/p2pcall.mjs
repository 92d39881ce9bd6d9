// Real-media end-to-end check of janus-proxy's p2pcall plugin: two peers (janode signalling,
// @roamhq/wrtc PeerConnections with synthetic audio + video) call each other through the
// proxy with janus.plugin.p2pcall. The proxy only relays the offer, the answer and the
// trickled candidates; media flows directly between the two PeerConnections.
//
// Usage: node p2pcall.mjs --url ws://127.0.0.1:PORT [--label NAME]
//                         [--timeout-ms 30000] [--connect-timeout-ms 10000] [--verbose]
//
// Success criteria (all required):
//   - both peers connect, create a session, attach janus.plugin.p2pcall and register,
//   - `list` shows both names,
//   - the caller's `call` (offer and answer are sent without candidates, so ICE depends on the
//     proxy relaying the trickled ones) gives `calling`; the callee gets `incomingcall`
//     with the offer, `accept`s with an answer; the caller gets `accepted` with the answer,
//   - both get the proxy's `webrtcup` and at least one relayed `trickle`,
//   - both PeerConnections reach "connected" and receive RTP for audio AND video
//     (getStats inbound-rtp packetsReceived > 0) and decode video frames,
//   - the caller's `hangup` gives it `hangup` and the callee a `hangup` event naming the caller;
//     detach and destroy succeed.
// stdout carries exactly one line: the JSON summary. Everything else goes to stderr.
// Exit code 0 on success, 1 on failure, 2 on bad usage.

import { format } from 'node:util';
import Janode from 'janode';
import Handle from 'janode/handle';
import wrtc from '@roamhq/wrtc';

const { RTCPeerConnection, MediaStream } = wrtc;
const { RTCAudioSource, RTCVideoSource } = wrtc.nonstandard;

const toStderr = (...a) => process.stderr.write(format(...a) + '\n');
console.log = console.info = console.debug = console.warn = console.error = toStderr;

function parseArgs(argv) {
  const opts = { url: null, label: 'p2pcall', timeoutMs: 30000, connectTimeoutMs: 10000, verbose: false };
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
  process.stderr.write(`p2pcall.mjs: ${msg}\nusage: node p2pcall.mjs --url ws://HOST:PORT [--label NAME] [--timeout-ms N] [--connect-timeout-ms N] [--verbose]\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
Janode.Logger.setLevel(opts.verbose ? 'debug' : 'warning');

const t0 = Date.now();
const log = (...a) => toStderr(`[p2pcall ${opts.label} +${Date.now() - t0}ms]`, ...a);
const delay = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- a janode plugin for janus.plugin.p2pcall (videocall API, `videocall` event key) -------
const P2P_EVENT = 'p2pcall_event';

class P2pCallHandle extends Handle {
  handleMessage(janus_message) {
    const { plugindata, transaction } = janus_message;
    const data = plugindata && plugindata.data;
    if (!data || data.videocall !== 'event') return null;
    const janode_event = this._newPluginEvent(janus_message);
    janode_event.event = P2P_EVENT;
    const owned = this.ownsTransaction(transaction);
    if (data.error_code) {
      this.closeTransactionWithError(transaction, new Error(`${data.error_code} ${data.error}`));
      return janode_event;
    }
    janode_event.data.result = data.result;
    this.closeTransactionWithSuccess(transaction, janus_message);
    if (!owned) this.emit(P2P_EVENT, { result: data.result, jsep: janus_message.jsep || null });
    return janode_event;
  }

  // Sends a request and resolves with { result, jsep } of its event.
  async request(body, jsep) {
    const response = await this.message(body, jsep);
    const data = response.plugindata && response.plugindata.data;
    return { result: data && data.result, jsep: response.jsep || null };
  }
}

const P2pCallPlugin = { id: 'janus.plugin.p2pcall', Handle: P2pCallHandle };

// ---- summary state ----------------------------------------------------------------------
const state = {
  label: opts.label,
  url: opts.url,
  connect_attempts: 0,
  steps: [],
  list: null,
  offer_candidates: null,
  peers: {},
  errors: [],
};

function newPeerState(name) {
  return {
    name,
    events: [],
    webrtcup: false,
    pc_states: [],
    local_candidates: 0,
    trickles_sent: 0,
    trickles_received: 0,
    packetsReceived: { audio: 0, video: 0 },
    packetsSent: { audio: 0, video: 0 },
    framesDecoded: 0,
  };
}

const missing = () => {
  const m = [];
  for (const [role, p] of Object.entries(state.peers)) {
    if (!p.pc_states.includes('connected')) m.push(`${role}:pc_connected`);
    if (!p.webrtcup) m.push(`${role}:webrtcup`);
    if (!(p.trickles_received > 0)) m.push(`${role}:relayed_trickle`);
    if (!(p.packetsReceived.audio > 0)) m.push(`${role}:inbound_rtp_audio`);
    if (!(p.packetsReceived.video > 0)) m.push(`${role}:inbound_rtp_video`);
    if (!(p.framesDecoded > 0)) m.push(`${role}:frames_decoded`);
  }
  if (Object.keys(state.peers).length < 2) m.push('peers');
  return m;
};

let finished = false;
function finish(ok, reason) {
  if (finished) return;
  finished = true;
  const summary = { result: ok ? 'ok' : 'fail', reason: reason || null, missing: missing(), elapsed_ms: Date.now() - t0, ...state };
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

// ---- helpers ----------------------------------------------------------------------------
// Connects and creates a session, retrying while the proxy starts (bounded).
async function connectAndCreate() {
  const deadline = Date.now() + opts.connectTimeoutMs;
  let lastErr = null;
  Janode.Logger.setLevel(opts.verbose ? 'debug' : 'none');
  try {
    while (Date.now() < deadline) {
      state.connect_attempts++;
      let connection = null;
      try {
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
        return { connection, session: await connection.create() };
      } catch (e) {
        lastErr = e;
        try { await Promise.race([connection.close(), delay(500)]); } catch (_) { /* ignore */ }
        await delay(200);
      }
    }
  } finally {
    Janode.Logger.setLevel(opts.verbose ? 'debug' : 'warning');
  }
  throw new Error(`could not connect to ${opts.url} within ${opts.connectTimeoutMs} ms: ${lastErr && lastErr.message}`);
}

async function waitFor(what, pred, ms, pollMs = 50) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await delay(pollMs);
  }
  throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
}

// Resolves with the first p2pcall event of `handle` that satisfies `pred` (bounded).
function nextEvent(handle, what, pred, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      handle.off(P2P_EVENT, on);
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    const on = (ev) => {
      if (!pred(ev)) return;
      clearTimeout(timer);
      handle.off(P2P_EVENT, on);
      resolve(ev);
    };
    handle.on(P2P_EVENT, on);
  });
}

function startSyntheticSources(seed) {
  const audioSource = new RTCAudioSource();
  const videoSource = new RTCVideoSource();
  const audioTrack = audioSource.createTrack();
  const videoTrack = videoSource.createTrack();
  const sampleRate = 48000;
  const numberOfFrames = sampleRate / 100;
  let phase = 0;
  const freq = 440 + seed * 110;
  const audioTimer = setInterval(() => {
    const samples = new Int16Array(numberOfFrames);
    for (let i = 0; i < numberOfFrames; i++) {
      samples[i] = Math.round(Math.sin(phase) * 8000);
      phase += (2 * Math.PI * freq) / sampleRate;
    }
    audioSource.onData({ samples, sampleRate, bitsPerSample: 16, channelCount: 1, numberOfFrames });
  }, 10);
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

function stripCandidates(sdp) {
  return sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates').join('\r\n');
}

async function collectStats(peer) {
  const stats = await peer.pc.getStats();
  const rx = { audio: 0, video: 0 };
  const tx = { audio: 0, video: 0 };
  let framesDecoded = 0;
  stats.forEach((s) => {
    const kind = s.kind || s.mediaType;
    if (s.type === 'inbound-rtp' && (kind === 'audio' || kind === 'video')) {
      rx[kind] += s.packetsReceived || 0;
      if (kind === 'video') framesDecoded += s.framesDecoded || 0;
    }
    if (s.type === 'outbound-rtp' && (kind === 'audio' || kind === 'video')) tx[kind] += s.packetsSent || 0;
  });
  peer.st.packetsReceived = rx;
  peer.st.packetsSent = tx;
  peer.st.framesDecoded = framesDecoded;
}

// One side: connection, session, handle, PeerConnection with its own synthetic media.
async function makePeer(role, name, seed) {
  const st = newPeerState(name);
  state.peers[role] = st;
  const { connection, session } = await connectAndCreate();
  const handle = await session.attach(P2pCallPlugin);
  const peer = { role, name, st, connection, session, handle, pc: null, sources: null, remoteSet: null, setRemote: null };
  peer.remoteSet = new Promise((r) => { peer.setRemote = r; });

  handle.on(Janode.EVENT.HANDLE_WEBRTCUP, () => { st.webrtcup = true; st.events.push('webrtcup'); });
  handle.on(Janode.EVENT.HANDLE_HANGUP, (d) => st.events.push(`janus_hangup:${d.reason}`));
  handle.on(P2P_EVENT, (ev) => st.events.push(`videocall:${ev.result && ev.result.event}`));
  // Candidates relayed by the proxy: added once the remote description is set.
  handle.on(Janode.EVENT.HANDLE_TRICKLE, (d) => {
    st.trickles_received++;
    if (d.completed) return;
    peer.remoteSet
      .then(() => peer.pc.addIceCandidate({ candidate: d.candidate, sdpMid: d.sdpMid, sdpMLineIndex: d.sdpMLineIndex }))
      .catch((e) => state.errors.push(`${role} addIceCandidate: ${e.message}`));
  });

  const pc = new RTCPeerConnection({ iceServers: [] });
  peer.pc = pc;
  pc.addEventListener('connectionstatechange', () => {
    st.pc_states.push(pc.connectionState);
    log(role, 'pc connectionState', pc.connectionState);
  });
  // Full trickle: every candidate goes through the proxy as it is gathered.
  pc.addEventListener('icecandidate', (ev) => {
    const c = ev.candidate;
    if (c) st.local_candidates++;
    const send = c
      ? handle.trickle({ candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex })
      : handle.trickleComplete();
    send.then(() => { st.trickles_sent++; }).catch((e) => state.errors.push(`${role} trickle: ${e.message}`));
  });
  peer.sources = startSyntheticSources(seed);
  const stream = new MediaStream([peer.sources.audioTrack, peer.sources.videoTrack]);
  pc.addTrack(peer.sources.audioTrack, stream);
  pc.addTrack(peer.sources.videoTrack, stream);

  const reg = await handle.request({ request: 'register', username: name });
  if (!reg.result || reg.result.event !== 'registered') throw new Error(`${role} register: ${JSON.stringify(reg)}`);
  return peer;
}

async function closePeer(peer) {
  if (!peer) return;
  try { if (peer.sources) peer.sources.stop(); } catch (_) { /* ignore */ }
  try { if (peer.pc) peer.pc.close(); } catch (_) { /* ignore */ }
  try { if (peer.connection) await Promise.race([peer.connection.close(), delay(1000)]); } catch (_) { /* ignore */ }
}

// ---- the test -----------------------------------------------------------------------------
async function run() {
  let caller = null;
  let callee = null;
  try {
    const suffix = String(process.pid);
    caller = await makePeer('caller', `alice_${suffix}`, 0);
    callee = await makePeer('callee', `bob_${suffix}`, 1);
    state.steps.push('connect', 'register');

    const list = await caller.handle.request({ request: 'list' });
    state.list = list.result && list.result.list;
    if (!state.list || !state.list.includes(caller.name) || !state.list.includes(callee.name)) {
      throw new Error(`list without both peers: ${JSON.stringify(list)}`);
    }
    state.steps.push('list');

    // The callee answers whatever comes in.
    const incoming = nextEvent(callee.handle, 'incomingcall', (ev) => ev.result && ev.result.event === 'incomingcall');
    const accepted = nextEvent(caller.handle, 'accepted', (ev) => ev.result && ev.result.event === 'accepted');

    // libwebrtc may already have put candidates into the local description: strip them from
    // the SDPs sent, so that ICE can only succeed with the candidates the proxy relays.
    const offer = await caller.pc.createOffer();
    await caller.pc.setLocalDescription(offer);
    state.offer_candidates = (caller.pc.localDescription.sdp.match(/^a=candidate:/gm) || []).length;
    const offerJsep = { type: caller.pc.localDescription.type, sdp: stripCandidates(caller.pc.localDescription.sdp) };
    const calling = await caller.handle.request({ request: 'call', username: callee.name }, offerJsep);
    if (!calling.result || calling.result.event !== 'calling') throw new Error(`call: ${JSON.stringify(calling)}`);
    state.steps.push('call');

    const inc = await incoming;
    if (inc.result.username !== caller.name || !inc.jsep || inc.jsep.type !== 'offer') {
      throw new Error(`incomingcall: ${JSON.stringify(inc.result)} jsep ${inc.jsep && inc.jsep.type}`);
    }
    await callee.pc.setRemoteDescription(inc.jsep);
    callee.setRemote();
    const answer = await callee.pc.createAnswer();
    await callee.pc.setLocalDescription(answer);
    const answerJsep = { type: callee.pc.localDescription.type, sdp: stripCandidates(callee.pc.localDescription.sdp) };
    const acc = await callee.handle.request({ request: 'accept' }, answerJsep);
    if (!acc.result || acc.result.event !== 'accepted') throw new Error(`accept: ${JSON.stringify(acc)}`);
    state.steps.push('accept');

    const got = await accepted;
    if (got.result.username !== callee.name || !got.jsep || got.jsep.type !== 'answer') {
      throw new Error(`accepted: ${JSON.stringify(got.result)} jsep ${got.jsep && got.jsep.type}`);
    }
    await caller.pc.setRemoteDescription(got.jsep);
    caller.setRemote();
    state.steps.push('answer');

    await waitFor(() => `media: ${missing().join(',')}`, async () => {
      await collectStats(caller);
      await collectStats(callee);
      return missing().length === 0;
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 4000), 200);
    log('media flowing both ways', JSON.stringify({ caller: caller.st.packetsReceived, callee: callee.st.packetsReceived }));
    state.steps.push('media');

    const hungUp = nextEvent(callee.handle, 'hangup', (ev) => ev.result && ev.result.event === 'hangup');
    const bye = await caller.handle.request({ request: 'hangup' });
    if (!bye.result || bye.result.event !== 'hangup') throw new Error(`hangup: ${JSON.stringify(bye)}`);
    const peerBye = await hungUp;
    if (peerBye.result.username !== caller.name) throw new Error(`peer hangup: ${JSON.stringify(peerBye.result)}`);
    state.steps.push('hangup');

    for (const p of [caller, callee]) {
      await p.handle.detach();
      await p.session.destroy();
    }
    state.steps.push('detach', 'destroy');
    await closePeer(caller);
    await closePeer(callee);
    clearTimeout(watchdog);
    finish(true, null);
  } catch (e) {
    state.errors.push(e && e.message ? e.message : String(e));
    log('FAILED:', e && e.message ? e.message : e, '| missing:', missing().join(',') || '-');
    for (const p of [caller, callee]) {
      if (p && p.pc) { try { await collectStats(p); } catch (_) { /* ignore */ } }
    }
    await closePeer(caller);
    await closePeer(callee);
    clearTimeout(watchdog);
    finish(false, e && e.message ? e.message : String(e));
  }
}

run();
