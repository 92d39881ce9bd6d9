// Real-media check of a video room with six participants, each publishing audio + video and
// subscribing (one multistream PeerConnection) to the five others: every participant must
// receive RTP on both streams of each of the five remote feeds. Through the proxy in front of
// three Janus servers with `videoroom_publishers_per_backend = 2`, the publishers land two
// by two on the three servers (joined one after the other; checked by asking each Janus
// directly with --janus-urls), so four of each participant's five feeds come through the
// proxy's remote-publisher mirrors. The room has `audiolevel_event`: every participant must
// learn that each of the five others is talking (their tones), also those on other servers
// (the mirrors' target Janus needs the publisher's audio-level extension id).
//
// Once every stream flows: p5 changes its display name (everyone learns it), p6 unpublishes
// (everyone sees `unpublished`, not `leaving`) and then leaves (everyone sees `leaving`), p1
// kicks p2 (everyone sees `kicked`).
// With --kill-pids, then, the server of p3 and p4 (the room's second
// server) is killed (-9):
//   - p3 and p4 are told: their publisher handles get the proxy's `leaving` notice
//     (`"leaving":"ok"` with a reason), their subscriber handles `"left":"ok"`;
//   - p1 and p5 see 3003 and 3004 leave (`leaving`); the subscribers of p1, p2, p5 and p6
//     keep receiving the streams of the publishers still alive (RTP counters keep rising),
//     although each named a publisher of the killed server first: a subscriber joins with
//     its publisher's `private_id` and the proxy places it on its own participant's server.
//
// Usage: node videoroom-six.mjs --url ws://127.0.0.1:PORT [--label NAME] [--room N]
//            [--janus-urls NAME=URL,...] [--kill-pids NAME=PID,...]
//            [--timeout-ms 90000] [--connect-timeout-ms 10000] [--verbose]
// stdout carries exactly one line: the JSON summary. Exit code 0 on success, 1 on failure.

import Janode from 'janode';
import {
  attachPeer, closeQuietly, createPeerConnection, delay, expectReply, gatheredDescription,
  newPeer, pluginHandle, startScript, superviseRun, waitFor, closeSide,
  REQUEST_TIMEOUT_MS, withTimeout,
} from './lib.mjs';

const pairs = (v) => Object.fromEntries(v.split(',').map((kv) => {
  const i = kv.indexOf('=');
  return [kv.slice(0, i), kv.slice(i + 1)];
}));
const script = startScript('videoroom-six', { label: 'videoroom-six', timeoutMs: 90000, room: 7006 }, {
  '--room': ['room', Number, 'N'],
  '--janus-urls': ['janusUrls', pairs, 'NAME=URL,...'],
  '--kill-pids': ['killPids', pairs, 'NAME=PID,...'],
});
const { opts, t0, log } = script;

const N = 6;
const idOf = (i) => 3001 + i;
const VICTIMS = [2, 3]; // p3, p4: the room's second server (publishers per backend = 2)
const RENAMED = 4; // p5 changes its display name
const QUITTER = 5; // p6 unpublishes, then leaves (its subscriber stays)
const KICKED = 1; // p2 is kicked while publishing (its subscriber stays)
const NEW_NAME = 'p5-renamed';

/** One participant: its publisher record and its subscriber record. */
function participant(i) {
  const seen = new Set();
  seen.toJSON = () => [...seen].sort();
  // talking: the publishers this one was told are talking (Janus's `talking` events).
  const talking = new Set();
  talking.toJSON = () => [...talking].sort();
  const pub = newPeer(`p${i + 1}`, { seen, feed: idOf(i), displays: {}, talking });
  // feeds: mid -> feed id; rx: feed id -> RTP packets received (audio + video per feed).
  const sub = newPeer(`p${i + 1}-sub`, { feeds: {}, rx: {} });
  return { i, pub, sub, sides: {} };
}
const people = Array.from({ length: N }, (_, i) => participant(i));
const state = {
  label: opts.label, url: opts.url, room: opts.room,
  peers: people.flatMap((p) => [p.pub, p.sub]),
  placement: null, renamed: false, quit: false, kicked: false, killed: null, after_kill: null, errors: [],
};

