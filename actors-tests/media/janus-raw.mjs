// A bare Janus WebSocket client (no janode): one socket, requests matched by transaction,
// the other frames kept as events. The webinar scripts use it for many light clients (one
// socket per subscriber, with an `opaque_id` so that each can be found on its Janus) and for
// Janus's Admin API (subprotocol janus-admin-protocol): which handles each server holds.

import WebSocket from 'ws';

let serial = 0;
const nextTx = () => `t${++serial}-${Math.random().toString(36).slice(2, 8)}`;

export class RawJanus {
  /** Opens `url` with `protocol`; rejects after `ms`. */
  static open(url, { protocol = 'janus-protocol', ms = 10000 } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocol, { handshakeTimeout: ms });
      const fail = (e) => reject(new Error(`${url}: ${e && e.message ? e.message : e}`));
      ws.once('error', fail);
      ws.once('open', () => {
        ws.off('error', fail);
        resolve(new RawJanus(ws, url));
      });
    });
  }

  constructor(ws, url) {
    Object.assign(this, { ws, url, pending: new Map(), events: [], closed: false, session: null, timer: null });
    ws.on('message', (data) => {
      let frame;
      try { frame = JSON.parse(String(data)); } catch (_) { return; }
      const p = frame.transaction && this.pending.get(frame.transaction);
      // An asynchronous plugin request is acked first, then answered by an event with the
      // same transaction (either order): the ack is skipped.
      if (p && !(frame.janus === 'ack' && p.async)) {
        this.pending.delete(frame.transaction);
        p.resolve(frame);
      } else if (!p) {
        this.events.push(frame);
      }
    });
    ws.on('close', () => {
      this.closed = true;
      clearInterval(this.timer);
      for (const p of this.pending.values()) p.reject(new Error(`${this.url}: closed`));
      this.pending.clear();
    });
    ws.on('error', () => {});
  }

  /** Sends `msg` with a fresh transaction; resolves with its answer (for `async`, the event
   * after the ack), rejects after `ms`. */
  request(msg, { async = false, ms = 20000 } = {}) {
    const transaction = nextTx();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(transaction);
        reject(new Error(`${this.url}: no answer to ${msg.janus}${msg.body ? ` ${msg.body.request}` : ''} in ${ms} ms`));
      }, ms);
      this.pending.set(transaction, {
        async,
        resolve: (f) => { clearTimeout(timer); resolve(f); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.ws.send(JSON.stringify({ ...msg, transaction }));
    });
  }

  /** `create` a session (kept alive every `keepaliveMs`) and `attach` `plugin` with
   * `opaqueId`; returns the handle id. */
  async attach(plugin, { opaqueId = null, keepaliveMs = 20000 } = {}) {
    const created = await this.request({ janus: 'create' });
    if (created.janus !== 'success') throw new Error(`create: ${JSON.stringify(created)}`);
    this.session = created.data.id;
    this.timer = setInterval(() => {
      if (!this.closed) this.ws.send(JSON.stringify({ janus: 'keepalive', session_id: this.session, transaction: nextTx() }));
    }, keepaliveMs);
    const msg = { janus: 'attach', session_id: this.session, plugin };
    if (opaqueId) msg.opaque_id = opaqueId;
    const attached = await this.request(msg);
    if (attached.janus !== 'success') throw new Error(`attach: ${JSON.stringify(attached)}`);
    return attached.data.id;
  }

  /** A plugin message on `handle`; `async`: the event answering it. */
  message(handle, body, { async = true, ms = 20000, jsep = null } = {}) {
    const msg = { janus: 'message', session_id: this.session, handle_id: handle, body };
    if (jsep) msg.jsep = jsep;
    return this.request(msg, { async, ms });
  }

  /** Detach `handle`, destroy the session, close the socket (each answer checked). */
  async bye(handle) {
    const detached = await this.request({ janus: 'detach', session_id: this.session, handle_id: handle });
    if (detached.janus !== 'success') throw new Error(`detach: ${JSON.stringify(detached)}`);
    const destroyed = await this.request({ janus: 'destroy', session_id: this.session });
    if (destroyed.janus !== 'success') throw new Error(`destroy: ${JSON.stringify(destroyed)}`);
    this.close();
  }

  close() {
    clearInterval(this.timer);
    try { this.ws.close(); } catch (_) { /* ignore */ }
  }
}

/** Every handle a Janus holds, asked through its Admin API (`adminUrl`): [{session, handle,
 * opaque_id, plugin, type (videoroom's plugin_specific.type), room}]. */
export async function janusHandles(adminUrl) {
  const admin = await RawJanus.open(adminUrl, { protocol: 'janus-admin-protocol' });
  try {
    const s = await admin.request({ janus: 'list_sessions' });
    if (s.janus !== 'success') throw new Error(`list_sessions: ${JSON.stringify(s)}`);
    const out = [];
    for (const session of s.sessions || []) {
      const h = await admin.request({ janus: 'list_handles', session_id: session });
      // A session may end between the two requests.
      if (h.janus !== 'success') continue;
      for (const handle of h.handles || []) {
        const i = await admin.request({ janus: 'handle_info', session_id: session, handle_id: handle });
        if (i.janus !== 'success') continue;
        const info = i.info || {};
        const ps = info.plugin_specific || {};
        out.push({ session, handle, opaque_id: info.opaque_id || null, plugin: info.plugin || null, type: ps.type || null, room: ps.room ?? null });
      }
    }
    return out;
  } finally {
    admin.close();
  }
}

/** `listparticipants` of `room` asked of one Janus directly (`url`): the participants, or
 * null when the room does not exist there (426). */
export async function participantsOn(url, room) {
  const c = await RawJanus.open(url);
  try {
    const h = await c.attach('janus.plugin.videoroom');
    const r = await c.message(h, { request: 'listparticipants', room }, { async: false });
    const d = r.plugindata && r.plugindata.data;
    if (d && d.error_code === 426) {
      await c.bye(h);
      return null;
    }
    if (!d || d.videoroom !== 'participants') throw new Error(`listparticipants on ${url}: ${JSON.stringify(r)}`);
    await c.bye(h);
    return d.participants || [];
  } finally {
    c.close();
  }
}

/** `NAME=VALUE,…` → { NAME: VALUE }. */
export const pairs = (v) => Object.fromEntries(v.split(',').filter(Boolean).map((kv) => {
  const i = kv.indexOf('=');
  return [kv.slice(0, i), kv.slice(i + 1)];
}));

/** The resident memory (VmRSS, KiB) of process `pid`, or null. */
export async function rssKib(pid) {
  if (!pid) return null;
  const { readFile } = await import('node:fs/promises');
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = status.match(/^VmRSS:\s+(\d+)\s+kB/m);
    return m ? Number(m[1]) : null;
  } catch (_) {
    return null;
  }
}
