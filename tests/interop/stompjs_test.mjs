// Interop scenarios: @stomp/stompjs (Node, `ws` package) against a running stompbox over WebSocket.
//
//   node stompjs_test.mjs SCENARIO --ws PORT [DEST]
//
// Scenarios: js-ws-basic, js-ws-heartbeat, js-ws-large-split, js-ws-transaction, and
// js-ws-deflate (its PORT is a broker started with --compression).
// Helper modes for stomp_py_test.py's cross-client scenarios: `publish DEST`, `receive DEST`.
// Exit 0 on success, 1 with an "assertion failed: ..." line otherwise. Every wait is bounded.

import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { Fail, check, sleep, withTimeout } from './common.mjs';

Object.assign(globalThis, { WebSocket });

const UTF8_TEXT = 'κόσμε 😀';
const enc = new TextEncoder();
// Every byte value, then NULs inside and at the end (as in stomp_py_test.py).
const BINARY_BODY = new Uint8Array([
  ...Array.from({ length: 256 }, (_, i) => i),
  ...enc.encode('\0\0mid\0'),
  0xff,
  0xfe,
  0,
]);

const hex = (u8, n = 32) =>
  Buffer.from(u8.subarray(0, n)).toString('hex') + (u8.length > n ? '…' : '');

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

let PORT;
const ALL = []; // every client's state, for the debug dump on failure
const url = () => `ws://127.0.0.1:${PORT}/ws`;

/** A connected stompjs client plus everything it saw. */
async function connect(name, opts = {}) {
  // wsOptions: the `ws` package's options (its perMessageDeflate offer is on unless told).
  const { wsOptions, ...clientOpts } = opts;
  const st = {
    name,
    errors: [],
    closes: [],
    heartbeats: 0,
    heartbeatLost: 0,
    log: [],
    connected: null,
    disconnectReceipt: null,
    extensionsHeader: undefined,
  };
  ALL.push(st);
  const client = new Client({
    webSocketFactory: () => {
      const ws = new WebSocket(url(), ['v12.stomp', 'v11.stomp', 'v10.stomp'], wsOptions);
      // The handshake's answer (ws.extensions has the extension names only).
      ws.on('upgrade', (res) => (st.extensionsHeader = res.headers['sec-websocket-extensions'] ?? null));
      return ws;
    },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    connectionTimeout: 10000,
    debug: (m) => {
      st.log.push(m.length > 300 ? m.slice(0, 300) + '…' : m);
      if (st.log.length > 60) st.log.shift();
    },
    ...clientOpts,
  });
  client.onStompError = (f) => st.errors.push(f);
  client.onWebSocketClose = (e) => st.closes.push({ code: e.code, reason: String(e.reason ?? '') });
  client.onHeartbeatReceived = () => st.heartbeats++;
  client.onHeartbeatLost = () => st.heartbeatLost++;
  client.onDisconnect = (f) => (st.disconnectReceipt = f);
  const connected = new Promise((resolve, reject) => {
    client.onConnect = (f) => resolve(f);
    client.onWebSocketError = (e) => reject(new Fail(`${name}: WebSocket error ${e?.message ?? e}`));
  });
  client.activate();
  st.connected = await withTimeout(connected, 10000, `${name}: CONNECTED`);
  const h = st.connected.headers;
  check(h.version === '1.2', `${name}: CONNECTED version ${h.version}, want 1.2 (${JSON.stringify(h)})`);
  check(
    client.webSocket.protocol === 'v12.stomp',
    `${name}: WebSocket subprotocol ${JSON.stringify(client.webSocket.protocol)}, want v12.stomp`,
  );
  return { client, st };
}

function state(st) {
  const errs = st.errors.map((f) => `${f.headers.message}: ${f.body}`);
  return `[${st.name}: errors=${JSON.stringify(errs)} closes=${JSON.stringify(st.closes)} heartbeats=${st.heartbeats}]`;
}

function noErrors({ st }) {
  check(st.errors.length === 0, `unexpected ERROR frame(s) ${state(st)}`);
  check(st.closes.length === 0, `the WebSocket closed unexpectedly ${state(st)}`);
}