const others = (p) => people.filter((q) => q !== p);
const alive = (p) => !state.killed || !VICTIMS.includes(p.i);
const inRoom = (p) => alive(p) && !(state.quit && p.i === QUITTER) && !(state.kicked && p.i === KICKED);
const publishing = (p) => inRoom(p);

const missing = () => {
  const m = [];
  for (const p of people) {
    for (const r of [p.pub, p.sub]) {
      if (!r.pc_states.includes('connected')) m.push(`${r.name}:pc_connected`);
      if (!r.webrtcup) m.push(`${r.name}:webrtcup`);
    }
    for (const q of others(p)) {
      if (!p.pub.seen.has(q.pub.feed)) m.push(`${p.pub.name}:sees_${q.pub.name}`);
      const got = p.sub.rx[q.pub.feed];
      if (!(got && got.audio > 0 && got.video > 0)) m.push(`${p.sub.name}:rtp_from_${q.pub.name}`);
      // Every publisher's tone makes it talking for everyone, on every server: a `talking`
      // event, or `"talking": true` in a publishers list of a later joiner.
      if (!p.pub.talking.has(q.pub.feed)) m.push(`${p.pub.name}:hears_${q.pub.name}_talking`);
    }
  }
  if (state.renamed) {
    for (const p of others(people[RENAMED])) {
      // As Janus says it: {"videoroom":"event","id":3005,"display":"p5-renamed"}.
      if (!p.pub.events.includes(`display:${idOf(RENAMED)}`) || p.pub.displays[idOf(RENAMED)] !== NEW_NAME) {
        m.push(`${p.pub.name}:sees_p5_renamed`);
      }
    }
  }
  if (state.quit) {
    for (const p of others(people[QUITTER])) {
      const ev = p.pub.events;
      const u = ev.indexOf(`unpublished:${idOf(QUITTER)}`);
      const l = ev.indexOf(`leaving:${idOf(QUITTER)}`);
      if (u < 0 || (l >= 0 && l < u)) m.push(`${p.pub.name}:sees_p6_unpublished_first`);
      if (state.quit === 'left' && l < 0) m.push(`${p.pub.name}:sees_p6_leave`);
    }
  }
  if (state.kicked) {
    // As Janus says it: `kicked: 3002` (and neither `leaving` nor `unpublished` before it).
    if (!people[KICKED].pub.events.includes('leaving:ok')) m.push('p2:told_kicked');
    for (const p of others(people[KICKED]).filter((q) => q.i !== QUITTER)) {
      const about = p.pub.events.filter((e) => e.endsWith(`:${idOf(KICKED)}`) && !e.startsWith('display'));
      if (about[0] !== `kicked:${idOf(KICKED)}`) m.push(`${p.pub.name}:sees_p2_kicked(${about.join('+')})`);
    }
  }
  if (state.killed) {
    for (const p of people) {
      if (p.i === QUITTER || p.i === KICKED) continue;
      if (alive(p)) {
        for (const v of VICTIMS) {
          if (!p.pub.events.includes(`leaving:${idOf(v)}`)) m.push(`${p.pub.name}:sees_p${v + 1}_leave`);
        }
      } else {
        if (!p.pub.events.includes('leaving:ok')) m.push(`${p.pub.name}:told_leaving`);
        if (!p.sub.events.includes('left:ok')) m.push(`${p.sub.name}:told_left`);
      }
    }
    if (state.after_kill !== 'ok') m.push('survivors:rtp_after_kill');
  }
  return m;
};

const { failed, done } = superviseRun(script, state, missing);

const classify = (rec) => (d) => {
  if (!d) return null;
  if (d.videoroom === 'talking' || d.videoroom === 'stopped-talking') {
    if (d.videoroom === 'talking' && rec.talking) rec.talking.add(d.id);
    return null;
  }
  if (d.publishers) {
    for (const p of d.publishers) {
      if (rec.seen) rec.seen.add(p.id);
      if (rec.displays) rec.displays[p.id] = p.display;
      if (rec.talking && p.talking === true) rec.talking.add(p.id);
    }
    return 'publishers';
  }
  if (d.id !== undefined && d.display !== undefined && rec.displays) {
    rec.displays[d.id] = d.display;
    return `display:${d.id}`;
  }
  if (d.leaving !== undefined) return `leaving:${d.leaving}`;
  if (d.kicked !== undefined) return `kicked:${d.kicked}`;
  if (d.left !== undefined) return `left:${d.left}`;
  if (d.unpublished !== undefined) return `unpublished:${d.unpublished}`;
  return `event:${d.videoroom}`;
};

