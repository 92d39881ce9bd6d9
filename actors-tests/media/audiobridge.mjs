// Real-media end-to-end check of an audio conference through a Janus (or through janus-proxy
// in front of Janus servers): two peers, each with janode signalling and a real libwebrtc
// PeerConnection (@roamhq/wrtc) sending a synthetic tone (and a video track, which the
// AudioBridge declines), join one room of janus.plugin.audiobridge; the Janus mixes, and each
// peer hears the other.
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
// Shared parts (arguments, watchdog, connecting, wrtc media, stats) are in lib.mjs.
// stdout carries exactly one line: the JSON summary. Everything else goes to stderr.
// Exit code 0 on success, 1 on failure, 2 on bad usage.

import Janode from 'janode';
import Handle from 'janode/handle';
import {
  collectStats, connectAndCreate, createPeerConnection, gatheredDescription, startScript,
  superviseRun, waitFor, newPeer,
} from './lib.mjs';

const script = startScript('audiobridge', { timeoutMs: 40000 });
const { opts, t0, log } = script;

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

const { done, closeAll, abort } = superviseRun(script, state, missing);

// ---- the test -----------------------------------------------------------------------

/** Connects and attaches one peer; returns its handle and its PeerConnection. */
async function setUp(peer, seed) {
  const { connection, session } = await connectAndCreate(opts, peer);
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
  const { pc, sources } = createPeerConnection({ rec: peer, log, tag: peer.name, seed });
  return { connection, session, handle, pc, sources };
}

/** As the stock audiobridge demo does: `join` without an SDP, then `configure` with the
 * offer once joined. */
async function joinLikeTheDemo(peer, side, room) {
  const joined = await side.handle.message({ request: 'join', room, display: peer.name });
  const d = joined.plugindata.data;
  if (d.audiobridge !== 'joined') throw new Error(`${peer.name}: join: ${JSON.stringify(d)}`);
  peer.steps.push('joined');
  await side.pc.setLocalDescription(await side.pc.createOffer());
  const offer = await gatheredDescription(side.pc, peer, peer.name);
  const configured = await side.handle.message({ request: 'configure', muted: false }, offer);
  const c = configured.plugindata.data;
  if (c.result !== 'ok') throw new Error(`${peer.name}: configure: ${JSON.stringify(c)}`);
  if (!configured.jsep || configured.jsep.type !== 'answer') throw new Error(`${peer.name}: configured without an answer`);
  await side.pc.setRemoteDescription(configured.jsep);
  peer.steps.push('configured');
}

async function join(peer, side, room) {
  await side.pc.setLocalDescription(await side.pc.createOffer());
  const offer = await gatheredDescription(side.pc, peer, peer.name);
  const joined = await side.handle.message({ request: 'join', room, display: peer.name }, offer);
  const d = joined.plugindata.data;
  if (d.audiobridge !== 'joined') throw new Error(`${peer.name}: join: ${JSON.stringify(d)}`);
  if (!joined.jsep || joined.jsep.type !== 'answer') throw new Error(`${peer.name}: joined without an answer`);
  await side.pc.setRemoteDescription(joined.jsep);
  peer.steps.push('joined');
}

async function main() {
  const sides = [];
  try {
    const a = await setUp(alice, 0);
    sides.push(a);
    const b = await setUp(bob, 1);
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
      for (const [peer, side] of [[alice, a], [bob, b]]) await collectStats(side.pc, peer);
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

    await closeAll(sides);
    done(true, null);
  } catch (e) {
    await abort(e, sides);
  }
}

main();
