// SockJS in headless Chromium: sockjs-client 1.6 + @stomp/stompjs against the broker's /sockjs
// endpoint (SockJS 0.3.3), with a plain WebSocket STOMP client (stompjs + `ws`, in Node) on /ws.
//
//   node sockjs_browser.mjs --ws PORT [--chromium /usr/bin/chromium]
//                           [--transports xhr-streaming,xhr-polling,eventsource]
//
// The page and the two client bundles (node_modules/sockjs-client/dist/sockjs.min.js,
// node_modules/@stomp/stompjs/bundles/stomp.umd.min.js) are served by a small HTTP server of
// this script on its own loopback port, so the page's origin is not the broker's: every SockJS
// request is cross-origin (CORS, XHRs `withCredentials`). Nothing else is requested.
// For each transport, forced with `new SockJS(url, null, {transports: [name]})`, in a fresh
// browser context:
//   - stompjs `Client({webSocketFactory})` connects (CONNECTED version 1.2) and SockJS reports
//     the forced transport (`sock.transport`); /info answered 200 with its JSON; every response
//     of the broker reflects the page's Origin with Access-Control-Allow-Credentials: true;
//   - the page and the Node client subscribe to /topic/sockjs.<transport>.<pid> (receipts);
//   - Node publishes a text with quotes, backslash, newline/CR/tab, a NUL, non-ASCII (incl.
//     an astral character, sent by sockjs-client as a surrogate-pair \u escape, and U+1F79,
//     one of the characters it always \u-escapes), U+2028 and `%` sequences (eventsource data
//     is decodeURI()d by the client) with escaped/UTF-8 headers: the page gets it intact;
//   - the page publishes such a text: Node gets it intact (and the page its own copy);
//   - Node publishes 24 messages of ~8 KiB (past a streaming response's usual 128 KiB limit,
//     so streaming transports re-open their receiving request): all arrive, in order;
//   - the page publishes 10 messages in a row (sockjs-client batches queued ones into one
//     xhr_send array): Node gets all, in order;
//   - the page disconnects with a receipt (`deactivate()`, DISCONNECT receipt:...), gets the
//     RECEIPT and the SockJS socket ends CLOSED;
//   - no page errors, no ERROR frames, no request outside the page server and the broker.
// Prints PASS/FAIL per transport (with the requests the client made) and exits 1 if any failed.
// Each transport is bounded to 16 s, the whole scenario to 55 s.

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';
import { Fail, WAIT, arg, check, launchChromium, sleep, withTimeout } from './common.mjs';

Object.assign(globalThis, { WebSocket });

// WAIT (common.mjs, 10 s) outlasts sockjs-client giving up on /info (8 s).
const TRANSPORT_LIMIT = 16_000; // ms, one transport
const SCENARIO_LIMIT = 55_000; // ms, everything

const PORT = Number(arg('--ws'));
const CHROMIUM = arg('--chromium', '/usr/bin/chromium');
const TRANSPORTS = arg('--transports', 'xhr-streaming,xhr-polling,eventsource').split(',').filter(Boolean);
if (!PORT) {
  console.error('usage: node sockjs_browser.mjs --ws PORT [--chromium PATH] [--transports a,b,c]');
  process.exit(2);
}
const BROKER = `127.0.0.1:${PORT}`;
const SOCKJS_URL = `http://${BROKER}/sockjs`;

// The texts: JSON escaping (quote, backslash, controls, NUL), UTF-8 (2-, 3- and 4-byte; U+1F79
// and the astral character are \u-escaped by sockjs-client), U+2028, and `%` (eventsource
// frames are decodeURI()d by the client: a server must send % as %25).
const TRICKY =
  'quote " apostrophe \' backslash \\ slash / line1\nline2\r\ntab\t nul\u0000 ' +
  'κ\u1f79σμε 😀 € \u2028 100% %41 %zz %%';
