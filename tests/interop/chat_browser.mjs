// The chat example's page in headless Chromium (Debian `chromium`), driven by playwright-core.
//
//   node chat_browser.mjs --chat PATH/TO/examples/chat [--chromium /usr/bin/chromium] [--shots DIR]
//                         [--compression]
//
// Starts the chat example on a free loopback port (it prints the address it bound), opens
// /?room=7&name=alice and /?room=7&name=bob in two tabs, chats from each tab by typing into the
// form and checks the line appears in both; a tab opened later (carol) gets the room's history;
// a tab in room 8 sees nothing of room 7. Saves a screenshot to DIR (default: a temp dir) and
// prints its path. Stops the example with SIGTERM and expects exit 0.
// Each tab's WebSocket is kept (window.WebSocket wrapped before the page's scripts run): its
// negotiated `extensions` must be empty, or with --compression (passed on to the example) name
// permessage-deflate; then a ~2 KB line (compressed both ways) also reaches every tab of the room.
// Exit 0 on success, 1 with an "assertion failed: ..." line otherwise. Every wait is bounded.

import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { Fail, WAIT, arg, check, launchChromium, sleep } from './common.mjs';

const CHAT = arg('--chat');
const CHROMIUM = arg('--chromium', '/usr/bin/chromium');
const SHOTS = arg('--shots') || mkdtempSync(join(tmpdir(), 'stompbox-chat-'));
const COMPRESSION = process.argv.includes('--compression');
if (!CHAT) {
  console.error('usage: node chat_browser.mjs --chat PATH [--chromium PATH] [--shots DIR] [--compression]');
  process.exit(2);
}

/** Start the example on 127.0.0.1:0; resolves to its host:port (from its log line). */
function startChat() {
  const args = ['--listen', '127.0.0.1:0', ...(COMPRESSION ? ['--compression'] : [])];
  const proc = spawn(CHAT, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const addr = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Fail(`chat printed no address in ${WAIT} ms: ${log}`)), WAIT);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /chat: open http:\/\/([^/\s]+)\//.exec(log);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(t);
      reject(new Fail(`chat exited (${code}) before listening: ${log}`));
    });
  });
  return { proc, addr, log: () => log };
}

/** Lines shown in a tab: [{from, text}]. */
const lines = (page) =>
  page.$$eval('#log p', (ps) =>
    ps.map((p) => ({
      from: p.querySelector('.from')?.textContent ?? '',
      text: p.childNodes[1]?.textContent ?? '',
    })),
  );

async function waitForLines(page, n, who) {
  try {
    await page.waitForFunction((n) => document.querySelectorAll('#log p').length >= n, n, {
      timeout: WAIT,
    });
  } catch {
    throw new Fail(`${who}: fewer than ${n} lines after ${WAIT} ms: ${JSON.stringify(await lines(page))}`);
  }
  return lines(page);
}

/** Runs in the page before its scripts: every WebSocket it makes is kept in window.__sockets. */
function keepSockets() {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__sockets.push(this);
    }
  };
}

/** The page's WebSockets: url, readyState, negotiated protocol and extensions. */
const sockets = (page) =>
  page.evaluate(() =>
    (window.__sockets ?? []).map((s) => ({
      url: s.url,
      readyState: s.readyState,
      protocol: s.protocol,
      extensions: s.extensions,
    })),
  );