/** Send `frame` (a function that transmits) and wait for RECEIPT `id`. */
async function withReceipt(c, id, transmit) {
  const p = new Promise((resolve) => c.client.watchForReceipt(id, resolve));
  transmit();
  await withTimeout(p, 5000, `${c.st.name}: RECEIPT receipt-id:${id} ${state(c.st)}`);
  noErrors(c);
}

/** Subscribe with a receipt; messages land in the returned inbox. */
async function subscribe(c, dest, id) {
  const inbox = { messages: [], waiters: [] };
  let sub;
  await withReceipt(c, `r-sub-${id}`, () => {
    sub = c.client.subscribe(
      dest,
      (m) => {
        inbox.messages.push(m);
        inbox.waiters = inbox.waiters.filter((w) => !w());
      },
      { id, receipt: `r-sub-${id}` },
    );
  });
  inbox.sub = sub;
  inbox.take = async (n, ms = 5000) => {
    if (inbox.messages.length < n) {
      await withTimeout(
        new Promise((resolve) => inbox.waiters.push(() => inbox.messages.length >= n && (resolve(), true))),
        ms,
        `${c.st.name}: ${n} MESSAGE(s) on ${dest} (have ${inbox.messages.length}) ${state(c.st)}`,
      );
    }
    return inbox.messages.slice(0, n);
  };
  return inbox;
}

async function disconnect(c) {
  c.client.configure({ disconnectHeaders: { receipt: 'bye' } });
  await withTimeout(c.client.deactivate(), 5000, `${c.st.name}: deactivate (DISCONNECT, RECEIPT, close)`);
  check(
    c.st.disconnectReceipt?.headers['receipt-id'] === 'bye',
    `${c.st.name}: no RECEIPT for DISCONNECT (got ${JSON.stringify(c.st.disconnectReceipt?.headers)}) ${state(c.st)}`,
  );
  check(c.st.errors.length === 0, `${c.st.name}: ERROR frame(s) ${state(c.st)}`);
}

function checkMessage(m, dest, want, subId, extra = {}) {
  const h = m.headers;
  check(h.destination === dest, `MESSAGE destination ${h.destination} != ${dest}`);
  check(h['message-id'], `MESSAGE without message-id: ${JSON.stringify(h)}`);
  if (subId !== undefined) check(h.subscription === subId, `MESSAGE subscription ${h.subscription} != ${subId}`);
  const got = m.binaryBody;
  const wantBytes = typeof want === 'string' ? enc.encode(want) : want;
  check(
    sameBytes(got, wantBytes),
    `MESSAGE body differs: got ${got.length} bytes ${hex(got)}, want ${wantBytes.length} bytes ${hex(wantBytes)}`,
  );
  if (typeof want === 'string') check(m.body === want, `MESSAGE text body differs: ${JSON.stringify(m.body.slice(0, 80))}`);
  if ('content-length' in h) check(Number(h['content-length']) === wantBytes.length, `content-length ${h['content-length']} != ${wantBytes.length}`);
  for (const [k, v] of Object.entries(extra)) check(h[k] === v, `MESSAGE header ${k}: ${JSON.stringify(h[k])} != ${JSON.stringify(v)}`);
}

