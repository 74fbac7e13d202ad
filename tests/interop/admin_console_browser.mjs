// The admin console (/console/) in headless Chromium (Debian `chromium`), driven by playwright-core.
//
//   node admin_console_browser.mjs --broker PATH/TO/stompbox --loadtest PATH/TO/loadtest
//                                  [--chromium PATH] [--openssl PATH] [--shots DIR]
//
// Part 1: starts its own broker (--admin, a random 32-hex-digit token in STOMPBOX_ADMIN_TOKEN,
// free loopback ports; the API and console on the metrics listener), opens the console and
// checks what an operator sees and does:
//   - the page asks nothing of any origin but the broker's (no external assets), and has no page
//     errors or console errors (CSP violations are console errors);
//   - it signs in through the form with the bearer token;
//   - with a paced loadtest fanout running, the overview is live: connections > 0, the messages
//     out total grows between two readings seconds apart (screenshot admin-console-overview.png);
//   - a stompjs client (login console-victim) is found with the connection search, opened and
//     closed with a reason: the client gets an ERROR whose message carries the reason and the
//     detail says closed (screenshot admin-console-close.png);
//   - 5 messages put on a queue with no consumer show as ready 5 in the queue detail; Purge
//     says purged 5 and the API then reports the queue empty (screenshot admin-console-purge.png).
// Part 2, HTTP Basic over HTTPS: makes a self-signed certificate for 127.0.0.1/localhost with
// the openssl CLI and a users file (`stompbox --hash-password`: ops with the admin role, viewer
// without) in a temp dir, starts a second broker with the admin API on its own HTTPS listener
// (--admin-listen, --tls-admin, --users-file, --anonymous, no token: Basic over TLS is the only
// way in) and, in a browser context that accepts the certificate, checks:
//   - every request stays on https://127.0.0.1:<admin port>; no page errors, and no console
//     errors but the refused sign-ins' own (401/403/429 on /api/whoami);
//   - viewer (right password, no admin role): 403, the form stays, the error names the admin role;
//   - ops with a wrong password: 401, the form stays, the error says bad user or password;
//   - ops: (retrying while the broker answers 429 to the address that just failed, bounded) the
//     app view, #whoami "ops · basic · tls", and the overview polled over HTTPS counts the
//     anonymous stompjs client connected to this broker (screenshot admin-console-https-basic.png).
// Saves the screenshots to DIR (default: a temp dir) and prints their paths.
// Exit 0 on success, 1 with an "assertion failed: ..." line otherwise. Every wait is bounded.

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@stomp/stompjs';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';
import { Fail, WAIT, arg, check, launchChromium, sleep, withTimeout } from './common.mjs';

const BROKER = arg('--broker');
const LOADTEST = arg('--loadtest');
const CHROMIUM = arg('--chromium', '/usr/bin/chromium');
const OPENSSL = arg('--openssl', 'openssl');
const SHOTS = arg('--shots') || mkdtempSync(join(tmpdir(), 'stompbox-admin-console-'));
if (!BROKER || !LOADTEST) {
  console.error(
    'usage: node admin_console_browser.mjs --broker PATH --loadtest PATH [--chromium PATH] [--openssl PATH] [--shots DIR]',
  );
  process.exit(2);
}
mkdirSync(SHOTS, { recursive: true });

const VICTIM = 'console-victim';
const REASON = 'closed by the browser test';
const QUEUE = '/queue/admin-purge-test';
const QUEUED = 5;

/** n distinct free loopback ports: bound together to port 0, then released. */
async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      servers.push(s);
      await new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(() => r()))));
  }
}

const accepts = (port) =>
  new Promise((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    s.setTimeout(1000);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });

/** Wait (bounded by WAIT) until `broker` (still running) accepts on every port of `ports`. */
async function waitListening(broker, ports, what) {
  const t0 = Date.now();
  while (Date.now() - t0 < WAIT && broker.running()) {
    let all = true;
    for (const p of ports) all = all && (await accepts(p));
    if (all) return;
    await sleep(100);
  }
  check(false, `${what} did not listen on 127.0.0.1:${ports.join(' and :')} within ${WAIT} ms ` +
    `(exit ${JSON.stringify(broker.exit)}):\n${broker.out}`);
}

/** A child process with its output kept (the last 64 KB), and a bounded stop. */
function run(cmd, args, env) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const p = { proc, out: '', exit: null };
  const keep = (d) => {
    p.out += d;
    if (p.out.length > 65536) p.out = p.out.slice(-65536);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  p.exited = new Promise((resolve) => {
    proc.once('exit', (code, sig) => resolve((p.exit = { code, sig })));
    proc.once('error', (e) => {
      keep(`spawn ${cmd}: ${e.message}\n`);
      resolve((p.exit = { code: null, sig: null, error: e.message }));
    });
  });
  p.running = () => p.exit === null;
  // SIGTERM, then SIGKILL after 5 s; resolves to how it ended.
  p.stop = async () => {
    if (!p.running()) return p.exit;
    proc.kill('SIGTERM');
    const res = await Promise.race([p.exited, sleep(5000).then(() => null)]);
    if (res) return res;
    proc.kill('SIGKILL');
    return { ...(await p.exited), killed: true };
  };
  return p;
}

/** Runs cmd to its end (at most WAIT ms) with input on its stdin; resolves to its stdout. */
function runOnce(cmd, args, input = '') {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: WAIT, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Fail(`${cmd} ${args.join(' ')}: ${err.message.split('\n')[0]}\n${stderr}`));
      else resolve(stdout);
    });
    child.stdin.on('error', () => {}); // a command that exits without reading its stdin
    child.stdin.end(input);
  });
}

/**
 * A connected stompjs client over WebSocket (ws package), with the ERROR frames and closes it saw.
 * `login` names it in messages; connectHeaders {} connects without a login.
 */
async function stompClient(url, login, connectHeaders = { login, passcode: 'x' }) {
  const st = { errors: [], closes: [] };
  const client = new Client({
    webSocketFactory: () => new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
    connectHeaders,
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    connectionTimeout: WAIT,
    debug: () => {},
  });
  client.onStompError = (f) => st.errors.push({ headers: f.headers, body: f.body });
  client.onWebSocketClose = (e) => st.closes.push({ code: e.code, reason: String(e.reason ?? '') });
  const connected = new Promise((resolve, reject) => {
    client.onConnect = resolve;
    client.onWebSocketError = (e) => reject(new Fail(`${login}: WebSocket error ${e?.message ?? e}`));
  });
  client.activate();
  await withTimeout(connected, WAIT, `${login}: CONNECTED`);
  return { client, st };
}

/** Waits for fn (run in the page) to be truthy; on timeout fails with what describe() says. */
async function waitPage(page, what, fn, argument, describe) {
  try {
    await page.waitForFunction(fn, argument, { timeout: WAIT, polling: 100 });
  } catch (e) {
    const now = describe ? await describe().catch((x) => `(${x.message})`) : '';
    throw new Fail(`${what} within ${WAIT} ms${now ? `: ${now}` : ''} (${e.message.split('\n')[0]})`);
  }
}

const statNumber = async (page, id) => {
  const t = (await page.textContent(`#${id}`)).trim();
  const n = Number(t.replace(/,/g, ''));
  check(Number.isFinite(n), `#${id} shows ${JSON.stringify(t)}, not a number`);
  return n;
};

async function shoot(page, name) {
  const path = join(SHOTS, name);
  // Clicks scrolled the page: back to the top, so the sticky header is drawn at the top.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path, fullPage: true, timeout: WAIT });
  const size = statSync(path).size;
  check(size > 20_000, `screenshot ${path} is only ${size} bytes`);
  console.log(`screenshot: ${path} (${size} bytes)`);
}

