import { spawn } from 'node:child_process';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const [WS, TCP, M] = [45111, 45112, 45113];
const token = 'abcdefabcdefabcdefabcdef';
const b = spawn('/tmp/stompbox-admin', ['--admin','--listen',`127.0.0.1:${WS}`,'--tcp-listen',`127.0.0.1:${TCP}`,'--metrics-listen',`127.0.0.1:${M}`,'--reactors','2'], {env: {...process.env, STOMPBOX_ADMIN_TOKEN: token}, stdio: 'inherit'});
await sleep(1000);
const api = async (p, o={}) => (await fetch(`http://127.0.0.1:${M}${p}`, {...o, headers: {Authorization: `Bearer ${token}`}})).json();
const c = new Client({webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${WS}/ws`, ['v12.stomp']), reconnectDelay: 0, debug: (m) => console.log('dbg', m)});
await new Promise((r) => { c.onConnect = r; c.activate(); });
const rc = new Promise((r) => c.watchForReceipt('x', r));
for (let i = 1; i <= 5; i++) c.publish({destination: '/queue/q1', body: 'x', headers: i === 5 ? {receipt: 'x'} : {}});
await rc;
for (let i = 0; i < 3; i++) { const o = await api('/api/overview'); console.log('before', JSON.stringify(o.queues), o.destinations, JSON.stringify((await api('/api/destinations')).queues)); await sleep(700); }
console.log(JSON.stringify(await api('/api/queues/purge?name=%2Fqueue%2Fq1', {method: 'POST'})));
for (let i = 0; i < 8; i++) { const o = await api('/api/overview'); console.log('after', JSON.stringify(o.queues), o.destinations, JSON.stringify((await api('/api/destinations')).queues)); await sleep(1000); }
await c.deactivate();
b.kill('SIGTERM');
