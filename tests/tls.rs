//! TLS: wss:// on the WebSocket listener and STOMP over TLS on the TCP listener, with a
//! self-signed certificate generated here (rcgen) and rustls's client as the independent peer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/tls.rs"]
mod certs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use certs::{certs, Tls};
use rustls::pki_types::ServerName;
use stompbox::server::tls::TlsConfig;
use stompbox::Config;

fn server(tls: &Tls) -> (stompbox::ServerHandle, SocketAddr, SocketAddr) {
    let cfg = Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        reactors: 2,
        tls: Some(TlsConfig {
            server: Arc::clone(&tls.server),
            ws: true,
            tcp: true,
        }),
        close_timeout: Duration::from_millis(250),
        shutdown_timeout: Duration::from_millis(500),
        ..Config::default()
    };
    let h = stompbox::start(cfg).unwrap();
    let (w, t) = (h.ws_addr().unwrap(), h.tcp_addr().unwrap());
    (h, w, t)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect_tls(tls: &Tls, addr: SocketAddr) -> TlsStream {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn = rustls::ClientConnection::new(
        Arc::clone(&tls.client),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Read STOMP frames until one with `command` arrives; returns it.
fn read_frame(s: &mut impl Read, buf: &mut Vec<u8>, command: &str) -> String {
    loop {
        while buf.first() == Some(&b'\n') {
            buf.remove(0);
        }
        if let Some(end) = buf.iter().position(|b| *b == 0) {
            let f = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..=end);
            if f.starts_with(command) {
                return f;
            }
            continue;
        }
        let mut tmp = [0u8; 4096];
        let n = s.read(&mut tmp).expect("read");
        assert!(n > 0, "connection ended waiting for {command}");
        buf.extend_from_slice(&tmp[..n]);
    }
}

#[test]
fn stomp_over_tls_and_wss_deliver_to_each_other() {
    let tls = certs();
    let (h, ws_addr, tcp_addr) = server(&tls);

    // STOMP over TLS (TCP listener): subscribe.
    let mut sub = connect_tls(&tls, tcp_addr);
    let mut sbuf = Vec::new();
    sub.write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
        .unwrap();
    let connected = read_frame(&mut sub, &mut sbuf, "CONNECTED");
    assert!(connected.contains("version:1.2"), "{connected}");
    sub.write_all(b"SUBSCRIBE\nid:0\ndestination:/topic/secure\nreceipt:r\n\n\0")
        .unwrap();
    read_frame(&mut sub, &mut sbuf, "RECEIPT");

    // wss:// (WebSocket listener): tungstenite over the rustls stream, then publish.
    let stream = connect_tls(&tls, ws_addr);
    let req = tungstenite::handshake::client::Request::builder()
        .uri(format!("wss://localhost:{}/ws", ws_addr.port()))
        .header("Host", "localhost")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .header("Sec-WebSocket-Protocol", "v12.stomp")
        .body(())
        .unwrap();
    let (mut ws, resp) = tungstenite::client(req, stream).expect("wss handshake");
    assert_eq!(resp.status(), 101);
    ws.send(tungstenite::Message::text(
        "CONNECT\naccept-version:1.2\nhost:localhost\n\n\0",
    ))
    .unwrap();
    let m = ws.read().unwrap();
    assert!(m.to_text().unwrap().starts_with("CONNECTED"), "{m:?}");
    let body = "x".repeat(100_000); // several TLS records
    ws.send(tungstenite::Message::text(format!(
        "SEND\ndestination:/topic/secure\ncontent-type:text/plain\n\n{body}\0"
    )))
    .unwrap();

    let msg = read_frame(&mut sub, &mut sbuf, "MESSAGE");
    assert!(msg.contains("destination:/topic/secure"), "{msg}");
    assert!(msg.ends_with(&body), "body arrived intact over TLS");
    drop(ws);
    drop(sub);
    h.shutdown().unwrap();
}

#[test]
fn a_plaintext_client_on_a_tls_listener_gets_no_stomp() {
    let tls = certs();
    let (h, _ws, tcp_addr) = server(&tls);
    let mut s = TcpStream::connect(tcp_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"CONNECT\naccept-version:1.2\n\n\0").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        !text.contains("CONNECTED"),
        "no plaintext fallback on a TLS listener: {text:?}"
    );
    // The broker is fine afterwards: a TLS client still connects.
    let mut c = connect_tls(&tls, tcp_addr);
    let mut buf = Vec::new();
    c.write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
        .unwrap();
    read_frame(&mut c, &mut buf, "CONNECTED");
    h.shutdown().unwrap();
}

#[test]
fn a_client_that_stalls_mid_handshake_does_not_block_others() {
    let tls = certs();
    let (h, _ws, tcp_addr) = server(&tls);
    // Half a ClientHello, then silence, on each reactor.
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(tcp_addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            s
        })
        .collect();
    let mut c = connect_tls(&tls, tcp_addr);
    let mut buf = Vec::new();
    c.write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
        .unwrap();
    read_frame(&mut c, &mut buf, "CONNECTED");
    drop(stalled);
    h.shutdown().unwrap();
}
