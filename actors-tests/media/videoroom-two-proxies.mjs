// Real-media check of one video room shared by two proxies (Redis): alice publishes through
// proxy A, bob publishes through proxy B, carol subscribes to alice's feed through proxy B.
// Real libwebrtc PeerConnections (@roamhq/wrtc), janode signalling; helpers in lib.mjs.
//
// Usage: node videoroom-two-proxies.mjs --url ws://A --url2 ws://B [--label NAME] [--room N]
//                                       [--timeout-ms 60000] [--connect-timeout-ms 20000]
//                                       [--span ws://janus1,ws://janus2]
//
// With --span (proxies with videoroom_publishers_per_backend = 1: the room spans the two
// Janus servers listed, asked directly to check the placement): bob (B) creates the room
// and publishes first, alice (A) publishes next and lands on the other server; each must see
// the other (in `joined` or a `publishers` event: only the mirrors tell them), both Janus
// must hold each publisher once as its own and once as a mirror (`remote`), and carol (B)
// subscribes to alice's feed, on the server that proxy A placed.
// With --kill-owner PID too (proxy A's pid; alice makes A the room's coordinating proxy
// before anyone joins), once the media flows proxy A is killed (-9): bob must see alice
// leave; then dave (B) publishes on the server alice left, dave and bob must see each other
// (bob's mirror there survives the hand-over to the new owner, dave's is made by it), and
// erin (B) subscribes to dave and bob on one PeerConnection and receives all four streams.
//
// Success criteria (all required):
//   - alice (A) creates the room, joins, publishes: `configured` + answer, webrtcup;
//   - bob (B) joins: his `joined` lists alice in `publishers`; he publishes (webrtcup) and
//     alice gets a `publishers` event with bob;
//   - carol (B) subscribes to alice's feed: `attached` + Janus's offer, `start` with her
//     answer, and she receives alice's audio AND video;
//   - bob leaves: alice is told (`leaving` / `unpublished`); alice destroys the room: carol
//     gets `destroyed` (or her subscription ends).
// stdout carries exactly one line: the JSON summary. Exit code 0 on success, 1 on failure.

import {
  attachPeer, closeQuietly, collectStats, createPeerConnection, expectReply, gatheredDescription,
  newPeer, startScript, superviseRun, waitFor, REQUEST_TIMEOUT_MS, withTimeout,
} from './lib.mjs';

const script = startScript('videoroom-two-proxies', { timeoutMs: 60000, room: 7101, url2: '', span: '', killOwner: 0 },
  { '--room': ['room', Number, 'N'], '--url2': ['url2', String, 'URL'], '--span': ['span', String, 'URLS'],
    '--kill-owner': ['killOwner', Number, 'PID'] });
const { opts, t0, log } = script;

const alice = newPeer('alice', { proxy: 'A', saw_publisher: false });
const bob = newPeer('bob', { proxy: 'B', saw_publisher: false });
const carol = newPeer('carol', { proxy: 'B', got_offer: false });
const dave = newPeer('dave', { proxy: 'B', saw_publisher: false });
const erin = newPeer('erin', { proxy: 'B', inboundStreams: 0 });
const state = { label: opts.label, url: opts.url, url2: opts.url2, room: opts.room, peers: [alice, bob, carol], errors: [],
  placement: null, owner_killed_ms: null, alice_left_after_ms: null };
if (opts.killOwner) state.peers.push(dave, erin);

const missing = () => {
  const m = [];
  for (const p of state.peers) {
    if (!p.pc_states.includes('connected')) m.push(`${p.name}:pc_connected`);
    if (!p.webrtcup) m.push(`${p.name}:webrtcup`);
  }
  if (!alice.saw_publisher) m.push('alice:publishers_event_with_bob');
  if (!bob.saw_publisher) m.push('bob:joined_lists_alice');
  if (!carol.got_offer) m.push('carol:offer');
  if (!(carol.packetsReceived.audio > 0)) m.push('carol:inbound_rtp_audio');
  if (!(carol.packetsReceived.video > 0)) m.push('carol:inbound_rtp_video');
  if (!alice.events.includes('bob_left')) m.push('alice:bob_left_event');
  if (opts.span && !(state.placement && state.placement.ok)) m.push('span:placement');
  if (opts.killOwner) {
    if (!bob.events.includes('alice_left')) m.push('bob:alice_left_after_kill_event');
    if (!dave.saw_publisher) m.push('dave:sees_bob_event');
    if (!bob.events.includes('saw_dave')) m.push('bob:sees_dave_event');
    if (!(erin.inboundStreams >= 4)) m.push('erin:inbound_rtp_4_streams');
  }
  return m;
};

