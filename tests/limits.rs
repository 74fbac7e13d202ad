//! Connection limits and running out of file descriptors (issue 6), and the descriptors kept
//! for `/metrics` (issue 13).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/ops.rs"]
mod ops;

use ops::*;

// ---------------------------------------------------------------------------------------------
// 3. Connection limits (in-process)

/// A TCP connection that sends CONNECT: CONNECTED (Ok), or refused (Err) with the ERROR frame
/// it got if any; a refused connection must then end.
fn try_stomp_tcp(s: TcpStream) -> Result<Client, Option<Frame>> {
    let mut c = Client::from_tcp(s);
    // A real client sends CONNECT at once; the refusal must still reach it.
    let _ = c.try_send(CONNECT12);
    let f = match c.next_frame() {
        Ok(f) => f,
        Err(End::Eof | End::Reset) => return Err(None),
        Err(e) => panic!("neither CONNECTED nor ERROR nor a close: {e:?}"),
    };
    match f.command.as_str() {
        "CONNECTED" => Ok(c),
        "ERROR" => {
            let end = c.next_frame();
            assert!(
                matches!(end, Err(End::Eof | End::Reset)),
                "a refused connection must end after its ERROR, got {end:?}"
            );
            Err(Some(f))
        }
        _ => panic!("expected CONNECTED or ERROR, got {f:?}"),
    }
}

