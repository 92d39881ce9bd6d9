// Real-media end-to-end check of a video call through a Janus (or through janus-proxy in
// front of Janus servers): two peers, each with janode signalling and a real libwebrtc
// PeerConnection (@roamhq/wrtc) sending a synthetic audio track and a synthetic video
// track, call each other with janus.plugin.videocall; the media is bridged by the Janus.
//
// Usage: node videocall.mjs --url ws://127.0.0.1:PORT [--label NAME] [--callee-url URL]
//                           [--timeout-ms 40000] [--connect-timeout-ms 10000] [--verbose]
// --callee-url: the callee connects there (another proxy of the same cluster), the caller
// to --url; both to --url by default.
//
// Success criteria (all required):
//   - both peers connect, create a session, attach and register (caller, callee),
//   - the caller's `call` with its offer gets `calling`, the callee gets `incomingcall`
//     with an offer, its `accept` with the answer gets `accepted`, the caller gets
//     `accepted` with an answer,
//   - both PeerConnections reach "connected", both handles get `webrtcup`,
//   - each peer receives RTP from the other: getStats() inbound-rtp packetsReceived > 0
//     for audio AND video, on both sides,
//   - the caller's hangup reaches the callee as a `hangup` event.
// Shared parts (arguments, watchdog, connecting, wrtc media, stats) are in lib.mjs.
// stdout carries exactly one line: the JSON summary. Everything else goes to stderr.
// Exit code 0 on success, 1 on failure, 2 on bad usage.

import Janode from 'janode';
import Handle from 'janode/handle';
import {
  collectStats, connectAndCreate, createPeerConnection, delay, gatheredDescription, startScript,
  superviseRun, waitFor, newPeer,
} from './lib.mjs';

const script = startScript('videocall', { timeoutMs: 40000 },
  { '--callee-url': ['calleeUrl', String, 'URL'] });
const { opts, t0, log } = script;

/* A janode handle for janus.plugin.videocall: answers (events with our transaction) close
 * the request; the plugin's own events (incomingcall, accepted, hangup, ...) are emitted. */
class VideoCallHandle extends Handle {
  handleMessage(message) {
    const { transaction } = message;
    if (transaction && this.ownsTransaction(transaction)) {
      this.closeTransactionWithSuccess(transaction, message);
    } else if (message.janus === 'event') {
      this.emit('videocall_event', message);
    }
    return true;
  }
}

const caller = newPeer('alice', { url: opts.url });
const callee = newPeer('bob', { url: opts.calleeUrl || opts.url });
const state = {
  label: opts.label, url: opts.url, callee_url: callee.url, peers: [caller, callee], errors: [],
};

const missing = () => {
  const m = [];
  for (const p of state.peers) {
    if (!p.pc_states.includes('connected')) m.push(`${p.name}:pc_connected`);
    if (!p.webrtcup) m.push(`${p.name}:webrtcup`);
    if (!(p.packetsReceived.audio > 0)) m.push(`${p.name}:inbound_rtp_audio`);
    if (!(p.packetsReceived.video > 0)) m.push(`${p.name}:inbound_rtp_video`);
  }
  if (!callee.events.includes('hangup_event')) m.push('bob:hangup_event');
  return m;
};

const { done, closeAll, abort } = superviseRun(script, state, missing);

// ---- the test -----------------------------------------------------------------------

/** Connects (to `peer.url`), attaches and registers one peer; returns its handle and its
 * PeerConnection. */
async function setUp(peer) {
  const { connection, session } = await connectAndCreate({ ...opts, url: peer.url }, peer);
  peer.steps.push('connect', 'create');
  const handle = await session.attach({ id: 'janus.plugin.videocall', Handle: VideoCallHandle });
  peer.steps.push('attach');
  handle.on(Janode.EVENT.HANDLE_WEBRTCUP, () => { peer.webrtcup = true; peer.events.push('webrtcup'); });
  handle.on(Janode.EVENT.HANDLE_HANGUP, () => peer.events.push('core_hangup'));
  handle.on(Janode.EVENT.HANDLE_MEDIA, (d) => peer.events.push(`media:${d.type}:${d.receiving}`));
  const events = [];
  const waiters = [];
  handle.on('videocall_event', (m) => {
    const ev = m.plugindata && m.plugindata.data && m.plugindata.data.result
      && m.plugindata.data.result.event;
    peer.events.push(ev === 'hangup' ? 'hangup_event' : `event:${ev}`);
    events.push(m);
    waiters.forEach((w) => w());
  });
  peer.nextEvent = async (name, ms) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = events.findIndex((m) => m.plugindata.data.result && m.plugindata.data.result.event === name);
      if (i >= 0) return events.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`${peer.name}: no ${name} event`);
      await delay(50);
    }
  };
  const reply = await handle.message({ request: 'register', username: peer.name });
  const result = reply.plugindata.data.result;
  if (!result || result.event !== 'registered') throw new Error(`${peer.name}: register: ${JSON.stringify(reply.plugindata.data)}`);
  peer.steps.push('register');

  const { pc, sources } = createPeerConnection({ rec: peer, log, tag: peer.name });
  return { connection, session, handle, pc, sources };
}

async function main() {
  const sides = [];
  try {
    const a = await setUp(caller);
    sides.push(a);
    const b = await setUp(callee);
    sides.push(b);

    await a.pc.setLocalDescription(await a.pc.createOffer());
    // Half-trickle: the offer and the answer carry every candidate.
    const offer = await gatheredDescription(a.pc, caller, caller.name);
    const calling = await a.handle.message({ request: 'call', username: callee.name }, offer);
    if (!calling.plugindata.data.result || calling.plugindata.data.result.event !== 'calling') {
      throw new Error(`call: ${JSON.stringify(calling.plugindata.data)}`);
    }
    caller.steps.push('calling');

    const incoming = await callee.nextEvent('incomingcall', 10000);
    if (!incoming.jsep || incoming.jsep.type !== 'offer') throw new Error('incomingcall without an offer');
    callee.steps.push('incomingcall');
    await b.pc.setRemoteDescription(incoming.jsep);
    await b.pc.setLocalDescription(await b.pc.createAnswer());
    const answer = await gatheredDescription(b.pc, callee, callee.name);
    const accepted = await b.handle.message({ request: 'accept' }, answer);
    if (!accepted.plugindata.data.result || accepted.plugindata.data.result.event !== 'accepted') {
      throw new Error(`accept: ${JSON.stringify(accepted.plugindata.data)}`);
    }
    callee.steps.push('accepted');

    const acceptedEvent = await caller.nextEvent('accepted', 10000);
    if (!acceptedEvent.jsep || acceptedEvent.jsep.type !== 'answer') throw new Error('accepted without an answer');
    await a.pc.setRemoteDescription(acceptedEvent.jsep);
    caller.steps.push('accepted');

    await waitFor(() => `media: ${missing().filter((m) => !m.endsWith('hangup_event')).join(',')}`, async () => {
      for (const [peer, side] of [[caller, a], [callee, b]]) await collectStats(side.pc, peer);
      return missing().filter((m) => !m.endsWith('hangup_event')).length === 0;
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 5000), 200);
    log('media flowing both ways', JSON.stringify(state.peers.map((p) => p.packetsReceived)));

    await a.handle.message({ request: 'hangup' });
    caller.steps.push('hangup');
    await callee.nextEvent('hangup', 5000);
    callee.steps.push('hangup');

    await closeAll(sides);
    done(true, null);
  } catch (e) {
    await abort(e, sides);
  }
}

main();