const { done, closeAll, abort } = superviseRun(script, state, missing);

const leftOrUnpublished = (d, id) => d && (d.leaving === id || d.unpublished === id);

async function setUp(peer, url, send, seed) {
  const side = await attachPeer({ ...opts, url }, peer, {
    plugin: 'janus.plugin.videoroom',
    eventName: 'videoroom_event',
    classify: (d) => {
      if (d && d.publishers) return 'publishers';
      if (d && (d.leaving !== undefined || d.unpublished !== undefined)) return 'left_or_unpublished';
      return `event:${d && d.videoroom}`;
    },
  });
  return { ...side, ...createPeerConnection({ rec: peer, log, tag: peer.name, send, seed }) };
}

/** Joins as a publisher and publishes; returns the `joined` data. */
async function publish(side, peer, display) {
  const joined = expectReply(
    await side.handle.message({ request: 'join', room: opts.room, ptype: 'publisher', display }),
    'videoroom', 'joined', `${display} join`);
  peer.steps.push('joined');
  await side.pc.setLocalDescription(await side.pc.createOffer());
  const offer = await gatheredDescription(side.pc, peer, peer.name);
  const configured = await side.handle.message({ request: 'configure', audio: true, video: true }, offer);
  expectReply(configured, 'configured', 'ok', `${display} configure`);
  if (!configured.jsep || configured.jsep.type !== 'answer') throw new Error(`${display}: no answer`);
  await side.pc.setRemoteDescription(configured.jsep);
  peer.steps.push('configured');
  await waitFor(`${display}: webrtcup`, () => peer.webrtcup, 15000);
  return joined;
}

/** The room's participants as each Janus of --span has them: [{own: [ids], remote: [ids]}]. */
/** carol (side `c`) subscribes to alice's feed and answers Janus's offer with `start`. */
async function subscribeCarol(c, aliceId) {
  const attached = await c.handle.message({ request: 'join', room: opts.room, ptype: 'subscriber', streams: [{ feed: aliceId }] });
  expectReply(attached, 'videoroom', 'attached', 'subscribe');
  if (!attached.jsep || attached.jsep.type !== 'offer') throw new Error('attached without an offer');
  carol.got_offer = true;
  carol.steps.push('attached');
  await c.pc.setRemoteDescription(attached.jsep);
  await c.pc.setLocalDescription(await c.pc.createAnswer());
  const answer = await gatheredDescription(c.pc, carol, carol.name);
  expectReply(await c.handle.message({ request: 'start' }, answer), 'started', 'ok', 'start');
  carol.steps.push('started');
}

async function placement() {
  const out = [];
  for (const [i, url] of opts.span.split(',').entries()) {
    const probe = await attachPeer({ ...opts, url }, newPeer(`probe${i}`), {
      plugin: 'janus.plugin.videoroom', eventName: 'videoroom_event', classify: () => null,
    });
    try {
      const d = expectReply(await probe.handle.message({ request: 'listparticipants', room: opts.room }),
        'videoroom', 'participants', `listparticipants on ${url}`);
      const ps = d.participants || [];
      out.push({ url, own: ps.filter((p) => !p.remote).map((p) => p.id).sort(),
        remote: ps.filter((p) => p.remote).map((p) => p.id).sort() });
    } finally {
      await closeQuietly(probe);
    }
  }
  return out;
}