async function attach(rec, send, seed) {
  const side = await attachPeer(opts, rec, {
    plugin: 'janus.plugin.videoroom', eventName: 'videoroom_event', classify: classify(rec),
  });
  return { ...side, ...createPeerConnection({ rec, log, tag: rec.name, send, seed }) };
}

async function publish(p) {
  const side = p.sides.pub;
  const joined = await side.handle.message({ request: 'join', room: opts.room, ptype: 'publisher',
    display: p.pub.name, id: p.pub.feed });
  const d = expectReply(joined, 'videoroom', 'joined', `${p.pub.name} join`);
  p.pub.private_id = d.private_id;
  for (const q of d.publishers || []) {
    p.pub.seen.add(q.id);
    p.pub.displays[q.id] = q.display;
    // Janus lists who is talking already (it says `talking` only when that changes).
    if (q.talking === true) p.pub.talking.add(q.id);
  }
  await side.pc.setLocalDescription(await side.pc.createOffer());
  const offer = await gatheredDescription(side.pc, p.pub, p.pub.name);
  const configured = await side.handle.message({ request: 'configure', audio: true, video: true }, offer);
  expectReply(configured, 'configured', 'ok', `${p.pub.name} configure`);
  await side.pc.setRemoteDescription(configured.jsep);
  p.pub.steps.push('published');
  await waitFor(`${p.pub.name}: webrtcup`, () => p.pub.webrtcup, 15000);
}

/** Subscribes p to the five others, with its publisher's `private_id` (as janus.js does),
 * the first feed named living on ANOTHER server than p's: a publisher of the server killed
 * later (p3) for the survivors, p1 for p3 and p4 themselves. Through the proxy the
 * subscriber must still be placed on its own participant's server (not on its first feed's),
 * so that it survives exactly when p does: the survivors keep every living stream after the
 * kill, p3's and p4's subscribers are told `left`. */
async function subscribe(p) {
  const first = VICTIMS.includes(p.i) ? people[0] : people[VICTIMS[0]];
  const feeds = [first, ...others(p).filter((q) => q !== first)].map((q) => ({ feed: q.pub.feed }));
  const side = p.sides.sub;
  const attached = await side.handle.message({ request: 'join', room: opts.room, ptype: 'subscriber',
    private_id: p.pub.private_id, streams: feeds });
  const d = expectReply(attached, 'videoroom', 'attached', `${p.sub.name} subscribe`);
  for (const s of d.streams || []) if (s.feed_id !== undefined) p.sub.feeds[s.mid] = s.feed_id;
  await side.pc.setRemoteDescription(attached.jsep);
  await side.pc.setLocalDescription(await side.pc.createAnswer());
  const answer = await gatheredDescription(side.pc, p.sub, p.sub.name);
  const started = await side.handle.message({ request: 'start' }, answer);
  expectReply(started, 'started', 'ok', `${p.sub.name} start`);
  p.sub.steps.push('started');
}

/** RTP packets received per feed (audio and video) by p's subscriber. */
async function countRtp(p) {
  const pc = p.sides.sub.pc;
  const midOfTrack = {};
  for (const t of pc.getTransceivers()) {
    if (t.mid !== null && t.receiver && t.receiver.track) midOfTrack[t.receiver.track.id] = t.mid;
  }
  const rx = {};
  const stats = await withTimeout(pc.getStats(), REQUEST_TIMEOUT_MS, "getStats");
  stats.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    const kind = s.kind || s.mediaType;
    const mid = s.mid !== undefined ? s.mid : midOfTrack[s.trackIdentifier];
    const feed = p.sub.feeds[mid];
    if (feed === undefined || (kind !== 'audio' && kind !== 'video')) return;
    rx[feed] = rx[feed] || { audio: 0, video: 0 };
    rx[feed][kind] += s.packetsReceived || 0;
  });
  p.sub.rx = rx;
  p.sub.packetsReceived = Object.values(rx).reduce((t, f) => ({ audio: t.audio + f.audio, video: t.video + f.video }), { audio: 0, video: 0 });
  return rx;
}