/**
 * Part 2: the console's HTTP Basic sign-in over HTTPS, against a second broker whose admin API
 * has its own TLS listener, a users file and no token.
 */
async function httpsBasic(browser) {
  const dir = mkdtempSync(join(tmpdir(), 'stompbox-admin-https-'));
  let broker, context, anon;
  let ok = false;
  try {
    // ---- a self-signed certificate for 127.0.0.1 and localhost, a users file ----
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    await runOnce(OPENSSL, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert]);
    const password = randomBytes(12).toString('hex');
    const hash = (await runOnce(BROKER, ['--hash-password'], `${password}\n`)).trim();
    check(/^\$argon2id\$/.test(hash), `--hash-password printed ${JSON.stringify(hash)}, not an argon2id hash`);
    const users = join(dir, 'users.txt');
    writeFileSync(users, `ops:${hash}:admin\nviewer:${hash}\n`, { mode: 0o600 });
    console.log(`https: self-signed certificate and users file (ops:admin, viewer) in ${dir}`);

    // ---- the broker: admin API on its own HTTPS listener, no token ----
    const [WS2, TCP2, A2] = await freePorts(3);
    const base = `https://127.0.0.1:${A2}`;
    broker = run(
      BROKER,
      ['--listen', `127.0.0.1:${WS2}`, '--tcp-listen', `127.0.0.1:${TCP2}`, '--no-metrics',
        '--admin', '--admin-listen', `127.0.0.1:${A2}`, '--tls-admin', '--tls-cert', cert, '--tls-key', key,
        '--users-file', users, '--anonymous', '--reactors', '1'],
      { STOMPBOX_ADMIN_TOKEN: undefined }, // not inherited: Basic must be the only way in
    );
    await waitListening(broker, [A2, WS2], 'the HTTPS broker');
    console.log(`https: stompbox pid ${broker.proc.pid}: console ${base}/console/`);
    // One STOMP client without a login (--anonymous), for the overview to count.
    anon = await stompClient(`ws://127.0.0.1:${WS2}/ws`, 'anonymous', {});

    // ---- the page, in a context that accepts the self-signed certificate ----
    context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    const requests = [];
    context.on('request', (r) => requests.push(r.url()));
    const overviews = []; // the statuses of the answers to /api/overview
    context.on('response', (r) => {
      if (r.url() === `${base}/api/overview`) overviews.push(r.status());
    });
    const page = await context.newPage();
    const errors = [];
    // Chromium logs each refused sign-in (a 401, 403 or 429 answer to /api/whoami) as a console
    // error; those are expected here, nothing else is.
    page.on('pageerror', (e) => errors.push(`pageerror: ${e}`));
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const where = m.location().url;
      if (where === `${base}/api/whoami` && /status of (401|403|429)\b/.test(m.text())) return;
      errors.push(`console error: ${m.text()} (${where})`);
    });
    const noTrouble = (when) => {
      check(errors.length === 0, `${when}: ${errors.join('; ')}`);
      const foreign = requests.filter((u) => {
        try {
          return new URL(u).origin !== base;
        } catch {
          return true;
        }
      });
      check(foreign.length === 0, `${when}: the page made requests to other origins than ${base}: ${foreign.join(', ')}`);
    };
    const resp = await page.goto(`${base}/console/`, { waitUntil: 'load', timeout: WAIT });
    check(resp && resp.status() === 200, `GET ${base}/console/ -> ${resp && resp.status()}`);
    check(await page.isVisible('#login-view'), 'https: the login form is not shown');
    noTrouble('https: loading the console');

    // Fills the Basic fields, submits, and waits for the answer to /api/whoami and for the page
    // to have acted on it; returns the status and what the page shows.
    const signIn = async (user, pass) => {
      await page.fill('#token', '', { timeout: WAIT });
      await page.fill('#user', user, { timeout: WAIT });
      await page.fill('#password', pass, { timeout: WAIT });
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.url() === `${base}/api/whoami`, { timeout: WAIT }),
        page.click('#login', { timeout: WAIT }),
      ]);
      await waitPage(
        page, `the page acting on the answer to signing in as ${user} (${res.status()})`,
        () => !document.getElementById('login').disabled &&
          (document.getElementById('login-error').textContent !== '' || !document.getElementById('app').hidden),
        null, () => page.textContent('#login-error'),
      );
      return {
        status: res.status(),
        app: await page.isVisible('#app'),
        form: await page.isVisible('#login-view'),
        error: (await page.textContent('#login-error')).trim(),
      };
    };

    // ---- viewer: the right password, but not an admin ----
    const v = await signIn('viewer', password);
    check(v.status === 403 && !v.app && v.form && /admin role/.test(v.error) && /viewer/.test(v.error),
      `signing in as viewer: ${JSON.stringify(v)}, want 403, the form kept and an error naming the admin role`);
    console.log(`ok: https: viewer refused (${v.status}): ${JSON.stringify(v.error)}`);

    // ---- ops with a wrong password ----
    const w = await signIn('ops', `${password}-wrong`);
    check(w.status === 401 && !w.app && w.form && /bad user or password/.test(w.error),
      `signing in as ops with a wrong password: ${JSON.stringify(w)}, want 401 and "bad user or password"`);
    console.log(`ok: https: ops with a wrong password refused (${w.status}): ${JSON.stringify(w.error)}`);

    // ---- ops: the broker slows down this address after the failure (429 for 0.2 s) ----
    let g;
    const tooMany = [];
    const deadline = Date.now() + WAIT;
    for (;;) {
      g = await signIn('ops', password);
      if (g.status !== 429 || Date.now() > deadline) break;
      check(!g.app && /too many failed logins/.test(g.error),
        `a 429 signing in as ops: ${JSON.stringify(g)}, want the form and "too many failed logins"`);
      tooMany.push(g.error);
      await sleep(300);
    }
    check(g.status === 200 && g.app && !g.form,
      `signing in as ops: ${JSON.stringify(g)} after ${tooMany.length} x 429, want 200 and the app view`);
    const who = await page.textContent('#whoami');
    check(/\bops\b/.test(who) && /\bbasic\b/.test(who) && /\btls\b/.test(who),
      `#whoami shows ${JSON.stringify(who)}, want ops · basic · tls`);
    console.log(`ok: https: signed in as ops (${who})` +
      (tooMany.length ? ` after ${tooMany.length} x 429 ${JSON.stringify(tooMany[0])}` : ''));

    // ---- the overview, polled over HTTPS with the Basic credentials ----
    await waitPage(
      page, 'the HTTPS overview counting the anonymous STOMP client',
      () => Number(document.getElementById('ov-connections').textContent.replace(/,/g, '')) >= 1 &&
        /\d/.test(document.getElementById('ov-uptime').textContent),
      null, async () => `connections ${await page.textContent('#ov-connections')}, status ${await page.textContent('#status')}`,
    );
    const conns = await statNumber(page, 'ov-connections');
    // The connections table (from /api/connections over HTTPS) lists it, without a user.
    await waitPage(page, 'the connections table listing the anonymous client',
      () => [...document.querySelectorAll('#connections tbody tr[data-id]')].some((tr) => tr.cells[3]?.textContent === 'WebSocket'),
      null, () => page.innerText('#connections tbody'));
    // Polling goes on with the same credentials (a verified login is cached): a second answer.
    const polled = Date.now();
    while (overviews.length < 2 && Date.now() - polled < WAIT) await sleep(100);
    check(overviews.length >= 2 && overviews.every((st) => st === 200),
      `the answers to /api/overview over HTTPS: ${JSON.stringify(overviews)}, want 2 or more, all 200`);
    await shoot(page, 'admin-console-https-basic.png');
    check(await page.isVisible('#app'), `the app view went away: ${await page.textContent('#login-error')}`);
    noTrouble('https: during the test');
    console.log(`ok: https: overview shows ${conns} connection(s), polled ${overviews.length} times ` +
      `(all 200); ${requests.length} requests, all to ${base}`);
    check(anon.st.errors.length === 0 && anon.st.closes.length === 0,
      `the anonymous STOMP client saw ERROR/close: ${JSON.stringify(anon.st)}`);
    check(broker.running(), `the HTTPS broker died: ${JSON.stringify(broker.exit)}\n${broker.out.slice(-3000)}`);
    const refused = broker.out.split('\n').filter((l) => /admin: refused/.test(l));
    if (refused.length) console.log(`https: broker log: ${refused.join(' | ')}`);
    ok = true;
  } finally {
    if (anon) await anon.client.deactivate().catch(() => {});
    if (context) await context.close().catch(() => {});
    if (broker) {
      const res = await broker.stop();
      if (!ok) console.log(`HTTPS broker output (last 3000 chars):\n${broker.out.slice(-3000)}`);
      if (res.killed) console.log('note: the HTTPS broker needed SIGKILL (still running 5 s after SIGTERM)');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const [WS, TCP, M] = await freePorts(3);
  const token = randomBytes(16).toString('hex');
  const base = `http://127.0.0.1:${M}`;
  const wsUrl = `ws://127.0.0.1:${WS}/ws`;
  const broker = run(
    BROKER,
    ['--admin', '--listen', `127.0.0.1:${WS}`, '--tcp-listen', `127.0.0.1:${TCP}`,
      '--metrics-listen', `127.0.0.1:${M}`, '--reactors', '2'],
    { STOMPBOX_ADMIN_TOKEN: token },
  );
  let browser, load, victim, producer;
  let ok = false;
  let part2 = false;
  try {
    // ---- broker up: the metrics (admin) and WebSocket ports accept, within 10 s ----
    await waitListening(broker, [M, WS], 'the broker');
    console.log(`stompbox pid ${broker.proc.pid}: console ${base}/console/, ws ${wsUrl}`);

    const api = async (path, opts = {}) => {
      const res = await fetch(base + path, {
        ...opts,
        headers: { Authorization: `Bearer ${token}`, ...(opts.headers ?? {}) },
        signal: AbortSignal.timeout(WAIT),
      });
      const text = await res.text();
      check(res.ok, `${opts.method ?? 'GET'} ${path} -> ${res.status}: ${text}`);
      return JSON.parse(text);
    };

    // ---- 1. the page: same origin only, no errors ----
    browser = await launchChromium(chromium, CHROMIUM);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    const foreign = () => requests.filter((u) => {
      try {
        return new URL(u).origin !== base;
      } catch {
        return true;
      }
    });
    const errors = [];
    // Chromium logs every refused fetch as a console error. The one expected: the detail of a
    // connection closed from the console is polled once more and answers 404 (it shows "gone").
    const expected404 = new Set();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e}`));
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const where = m.location().url;
      if (expected404.has(where) && /status of 404/.test(m.text())) return;
      errors.push(`console error: ${m.text()} (${where})`);
    });
    const noTrouble = (when) => {
      check(errors.length === 0, `${when}: ${errors.join('; ')}`);
      const f = foreign();
      check(f.length === 0, `${when}: the page made requests to other origins than ${base}: ${f.join(', ')}`);
    };

    const resp = await page.goto(`${base}/console/`, { waitUntil: 'load', timeout: WAIT });
    check(resp && resp.status() === 200, `GET /console/ -> ${resp && resp.status()}`);
    check(await page.isVisible('#login-view'), 'the login form is not shown');
    check(await page.isHidden('#app'), 'the app view is shown before signing in');
    noTrouble('loading the console');

    // ---- 2. sign in with the token ----
    await page.fill('#token', token, { timeout: WAIT });
    await page.click('#login', { timeout: WAIT });
    await waitPage(
      page, 'the app view after signing in',
      () => !document.getElementById('app').hidden && document.getElementById('login-view').hidden,
      null, () => page.textContent('#login-error'),
    );
    await waitPage(page, 'the overview filled in', () => /\d/.test(document.getElementById('ov-uptime').textContent),
      null, () => page.textContent('#status'));
    const who = await page.textContent('#whoami');
    check(/token/.test(who) && /bearer/.test(who), `#whoami shows ${JSON.stringify(who)}, want the token, bearer`);
    console.log(`ok: signed in (${who})`);

    // ---- 3. live numbers under load ----
    load = run(LOADTEST, ['fanout', '--url', wsUrl, '-s', '20', '--rate', '2000', '--duration', '8',
      '--warmup', '0.5', '--prefix', 'admin-load', '--quiet']);
    const loadInfo = () => `loadtest exit ${JSON.stringify(load.exit)}: ${load.out.slice(-2000)}`;
    await waitPage(
      page, 'the console showing > 20 connections and messages going out',
      () => {
        const n = (id) => Number(document.getElementById(id).textContent.replace(/,/g, ''));
        return n('ov-connections') > 20 && n('ov-rate-out') > 0;
      },
      null,
      async () => `connections ${await page.textContent('#ov-connections')}, out/s ${await page.textContent('#ov-rate-out')}, status ${await page.textContent('#status')}; ${loadInfo()}`,
    );
    const out1 = await statNumber(page, 'ov-messages-out');
    await sleep(3000);
    check(load.running(), `the loadtest ended early: ${loadInfo()}`);
    const out2 = await statNumber(page, 'ov-messages-out');
    const conns = await statNumber(page, 'ov-connections');
    const rateOut = await statNumber(page, 'ov-rate-out');
    check(out2 > out1, `#ov-messages-out did not grow in 3 s under load: ${out1} then ${out2}`);
    check(conns > 0, `#ov-connections shows ${conns} under load`);
    check(rateOut > 0, `#ov-rate-out shows ${rateOut} under load`);
    // The rows of the table come from the API too: the loadtest's sessions are listed.
    const shown = await page.$$eval('#connections tbody tr[data-id]', (trs) => trs.length);
    check(shown > 20, `the connections table lists ${shown} rows under load`);
    await shoot(page, 'admin-console-overview.png');
    console.log(`ok: live overview: ${conns} connections, messages out ${out1} -> ${out2}, ${rateOut}/s`);

    // ---- 4. find a client's connection and close it with a reason ----
    victim = await stompClient(wsUrl, VICTIM);
    victim.client.subscribe('/topic/admin-console-victim', () => {}, { id: 'victim-sub' });
    await page.fill('#conn-search', VICTIM, { timeout: WAIT });
    const victimRow = () =>
      page.$$eval('#connections tbody tr[data-id]', (trs, login) => {
        const tr = trs.find((t) => t.cells[2]?.textContent === login);
        return tr ? { id: tr.dataset.id, rows: trs.length, subs: tr.cells[7]?.textContent } : null;
      }, VICTIM);
    await waitPage(
      page, `a connection row for user ${VICTIM} (and only that one)`,
      (login) => {
        const trs = [...document.querySelectorAll('#connections tbody tr[data-id]')];
        return trs.length === 1 && trs[0].cells[2]?.textContent === login && trs[0].cells[7]?.textContent === '1';
      },
      VICTIM,
      async () => `rows ${JSON.stringify(await page.$$eval('#connections tbody tr', (trs) => trs.map((t) => t.innerText)))}, ` +
        `count ${await page.textContent('#conn-count')}`,
    );
    const row = await victimRow();
    // The API agrees this is the victim's connection.
    const listed = await api(`/api/connections?q=${encodeURIComponent(VICTIM)}`);
    check(listed.connections.length === 1 && listed.connections[0].id === row.id &&
      listed.connections[0].user === VICTIM,
    `the API lists ${JSON.stringify(listed.connections)} for q=${VICTIM}, the console row ${row.id}`);
    await page.locator(`#connections tbody tr[data-id="${row.id}"]`).click({ timeout: WAIT });
    await waitPage(
      page, `the detail of connection ${row.id}`,
      ([id, login]) => {
        const d = document.getElementById('conn-detail');
        const fields = [...d.querySelectorAll('#conn-detail-fields div')].map((x) => x.innerText);
        return !d.hidden && document.getElementById('conn-detail-id').textContent === id &&
          fields.some((f) => /^user\s+/.test(f) && f.endsWith(login)) &&
          document.querySelector('#conn-subs tbody td')?.textContent === 'victim-sub';
      },
      [row.id, VICTIM],
      async () => `${await page.innerText('#conn-detail')}`,
    );
    check(victim.st.errors.length === 0 && victim.st.closes.length === 0,
      `${VICTIM} saw ERROR/close before the close: ${JSON.stringify(victim.st)}`);
    expected404.add(`${base}/api/connections/${encodeURIComponent(row.id)}`);
    await page.fill('#close-reason', REASON, { timeout: WAIT });
    await page.click('#close-conn', { timeout: WAIT });
    await withTimeout(
      (async () => {
        while (victim.st.errors.length === 0) await sleep(50);
      })(),
      WAIT, `${VICTIM}: an ERROR frame after the close (closes ${JSON.stringify(victim.st.closes)})`,
    );
    const errFrame = victim.st.errors[0];
    check(
      (errFrame.headers.message ?? '').includes(REASON),
      `${VICTIM}'s ERROR message is ${JSON.stringify(errFrame.headers.message)}, want it to contain ${JSON.stringify(REASON)}`,
    );
    console.log(`ok: ${VICTIM} got ERROR message:${JSON.stringify(errFrame.headers.message)}`);
    await waitPage(page, '#conn-detail-status saying closed',
      () => /\bclosed\b/.test(document.getElementById('conn-detail-status').textContent),
      null, () => page.textContent('#conn-detail-status'));
    await withTimeout(
      (async () => {
        while (victim.st.closes.length === 0) await sleep(50);
      })(),
      WAIT, `${VICTIM}: its WebSocket closed after the ERROR`,
    );
    // The next refresh finds it gone, in the detail and in the list.
    await waitPage(
      page, 'the detail saying the connection is gone and the list without it',
      () => /gone/.test(document.getElementById('conn-detail-status').textContent) &&
        document.querySelectorAll('#connections tbody tr[data-id]').length === 0,
      null, async () => `status ${await page.textContent('#conn-detail-status')}; rows ${await page.innerText('#connections tbody')}`,
    );
    const status = await page.textContent('#conn-detail-status');
    check(await page.isDisabled('#close-conn'), 'Close connection still enabled for a gone connection');
    await shoot(page, 'admin-console-close.png');
    console.log(`ok: closed from the console; detail says ${JSON.stringify(status)}`);

    // ---- 5. purge a queue with no consumer ----
    producer = await stompClient(wsUrl, 'console-producer');
    const receipt = new Promise((resolve) => producer.client.watchForReceipt('purge-last', resolve));
    for (let i = 1; i <= QUEUED; i++) {
      producer.client.publish({
        destination: QUEUE,
        body: `purge me ${i}`,
        headers: i === QUEUED ? { receipt: 'purge-last' } : {},
      });
    }
    await withTimeout(receipt, WAIT, `RECEIPT for the last SEND to ${QUEUE} (errors ${JSON.stringify(producer.st.errors)})`);
    check(producer.st.errors.length === 0, `ERROR frames sending to ${QUEUE}: ${JSON.stringify(producer.st.errors)}`);
    await page.fill('#dest-search', 'admin-purge-test', { timeout: WAIT });
    const qsel = `#queues tbody tr[data-name="${QUEUE}"]`;
    await waitPage(page, `the queue row ${QUEUE}`, (s) => document.querySelector(s) !== null, qsel,
      () => page.innerText('#queues'));
    await page.locator(qsel).click({ timeout: WAIT });
    const queueFields = () => page.$$eval('#queue-detail-fields div', (ds) =>
      Object.fromEntries(ds.map((d) => [d.querySelector('dt').textContent, d.querySelector('dd').textContent])));
    await waitPage(
      page, `the queue detail showing ready ${QUEUED}`,
      ([name, n]) => {
        const d = document.getElementById('queue-detail');
        const f = [...d.querySelectorAll('#queue-detail-fields div')].map((x) =>
          [x.querySelector('dt').textContent, x.querySelector('dd').textContent]);
        return !d.hidden && document.getElementById('queue-detail-name').textContent === name &&
          f.some(([k, v]) => k === 'ready' && v === String(n)) && f.some(([k, v]) => k === 'consumers' && v === '0');
      },
      [QUEUE, QUEUED],
      async () => JSON.stringify(await queueFields()),
    );
    await page.click('#purge-queue', { timeout: WAIT });
    await waitPage(page, `#queue-detail-status saying purged ${QUEUED}`,
      (n) => document.getElementById('queue-detail-status').textContent === `purged ${n}`,
      QUEUED, () => page.textContent('#queue-detail-status'));
    const dest = await api('/api/destinations?limit=1000');
    const q = (dest.queues ?? []).find((x) => x.name === QUEUE);
    check(!q || q.ready === 0, `after the purge the API reports ${JSON.stringify(q)}`);
    // The console shows it too after its next refresh.
    await waitPage(
      page, 'the queue detail showing ready 0 (or the queue gone)',
      () => {
        const f = [...document.querySelectorAll('#queue-detail-fields div')].map((x) =>
          [x.querySelector('dt').textContent, x.querySelector('dd').textContent]);
        return f.some(([k, v]) => (k === 'ready' && v === '0') || k === 'state');
      },
      null, async () => JSON.stringify(await queueFields()),
    );
    // The overview's queue totals follow (they may lag the destination list by a refresh).
    await waitPage(page, 'the overview showing ready 0',
      () => [...document.querySelectorAll('#ov-extra > span')].some((e) => e.textContent === 'ready 0'),
      null, () => page.innerText('#ov-extra'));
    await shoot(page, 'admin-console-purge.png');
    console.log(`ok: purged ${QUEUED} from ${QUEUE}; the API then reports ${JSON.stringify(q ?? 'no such queue')}`);

    // ---- the end: nothing went wrong on the page, the loadtest and the broker are fine ----
    noTrouble('during the test');
    console.log(`ok: ${requests.length} requests, all to ${base}`);
    const lt = await withTimeout(load.exited, 15_000, `the loadtest to end (${load.out.slice(-500)})`);
    check(lt.code === 0, `loadtest: ${loadInfo()}`);
    check(broker.running(), `the broker died: ${JSON.stringify(broker.exit)}\n${broker.out.slice(-3000)}`);
    await page.close().catch(() => {}); // its polling of the first broker ends here

    // ---- 6. HTTP Basic over HTTPS, against a second broker ----
    part2 = true; // from here on a failure prints the second broker's output, not this one's
    await httpsBasic(browser);
    ok = true;
  } finally {
    for (const c of [victim, producer]) if (c) await c.client.deactivate().catch(() => {});
    if (browser) await browser.close().catch(() => {});
    if (load) await load.stop();
    const res = await broker.stop();
    if (!ok && !part2) console.log(`broker output (last 3000 chars):\n${broker.out.slice(-3000)}`);
    if (res.killed) console.log('note: the broker needed SIGKILL (still running 5 s after SIGTERM)');
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.log(e instanceof Fail ? `assertion failed: ${e.message}` : `error: ${e.stack || e}`);
    process.exit(1);
  },
);
