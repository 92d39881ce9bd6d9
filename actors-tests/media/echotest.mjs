// Real-media end-to-end check of a Janus (or of janus-proxy in front of one):
// janode signalling + a real libwebrtc PeerConnection (@roamhq/wrtc) with a
// synthetic audio track and a synthetic video track, against janus.plugin.echotest.
//
// Usage: node echotest.mjs --url ws://127.0.0.1:PORT [--label NAME]
//                          [--timeout-ms 30000] [--connect-timeout-ms 10000] [--verbose]
//
// Success criteria (all required):
//   - the WebSocket (subprotocol janus-protocol) connects, possibly after retries while
//     the server is still starting (bounded by --connect-timeout-ms),
//   - create / attach / message with the offer succeed and an answer comes back,
//   - RTCPeerConnection.connectionState reaches "connected",
//   - the server delivers `webrtcup`, at least one `media` event with receiving: true,
//   - the peer receives RTP back: getStats() inbound-rtp packetsReceived > 0 for audio
//     AND for video,
//   - hangup, detach and destroy succeed.
// Shared parts (arguments, watchdog, connecting, wrtc media, stats) are in lib.mjs.
// stdout carries exactly one line: the JSON summary. Everything else goes to stderr.
// Exit code 0 on success, 1 on failure (the summary's "missing" says what was missing),
// 2 on bad usage.

import Janode from 'janode';
import EchoTestPlugin from 'janode/plugins/echotest';
import {
  closeQuietly, collectStats, connectAndCreate, createPeerConnection, gatheredDescription,
  startScript, superviseRun, waitFor,
} from './lib.mjs';

const script = startScript('echotest', { timeoutMs: 30000 });
const { opts, t0, log } = script;

// ---- state collected for the summary ------------------------------------------------
const state = {
  label: opts.label,
  url: opts.url,
  connect_attempts: 0,
  create_failures: [],  // errors of `create` while retrying (server still starting)
  steps: [],            // signalling steps done, in order
  events: [],           // Janus events seen on the handle / session / connection
  media: [],            // media events {type, mid, receiving}
  webrtcup: false,
  answer: false,
  pc_states: [],        // RTCPeerConnection connectionState history
  ice_states: [],
  local_candidates: 0,
  packetsReceived: { audio: 0, video: 0 },
  packetsSent: { audio: 0, video: 0 },
  framesDecoded: 0,
  remote_tracks: [],
  errors: [],
};

const missing = () => {
  const m = [];
  if (!state.pc_states.includes('connected')) m.push('pc_connected');
  if (!state.webrtcup) m.push('webrtcup');
  if (!state.media.some((e) => e.receiving === true)) m.push('media_receiving_true');
  if (!(state.packetsReceived.audio > 0)) m.push('inbound_rtp_audio');
  if (!(state.packetsReceived.video > 0)) m.push('inbound_rtp_video');
  return m;
};

const { failed, done } = superviseRun(script, state, missing);

// ---- the test -----------------------------------------------------------------------
async function main() {
  let connection = null;
  let session = null;
  let handle = null;
  let pc = null;
  let sources = null;
  try {
    ({ connection, session } = await connectAndCreate(opts, state));
    state.steps.push('connect', 'create');
    log(`connected after ${state.connect_attempts} attempt(s)`);
    connection.once(Janode.EVENT.CONNECTION_CLOSED, () => state.events.push('connection_closed'));
    connection.on(Janode.EVENT.CONNECTION_ERROR, (e) => {
      state.events.push('connection_error');
      state.errors.push(`connection_error: ${e && e.message}`);
    });

    session.once(Janode.EVENT.SESSION_DESTROYED, () => state.events.push('session_destroyed'));

    handle = await session.attach(EchoTestPlugin);
    state.steps.push('attach');
    log(`session ${session.id} handle ${handle.id}`);

    handle.on(Janode.EVENT.HANDLE_WEBRTCUP, () => {
      state.webrtcup = true;
      state.events.push('webrtcup');
      log('webrtcup');
    });
    handle.on(Janode.EVENT.HANDLE_MEDIA, (d) => {
      state.media.push({ type: d.type, mid: d.mid, receiving: d.receiving });
      state.events.push(`media:${d.type}:${d.receiving}`);
      log('media', JSON.stringify(d));
    });
    handle.on(Janode.EVENT.HANDLE_HANGUP, (d) => {
      state.events.push('hangup');
      log('hangup', JSON.stringify(d));
    });
    handle.on(Janode.EVENT.HANDLE_ICE_FAILED, () => state.events.push('ice_failed'));
    handle.on(Janode.EVENT.HANDLE_SLOWLINK, () => state.events.push('slowlink'));
    handle.once(Janode.EVENT.HANDLE_DETACHED, () => state.events.push('detached'));
    handle.on(EchoTestPlugin.EVENT.ECHOTEST_RESULT, (d) => state.events.push(`echotest_result:${d.result}`));
    handle.on(EchoTestPlugin.EVENT.ECHOTEST_ERROR, (e) => {
      state.events.push('echotest_error');
      state.errors.push(`echotest_error: ${e && e.message}`);
    });

    ({ pc, sources } = createPeerConnection({ rec: state, log }));
    pc.addEventListener('iceconnectionstatechange', () => state.ice_states.push(pc.iceConnectionState));
    pc.addEventListener('track', (ev) => state.remote_tracks.push(ev.track.kind));

    // Half-trickle: gather everything, then send the offer with all candidates in it.
    await pc.setLocalDescription(await pc.createOffer());
    const offer = await gatheredDescription(pc, state);
    state.steps.push('offer');

    const result = await handle.start({ audio: true, video: true, jsep: offer });
    if (!result.jsep || result.jsep.type !== 'answer') throw new Error('echotest result without a JSEP answer');
    state.answer = true;
    state.steps.push('answer');
    await pc.setRemoteDescription(result.jsep);

    // Everything below must happen; poll until all of it did (the watchdog bounds it).
    await waitFor(() => `media: ${missing().join(',')}`, async () => {
      await collectStats(pc, state);
      return missing().length === 0;
    }, Math.max(0, opts.timeoutMs - (Date.now() - t0) - 3000), 200);
    log('media flowing', JSON.stringify({ rx: state.packetsReceived, tx: state.packetsSent, framesDecoded: state.framesDecoded }));

    await handle.hangup();
    state.steps.push('hangup');
    await handle.detach();
    state.steps.push('detach');
    await session.destroy();
    state.steps.push('destroy');
    await connection.close();
    state.steps.push('close');
    sources.stop();
    pc.close();
    done(true, null);
  } catch (e) {
    const reason = failed(e);
    if (pc) {
      try { await collectStats(pc, state); } catch (_) { /* ignore */ }
    }
    await closeQuietly({ sources, pc, connection });
    done(false, reason);
  }
}

main();