const SCENARIOS = {
  async 'js-ws-transaction'() {
    // BEGIN/COMMIT delivers every SEND of the transaction, in order; ABORT delivers none.
    const dest = `/topic/interop.tx.${process.pid}`;
    const c = await connect('stompjs-tx');
    try {
      const inbox = await subscribe(c, dest, 'tx-sub');
      const tx = c.client.begin('tx-1');
      for (const body of ['one', 'two', 'three']) {
        c.client.publish({ destination: dest, body, headers: { transaction: tx.id } });
      }
      await sleep(200);
      check(inbox.messages.length === 0, `messages arrived before COMMIT: ${inbox.messages.map((m) => m.body)}`);
      // stompjs's commit()/abort() take no headers (so no receipt): wait for the messages.
      tx.commit();
      const got = (await inbox.take(3)).map((m) => m.body);
      check(JSON.stringify(got) === JSON.stringify(['one', 'two', 'three']), `after COMMIT: ${JSON.stringify(got)}`);
      const tx2 = c.client.begin('tx-2');
      c.client.publish({ destination: dest, body: 'aborted', headers: { transaction: tx2.id } });
      tx2.abort();
      await withReceipt(c, 'r-sentinel', () =>
        c.client.publish({ destination: dest, body: 'sentinel', headers: { receipt: 'r-sentinel' } }),
      );
      const after = (await inbox.take(4)).map((m) => m.body);
      check(after[3] === 'sentinel', `after ABORT the next message must be the sentinel: ${JSON.stringify(after)}`);
      await sleep(100);
      check(inbox.messages.length === 4, `an aborted SEND was delivered: ${inbox.messages.map((m) => m.body)}`);
      noErrors(c);
      await disconnect(c);
    } finally {
      await c.client.deactivate().catch(() => {});
    }
  },

  async 'js-ws-basic'() {
    const dest = `/topic/interop.js.${process.pid}`;
    const c = await connect('stompjs');
    try {
      const inbox = await subscribe(c, dest, 'sub-1');
      const cases = [
        ['text', { body: 'hello from stompjs' }, 'hello from stompjs', {}],
        ['utf8', { body: UTF8_TEXT, headers: { 'content-type': 'text/plain;charset=utf-8' } }, UTF8_TEXT, { 'content-type': 'text/plain;charset=utf-8' }],
        ['binary', { binaryBody: BINARY_BODY, headers: { 'content-type': 'application/octet-stream' } }, BINARY_BODY, { 'content-type': 'application/octet-stream' }],
        ['headers', { body: 'with headers', headers: { 'x-colon': 'a:b', 'x-utf8': 'κόσμε', 'x-bs': 'c\\d' } }, 'with headers', { 'x-colon': 'a:b', 'x-utf8': 'κόσμε', 'x-bs': 'c\\d' }],
      ];
      for (const [i, [label, pub, want, extra]] of cases.entries()) {
        const rid = `r-send-${label}`;
        await withReceipt(c, rid, () =>
          c.client.publish({ destination: dest, ...pub, headers: { ...(pub.headers ?? {}), receipt: rid } }),
        );
        const m = (await inbox.take(i + 1))[i];
        try {
          checkMessage(m, dest, want, 'sub-1', extra);
        } catch (e) {
          throw new Fail(`[${label}] ${e.message}`);
        }
      }
      // client-individual: message.ack()/nack() need the 1.2 'ack' header from the broker.
      const acks = { messages: [] };
      let ackSub;
      await withReceipt(c, 'r-sub-ack', () => {
        ackSub = c.client.subscribe(`${dest}.ack`, (m) => acks.messages.push(m), {
          id: 'sub-ack',
          ack: 'client-individual',
          receipt: 'r-sub-ack',
        });
      });
      for (const i of [0, 1]) {
        await withReceipt(c, `r-send-ack${i}`, () =>
          c.client.publish({ destination: `${dest}.ack`, body: `ack me ${i}`, headers: { receipt: `r-send-ack${i}` } }),
        );
      }
      for (let t = 0; acks.messages.length < 2 && t < 50; t++) await sleep(100);
      check(acks.messages.length === 2, `client-individual subscription got ${acks.messages.length} of 2 messages`);
      const [a1, a2] = acks.messages;
      check(a1.headers.ack, `1.2 MESSAGE on a client-individual subscription has no 'ack' header: ${JSON.stringify(a1.headers)}`);
      await withReceipt(c, 'r-ack', () => a1.ack({ receipt: 'r-ack' }));
      await withReceipt(c, 'r-nack', () => a2.nack({ receipt: 'r-nack' }));
      ackSub.unsubscribe();

      const n = inbox.messages.length;
      await withReceipt(c, 'r-unsub', () => inbox.sub.unsubscribe({ receipt: 'r-unsub' }));
      await withReceipt(c, 'r-after', () =>
        c.client.publish({ destination: dest, body: 'after unsubscribe', headers: { receipt: 'r-after' } }),
      );
      await sleep(500);
      check(inbox.messages.length === n, `after UNSUBSCRIBE: got ${inbox.messages.length - n} unexpected MESSAGE(s)`);
      await disconnect(c);
    } finally {
      c.client.forceDisconnect();
    }
  },

  async 'js-ws-heartbeat'() {
    // 1000,1000 from us -> the server beats every 1 s as asked and expects us every 10 s (the
    // longer of ours and its own); idle 25 s, still alive.
    const dest = `/topic/interop.jshb.${process.pid}`;
    const c = await connect('stompjs-hb', { heartbeatIncoming: 1000, heartbeatOutgoing: 1000 });
    try {
      const hb = c.st.connected.headers['heart-beat'];
      check(hb === '1000,10000', `CONNECTED heart-beat ${hb}, want 1000,10000`);
      const inbox = await subscribe(c, dest, 'hb');
      const start = Date.now();
      await sleep(25000);
      noErrors(c);
      check(c.st.heartbeatLost === 0, `stompjs lost the server's heart-beats ${state(c.st)}`);
      check(c.client.connected, `client no longer connected after idling ${state(c.st)}`);
      check(c.st.heartbeats >= 15, `only ${c.st.heartbeats} server heart-beat(s) in ${(Date.now() - start) / 1000}s, want >= 15`);
      await withReceipt(c, 'r-alive', () =>
        c.client.publish({ destination: dest, body: 'still alive', headers: { receipt: 'r-alive' } }),
      );
      checkMessage((await inbox.take(1))[0], dest, 'still alive', 'hb');
      await disconnect(c);
    } finally {
      c.client.forceDisconnect();
    }
  },

  async 'js-ws-large-split'() {
    // A ~100 KiB text frame split by stompjs into 16 KiB WebSocket messages must arrive intact,
    // and so must a frame cut into 7-byte messages (command and headers split too) and a
    // 100 KiB binary body.
    const dest = `/topic/interop.jsbig.${process.pid}`;
    const sub = await connect('subscriber');
    const big = await connect('splitter', { splitLargeFrames: true, maxWebSocketChunkSize: 16 * 1024 });
    const tiny = await connect('tiny-chunks', { splitLargeFrames: true, maxWebSocketChunkSize: 7 });
    try {
      const inbox = await subscribe(sub, dest, 'big');
      let text = '';
      for (let i = 0; text.length < 100 * 1024; i++) text += `line ${i} κόσμε\n`;
      await withReceipt(big, 'r-big', () =>
        big.client.publish({ destination: dest, body: text, headers: { receipt: 'r-big' } }),
      );
      checkMessage((await inbox.take(1, 10000))[0], dest, text, 'big');

      const small = `split into 7-byte pieces: ${UTF8_TEXT}`;
      await withReceipt(tiny, 'r-tiny', () =>
        tiny.client.publish({ destination: dest, body: small, headers: { receipt: 'r-tiny', 'x-k': 'v' } }),
      );
      checkMessage((await inbox.take(2))[1], dest, small, 'big', { 'x-k': 'v' });

      const bin = new Uint8Array(100 * 1024);
      for (let i = 0; i < bin.length; i++) bin[i] = (i * 7919) % 251; // includes NULs
      await withReceipt(big, 'r-bin', () =>
        big.client.publish({ destination: dest, binaryBody: bin, headers: { receipt: 'r-bin' } }),
      );
      checkMessage((await inbox.take(3, 10000))[2], dest, bin, 'big');
      for (const c of [big, tiny, sub]) await disconnect(c);
    } finally {
      for (const c of [big, tiny, sub]) c.client.forceDisconnect();
    }
  },

  async 'js-ws-deflate'() {
    // Against a broker started with --compression: stompjs over `ws` with permessage-deflate
    // negotiates it; JSON, a 100 KiB repetitive text, a small text and a 64 KiB binary body
    // from a compressing and from a plain publisher reach a compressing subscriber, one with
    // 10-bit windows and a plain one byte-exact, headers intact; the big text travels
    // compressed both ways (bytes on the TCP sockets) where deflate was agreed, whole elsewhere.
    const dest = `/topic/interop.jsdeflate.${process.pid}`;
    const Z = { wsOptions: { perMessageDeflate: true } };
    const Z10 = { wsOptions: { perMessageDeflate: { serverMaxWindowBits: 10, clientMaxWindowBits: 10 } } };
    const PLAIN = { wsOptions: { perMessageDeflate: false } };
    const subs = [await connect('sub-deflate', Z), await connect('sub-deflate-w10', Z10), await connect('sub-plain', PLAIN)];
    const pubZ = await connect('pub-deflate', Z);
    const pubPlain = await connect('pub-plain', PLAIN);
    const all = [...subs, pubZ, pubPlain];
    const deflate = (c) => /(^|,)\s*permessage-deflate\s*(;|,|$)/.test(c.client.webSocket.extensions);
    const sock = (c) => c.client.webSocket._socket; // ws's net.Socket: bytesRead, bytesWritten
    try {
      for (const c of [subs[0], subs[1], pubZ]) {
        check(deflate(c), `${c.st.name}: negotiated extensions ${JSON.stringify(c.client.webSocket.extensions)}, want permessage-deflate`);
      }
      check(/server_max_window_bits=10\b/.test(subs[1].st.extensionsHeader),
        `sub-deflate-w10: Sec-WebSocket-Extensions ${JSON.stringify(subs[1].st.extensionsHeader)} does not grant server_max_window_bits=10`);
      for (const c of [subs[2], pubPlain]) {
        check(c.client.webSocket.extensions === '' && c.st.extensionsHeader === null,
          `${c.st.name}: extensions ${JSON.stringify(c.client.webSocket.extensions)} / ${JSON.stringify(c.st.extensionsHeader)} without an offer`);
      }
      console.log(`ok: negotiated ${JSON.stringify(subs[0].st.extensionsHeader)}; 10-bit: ${JSON.stringify(subs[1].st.extensionsHeader)}`);
      const inboxes = [];
      for (const [i, c] of subs.entries()) inboxes.push(await subscribe(c, dest, `s${i}`));

      const items = [];
      let json = '';
      for (let n = 0; json.length < 1024; n++) {
        items.push({ sku: `A-${n}`, qty: (n % 7) + 1, price: 9.99 + n / 2, note: 'κόσμε' });
        json = JSON.stringify({ order: 4711, from: UTF8_TEXT, items });
      }
      let big = '';
      for (let i = 0; enc.encode(big).length < 100 * 1024; i++) {
        big += `${String(i).padStart(6, '0')} stompbox permessage-deflate κόσμε 😀 the quick brown fox\n`;
      }
      const small = `small: ${UTF8_TEXT}`;
      const bin = new Uint8Array(64 * 1024);
      for (let i = 0; i < bin.length; i++) bin[i] = i % 3 ? (i * 7919) % 251 : 0;
      const bigBytes = enc.encode(big).length;
      const bodies = [
        ['json', { body: json, headers: { 'content-type': 'application/json' } }, json],
        ['text-100k', { body: big }, big],
        ['small', { body: small }, small],
        ['binary-64k', { binaryBody: bin, headers: { 'content-type': 'application/octet-stream' } }, bin],
      ];
      const xh = { 'x-colon': 'a:b', 'x-utf8': 'κόσμε', 'x-bs': 'c\\d' };
      let n = 0;
      const report = [];
      for (const pub of [pubZ, pubPlain]) {
        for (const [label, args, want] of bodies) {
          const rid = `r-${pub.st.name}-${label}`;
          const extra = { ...(args.headers ?? {}), ...xh, 'x-from': pub.st.name, 'x-kind': label };
          const read0 = subs.map((c) => sock(c).bytesRead);
          const written0 = sock(pub).bytesWritten;
          await withReceipt(pub, rid, () =>
            pub.client.publish({ destination: dest, ...args, headers: { ...extra, receipt: rid } }),
          );
          const written = sock(pub).bytesWritten - written0;
          n++;
          const read = [];
          for (const [i, c] of subs.entries()) {
            const m = (await inboxes[i].take(n, 10000))[n - 1];
            try {
              checkMessage(m, dest, want, `s${i}`, extra);
            } catch (e) {
              throw new Fail(`${c.st.name}, ${pub.st.name} ${label}: ${e.message}`);
            }
            read.push(sock(c).bytesRead - read0[i]);
          }
          if (label !== 'text-100k') continue;
          // The 100 KiB text: compressed on the wire to and from compressing peers only.
          report.push(`${pub.st.name} wrote ${written}, ${subs.map((c, i) => `${c.st.name} read ${read[i]}`).join(', ')}`);
          if (deflate(pub)) check(written < bigBytes / 10, `${pub.st.name} wrote ${written} bytes for the ${bigBytes}-byte text: not compressed`);
          else check(written >= bigBytes, `${pub.st.name} wrote only ${written} bytes for a ${bigBytes}-byte body uncompressed`);
          for (const [i, c] of subs.entries()) {
            if (deflate(c)) check(read[i] < bigBytes / 10, `${c.st.name} read ${read[i]} bytes for the ${bigBytes}-byte text from ${pub.st.name}: not compressed`);
            else check(read[i] >= bigBytes, `${c.st.name} read only ${read[i]} bytes for a ${bigBytes}-byte body uncompressed`);
          }
        }
      }
      console.log(`ok: the ${bigBytes}-byte text on the wire: ${report.join('; ')}`);
      await sleep(200);
      for (const [i, c] of subs.entries()) {
        check(inboxes[i].messages.length === n, `${c.st.name}: ${inboxes[i].messages.length} messages, want ${n}`);
      }
      for (const c of all) noErrors(c);
      console.log(`ok: ${n} messages byte-exact to ${subs.length} subscribers`);
      for (const c of all) await disconnect(c);
    } finally {
      for (const c of all) c.client.forceDisconnect();
    }
  },

  // Cross-client helpers (driven by stomp_py_test.py).
  async publish(dest) {
    const c = await connect('stompjs-pub');
    try {
      const bodies = [{ body: 'plain text' }, { body: UTF8_TEXT }, { binaryBody: BINARY_BODY }];
      for (const [i, b] of bodies.entries()) {
        const headers = { 'x-from': 'stompjs' };
        if (i === bodies.length - 1) {
          headers.receipt = 'r-pub';
          await withReceipt(c, 'r-pub', () => c.client.publish({ destination: dest, ...b, headers }));
        } else {
          c.client.publish({ destination: dest, ...b, headers });
        }
      }
      await disconnect(c);
    } finally {
      c.client.forceDisconnect();
    }
  },

  async receive(dest) {
    const c = await connect('stompjs-sub');
    try {
      const inbox = await subscribe(c, dest, 'y');
      console.log('READY');
      const want = ['plain text', UTF8_TEXT, BINARY_BODY];
      const got = await inbox.take(want.length, 15000);
      for (const [i, m] of got.entries()) {
        try {
          checkMessage(m, dest, want[i], 'y', { 'x-from': 'stomp.py' });
        } catch (e) {
          throw new Fail(`message ${i} from stomp.py: ${e.message}`);
        }
      }
      await sleep(200);
      check(inbox.messages.length === want.length, `got ${inbox.messages.length} messages, want ${want.length}`);
      await disconnect(c);
    } finally {
      c.client.forceDisconnect();
    }
  },
};

async function main() {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--ws');
  if (i >= 0) {
    PORT = Number(argv[i + 1]);
    argv.splice(i, 2);
  }
  const [name, ...rest] = argv;
  if (name === '--list') {
    console.log(Object.keys(SCENARIOS).filter((n) => n.startsWith('js-')).join('\n'));
    return 0;
  }
  const fn = SCENARIOS[name];
  if (!fn || !PORT) {
    console.error(`usage: stompjs_test.mjs SCENARIO --ws PORT [DEST]; scenarios: ${Object.keys(SCENARIOS).join(', ')}`);
    return 2;
  }
  try {
    await fn(...rest);
    return 0;
  } catch (e) {
    const msg = e instanceof Fail ? `assertion failed: ${e.message}` : `error: ${e?.stack ?? e}`;
    // Helpers report on stderr (their stdout is a protocol); scenarios on stdout.
    (SCENARIOS[name] && name.startsWith('js-') ? console.log : console.error)(msg);
    for (const st of ALL) console.error(`--- stompjs debug log of ${st.name} (last lines):\n${st.log.slice(-15).join('\n')}`);
    return 1;
  }
}

// Exit explicitly: a stuck socket or timer must not keep the process alive.
main().then((code) => process.exit(code));