const DOWN = `from node: ${TRICKY}`;
const UP = `from the page: ${TRICKY}`;
const DOWN_HEADERS = { 'x-from': 'node', 'x-colon': 'a:b', 'x-utf8': 'κ\u1f79σμε 😀', 'x-bs': 'c\\d' };
const UP_HEADERS = { 'x-from': 'page', 'x-utf8': 'κ\u1f79σμε 😀', 'x-quote': 'say "hi"' };
const BURST_DOWN = 24;
const BURST_UP = 10;
const bigBody = (i) => {
  let s = `burst ${i}: ${TRICKY}\n`;
  while (s.length < 8 * 1024) s += `${i} κόσμε "${s.length}" 100%25 `;
  return s;
};
const upBody = (i) => `page burst ${i} "κ\u1f79σμε" 😀 %${i}\n`;

// ---- the page ----------------------------------------------------------------------------
const HERE = dirname(fileURLToPath(import.meta.url));
const ASSETS = {
  '/sockjs.min.js': join(HERE, 'node_modules/sockjs-client/dist/sockjs.min.js'),
  '/stomp.umd.min.js': join(HERE, 'node_modules/@stomp/stompjs/bundles/stomp.umd.min.js'),
};
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>stompbox SockJS</title><link rel="icon" href="data:,">
<script src="/sockjs.min.js"></script>
<script src="/stomp.umd.min.js"></script>
<script>
window.T = null;
window.sockjsStart = (url, transport) => {
  const T = (window.T = {
    transport, log: [], messages: [], receipts: [], errors: [], closes: [], wsErrors: [],
    sockEvents: [], connected: null, disconnect: null, deactivated: false, sock: null,
  });
  const client = (T.client = new StompJs.Client({
    webSocketFactory: () => {
      const s = new SockJS(url, null, { transports: [transport] });
      T.sock = s;
      s.addEventListener('open', () => T.sockEvents.push('open ' + s.transport));
      s.addEventListener('close', (e) => T.sockEvents.push('close ' + e.code + ' ' + e.reason));
      return s;
    },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    connectionTimeout: 10000,
    debug: (m) => {
      m = m.replace(/\\n/g, '⏎').replace(/\\0/g, '␀');
      T.log.push(m.length > 300 ? m.slice(0, 300) + '…' : m);
      if (T.log.length > 80) T.log.shift();
    },
  }));
  client.onConnect = (f) => (T.connected = f.headers);
  client.onStompError = (f) => T.errors.push(f.headers.message + ': ' + f.body);
  client.onWebSocketClose = (e) => T.closes.push({ code: e.code, reason: String(e.reason ?? '') });
  client.onWebSocketError = (e) => T.wsErrors.push(String(e && e.type));
  client.onDisconnect = (f) => (T.disconnect = f.headers);
  client.activate();
};
const watch = (id) => T.client.watchForReceipt(id, (f) => T.receipts.push(f.headers['receipt-id']));
window.sockjsSubscribe = (dest, id) => {
  watch('r-sub-' + id);
  T.client.subscribe(dest, (m) => T.messages.push({ headers: m.headers, body: m.body }), {
    id, receipt: 'r-sub-' + id,
  });
};
window.sockjsPublish = (dest, bodies, headers, receipt) => {
  // In one go: sockjs-client sends the first at once and batches the rest (one xhr_send array).
  watch(receipt);
  bodies.forEach((body, i) => {
    const h = Object.assign({}, headers);
    if (i === bodies.length - 1) h.receipt = receipt;
    T.client.publish({ destination: dest, body, headers: h });
  });
};
window.sockjsDisconnect = (receipt) => {
  T.client.configure({ disconnectHeaders: { receipt } });
  T.client.deactivate().then(() => (T.deactivated = true));
};
window.sockjsState = () => ({
  transport: T.transport,
  sockTransport: T.sock && T.sock.transport,
  innerTransport: T.sock && T.sock._transport && T.sock._transport.transportName,
  readyState: T.sock && T.sock.readyState,
  sockUrl: T.sock && T.sock.url,
  connected: T.connected, disconnect: T.disconnect, deactivated: T.deactivated,
  receipts: T.receipts, errors: T.errors, closes: T.closes, wsErrors: T.wsErrors,
  sockEvents: T.sockEvents, messages: T.messages.length,
});
window.pageReady = true;
</script></head><body><p>stompbox SockJS interop page</p></body></html>`;

function servePage() {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
    } else if (ASSETS[path]) {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      res.end(readFileSync(ASSETS[path]));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// ---- the Node STOMP client over WebSocket ------------------------------------------------
const nodeLog = [];
async function connectNode() {
  const st = { errors: [], closes: [], connected: null, disconnectReceipt: null };
  const client = new Client({
    webSocketFactory: () => new WebSocket(`ws://${BROKER}/ws`, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    connectionTimeout: WAIT,
    debug: (m) => {
      m = m.replace(/\n/g, '⏎').replace(/\0/g, '␀');
      nodeLog.push(m.length > 300 ? m.slice(0, 300) + '…' : m);
      if (nodeLog.length > 40) nodeLog.shift();
    },
  });
  client.onStompError = (f) => st.errors.push(`${f.headers.message}: ${f.body}`);
  client.onWebSocketClose = (e) => st.closes.push({ code: e.code, reason: String(e.reason ?? '') });
  client.onDisconnect = (f) => (st.disconnectReceipt = f);
  const connected = new Promise((resolve, reject) => {
    client.onConnect = (f) => resolve(f);
    client.onWebSocketError = (e) => reject(new Fail(`node client: WebSocket error ${e?.message ?? e}`));
  });
  client.activate();
  try {
    st.connected = await withTimeout(connected, WAIT, `node client: CONNECTED from ws://${BROKER}/ws`);
  } catch (e) {
    client.forceDisconnect();
    throw e;
  }
  const h = st.connected.headers;
  check(h.version === '1.2', `node client: CONNECTED version ${h.version}, want 1.2`);
  return { client, st };
}

