// Drives the admin console of janus-proxy in headless Chromium (Debian's, through
// playwright-core), for actors-tests/tests/admin_console.rs. Argument: JSON
// {url, token, server, chromium}. Talks with the test over stdio, one JSON line per step:
//   → {phase: "shown", errors, servers, points}     token given, the server and charts shown
//   ← "drain"  → {phase: "drained"}                  the drain button clicked and shown
//   ← "undrain" → {phase: "undrained"}
//   ← "stopped" → {phase: "unreachable", banner}     the proxy was stopped: the banner shows
// Any failure: {phase: "failed", error} and exit code 1. CONSOLE_SCREENSHOT=<file.png> saves
// the page once shown.
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const opts = JSON.parse(process.argv[2]);
const WAIT = 20000;
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function expectLine(word) {
  const { value, done } = await lines.next();
  if (done || value.trim() !== word) throw new Error(`expected "${word}" from the test, got ${value}`);
}

const browser = await chromium.launch({
  executablePath: opts.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(opts.url, { waitUntil: 'load' });
  // No token yet: the page asks for one.
  await page.waitForSelector('#auth:not([hidden])', { timeout: WAIT });
  await page.fill('#token', opts.token);
  await page.click('#auth button[type=submit]');
  const row = `tr[data-server="${opts.server}"]`;
  await page.waitForSelector(row, { timeout: WAIT });
  // The charts fill as the history grows (the test samples every 200 ms).
  const chart = `svg[data-chart="load:${opts.server}"]`;
  await page.waitForFunction((sel) => {
    const svg = document.querySelector(sel);
    return svg && Number(svg.getAttribute('data-points')) >= 3;
  }, chart, { timeout: WAIT });
  const points = Number(await page.getAttribute(chart, 'data-points'));
  const sessionsPoints = Number(await page.getAttribute('svg[data-chart="sessions"]', 'data-points'));
  const servers = await page.$$eval('tr[data-server]', (rows) => rows.map((r) => r.dataset.server));
  const status = await page.textContent('#status');
  const token = await page.evaluate(() => sessionStorage.getItem('janus-proxy-admin-token'));
  // CONSOLE_SCREENSHOT=<file.png>: to look at the page as the test saw it.
  if (process.env.CONSOLE_SCREENSHOT) {
    await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT, fullPage: true });
  }
  say({ phase: 'shown', errors: [...errors], servers, points, sessionsPoints, status,
    tokenKept: token === opts.token });

  for (const action of ['drain', 'undrain']) {
    await expectLine(action);
    await page.click(`${row} button[data-action="${action}"]`);
    const draining = action === 'drain' ? 'true' : 'false';
    await page.waitForSelector(`${row} td[data-draining="${draining}"]`, { timeout: WAIT });
    say({ phase: `${action}ed`, errors: [...errors] });
  }

  await expectLine('stopped');
  await page.waitForSelector('#banner.shown', { timeout: WAIT });
  say({ phase: 'unreachable', banner: await page.textContent('#banner'),
    stale: await page.evaluate(() => document.body.classList.contains('stale')) });
} catch (e) {
  say({ phase: 'failed', error: String(e && e.stack || e) });
  process.exitCode = 1;
} finally {
  await browser.close();
}
process.exit();
