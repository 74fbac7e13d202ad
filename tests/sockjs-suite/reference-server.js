// The reference SockJS server (sockjs-node) with the four services that sockjs-protocol
// 0.3.3 expects under one base URL, for comparing stompbox's results with.
//
//   Pins (run.sh --reference installs exactly these into /tmp/sockjs-ref/VERSION):
//   sockjs@0.3.24 (default), faye-websocket@0.11.4, websocket-driver@0.7.5,
//   websocket-extensions@0.3.0, http-parser-js@0.5.10, safe-buffer@5.2.1, uuid@8.3.2;
//   or (SOCKJS_REF_VERSION=0.3.5, the suite's time) sockjs@0.3.5, faye-websocket@0.4.0,
//   node-uuid@1.3.3.
//
//   NODE_PATH=/tmp/sockjs-ref/0.3.24/node_modules node reference-server.js [PORT] [MAX_SECONDS]
//
// Listens on 127.0.0.1:PORT (0, the default, picks a free port) and prints one line,
// "reference-server: sockjs VERSION at http://127.0.0.1:PORT/sockjs-test", once it listens.
// Stops by itself after MAX_SECONDS (default 900), or on SIGTERM/SIGINT. Services, as in sockjs-node's tests/test_server, all with response_limit
// 4096:
//   /sockjs-test/echo                     echoes every message
//   /sockjs-test/close                    closes each session at once: c[3000,"Go away!"]
//   /sockjs-test/disabled_websocket_echo  echo with websocket: false
//   /sockjs-test/cookie_needed_echo       echo with jsessionid: true
'use strict';
const http = require('http');
const sockjs = require('sockjs');
const version = require('sockjs/package.json').version;

const port = Number(process.argv[2] || 0);
const maxSeconds = Number(process.argv[3] || 900);
const base = '/sockjs-test';

const quiet = function(severity, line) {
  if (severity === 'error') console.error(`reference-server: ${line}`);
};
const service = function(name, opts, onConnection) {
  const s = sockjs.createServer(Object.assign({ response_limit: 4096, log: quiet }, opts));
  s.on('connection', onConnection);
  s.installHandlers(server, { prefix: `${base}/${name}` });
};
const echo = function(conn) {
  conn.on('data', function(d) { conn.write(d); });
};

const server = http.createServer();
service('echo', {}, echo);
service('close', {}, function(conn) { conn.close(3000, 'Go away!'); });
service('disabled_websocket_echo', { websocket: false }, echo);
service('cookie_needed_echo', { jsessionid: true }, echo);

const stop = function() { server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, maxSeconds * 1000).unref();

server.listen(port, '127.0.0.1', function() {
  const p = server.address().port;
  console.log(`reference-server: sockjs ${version} at http://127.0.0.1:${p}${base}`);
});
