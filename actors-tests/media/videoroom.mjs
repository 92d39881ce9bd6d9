// Real-media end-to-end check of a video room through a Janus (or through janus-proxy in
// front of Janus servers): a publisher (janode signalling, a real libwebrtc PeerConnection
// from @roamhq/wrtc sending a synthetic audio track and a synthetic video track) creates a
// room, joins it and publishes; a subscriber joins the room as a subscriber of the
// publisher's feed, gets Janus's offer, answers with `start` and must receive the media.
//
// Usage: node videoroom.mjs --url ws://127.0.0.1:PORT [--label NAME] [--room N]
//                           [--timeout-ms 40000] [--connect-timeout-ms 10000] [--verbose]
//
// Success criteria (all required):
//   - `create`, publisher `join` (`joined`), `configure` with the offer (`configured` +
//     answer), both PeerConnections "connected" and `webrtcup` on both handles,
//   - subscriber `join` (`attached` + offer), `start` with the answer (`started`),
//   - the publisher sends and the subscriber receives RTP: audio AND video,
//   - `unpublish` reaches the subscriber (an `unpublished`/updated event), `leave` gets
//     `left`, `destroy` gets `destroyed`.
// Shared parts (arguments, watchdog, connecting, handles, wrtc media, stats) are in lib.mjs.
// stdout carries exactly one line: the JSON summary. Everything else goes to stderr.
// Exit code 0 on success, 1 on failure, 2 on bad usage.

import {
  attachPeer, collectStats, createPeerConnection, expectReply, gatheredDescription, newPeer,
  startScript, superviseRun, waitFor,
} from './lib.mjs';

const script = startScript('videoroom', { timeoutMs: 40000, room: 7001 },
  { '--room': ['room', Number, 'N'] });
const { opts, t0, log } = script;

const publisher = newPeer('alice');
const subscriber = newPeer('bob');
const state = { label: opts.label, url: opts.url, room: opts.room, peers: [publisher, subscriber], errors: [] };

const missing = () => {
  const m = [];
  for (const p of state.peers) {
    if (!p.pc_states.includes('connected')) m.push(`${p.name}:pc_connected`);
    if (!p.webrtcup) m.push(`${p.name}:webrtcup`);
  }
  if (!(publisher.packetsSent.audio > 0)) m.push('alice:outbound_rtp_audio');
  if (!(publisher.packetsSent.video > 0)) m.push('alice:outbound_rtp_video');
  if (!(subscriber.packetsReceived.audio > 0)) m.push('bob:inbound_rtp_audio');
  if (!(subscriber.packetsReceived.video > 0)) m.push('bob:inbound_rtp_video');
  if (!subscriber.events.includes('unpublished')) m.push('bob:unpublished_event');
  return m;
};

const { done, closeAll, abort } = superviseRun(script, state, missing);

// ---- the test -----------------------------------------------------------------------

const isUnpublished = (d) => d.unpublished !== undefined || d.videoroom === 'updated';

/** Connects and attaches one peer to the videoroom plugin; `send`: it publishes media. */
async function setUp(peer, send) {
  const side = await attachPeer(opts, peer, {
    plugin: 'janus.plugin.videoroom',
    eventName: 'videoroom_event',
    classify: (d) => {
      if (d && isUnpublished(d)) return 'unpublished';
      if (d && d.publishers) return 'publishers';
      return `event:${d && d.videoroom}`;
    },
  });
  return { ...side, ...createPeerConnection({ rec: peer, log, tag: peer.name, send }) };
}

async function run() {
  const sides = [];
  try {
    const a = await setUp(publisher, true);
    sides.push(a);
    const b = await setUp(subscriber, false);
    sides.push(b);

    const created = await a.handle.message({ request: 'create', room: opts.room, description: 'media' });
    expectReply(created, 'videoroom', 'created', 'create');
    const joined = await a.handle.message({ request: 'join', room: opts.room, ptype: 'publisher', display: 'alice' });
    const feed = expectReply(joined, 'videoroom', 'joined', 'join').id;
    publisher.steps.push('joined');

    await a.pc.setLocalDescription(await a.pc.createOffer());
    const offer = await gatheredDescription(a.pc, publisher, publisher.name);
    const configured = await a.handle.message({ request: 'configure', audio: true, video: true }, offer);
    expectReply(configured, 'configured', 'ok', 'configure');
    if (!configured.jsep || configured.jsep.type !== 'answer') throw new Error('configure without an answer');
    await a.pc.setRemoteDescription(configured.jsep);
    publisher.steps.push('configured');
    await waitFor('alice: webrtcup', () => publisher.webrtcup, 10000);

    const attached = await b.handle.message({ request: 'join', room: opts.room, ptype: 'subscriber', streams: [{ feed }] });
    expectReply(attached, 'videoroom', 'attached', 'subscribe');
    if (!attached.jsep || attached.jsep.type !== 'offer') throw new Error('attached without an offer');
    subscriber.steps.push('attached');
    await b.pc.setRemoteDescription(attached.jsep);
    await b.pc.setLocalDescription(await b.pc.createAnswer());
    const answer = await gatheredDescription(b.pc, subscriber, subscriber.name);
    const started = await b.handle.message({ request: 'start' }, answer);
    expectReply(started, 'started', 'ok', 'start');
    subscriber.steps.push('started');

    await waitFor(() => `media: ${missing().filter((m) => !m.endsWith('_event')).join(',')}`, async () => {
      for (const [peer, side] of [[publisher, a], [subscriber, b]]) await collectStats(side.pc, peer);
      return missing().filter((m) => !m.endsWith('_event')).length === 0;
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 5000), 200);
    log('media flowing', JSON.stringify(state.peers.map((p) => p.packetsReceived)));

    const unpublished = await a.handle.message({ request: 'unpublish' });
    expectReply(unpublished, 'unpublished', 'ok', 'unpublish');
    publisher.steps.push('unpublished');
    await subscriber.nextEvent(isUnpublished, 'unpublished', 5000);
    subscriber.steps.push('unpublished');

    const left = await b.handle.message({ request: 'leave' });
    expectReply(left, 'left', 'ok', 'leave');
    subscriber.steps.push('left');
    const destroyed = await a.handle.message({ request: 'destroy', room: opts.room });
    expectReply(destroyed, 'videoroom', 'destroyed', 'destroy');

    await closeAll(sides);
    done(true, null);
  } catch (e) {
    await abort(e, sides);
  }
}

run();