async function nodeReceipt(c, id, fn) {
  const p = new Promise((resolve) => c.client.watchForReceipt(id, resolve));
  fn();
  await withTimeout(p, WAIT, `node client: RECEIPT ${id} (errors ${JSON.stringify(c.st.errors)}, closes ${JSON.stringify(c.st.closes)})`);
  check(c.st.errors.length === 0, `node client: ERROR frame(s): ${c.st.errors.join('; ')}`);
}

async function nodeSubscribe(c, dest, id) {
  const inbox = { messages: [], waiters: [] };
  await nodeReceipt(c, `r-sub-${id}`, () => {
    inbox.sub = c.client.subscribe(
      dest,
      (m) => {
        inbox.messages.push(m);
        inbox.waiters = inbox.waiters.filter((w) => !w());
      },
      { id, receipt: `r-sub-${id}` },
    );
  });
  inbox.take = async (n) => {
    if (inbox.messages.length < n) {
      await withTimeout(
        new Promise((resolve) => inbox.waiters.push(() => inbox.messages.length >= n && (resolve(), true))),
        WAIT,
        `node client: ${n} MESSAGE(s) on ${dest} (have ${inbox.messages.length})`,
      );
    }
    return inbox.messages.slice(0, n);
  };
  return inbox;
}

// ---- checks --------------------------------------------------------------------------------
const show = (s) => JSON.stringify(s.length > 120 ? s.slice(0, 120) + '…' : s);
function firstDiff(a, b) {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return `lengths ${a.length}/${b.length}, first difference at ${i}: got ${show(a.slice(Math.max(0, i - 10), i + 20))}, want ${show(b.slice(Math.max(0, i - 10), i + 20))}`;
}
function checkMessage(who, m, { dest, sub, body, headers = {} }) {
  const h = m.headers;
  check(h.destination === dest, `${who}: MESSAGE destination ${h.destination}, want ${dest}`);
  check(h.subscription === sub, `${who}: MESSAGE subscription ${h.subscription}, want ${sub}`);
  check(h['message-id'], `${who}: MESSAGE without message-id: ${JSON.stringify(h)}`);
  check(m.body === body, `${who}: MESSAGE body differs: ${firstDiff(m.body, body)}`);
  for (const [k, v] of Object.entries(headers)) {
    check(h[k] === v, `${who}: MESSAGE header ${k}: ${JSON.stringify(h[k])}, want ${JSON.stringify(v)}`);
  }
}

