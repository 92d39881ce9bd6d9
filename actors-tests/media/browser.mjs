// What the drivers of pages in headless Chromium share (adopt.mjs, videoroom-webinar-pages.mjs,
// demos.mjs): Debian's chromium launched with fake devices, and a little file server for the
// test's own pages.

import http from 'node:http';
import fs from 'node:fs';
import { chromium } from 'playwright-core';

/** Chromium (`CHROMIUM` or /usr/bin/chromium) with a fake camera and microphone, no sandbox. */
export function launchChromium(timeoutMs) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    timeout: timeoutMs,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required', '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows'],
  });
}

/** Serves `files` (URL path → [file, content type]) on a free loopback port; the server. */
export function serveFiles(files) {
  const server = http.createServer((req, res) => {
    const f = files[new URL(req.url, 'http://x').pathname];
    if (!f) { res.writeHead(404); res.end(); return; }
    fs.readFile(f[0], (err, body) => {
      if (err) { res.writeHead(500); res.end(String(err)); return; }
      res.writeHead(200, { 'content-type': f[1] });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}