/** The publishers (not remote) of the room on one Janus, asked directly, and where each
 * sends its mirrors (`listremotes`: remote_id -> host). */
async function localPublishers(url) {
  const connection = await Janode.connect({ is_admin: false, address: { url }, max_retries: 0 });
  try {
    const session = await connection.create();
    const handle = await session.attach({ id: 'janus.plugin.videoroom', Handle: pluginHandle('ev') });
    const r = await handle.message({ request: 'listparticipants', room: opts.room });
    const list = (r.plugindata.data.participants || []).filter((q) => !q.remote).map((q) => q.id).sort();
    const remotes = {};
    for (const id of list) {
      const lr = await handle.message({ request: 'listremotes', room: opts.room, publisher_id: id });
      for (const x of lr.plugindata.data.list || []) remotes[`${id}->${x.remote_id}`] = x.host;
    }
    await handle.detach();
    await session.destroy();
    return { list, remotes };
  } finally {
    await Promise.race([connection.close(), delay(1000)]);
  }
}

/** One Janus asked directly: a videoroom `list` (answered by the transport's thread) and a
 * `leave` of a handle in no room (answered by the plugin's handler thread, which handles
 * every asynchronous request: a deadlock there leaves `list` answered). */
async function askDirectly(url) {
  const connection = await Janode.connect({ is_admin: false, address: { url }, max_retries: 0 });
  try {
    const session = await connection.create();
    const handle = await session.attach({ id: 'janus.plugin.videoroom', Handle: pluginHandle('ev') });
    await withTimeout(handle.message({ request: 'list' }), 2000, 'list (sync)');
    await withTimeout(handle.message({ request: 'leave' }), 2000, 'leave (handler thread)');
    await handle.detach();
    await session.destroy();
  } finally {
    await Promise.race([connection.close(), delay(1000)]);
  }
}

