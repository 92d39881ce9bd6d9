// Real-media end-to-end check of janus-proxy's p2pcall plugin: two peers (janode signalling,
// @roamhq/wrtc PeerConnections with synthetic audio + video) call each other through the
// proxy with janus.plugin.p2pcall. The proxy only relays the offer, the answer and the
// trickled candidates; media flows directly between the two PeerConnections.
//
// Usage: node p2pcall.mjs --url ws://127.0.0.1:PORT [--label NAME] [--callee-url URL]
//                         [--timeout-ms 30000] [--connect-timeout-ms 10000] [--verbose]
// --callee-url: the callee connects there (another proxy of the same cluster), the caller
// to --url; both to --url by default.
//
// Success criteria (all required):
//   - both peers connect, create a session, attach janus.plugin.p2pcall and register,
//   - `list` shows both names (polled for a few seconds: another proxy's users are listed
//     from its next sync round),
//   - the caller's `call` (offer and answer are sent without candidates, so ICE depends on the
//     proxy relaying the trickled ones) gives `calling`; the callee gets `incomingcall`
//     with the offer, `accept`s with an answer; the caller gets `accepted` with the answer,
//   - both get the proxy's `webrtcup` and at least one relayed `trickle`,
//   - both PeerConnections reach "connected" and receive RTP for audio AND video
//     (getStats inbound-rtp packetsReceived > 0) and decode video frames,
//   - the caller's `hangup` gives it `hangup` and the callee a `hangup` event naming the caller;
//     detach and destroy succeed.
// Shared parts (arguments, watchdog, connecting, wrtc media, stats) are in lib.mjs.
// stdout carries exactly one line: the JSON summary. Everything else goes to stderr.
// Exit code 0 on success, 1 on failure, 2 on bad usage.

import Janode from 'janode';
import Handle from 'janode/handle';
import {
  closeQuietly, collectStats, connectAndCreate, createPeerConnection, startScript, superviseRun,
  waitFor,
} from './lib.mjs';

const script = startScript('p2pcall', { timeoutMs: 30000 },
  { '--callee-url': ['calleeUrl', String, 'URL'] });
const { opts, t0, log } = script;

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
  callee_url: opts.calleeUrl || opts.url,
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

const { failed, done } = superviseRun(script, state, missing);

// ---- helpers ----------------------------------------------------------------------------
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

function stripCandidates(sdp) {
  return sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates').join('\r\n');
}

// One side: connection, session, handle, PeerConnection with its own synthetic media.
async function makePeer(role, name, seed, url) {
  const st = newPeerState(name);
  state.peers[role] = st;
  const { connection, session } = await connectAndCreate({ ...opts, url }, state);
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

  // Full trickle: every candidate goes through the proxy as it is gathered.
  const onIceCandidate = (c) => {
    const send = c
      ? handle.trickle({ candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex })
      : handle.trickleComplete();
    send.then(() => { st.trickles_sent++; }).catch((e) => state.errors.push(`${role} trickle: ${e.message}`));
  };
  ({ pc: peer.pc, sources: peer.sources } = createPeerConnection({ rec: st, log, tag: role, seed, onIceCandidate }));

  const reg = await handle.request({ request: 'register', username: name });
  if (!reg.result || reg.result.event !== 'registered') throw new Error(`${role} register: ${JSON.stringify(reg)}`);
  return peer;
}

async function closePeer(peer) {
  if (peer) await closeQuietly(peer);
}

// ---- the test -----------------------------------------------------------------------------
async function main() {
  let caller = null;
  let callee = null;
  try {
    const suffix = String(process.pid);
    caller = await makePeer('caller', `alice_${suffix}`, 0, opts.url);
    callee = await makePeer('callee', `bob_${suffix}`, 1, state.callee_url);
    state.steps.push('connect', 'register');

    const both = (l) => Array.isArray(l) && l.includes(caller.name) && l.includes(callee.name);
    await waitFor(() => `list without both peers: ${JSON.stringify(state.list)}`, async () => {
      const list = await caller.handle.request({ request: 'list' });
      state.list = list.result && list.result.list;
      return both(state.list);
    }, 5000, 100);
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
      await collectStats(caller.pc, caller.st);
      await collectStats(callee.pc, callee.st);
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
    done(true, null);
  } catch (e) {
    const reason = failed(e);
    for (const p of [caller, callee]) {
      if (p && p.pc) { try { await collectStats(p.pc, p.st); } catch (_) { /* ignore */ } }
    }
    await closePeer(caller);
    await closePeer(callee);
    done(false, reason);
  }
}

main();
