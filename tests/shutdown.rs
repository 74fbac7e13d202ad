//! Graceful shutdown with live sessions: in-process and the binary on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/ops.rs"]
mod ops;

use ops::*;

// ---------------------------------------------------------------------------------------------
// 6. Graceful shutdown with live sessions

/// Subscribers that have not read yet, a publisher whose SEND got its RECEIPT: then shutdown.
/// Every message acknowledged before reaches every subscriber, then ERROR "server shutting
/// down", then Close 1001 (WebSocket) or EOF (TCP).
fn shutdown_scenario(ws: SocketAddr, tcp: SocketAddr, n: u64, shutdown: impl FnOnce()) {
    let dest = "/topic/shutdown";
    let mut subs = vec![
        Client::stomp_ws(ws),
        Client::stomp_tcp(tcp),
        Client::stomp_ws(ws),
        Client::stomp_tcp(tcp),
    ];
    for (i, s) in subs.iter_mut().enumerate() {
        s.subscribe(dest, &format!("s{i}"));
    }
    let mut idle_ws = Client::stomp_ws(ws);
    let mut publisher = Client::stomp_tcp(tcp);
    for i in 0..n {
        let r = (i == n - 1).then_some("acked");
        publisher.publish(dest, &numbered(i, 64), r);
    }
    publisher.expect_receipt("acked");
    shutdown();
    for s in &mut subs {
        expect_numbered(s, dest, n);
    }
    for s in subs.iter_mut().chain([&mut idle_ws, &mut publisher]) {
        let f = s.expect("ERROR");
        assert!(f.h("message").contains("server shutting down"), "{f:?}");
        s.expect_closed(1001);
    }
}

#[test]
fn shutdown_in_process_flushes_acknowledged_messages_then_error_and_close_1001() {
    let _g = shared();
    let (h, ws) = common::server_with(|c| {
        c.reactors = 2;
        c.shutdown_timeout = Duration::from_secs(5);
    });
    let tcp = h.tcp_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    shutdown_scenario(ws, tcp, 500, move || {
        std::thread::spawn(move || tx.send(h.shutdown().map_err(|e| e.to_string())));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown ends once the sessions are closed");
    assert_eq!(r, Ok(()));
}

#[test]
fn sigterm_stops_the_binary_gracefully_with_exit_code_0() {
    let _g = shared();
    let mut b = Broker::spawn(None, &[]);
    let pid = b.pid();
    shutdown_scenario(b.ws, b.tcp, 500, || sys::sigterm(pid).expect("SIGTERM"));
    let status = b
        .wait_exit(Duration::from_secs(10))
        .expect("stompbox exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", b.log_text());
}