async function run() {
  try {
    for (const [n, p] of people.entries()) {
      p.sides.pub = await attach(p.pub, true, n);
      p.sides.sub = await attach(p.sub, false, 0);
    }
    // Talking events after half a second of the tones (any audible level counts).
    const created = await people[0].sides.pub.handle.message({ request: 'create', room: opts.room,
      description: 'six', publishers: N, audiolevel_event: true, audio_active_packets: 25,
      audio_level_average: 70 });
    expectReply(created, 'videoroom', 'created', 'create');
    // One after the other, so that placement fills the servers two by two.
    for (const p of people) await publish(p);
    await waitFor(() => `everyone sees everyone: ${missing().filter((x) => x.includes(':sees_')).join(',')}`,
      () => people.every((p) => others(p).every((q) => p.pub.seen.has(q.pub.feed))), 15000);
    log('every publisher sees the five others');

    if (opts.janusUrls) {
      state.placement = {};
      state.mirror_hosts = {};
      for (const [name, url] of Object.entries(opts.janusUrls)) {
        const { list, remotes } = await localPublishers(url);
        state.placement[name] = list;
        Object.assign(state.mirror_hosts, remotes);
      }
      log('placement', JSON.stringify(state.placement), 'mirror hosts', JSON.stringify(state.mirror_hosts));
    }

    for (const p of people) await subscribe(p);
    await waitFor(() => `media: ${missing().join(',')}`, async () => {
      for (const p of people) await countRtp(p);
      return missing().length === 0;
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 30000), 250);
    log('every participant receives the five others');

    // A new display name reaches everyone at once (no renegotiation).
    const renamer = people[RENAMED];
    const renamed = await renamer.sides.pub.handle.message({ request: 'configure', display: NEW_NAME });
    expectReply(renamed, 'configured', 'ok', 'p5 rename');
    state.renamed = true;
    await waitFor(() => `rename: ${missing().join(',')}`, () => missing().length === 0, 10000);
    // p6 unpublishes: everyone sees it unpublished (still in the room); then it leaves.
    const quitter = people[QUITTER];
    const unpublished = await quitter.sides.pub.handle.message({ request: 'unpublish' });
    expectReply(unpublished, 'unpublished', 'ok', 'p6 unpublish');
    state.quit = 'unpublished';
    await waitFor(() => `unpublish: ${missing().join(',')}`, () => missing().length === 0, 10000);
    const left = await quitter.sides.pub.handle.message({ request: 'leave' });
    expectReply(left, 'leaving', 'ok', 'p6 leave');
    state.quit = 'left';
    await waitFor(() => `leave: ${missing().join(',')}`, () => missing().length === 0, 10000);
    log('rename, unpublish and leave seen by everyone');
    // p1 kicks p2 (publishing, on p1's server): everyone sees it kicked.
    const kick = await people[0].sides.pub.handle.message({ request: 'kick', room: opts.room, id: idOf(KICKED) });
    expectReply(kick, 'videoroom', 'success', 'kick p2');
    state.kicked = true;
    await waitFor(() => `kick: ${missing().join(',')}`, () => missing().length === 0, 10000);
    log('kick seen by everyone');

    if (opts.killPids && state.placement) {
      const victim = Object.keys(state.placement).find((name) =>
        JSON.stringify(state.placement[name]) === JSON.stringify(VICTIMS.map(idOf)));
      if (!victim) throw new Error(`no server holds exactly p3 and p4: ${JSON.stringify(state.placement)}`);
      const pid = Number(opts.killPids[victim]);
      if (!pid) throw new Error(`no pid for ${victim}`);
      const before = {};
      for (const p of people.filter(alive)) before[p.pub.name] = await countRtp(p);
      process.kill(pid, 'SIGKILL');
      state.killed = victim;
      log('killed', victim, pid);
      await waitFor(() => `notices: ${missing().join(',')}`,
        () => missing().filter((x) => x !== 'survivors:rtp_after_kill').length === 0, 10000);
      // The survivors keep receiving every publisher still alive, audio and video.
      const rising = async () => {
        for (const p of people.filter(alive)) {
          const now = await countRtp(p);
          for (const q of others(p).filter(publishing)) {
            const b = before[p.pub.name][q.pub.feed];
            const n = now[q.pub.feed];
            if (!(n && n.audio > b.audio + 50 && n.video > b.video + 50)) return false;
          }
        }
        return true;
      };
      await waitFor('survivors keep receiving', rising, 10000, 200);
      state.after_kill = 'ok';
      log('the survivors keep receiving the living publishers');
      for (const p of people.filter((q) => !alive(q))) {
        for (const side of [p.sides.pub, p.sides.sub]) await closeQuietly(side);
        p.sides = {};
      }
    }

    const destroyed = await people[0].sides.pub.handle.message({ request: 'destroy', room: opts.room });
    expectReply(destroyed, 'videoroom', 'destroyed', 'destroy');
    for (const p of people) {
      for (const side of [p.sides.pub, p.sides.sub].filter(Boolean)) {
        await closeSide(side);
      }
    }
    const bad = missing();
    done(bad.length === 0, bad.length ? `missing ${bad.join(',')}` : null);
  } catch (e) {
    let reason = failed(e);
    if (opts.janusUrls) {
      // A request left unanswered: is it the proxy, or a Janus that stopped answering even
      // when asked directly (a Janus deadlock)? The answer goes into the reason.
      const silent = [];
      for (const [name, url] of Object.entries(opts.janusUrls)) {
        if (state.killed === name) continue;
        try {
          await withTimeout(askDirectly(url), 5000, `${name} directly`);
        } catch (err) {
          silent.push(`${name} (${err && err.message ? err.message : err})`);
        }
      }
      state.janus_silent = silent;
      if (silent.length) reason += `; asked directly, no answer from ${silent.join(', ')}`;
    }
    for (const p of people) for (const side of [p.sides.pub, p.sides.sub].filter(Boolean)) await closeQuietly(side);
    done(false, reason);
  }
}

run();
