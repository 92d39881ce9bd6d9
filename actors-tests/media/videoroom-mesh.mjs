// Real-media check of a video room whose publishers may live on different servers (the
// proxy's spanning rooms: publishers mirrored between backends with Janus's remote publishers).
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
// Shared parts (arguments, watchdog, connecting, handles, wrtc media, stats) are in lib.mjs.
// stdout carries exactly one line: the JSON summary. Exit code 0 on success, 1 on failure.

import {
  attachPeer, closeQuietly, collectStats, createPeerConnection, expectReply, gatheredDescription,
  newPeer, startScript, superviseRun, waitFor, REQUEST_TIMEOUT_MS, withTimeout,
} from './lib.mjs';

const script = startScript('videoroom-mesh', { label: 'videoroom', timeoutMs: 40000, room: 7001 }, {
  '--room': ['room', Number, 'N'],
  '--admin-url': ['adminUrl', String, 'URL'],
  '--admin-token': ['adminToken', String, 'T'],
  '--kill-pids': ['killPids', (v) => Object.fromEntries(v.split(',').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)])), 'NAME=PID,...'],
});
const { opts, t0, log } = script;

function peerState(name) {
  // `seen` (publisher ids) goes into the summary as an array.
  const seen = new Set();
  seen.toJSON = () => [...seen];
  return newPeer(name, { seen, inboundStreams: 0 });
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

const { done, closeAll, abort } = superviseRun(script, state, missing);

/** Connects and attaches one peer to the videoroom plugin; `send`: it publishes media. */
async function setUp(peer, send) {
  const side = await attachPeer(opts, peer, {
    plugin: 'janus.plugin.videoroom',
    eventName: 'videoroom_event',
    classify: (d) => {
      if (d && d.publishers) {
        for (const p of d.publishers) peer.seen.add(p.id);
        return 'publishers';
      }
      if (d && d.leaving !== undefined) return `leaving:${d.leaving}`;
      if (d && d.unpublished !== undefined) return `unpublished:${d.unpublished}`;
      return `event:${d && d.videoroom}`;
    },
  });
  return { ...side, ...createPeerConnection({ rec: peer, log, tag: peer.name, send }) };
}

async function inboundStreams(pc) {
  const stats = await withTimeout(pc.getStats(), REQUEST_TIMEOUT_MS, "getStats");
  let n = 0;
  stats.forEach((s) => { if (s.type === 'inbound-rtp' && (s.packetsReceived || 0) > 0) n++; });
  return n;
}

async function publish(side, peer, id) {
  const joined = await side.handle.message({ request: 'join', room: opts.room, ptype: 'publisher', display: peer.name, id });
  const d = expectReply(joined, 'videoroom', 'joined', `${peer.name} join`);
  for (const p of d.publishers || []) peer.seen.add(p.id);
  peer.steps.push('joined');
  await side.pc.setLocalDescription(await side.pc.createOffer());
  const offer = await gatheredDescription(side.pc, peer, peer.name);
  const configured = await side.handle.message({ request: 'configure', audio: true, video: true }, offer);
  expectReply(configured, 'configured', 'ok', `${peer.name} configure`);
  await side.pc.setRemoteDescription(configured.jsep);
  peer.steps.push('configured');
  await waitFor(`${peer.name}: webrtcup`, () => peer.webrtcup, 10000);
}

async function run() {
  const sides = [];
  try {
    const a = await setUp(alice, true);
    sides.push(a);
    const b = await setUp(bob, true);
    sides.push(b);
    const c = await setUp(carol, false);
    sides.push(c);

    const created = await a.handle.message({ request: 'create', room: opts.room, description: 'mesh', publishers: 6 });
    expectReply(created, 'videoroom', 'created', 'create');
    await publish(a, alice, 2001);
    await publish(b, bob, 2002);
    // Each publisher learns of the other (through the mirrors when on different servers).
    await waitFor('alice and bob see each other', () => alice.seen.has(2002) && bob.seen.has(2001), 10000);

    const attached = await c.handle.message({ request: 'join', room: opts.room, ptype: 'subscriber',
      streams: [{ feed: 2001 }, { feed: 2002 }] });
    expectReply(attached, 'videoroom', 'attached', 'subscribe');
    carol.steps.push('attached');
    await c.pc.setRemoteDescription(attached.jsep);
    await c.pc.setLocalDescription(await c.pc.createAnswer());
    const answer = await gatheredDescription(c.pc, carol, carol.name);
    const started = await c.handle.message({ request: 'start' }, answer);
    expectReply(started, 'started', 'ok', 'start');
    carol.steps.push('started');

    if (opts.adminUrl) {
      const r = await fetch(`${opts.adminUrl}/plugins/videoroom/rooms/${opts.room}`,
        { headers: { Authorization: `Bearer ${opts.adminToken}` } });
      const room = await r.json();
      state.servers = room.servers || null;
    }

    await waitFor(() => `media: ${missing().filter((m) => !m.endsWith('_event')).join(',')}`, async () => {
      carol.inboundStreams = await inboundStreams(c.pc);
      await collectStats(c.pc, carol);
      return carol.inboundStreams >= 4 && carol.webrtcup && carol.pc_states.includes('connected');
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 5000), 200);
    log('carol receives', carol.inboundStreams, 'streams');

    if (opts.killPids && state.servers && state.servers.length === 2) {
      // Kill the server of bob's publisher (the room's second server).
      const victim = state.servers[1];
      const pid = opts.killPids[victim];
      if (!pid) throw new Error(`no pid for ${victim}`);
      await collectStats(c.pc, carol);
      const before = carol.packetsReceived;
      process.kill(pid, 'SIGKILL');
      state.killed = victim;
      log('killed', victim, pid);
      await waitFor('alice hears bob go', () => alice.events.includes('leaving:2002'), 5000);
      await waitFor('bob is told', () => bob.events.includes('leaving:ok'), 5000);
      // carol keeps receiving alice's audio and video.
      await waitFor('carol still receives', async () => {
        await collectStats(c.pc, carol);
        const now = carol.packetsReceived;
        return now.audio > before.audio + 20 && now.video > before.video + 20;
      }, 5000, 100);
      state.carol_undisturbed = true;
      sides.splice(1, 1); // bob's server is gone: only his PeerConnection is closed below
      await closeQuietly(b);
    } else {
      const unpublished = await b.handle.message({ request: 'unpublish' });
      expectReply(unpublished, 'unpublished', 'ok', 'bob unpublish');
      bob.steps.push('unpublished');
      await waitFor('alice hears bob go', () => alice.events.some((e) => e === 'leaving:2002' || e === 'unpublished:2002'), 5000);
    }

    const destroyed = await a.handle.message({ request: 'destroy', room: opts.room });
    expectReply(destroyed, 'videoroom', 'destroyed', 'destroy');

    await closeAll(sides);
    const bad = missing();
    done(bad.length === 0, bad.length ? `missing ${bad.join(',')}` : null);
  } catch (e) {
    await abort(e, sides);
  }
}

run();