/** --span: one room over two servers, a publisher of each proxy on each. */
async function runSpan(sides) {
  const a = await setUp(alice, opts.url, true, 0);
  sides.push(a);
  const b = await setUp(bob, opts.url2, true, 1);
  sides.push(b);
  const c = await setUp(carol, opts.url2, false, 0);
  sides.push(c);

  if (opts.killOwner) {
    // The room's first use is through A: A coordinates it.
    expectReply(await a.handle.message({ request: 'create', room: opts.room, description: 'span' }),
      'videoroom', 'created', 'create');
    expectReply(await a.handle.message({ request: 'listparticipants', room: opts.room }),
      'videoroom', 'participants', 'listparticipants');
  } else {
    expectReply(await b.handle.message({ request: 'create', room: opts.room, description: 'span' }),
      'videoroom', 'created', 'create');
  }
  const bobJoined = await publish(b, bob, 'bob');
  const bobId = bobJoined.id;
  // Proxy A counts bob (after its next sync round) before alice joins: the server is full.
  await waitFor('proxy A counting bob', async () => {
    const d = expectReply(await a.handle.message({ request: 'list' }), 'videoroom', 'success', 'list');
    return (d.list || []).some((r) => r.room === opts.room && r.num_participants === 1);
  }, 10000, 100);
  const aliceJoined = await publish(a, alice, 'alice');
  const aliceId = aliceJoined.id;
  const listsBob = (d) => (d.publishers || []).some((p) => p.id === bobId);
  if (!listsBob(aliceJoined)) await alice.nextEvent(listsBob, 'publishers with bob', 10000);
  alice.saw_publisher = true;
  await bob.nextEvent((d) => (d.publishers || []).some((p) => p.id === aliceId), 'publishers with alice', 10000);
  bob.saw_publisher = true;

  // Each Janus has one of them as its own and the other as a mirror.
  let seen = null;
  await waitFor(() => `placement: ${JSON.stringify(seen)}`, async () => {
    seen = await placement();
    const own = seen.map((s) => s.own.join(',')).sort();
    const ok = seen.length === 2 && own.join('|') === [String(aliceId), String(bobId)].sort().join('|')
      && seen.every((s) => s.own.length === 1 && s.remote.length === 1 && s.remote[0] !== s.own[0]);
    state.placement = { ok, servers: seen };
    return ok;
  }, 10000, 200);
  log('placement', JSON.stringify(seen));

  await subscribeCarol(c, aliceId);

  // (dave and erin come later, with --kill-owner)
  const firstPart = () => missing().filter((m) => !m.endsWith('_event') && !/^(dave|erin):/.test(m));
  await waitFor(() => `media: ${firstPart().join(',')}`, async () => {
    for (const [peer, side] of [[alice, a], [bob, b], [carol, c]]) await collectStats(side.pc, peer);
    return firstPart().length === 0;
  }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 8000), 200);
  log('media flowing', JSON.stringify(carol.packetsReceived));
  if (opts.killOwner) return afterOwnerKilled(sides, a, b, aliceId, bobId);

  expectReply(await b.handle.message({ request: 'leave' }), 'leaving', 'ok', 'bob leave');
  await alice.nextEvent((d) => leftOrUnpublished(d, bobId), 'bob leaving', 5000);
  alice.events.push('bob_left');
  expectReply(await a.handle.message({ request: 'destroy', room: opts.room }), 'videoroom', 'destroyed', 'destroy');
}

async function inboundStreams(pc) {
  const stats = await withTimeout(pc.getStats(), REQUEST_TIMEOUT_MS, "getStats");
  let n = 0;
  stats.forEach((s) => { if (s.type === 'inbound-rtp' && (s.packetsReceived || 0) > 0) n++; });
  return n;
}