async function open(browser, base, query, who) {
  const page = await browser.newPage();
  await page.addInitScript(keepSockets);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The broker answers paths it does not serve (the browser's /favicon.ico) with 426.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.location().url.endsWith('/favicon.ico')) errors.push(m.text());
  });
  const resp = await page.goto(`${base}/${query}`, { timeout: WAIT });
  check(resp && resp.status() === 200, `${who}: GET /${query} -> ${resp && resp.status()}`);
  try {
    await page.waitForFunction(() => window.chatReady === true, null, { timeout: WAIT });
  } catch {
    const status = await page.textContent('#status');
    throw new Fail(`${who}: window.chatReady not set in ${WAIT} ms (status: ${status}; errors: ${errors})`);
  }
  check((await page.textContent('#status')) === 'connected', `${who}: status not "connected"`);
  const socks = await sockets(page);
  const live = socks.filter((s) => s.readyState === 1);
  check(live.length === 1 && live[0].url.endsWith('/ws'), `${who}: want one open WebSocket to /ws: ${JSON.stringify(socks)}`);
  const ext = live[0].extensions;
  if (COMPRESSION) {
    check(/(^|,)\s*permessage-deflate\s*(;|,|$)/.test(ext), `${who}: the page's WebSocket negotiated ${JSON.stringify(ext)}, want permessage-deflate`);
  } else {
    check(ext === '', `${who}: the page's WebSocket negotiated ${JSON.stringify(ext)} from a chat without --compression`);
  }
  page.ws = live[0];
  page.errors = errors;
  return page;
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  // The form clears the input once the frame is sent.
  await page.waitForFunction(() => document.getElementById('text').value === '', null, {
    timeout: WAIT,
  });
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function main() {
  const chat = startChat();
  let browser;
  let exitCode = 1;
  try {
    const addr = await chat.addr;
    const base = `http://${addr}`;
    console.log(`chat example at ${base}`);
    browser = await launchChromium(chromium, CHROMIUM);

    const alice = await open(browser, base, '?room=7&name=alice', 'alice');
    const bob = await open(browser, base, '?room=7&name=bob', 'bob');
    const other = await open(browser, base, '?room=8&name=dave', 'dave');
    check((await alice.textContent('#room')) === '7', 'alice: room heading');
    // The tabs' SUBSCRIBEs are on the wire when chatReady is set; let the broker take them in.
    await sleep(300);

    const l1 = 'hello from alice';
    await say(alice, l1);
    for (const [p, who] of [[alice, 'alice'], [bob, 'bob']]) {
      const got = await waitForLines(p, 1, who);
      check(same(got, [{ from: 'alice', text: l1 }]), `${who} sees ${JSON.stringify(got)}`);
    }
    // Markup and non-ASCII are shown as text.
    const l2 = '<b>not bold</b> & κόσμε 😀';
    await say(bob, l2);
    const want = [
      { from: 'alice', text: l1 },
      { from: 'bob', text: l2 },
    ];
    for (const [p, who] of [[alice, 'alice'], [bob, 'bob']]) {
      const got = await waitForLines(p, 2, who);
      check(same(got, want), `${who} sees ${JSON.stringify(got)}`);
      check((await p.$$('#log b')).length === 0, `${who}: a chat line was rendered as HTML`);
    }
    console.log('ok: two tabs chat in room 7');

    // A tab opened later gets the history (once), then new lines.
    const carol = await open(browser, base, '?room=7&name=carol', 'carol');
    let got = await waitForLines(carol, 2, 'carol');
    check(same(got, want), `carol's history: ${JSON.stringify(got)}`);
    await sleep(300);
    const l3 = 'carol joined late';
    await say(carol, l3);
    want.push({ from: 'carol', text: l3 });
    for (const [p, who] of [[alice, 'alice'], [bob, 'bob'], [carol, 'carol']]) {
      got = await waitForLines(p, 3, who);
      check(same(got, want), `${who} sees ${JSON.stringify(got)}`);
    }
    console.log('ok: a later tab sees the history, then chats');

    // Room 8 saw none of it: its first line is its own.
    await say(other, 'room eight');
    got = await waitForLines(other, 1, 'dave');
    check(same(got, [{ from: 'dave', text: 'room eight' }]), `room 8 sees ${JSON.stringify(got)}`);
    check((await lines(alice)).length === 3, 'room 8 line reached room 7');
    console.log('ok: rooms are separate');

    if (COMPRESSION) {
      console.log(`ok: the tabs' WebSockets negotiated ${JSON.stringify(alice.ws.extensions)}`);
      // A line long enough to be compressed by Chromium (its SEND) and by the broker (the
      // MESSAGE, past its 256-byte minimum) reaches every tab of room 7 intact.
      let long = '';
      for (let i = 0; long.length < 2000; i++) long += `${i} κόσμε 😀 <i>deflate</i> & `;
      await say(alice, long);
      want.push({ from: 'alice', text: long });
      for (const [p, who] of [[alice, 'alice'], [bob, 'bob'], [carol, 'carol']]) {
        got = await waitForLines(p, 4, who);
        check(same(got, want), `${who} sees ${JSON.stringify(got).slice(0, 500)}`);
      }
      check((await lines(other)).length === 1, 'the long line reached room 8');
      // A tab opened now gets the history (over 2 KB) compressed, and its socket too agreed.
      const erin = await open(browser, base, '?room=7&name=erin', 'erin');
      got = await waitForLines(erin, 4, 'erin');
      check(same(got, want), `erin's history: ${JSON.stringify(got).slice(0, 500)}`);
      check(erin.errors.length === 0, `erin: page errors: ${erin.errors.join('; ')}`);
      console.log(`ok: a ${long.length}-character line and a history of it over permessage-deflate`);
    }

    for (const [p, who] of [[alice, 'alice'], [bob, 'bob'], [carol, 'carol'], [other, 'dave']]) {
      check(p.errors.length === 0, `${who}: page errors: ${p.errors.join('; ')}`);
    }
    const shot = join(SHOTS, COMPRESSION ? 'chat-carol-deflate.png' : 'chat-carol.png');
    await carol.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    exitCode = 0;
  } finally {
    if (browser) await browser.close().catch(() => {});
    // Graceful stop: SIGTERM, exit 0.
    if (chat.proc.exitCode === null) {
      const exited = new Promise((r) => chat.proc.once('exit', (code, sig) => r({ code, sig })));
      chat.proc.kill('SIGTERM');
      const res = await Promise.race([exited, sleep(WAIT).then(() => null)]);
      if (res === null) {
        chat.proc.kill('SIGKILL');
        console.error('assertion failed: chat still running 10 s after SIGTERM');
        exitCode = 1;
      } else if (res.code !== 0) {
        console.error(`assertion failed: chat exited with ${res.code ?? res.sig} on SIGTERM`);
        exitCode = 1;
      }
    }
  }
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Fail ? `assertion failed: ${e.message}` : e);
    process.exit(1);
  },
);
