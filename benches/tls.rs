//! Fan-out throughput over TLS as a ratio to plain TCP: one STOMP publisher and 10 subscribers
//! on the TCP listener, the same server configuration with and without rustls, in one run.
//! Each iteration publishes 1,000 64-byte messages and waits until every subscriber has read
//! all of them (10,000 deliveries).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use stompbox::server::tls::TlsConfig;
use stompbox::Config;

const SUBSCRIBERS: usize = 10;
const BATCH: usize = 1000;

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

struct Setup {
    _server: stompbox::ServerHandle,
    publisher: Box<dyn Stream>,
    go: Vec<mpsc::Sender<usize>>,
    done: mpsc::Receiver<()>,
}

fn read_until(s: &mut dyn Stream, buf: &mut Vec<u8>, what: &[u8]) {
    let mut tmp = [0u8; 4096];
    while !buf.windows(what.len()).any(|w| w == what) {
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&tmp[..n]);
    }
    buf.clear();
}

fn setup(tls: bool) -> Setup {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let server_cfg = TlsConfig::from_der(vec![cert.clone()], key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let cfg = Config {
        listen: None,
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        reactors: 1,
        tls: tls.then(|| TlsConfig {
            server: server_cfg,
            ws: false,
            tcp: true,
        }),
        ..Config::default()
    };
    let server = stompbox::start(cfg).unwrap();
    let addr = server.tcp_addr().unwrap();
    let open = || -> Box<dyn Stream> {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut s: Box<dyn Stream> = if tls {
            let c = rustls::ClientConnection::new(
                Arc::clone(&client_cfg),
                ServerName::try_from("localhost").unwrap(),
            )
            .unwrap();
            Box::new(rustls::StreamOwned::new(c, s))
        } else {
            Box::new(s)
        };
        s.write_all(b"CONNECT\naccept-version:1.2\nhost:h\n\n\0")
            .unwrap();
        read_until(&mut *s, &mut Vec::new(), b"\0");
        s
    };
    let (done_tx, done) = mpsc::channel();
    let mut go = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut s = open();
        s.write_all(b"SUBSCRIBE\nid:0\ndestination:/topic/bench\nreceipt:r\n\n\0")
            .unwrap();
        read_until(&mut *s, &mut Vec::new(), b"\0");
        let (tx, rx) = mpsc::channel::<usize>();
        go.push(tx);
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            let mut tmp = vec![0u8; 64 * 1024];
            while let Ok(n) = rx.recv() {
                let mut seen = 0;
                while seen < n {
                    let k = s.read(&mut tmp).unwrap();
                    assert!(k > 0);
                    seen += tmp[..k].iter().filter(|b| **b == 0).count();
                }
                done_tx.send(()).unwrap();
            }
        });
    }
    Setup {
        _server: server,
        publisher: open(),
        go,
        done,
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_10_subscribers");
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);
    g.throughput(Throughput::Elements((BATCH * SUBSCRIBERS) as u64));
    let mut frame = b"SEND\ndestination:/topic/bench\ncontent-length:64\n\n".to_vec();
    frame.extend_from_slice(&[b'x'; 64]);
    frame.push(0);
    let batch: Vec<u8> = frame.repeat(BATCH);
    for (name, tls) in [("plain", false), ("tls", true)] {
        let mut s = setup(tls);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    for tx in &s.go {
                        tx.send(BATCH).unwrap();
                    }
                    s.publisher.write_all(&batch).unwrap();
                    for _ in 0..SUBSCRIBERS {
                        s.done.recv().unwrap();
                    }
                }
                t.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
