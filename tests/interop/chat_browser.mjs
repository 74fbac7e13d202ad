// The chat example's page in headless Chromium (Debian `chromium`), driven by playwright-core.
//
//   node chat_browser.mjs --chat PATH/TO/examples/chat [--chromium /usr/bin/chromium] [--shots DIR]
//
// Starts the chat example on a free loopback port (it prints the address it bound), opens
// /?room=7&name=alice and /?room=7&name=bob in two tabs, chats from each tab by typing into the
// form and checks the line appears in both; a tab opened later (carol) gets the room's history;
// a tab in room 8 sees nothing of room 7. Saves a screenshot to DIR (default: a temp dir) and
// prints its path. Stops the example with SIGTERM and expects exit 0.
// Exit 0 on success, 1 with an "assertion failed: ..." line otherwise. Every wait is bounded.

import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

class Fail extends Error {}
const check = (cond, msg) => {
  if (!cond) throw new Fail(msg);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const WAIT = 10_000; // ms, any single wait

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const CHAT = arg('--chat');
const CHROMIUM = arg('--chromium', '/usr/bin/chromium');
const SHOTS = arg('--shots') || mkdtempSync(join(tmpdir(), 'stompbox-chat-'));
if (!CHAT) {
  console.error('usage: node chat_browser.mjs --chat PATH [--chromium PATH] [--shots DIR]');
  process.exit(2);
}

/** Start the example on 127.0.0.1:0; resolves to its host:port (from its log line). */
function startChat() {
  const proc = spawn(CHAT, ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
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

async function open(browser, base, query, who) {
  const page = await browser.newPage();
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
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
      timeout: 30_000,
    });
    console.log(`chromium ${browser.version()}`);

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

    for (const [p, who] of [[alice, 'alice'], [bob, 'bob'], [carol, 'carol'], [other, 'dave']]) {
      check(p.errors.length === 0, `${who}: page errors: ${p.errors.join('; ')}`);
    }
    const shot = join(SHOTS, 'chat-carol.png');
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