// ---- one transport -------------------------------------------------------------------------
async function runTransport(browser, pageBase, node, t, out) {
  const dest = `/topic/sockjs.${t}.${process.pid}`;
  const context = await browser.newContext();
  out.context = context;
  const page = await context.newPage();
  const pageOrigin = new URL(pageBase).origin;
  const brokerOrigin = `http://${BROKER}`;
  const reqs = (out.requests = []);
  const pageErrors = (out.pageErrors = []);
  const infoResponses = [];
  const corsProblems = [];
  page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e}`));
  page.on('console', (m) => m.type() === 'error' && pageErrors.push(`console: ${m.text()}`));
  page.on('request', (r) => reqs.push({ method: r.method(), url: r.url(), type: r.resourceType() }));
  const pending = [];
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.origin !== brokerOrigin) return;
    if (u.pathname === '/sockjs/info') infoResponses.push({ status: r.status(), resp: r });
    pending.push(
      r.allHeaders().then(
        (h) => {
          if (h['access-control-allow-origin'] !== pageOrigin || h['access-control-allow-credentials'] !== 'true') {
            corsProblems.push(`${r.request().method()} ${u.pathname} -> ${r.status()}, access-control-allow-origin ${JSON.stringify(h['access-control-allow-origin'])}, -allow-credentials ${JSON.stringify(h['access-control-allow-credentials'])}`);
          }
        },
        () => {}, // gone with its request (aborted at close): nothing to check
      ),
    );
  });
  const state = () => page.evaluate(() => window.sockjsState());
  out.state = state;
  out.page = page;
  const waitPage = async (fn, arg, what) => {
    try {
      await page.waitForFunction(fn, arg, { timeout: WAIT });
    } catch {
      throw new Fail(`page: ${what} not within ${WAIT} ms`);
    }
  };

  const resp = await page.goto(`${pageBase}/`, { timeout: WAIT });
  check(resp && resp.status() === 200, `GET ${pageBase}/ -> ${resp && resp.status()}`);
  await waitPage(() => window.pageReady === true && typeof SockJS === 'function' && typeof StompJs === 'object', null, 'scripts loaded');
  const version = await page.evaluate(() => SockJS.version);

  // Connect.
  await page.evaluate(([url, t]) => window.sockjsStart(url, t), [SOCKJS_URL, t]);
  await waitPage(() => T.connected || T.closes.length > 0 || T.errors.length > 0, null, 'CONNECTED');
  let s = await state();
  check(s.connected, `no CONNECTED (SockJS events ${JSON.stringify(s.sockEvents)}, STOMP errors ${JSON.stringify(s.errors)})`);
  check(s.connected.version === '1.2', `CONNECTED version ${s.connected.version}, want 1.2 (${JSON.stringify(s.connected)})`);
  check(s.sockTransport === t && s.innerTransport === t, `SockJS used transport ${s.sockTransport} (inner ${s.innerTransport}), want ${t}`);
  check(infoResponses.length >= 1, `no response to GET /sockjs/info seen: ${JSON.stringify(reqs)}`);
  const info = infoResponses[0];
  check(info.status === 200, `GET /sockjs/info -> ${info.status}`);
  const infoBody = await info.resp.json().catch((e) => `unparsable: ${e}`);
  check(
    typeof infoBody === 'object' && typeof infoBody.websocket === 'boolean' && typeof infoBody.cookie_needed === 'boolean' &&
      Array.isArray(infoBody.origins) && Number.isInteger(infoBody.entropy),
    `GET /sockjs/info body ${JSON.stringify(infoBody)}: want websocket, cookie_needed (booleans), origins (array), entropy (integer)`,
  );
  console.log(`  ${t}: sockjs-client ${version} connected over ${s.sockTransport}; /info ${JSON.stringify(infoBody)}`);

  // Subscribe: the page, then Node, on the same topic.
  await page.evaluate(([d]) => window.sockjsSubscribe(d, 'page'), [dest]);
  await waitPage(() => T.receipts.includes('r-sub-page'), null, 'RECEIPT for SUBSCRIBE');
  const inbox = await nodeSubscribe(node, dest, `node-${t}`);
  const pageMessages = async (n, what) => {
    await page
      .waitForFunction((n) => T.messages.length >= n || T.errors.length > 0 || T.closes.length > 0, n, { timeout: WAIT })
      .catch(() => {});
    const ms = await page.evaluate(() => T.messages);
    check(ms.length >= n, `page: ${ms.length} MESSAGE(s) after ${WAIT} ms, want ${n} (${what})`);
    return ms;
  };

  // Node -> page.
  await nodeReceipt(node, `r-down-${t}`, () =>
    node.client.publish({ destination: dest, body: DOWN, headers: { ...DOWN_HEADERS, receipt: `r-down-${t}` } }),
  );
  let got = await pageMessages(1, 'from node');
  checkMessage('page', got[0], { dest, sub: 'page', body: DOWN, headers: DOWN_HEADERS });
  checkMessage('node', (await inbox.take(1))[0], { dest, sub: `node-${t}`, body: DOWN, headers: DOWN_HEADERS });
  console.log(`  ${t}: ok: node -> page`);

  // Page -> node.
  await page.evaluate(([d, b, h]) => window.sockjsPublish(d, [b], h, 'r-up'), [dest, UP, UP_HEADERS]);
  await waitPage(() => T.receipts.includes('r-up') || T.errors.length > 0, null, 'RECEIPT for SEND');
  checkMessage('node', (await inbox.take(2))[1], { dest, sub: `node-${t}`, body: UP, headers: UP_HEADERS });
  got = await pageMessages(2, 'its own');
  checkMessage('page', got[1], { dest, sub: 'page', body: UP, headers: UP_HEADERS });
  console.log(`  ${t}: ok: page -> node`);

  // Node -> page, a burst of 24 x ~8 KiB.
  let bytes = 0;
  for (let i = 0; i < BURST_DOWN; i++) {
    const body = bigBody(i);
    bytes += Buffer.byteLength(body);
    const headers = { 'x-i': String(i) };
    if (i === BURST_DOWN - 1) {
      await nodeReceipt(node, `r-burst-${t}`, () =>
        node.client.publish({ destination: dest, body, headers: { ...headers, receipt: `r-burst-${t}` } }),
      );
    } else {
      node.client.publish({ destination: dest, body, headers });
    }
  }
  got = await pageMessages(2 + BURST_DOWN, 'burst from node');
  for (let i = 0; i < BURST_DOWN; i++) {
    checkMessage(`page, burst ${i}`, got[2 + i], { dest, sub: 'page', body: bigBody(i), headers: { 'x-i': String(i) } });
  }
  console.log(`  ${t}: ok: a burst of ${BURST_DOWN} messages (${bytes} bytes) node -> page, in order`);

  // Page -> node, 10 in a row (batched by the client).
  const ups = Array.from({ length: BURST_UP }, (_, i) => upBody(i));
  const n0 = 2 + BURST_DOWN;
  await page.evaluate(([d, bs]) => window.sockjsPublish(d, bs, {}, 'r-up-burst'), [dest, ups]);
  await waitPage(() => T.receipts.includes('r-up-burst') || T.errors.length > 0, null, 'RECEIPT for the last SEND of the burst');
  const nodeGot = await inbox.take(n0 + BURST_UP);
  for (let i = 0; i < BURST_UP; i++) checkMessage(`node, page burst ${i}`, nodeGot[n0 + i], { dest, sub: `node-${t}`, body: ups[i] });
  got = await pageMessages(n0 + BURST_UP, 'its own burst');
  for (let i = 0; i < BURST_UP; i++) checkMessage(`page, its burst ${i}`, got[n0 + i], { dest, sub: 'page', body: ups[i] });
  const sends = reqs.filter((r) => r.url.includes('/xhr_send')).length;
  console.log(`  ${t}: ok: ${BURST_UP} messages in a row page -> node, in order (${sends} xhr_send requests so far)`);

  // Disconnect with a receipt.
  await page.evaluate(() => window.sockjsDisconnect('bye'));
  await waitPage(() => T.deactivated === true, null, 'deactivate() (DISCONNECT, RECEIPT, close)');
  s = await state();
  check(s.disconnect?.["receipt-id"] === "bye", `no RECEIPT for DISCONNECT receipt:bye (SockJS events ${JSON.stringify(s.sockEvents)}, deactivated ${s.deactivated})`);
  check(s.readyState === 3, `SockJS readyState ${s.readyState} after deactivate(), want 3 (CLOSED)`);
  check(s.errors.length === 0, `ERROR frame(s): ${s.errors.join('; ')}`);
  check(s.messages === n0 + BURST_UP, `page: ${s.messages} messages, want ${n0 + BURST_UP}`);
  await sleep(100);
  check(inbox.messages.length === n0 + BURST_UP, `node: ${inbox.messages.length} messages, want ${n0 + BURST_UP}`);
  await nodeReceipt(node, `r-unsub-${t}`, () => inbox.sub.unsubscribe({ receipt: `r-unsub-${t}` }));

  // What the client asked for.
  check(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  const outside = reqs.filter((r) => !r.url.startsWith(`${pageBase}/`) && !r.url.startsWith(`${brokerOrigin}/sockjs/`));
  check(outside.length === 0, `requests outside the page server and ${brokerOrigin}/sockjs: ${JSON.stringify(outside)}`);
  const iframes = reqs.filter((r) => /\/iframe[^/]*\.html/.test(r.url) || r.type === 'document' && r.url.startsWith(brokerOrigin));
  check(iframes.length === 0, `iframe requests: ${JSON.stringify(iframes)}`);
  await withTimeout(Promise.all(pending), WAIT, 'response headers');
  check(corsProblems.length === 0, `responses without the page's Origin reflected and credentials allowed: ${corsProblems.join('; ')}`);
  out.summary = summarize(reqs, brokerOrigin);
}