/** --kill-owner: proxy A (coordinating the room, alice's) is killed; B carries on. */
async function afterOwnerKilled(sides, a, b, aliceId, bobId) {
  const killed = Date.now();
  process.kill(opts.killOwner, 'SIGKILL');
  state.owner_killed_ms = killed - t0;
  log('killed proxy A', opts.killOwner);
  sides.splice(sides.indexOf(a), 1);
  await closeQuietly(a);
  await bob.nextEvent((d) => leftOrUnpublished(d, aliceId), 'alice leaving', 10000);
  state.alice_left_after_ms = Date.now() - killed;
  bob.events.push('alice_left');
  alice.events.push('bob_left'); // (alice is gone with her proxy)

  const d = await setUp(dave, opts.url2, true, 2);
  sides.push(d);
  const daveJoined = await publish(d, dave, 'dave');
  const daveId = daveJoined.id;
  const listsBob = (x) => (x.publishers || []).some((p) => p.id === bobId);
  if (!listsBob(daveJoined)) await dave.nextEvent(listsBob, 'publishers with bob', 10000);
  dave.saw_publisher = true;
  await bob.nextEvent((x) => (x.publishers || []).some((p) => p.id === daveId), 'publishers with dave', 10000);
  bob.events.push('saw_dave');

  const e = await setUp(erin, opts.url2, false, 0);
  sides.push(e);
  const attached = await e.handle.message({ request: 'join', room: opts.room, ptype: 'subscriber',
    streams: [{ feed: daveId }, { feed: bobId }] });
  expectReply(attached, 'videoroom', 'attached', 'erin subscribe');
  await e.pc.setRemoteDescription(attached.jsep);
  await e.pc.setLocalDescription(await e.pc.createAnswer());
  const answer = await gatheredDescription(e.pc, erin, erin.name);
  expectReply(await e.handle.message({ request: 'start' }, answer), 'started', 'ok', 'erin start');
  await waitFor(() => `erin's media: ${erin.inboundStreams} streams`, async () => {
    erin.inboundStreams = await inboundStreams(e.pc);
    await collectStats(e.pc, erin);
    return erin.inboundStreams >= 4 && erin.webrtcup;
  }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 5000), 200);
  log('erin receives', erin.inboundStreams, 'streams');
  expectReply(await b.handle.message({ request: 'destroy', room: opts.room }), 'videoroom', 'destroyed', 'destroy');
}

async function run() {
  const sides = [];
  if (opts.span) {
    try {
      await runSpan(sides);
      await closeAll(sides);
      done(true, null);
    } catch (e) {
      await abort(e, sides);
    }
    return;
  }
  try {
    if (!opts.url2) throw new Error('--url2 is required');
    const a = await setUp(alice, opts.url, true, 0);
    sides.push(a);
    const b = await setUp(bob, opts.url2, true, 1);
    sides.push(b);
    const c = await setUp(carol, opts.url2, false, 0);
    sides.push(c);

    // B places a room of its own first: its round-robin cursor moves on, so that left to
    // itself B would put the shared room on the other server than A's first choice.
    const warm = await attachPeer({ ...opts, url: opts.url2 }, newPeer('warm'), {
      plugin: 'janus.plugin.videoroom', eventName: 'videoroom_event', classify: () => null,
    });
    sides.push(warm);
    expectReply(await warm.handle.message({ request: 'create', room: opts.room + 1 }), 'videoroom', 'created', 'warm create');
    expectReply(await warm.handle.message({ request: 'join', room: opts.room + 1, ptype: 'publisher', display: 'warm' }),
      'videoroom', 'joined', 'warm join');

    expectReply(await a.handle.message({ request: 'create', room: opts.room, description: 'two proxies' }),
      'videoroom', 'created', 'create');
    const aliceJoined = await publish(a, alice, 'alice');
    const aliceId = aliceJoined.id;

    const bobJoined = await publish(b, bob, 'bob');
    const bobId = bobJoined.id;
    bob.saw_publisher = (bobJoined.publishers || []).some((p) => p.id === aliceId);
    if (!bob.saw_publisher) throw new Error(`bob's joined does not list alice: ${JSON.stringify(bobJoined)}`);
    await alice.nextEvent((d) => (d.publishers || []).some((p) => p.id === bobId), 'publishers with bob', 10000);
    alice.saw_publisher = true;

    await subscribeCarol(c, aliceId);

    await waitFor(() => `media: ${missing().filter((m) => !m.endsWith('_event')).join(',')}`, async () => {
      for (const [peer, side] of [[alice, a], [bob, b], [carol, c]]) await collectStats(side.pc, peer);
      return missing().filter((m) => !m.endsWith('_event')).length === 0;
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 8000), 200);
    log('media flowing', JSON.stringify(carol.packetsReceived));

    expectReply(await b.handle.message({ request: 'leave' }), 'leaving', 'ok', 'bob leave');
    await alice.nextEvent((d) => leftOrUnpublished(d, bobId), 'bob leaving', 5000);
    alice.events.push('bob_left');

    expectReply(await a.handle.message({ request: 'destroy', room: opts.room }), 'videoroom', 'destroyed', 'destroy');
    await closeAll(sides);
    done(true, null);
  } catch (e) {
    await abort(e, sides);
  }
}

run();