/// A WebSocket upgrade on `s`: the HTTP status line's code, and the head.
fn ws_status(s: TcpStream) -> (u16, String) {
    let mut s = tcp_stream(s);
    s.write_all(common::upgrade_request("/ws", "Sec-WebSocket-Protocol: v12.stomp\r\n").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => panic!("reading the upgrade response: {e}; got {buf:?}"),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {head:?}"));
    (code, head)
}

fn assert_refused_tcp(s: TcpStream) {
    match try_stomp_tcp(s) {
        Ok(_) => panic!("a connection over the limit got CONNECTED"),
        Err(None) => panic!("a connection over the limit was closed without an ERROR frame"),
        Err(Some(f)) => {
            let msg = f.h("message");
            assert!(!msg.is_empty(), "{f:?}");
        }
    }
}

fn assert_refused_ws(s: TcpStream) {
    let (code, head) = ws_status(s);
    assert_eq!(code, 503, "{head}");
}

/// Publish on `p`, every subscriber gets it: the sessions are untouched.
fn still_working(p: &mut Client, subs: &mut [&mut Client], dest: &str, tag: &str) {
    p.publish(dest, tag.as_bytes(), Some(tag));
    p.expect_receipt(tag);
    for s in subs.iter_mut() {
        let f = s.expect("MESSAGE");
        assert_eq!(f.body, tag.as_bytes(), "{f:?}");
    }
}

/// Retry a new TCP session until admitted (the broker releases a slot when it has seen the
/// old connection close); returns it and how many tries were refused.
fn admitted_after_close(connect: impl Fn() -> TcpStream) -> (Client, u64) {
    let mut refused = 0;
    let c = wait_for(TIMEOUT, || match try_stomp_tcp(connect()) {
        Ok(c) => Some(c),
        Err(_) => {
            refused += 1;
            None
        }
    })
    .expect("a new connection is admitted once one has closed");
    (c, refused)
}

#[test]
fn total_connection_limit_refuses_with_503_and_error_and_spares_existing_sessions() {
    let _g = shared();
    let (h, ws) = common::server_with(|c| {
        c.reactors = 2;
        c.max_connections = 5;
    });
    let tcp = h.tcp_addr().unwrap();
    let dest = "/topic/limit";
    let mut w1 = Client::stomp_ws(ws);
    let mut w2 = Client::stomp_ws(ws);
    let mut t1 = Client::stomp_tcp(tcp);
    let mut t2 = Client::stomp_tcp(tcp);
    let mut t3 = Client::stomp_tcp(tcp);
    w1.subscribe(dest, "w1");
    t1.subscribe(dest, "t1");

    assert_refused_ws(connect_to(ws));
    assert_refused_tcp(connect_to(tcp));
    let m = settle(&h, |m| {
        m.u("stompbox_connections_refused_total{reason=\"limit\"}") == 2
    });
    assert_eq!(
        m.u("stompbox_connections_refused_total{reason=\"limit\"}"),
        2,
        "{}",
        m.text
    );
    assert_eq!(
        m.u("stompbox_connections_refused_total{reason=\"per_ip\"}"),
        0
    );
    // A refused connection while it is being answered (it lingers up to the close timeout)
    // is not an open connection: the gauges still say five.
    let held = connect_to(ws);
    let m = settle(&h, |m| {
        m.u("stompbox_connections_refused_total{reason=\"limit\"}") == 3
    });
    assert_eq!(m.sum("stompbox_connections"), 5.0, "{}", m.text);
    drop(held);

    still_working(&mut t2, &mut [&mut w1, &mut t1], dest, "after-refusals");

    // One leaves; a new one gets in.
    t3.send(&frame("DISCONNECT", &[("receipt", "bye")], b""));
    t3.expect_receipt("bye");
    drop(t3);
    let (mut t4, retries) = admitted_after_close(|| connect_to(tcp));
    t4.subscribe(dest, "t4");
    still_working(
        &mut w2,
        &mut [&mut w1, &mut t1, &mut t4],
        dest,
        "after-readmit",
    );
    // And the limit still holds with five again.
    assert_refused_ws(connect_to(ws));
    let m = settle(&h, |m| {
        m.u("stompbox_connections_refused_total{reason=\"limit\"}") == 4 + retries
    });
    assert_eq!(
        m.u("stompbox_connections_refused_total{reason=\"limit\"}"),
        4 + retries,
        "{}",
        m.text
    );
    h.shutdown().unwrap();
}

#[test]
fn per_ip_connection_limit_refuses_that_ip_only() {
    let _g = shared();
    let (h, ws) = common::server_with(|c| {
        c.reactors = 2;
        c.max_connections_per_ip = 2;
    });
    let tcp = h.tcp_addr().unwrap();
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let from_other = |a: SocketAddr| sys::connect_tcp(v4(a), Some(other), None);
    let dest = "/topic/per-ip";

    let mut a1 = Client::stomp_tcp(tcp);
    let mut a2 = Client::stomp_ws(ws);
    a1.subscribe(dest, "a1");
    assert_refused_ws(connect_to(ws));
    assert_refused_tcp(connect_to(tcp));

    // Another source address is still admitted, up to its own two.
    let Ok(s) = from_other(tcp) else {
        panic!("cannot connect from 127.0.0.2: {:?}", from_other(tcp).err());
    };
    let mut b1 = Client::from_tcp(s).stomp();
    let mut b2 = Client::from_ws(from_other(ws).unwrap(), ws).stomp();
    b2.subscribe(dest, "b2");
    assert_refused_tcp(from_other(tcp).unwrap());

    let m = settle(&h, |m| {
        m.u("stompbox_connections_refused_total{reason=\"per_ip\"}") == 3
    });
    assert_eq!(
        m.u("stompbox_connections_refused_total{reason=\"per_ip\"}"),
        3,
        "{}",
        m.text
    );
    assert_eq!(
        m.u("stompbox_connections_refused_total{reason=\"limit\"}"),
        0
    );

    still_working(&mut b1, &mut [&mut a1, &mut b2], dest, "cross-ip");
    still_working(&mut a2, &mut [&mut a1, &mut b2], dest, "from-first-ip");

    // One of 127.0.0.1's leaves: 127.0.0.1 gets a new one.
    drop(a2);
    let (mut a3, retries) = admitted_after_close(|| connect_to(tcp));
    a3.subscribe(dest, "a3");
    still_working(
        &mut b1,
        &mut [&mut a1, &mut b2, &mut a3],
        dest,
        "readmitted",
    );
    let m = settle(&h, |m| {
        m.u("stompbox_connections_refused_total{reason=\"per_ip\"}") == 3 + retries
    });
    assert_eq!(
        m.u("stompbox_connections_refused_total{reason=\"per_ip\"}"),
        3 + retries,
        "{}",
        m.text
    );
    h.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 4. Out of file descriptors (the binary under `ulimit -n 64`)

/// Connections waiting in the accept queue of the listener on `addr` (/proc/net/tcp rx_queue
/// of the LISTEN socket).
fn listen_backlog(addr: SocketAddr) -> u64 {
    let local = format!("0100007F:{:04X}", addr.port());
    let t = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    t.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
        .and_then(|f| u64::from_str_radix(f[4].split(':').nth(1)?, 16).ok())
        .unwrap_or_else(|| panic!("no LISTEN socket {local} in /proc/net/tcp"))
}

/// Whether the broker has closed `s`: EOF or reset, as opposed to still open (would block).
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let closed = match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

const NOFILE: usize = 64;

/// The binary under `ulimit -n 64` with 10 subscribers to `dest` and a publisher (TCP).
fn fd_limited_broker(dest: &str) -> (Broker, Vec<Client>, Client) {
    let b = Broker::spawn(Some(NOFILE as u32), &[]);
    let subs: Vec<Client> = (0..10)
        .map(|i| {
            let mut c = Client::stomp_tcp(b.tcp);
            c.subscribe(dest, &format!("s{i}"));
            c
        })
        .collect();
    let publisher = Client::stomp_tcp(b.tcp);
    (b, subs, publisher)
}

/// Far more connections than descriptors left. The kernel completes each handshake from the
/// listen backlog, so every connect succeeds whatever the broker does.
fn flood(b: &Broker, n: usize) -> Vec<TcpStream> {
    let v = (0..n).map(|_| connect_to(b.tcp)).collect();
    std::thread::sleep(Duration::from_millis(300));
    v
}

#[test]
fn out_of_descriptors_new_connections_are_refused_and_sessions_live_on() {
    let _g = shared();
    let dest = "/topic/fd";
    let (mut b, mut subs, mut publisher) = fd_limited_broker(dest);
    let fds_in_use = b.fds_below(NOFILE);
    let mut extra = flood(&b, 100);
    // More keep arriving while the broker is out of descriptors.
    for _ in 0..10 {
        extra.push(connect_to(b.tcp));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(b.exited().is_none(), "stompbox died:\n{}", b.log_text());

    let refused = extra.iter_mut().map(closed_by_peer).filter(|&c| c).count();
    let open = extra.len() - refused;
    eprintln!(
        "out of descriptors: {fds_in_use} fds in use with 11 sessions; {} more connections: \
         {open} still open, {refused} closed by the broker",
        extra.len()
    );
    // Every connection past the descriptors was answered (closed), none left hanging in the
    // backlog: those still open fit in what was left.
    assert_eq!(
        listen_backlog(b.tcp),
        0,
        "connections left waiting in the listen backlog"
    );
    assert!(
        fds_in_use + open <= NOFILE,
        "{open} extra connections still open but only {} descriptors were free",
        NOFILE - fds_in_use
    );
    assert!(refused > 0, "nothing was refused under ulimit -n {NOFILE}");

    // Existing sessions still work while the broker is out of descriptors.
    for i in 0..3u64 {
        let r = (i == 2).then_some("fd-receipt");
        publisher.publish(dest, &numbered(i, 8), r);
    }
    publisher.expect_receipt("fd-receipt");
    for s in &mut subs {
        expect_numbered(s, dest, 3);
    }

    // Give the descriptors back; new sessions are admitted again.
    drop(extra);
    let mut again = wait_for(TIMEOUT, || {
        let s = TcpStream::connect_timeout(&b.tcp, TIMEOUT).ok()?;
        try_stomp_tcp(tcp_stream(s)).ok()
    })
    .expect("a new session once descriptors are free again");
    again.subscribe(dest, "again");
    publisher.publish(dest, &numbered(0, 8), Some("fd-again"));
    publisher.expect_receipt("fd-again");
    expect_numbered(&mut again, dest, 1);
    for s in &mut subs {
        expect_numbered(s, dest, 1);
    }

    match b.metrics {
        Some(m) => {
            let m = scrape(m);
            let fd = m.u("stompbox_connections_refused_total{reason=\"fd_limit\"}");
            assert!(
                fd >= refused as u64,
                "fd_limit {fd}, refused seen {refused}\n{}",
                m.text
            );
        }
        // A binary without --metrics-listen: the fd_limit counter cannot be read from outside
        // the process. (The in-process metrics test covers the other counters.)
        None => eprintln!("out of descriptors: no --metrics-listen flag, fd_limit not checked"),
    }
    assert!(b.exited().is_none(), "stompbox died:\n{}", b.log_text());
}

/// Descriptors in reserve for `/metrics` (issue 13): with clients holding every descriptor the
/// connections may have, scrapes are still answered, and they show the refusals. Before, the
/// clients took every descriptor and the metrics listener could not accept its scrapes.
#[test]
fn metrics_answer_while_clients_hold_every_descriptor() {
    let _g = shared();
    let (b, _subs, _publisher) = fd_limited_broker("/topic/fd-metrics");
    let Some(addr) = b.metrics else {
        eprintln!("no --metrics-listen flag: nothing to check");
        return;
    };
    let _extra = flood(&b, 100);
    for _ in 0..5 {
        let m = scrape(addr);
        assert!(
            m.u("stompbox_connections_refused_total{reason=\"fd_limit\"}") > 0,
            "{}",
            m.text
        );
    }
}

#[test]
fn out_of_descriptors_the_broker_does_not_busy_loop() {
    let _g = shared();
    let (mut b, _subs, _publisher) = fd_limited_broker("/topic/fd-cpu");
    let _extra = flood(&b, 100);
    // A second's CPU time, connections still arriving now and then: a broker spinning on
    // EMFILE burns most of a core (~100 ticks); an idle one a tick or two.
    let t0 = b.cpu_ticks();
    let w0 = Instant::now();
    let mut more = Vec::new();
    for _ in 0..20 {
        more.push(connect_to(b.tcp));
        std::thread::sleep(Duration::from_millis(50));
    }
    let ticks = b.cpu_ticks() - t0;
    let wall = w0.elapsed();
    eprintln!("out of descriptors: {ticks} CPU ticks in {wall:?}");
    assert!(b.exited().is_none(), "stompbox died:\n{}", b.log_text());
    assert!(
        ticks < 30,
        "stompbox used {ticks} ticks (1/100 s) of CPU in {wall:?} while out of descriptors"
    );
}