/** "GET /sockjs/info x1, POST /sockjs/<server>/<session>/xhr_streaming x2, ..." */
function summarize(reqs, brokerOrigin) {
  const counts = new Map();
  for (const r of reqs) {
    if (!r.url.startsWith(brokerOrigin)) continue;
    const u = new URL(r.url);
    const path = u.pathname.replace(/^\/sockjs\/[^/]+\/[^/]+\//, '/sockjs/<server>/<session>/');
    const q = [...u.searchParams.keys()].map((k) => `?${k}=`).join('');
    const key = `${r.method} ${path}${q} [${r.type}]`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${k} x${n}`).join(', ');
}

// ---- main ----------------------------------------------------------------------------------
async function main() {
  const watchdog = setTimeout(() => {
    console.log(`FAIL sockjs-browser: over ${SCENARIO_LIMIT / 1000} s in all`);
    process.exit(1);
  }, SCENARIO_LIMIT);
  watchdog.unref();
  let pageServer;
  let browser;
  let node;
  const results = [];
  try {
    node = await connectNode();
    pageServer = await servePage();
    const pageBase = `http://127.0.0.1:${pageServer.address().port}`;
    console.log(`page at ${pageBase}/, SockJS at ${SOCKJS_URL}, node client on ws://${BROKER}/ws`);
    browser = await launchChromium(chromium, CHROMIUM, 20_000);
    for (const t of TRANSPORTS) {
      const out = {};
      const t0 = Date.now();
      let err = null;
      try {
        await withTimeout(runTransport(browser, pageBase, node, t, out), TRANSPORT_LIMIT, `transport ${t} to finish`);
      } catch (e) {
        err = e;
      }
      const took = ((Date.now() - t0) / 1000).toFixed(1);
      if (!err) {
        console.log(`PASS ${t} (${took} s): requests: ${out.summary}`);
      } else {
        console.log(`FAIL ${t} (${took} s): ${e2s(err)}`);
        const st = out.state ? await withTimeout(out.state(), 2000, 'state').catch(() => null) : null;
        if (st) console.log(`    state: ${JSON.stringify(st)}`);
        const log = out.page ? await withTimeout(out.page.evaluate(() => (window.T ? T.log.slice(-20) : [])), 2000, 'log').catch(() => []) : [];
        if (log.length) console.log(`    stompjs log in the page (last lines):\n      ${log.join('\n      ')}`);
        if (out.pageErrors?.length) console.log(`    page errors: ${out.pageErrors.join('\n      ')}`);
        if (out.requests) console.log(`    requests: ${out.requests.map((r) => `${r.method} ${r.url}`).join('\n      ')}`);
        if (t === 'eventsource' && out.pageErrors?.some((m) => /URI malformed/.test(m))) {
          console.log("    hint: the client decodeURI()s each eventsource data line: '%' must go out as %25 (and \\r \\n \\0 as %0D %0A %00)");
        }
      }
      results.push([t, !err]);
      if (out.context) await withTimeout(out.context.close(), 5000, 'context close').catch(() => {});
      // A failed transport may have left the node client's subscription or connection broken.
      if (err && !node.client.connected) node = await connectNode();
    }
  } catch (e) {
    console.log(`FAIL sockjs-browser: ${e2s(e)}`);
    results.push(['setup', false]);
  } finally {
    if (browser) await withTimeout(browser.close(), 5000, 'browser close').catch(() => {});
    if (pageServer) pageServer.close();
    if (node) {
      try {
        node.client.configure({ disconnectHeaders: { receipt: 'node-bye' } });
        await withTimeout(node.client.deactivate(), 5000, 'node client: deactivate');
        if (node.st.disconnectReceipt?.headers['receipt-id'] !== 'node-bye') {
          console.log('FAIL node client: no RECEIPT for its DISCONNECT');
          results.push(['node-disconnect', false]);
        }
      } catch (e) {
        console.log(`FAIL node client: ${e2s(e)}`);
        results.push(['node-disconnect', false]);
        node.client.forceDisconnect();
      }
    }
  }
  const failed = results.filter(([, ok]) => !ok).map(([t]) => t);
  const passed = results.filter(([, ok]) => ok).length;
  console.log(`sockjs-browser: ${passed} passed, ${failed.length} failed${failed.length ? ` (${failed.join(', ')})` : ''}`);
  if (failed.length && nodeLog.length) console.log(`    node client's stompjs log (last lines):\n      ${nodeLog.slice(-10).join('\n      ')}`);
  return failed.length || passed === 0 ? 1 : 0;
}

const e2s = (e) => (e instanceof Fail ? `assertion failed: ${e.message}` : `error: ${e?.stack ?? e}`);

// Exit explicitly: a stuck socket or timer must not keep the process alive.
main().then(
  (code) => process.exit(code),
  (e) => {
    console.log(e2s(e));
    process.exit(1);
  },
);
