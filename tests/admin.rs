//! The admin API (`/api/`) and console (`/console/`): every endpoint, the refusals (no or bad
//! credentials, Basic without TLS, a user without the admin role), HTTPS with HTTP Basic, and
//! paging over 10,000 connections of a broker in its own process. The HTTP client here is a
//! few lines over a socket (and rustls's client for HTTPS), not the server's code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/tls.rs"]
mod certs;
mod common;
#[path = "common/nats.rs"]
mod nats;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certs::{certs, Tls};
use common::stomp::{frame, Client};
use rustls::pki_types::ServerName;
use serde_json::Value;
use stompbox::auth::{hash_password, PasswordAuth};
use stompbox::config::AdminConfig;
use stompbox::{Config, ServerHandle};

const TOKEN: &str = "test-admin-token-0123456789";

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn request(method: &str, path: &str, auth: Option<&str>, body: &str) -> String {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>, body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request(method, path, auth, body).as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn get(addr: SocketAddr, path: &str) -> Value {
    let r = http(addr, "GET", path, Some(&bearer()), "");
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.json()
}

fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    http(addr, "POST", path, Some(&bearer()), body)
}

fn admin_server(f: impl FnOnce(&mut Config)) -> (ServerHandle, SocketAddr) {
    let mut cfg = common::test_config();
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.admin = Some(AdminConfig {
        token: Some(TOKEN.to_string()),
        ..AdminConfig::default()
    });
    f(&mut cfg);
    let h = stompbox::start(cfg).unwrap();
    let a = h.admin_addr().expect("the admin API is served");
    (h, a)
}

fn stomp(tcp: SocketAddr, login: &str) -> Client {
    let mut c = Client::connect_tcp(tcp);
    c.connected(&frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("host", "/"), ("login", login)],
        b"",
    ));
    c
}

/// Poll `f` until it holds (reactor state reaches the API between loop turns).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connections(addr: SocketAddr, query: &str) -> Vec<Value> {
    get(addr, &format!("/api/connections?{query}"))["connections"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn off_unless_configured() {
    let mut cfg = common::test_config();
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let h = stompbox::start(cfg).unwrap();
    assert!(h.admin_addr().is_none());
    let m = h.metrics_addr().unwrap();
    for path in ["/api/overview", "/console/", "/api/connections"] {
        let r = http(m, "GET", path, Some(&bearer()), "");
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    // The metrics listener is as it was.
    assert_eq!(http(m, "GET", "/metrics", None, "").status, 200);
    h.shutdown().unwrap();
}

#[test]
fn refusals_without_the_token() {
    let (h, a) = admin_server(|_| {});
    let endpoints = [
        ("GET", "/api/whoami"),
        ("GET", "/api/overview"),
        ("GET", "/api/connections"),
        ("GET", "/api/connections/0-1"),
        ("POST", "/api/connections/0-1/close"),
        ("GET", "/api/destinations"),
        ("POST", "/api/queues/purge?name=/queue/a"),
        ("GET", "/api/reactors"),
        ("GET", "/api/nodes"),
    ];
    let wrong = format!("Bearer {TOKEN}x");
    let basic = "Basic b3BzOnNlY3JldA=="; // ops:secret
    for (method, path) in endpoints {
        for auth in [None, Some(wrong.as_str()), Some("Digest x"), Some(basic)] {
            let r = http(a, method, path, auth, "");
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.body);
            assert!(r.json()["error"].as_str().is_some(), "{}", r.body);
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"stompbox admin\""),
                "{}",
                r.head
            );
        }
    }
    // Basic is refused over plain HTTP for what it is.
    let r = http(a, "GET", "/api/whoami", Some(basic), "");
    assert!(r.body.contains("TLS"), "{}", r.body);
    // With the token: in.
    let me = get(a, "/api/whoami");
    assert_eq!(me["method"], "bearer");
    assert_eq!(me["tls"], false);
    h.shutdown().unwrap();
}

#[test]
fn unknown_endpoints_and_wrong_methods() {
    let (h, a) = admin_server(|_| {});
    assert_eq!(
        http(a, "GET", "/api/nothing", Some(&bearer()), "").status,
        404
    );
    assert_eq!(
        http(a, "POST", "/api/overview", Some(&bearer()), "").status,
        405
    );
    assert_eq!(
        http(a, "GET", "/api/connections/0-1/close", Some(&bearer()), "").status,
        405
    );
    assert_eq!(
        http(
            a,
            "GET",
            "/api/queues/purge?name=/queue/a",
            Some(&bearer()),
            ""
        )
        .status,
        405
    );
    for bad in ["x", "0-", "99-1", "-1", "0-abc"] {
        let r = http(
            a,
            "GET",
            &format!("/api/connections/{bad}"),
            Some(&bearer()),
            "",
        );
        assert_eq!(r.status, 404, "{bad}: {}", r.body);
    }
    assert_eq!(
        http(a, "GET", "/api/connections?cursor=zz", Some(&bearer()), "").status,
        400
    );
    assert_eq!(
        http(a, "GET", "/api/connections?reactor=7", Some(&bearer()), "").status,
        400
    );
    h.shutdown().unwrap();
}

#[test]
fn the_console_is_served_offline_with_a_strict_policy() {
    let (h, a) = admin_server(|_| {});
    let r = http(a, "GET", "/console/", None, "");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    // Nothing from elsewhere: no absolute URL in the page at all.
    for needle in ["http://", "https://", "//cdn", "src=\"//"] {
        assert!(!r.body.contains(needle), "the console refers to {needle}");
    }
    assert!(r.body.contains("/api/overview"));
    let r = http(a, "GET", "/console", None, "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/console/"));
    h.shutdown().unwrap();
}

#[test]
fn overview_reactors_and_nodes() {
    let (h, a) = admin_server(|_| {});
    let tcp = h.tcp_addr().unwrap();
    let mut sub = stomp(tcp, "watcher");
    sub.send(&frame(
        "SUBSCRIBE",
        &[("id", "1"), ("destination", "/topic/ov"), ("receipt", "r1")],
        b"",
    ));
    sub.expect_receipt("r1");
    let mut p = stomp(tcp, "pub");
    for _ in 0..10 {
        p.send(&frame("SEND", &[("destination", "/topic/ov")], b"x"));
    }
    for _ in 0..10 {
        sub.msg();
    }
    eventually("the overview counts both sessions and the messages", || {
        let o = get(a, "/api/overview");
        o["connections"]["total"] == 2
            && o["connections"]["tcp"] == 2
            && o["messages_in"].as_u64() >= Some(10)
            && o["messages_out"].as_u64() >= Some(10)
            && o["subscriptions"] == 1
    });
    let o = get(a, "/api/overview");
    assert_eq!(o["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(o["reactors"], 2);
    assert!(o["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert!(o["rates"]["messages_in"].is_number());
    let r = get(a, "/api/reactors");
    let rows = r["reactors"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let conns: u64 = rows
        .iter()
        .map(|r| r["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(conns, 2);
    for row in rows {
        assert!(row["loop_turns"].as_u64().unwrap() > 0, "{row}");
        assert!(row["turn_avg_us"].as_f64().unwrap() > 0.0, "{row}");
        // The reactors have just turned: their recent longest turn is one of them.
        let recent = row["turn_max_us"].as_f64().unwrap();
        assert!(recent > 0.0, "{row}");
        assert!(
            recent <= row["turn_max_since_start_us"].as_f64().unwrap(),
            "{row}"
        );
        // The reactor's thread was found in /proc.
        assert!(row["cpu_seconds"].as_f64().is_some(), "{row}");
    }
    let n = get(a, "/api/nodes");
    assert_eq!(n["cluster"], false);
    assert_eq!(n["nodes"].as_array().unwrap().len(), 0);
    h.shutdown().unwrap();
}

#[test]
fn connections_are_listed_filtered_shown_and_closed() {
    let (h, a) = admin_server(|_| {});
    let tcp = h.tcp_addr().unwrap();
    let mut alice = stomp(tcp, "alice");
    alice.send(&frame(
        "SUBSCRIBE",
        &[
            ("id", "s-1"),
            ("destination", "/topic/a"),
            ("ack", "client"),
            ("receipt", "r"),
        ],
        b"",
    ));
    alice.expect_receipt("r");
    let _bob = stomp(tcp, "bob");
    let mut ws = Client::connect_ws(h.ws_addr().unwrap());
    ws.connected(&frame(
        "CONNECT",
        &[("accept-version", "1.2"), ("host", "/"), ("login", "carol")],
        b"",
    ));
    eventually("three connected sessions", || {
        connections(a, "")
            .iter()
            .filter(|c| c["state"] == "connected")
            .count()
            == 3
    });
    let all = get(a, "/api/connections");
    assert_eq!(all["total"], 3);
    assert!(all["next"].is_null());
    let by_user = connections(a, "user=alice");
    assert_eq!(by_user.len(), 1);
    let row = &by_user[0];
    assert_eq!(row["protocol"], "TCP");
    assert_eq!(row["stomp"], "1.2");
    assert_eq!(row["subscriptions"], 1);
    assert_eq!(row["tls"], false);
    assert!(row["bytes_in"].as_u64().unwrap() > 0);
    assert!(row["bytes_out"].as_u64().unwrap() > 0);
    assert!(row["age_seconds"].as_f64().unwrap() >= 0.0);
    let peer = alice.tcp().local_addr().unwrap().to_string();
    assert_eq!(row["peer"], peer.as_str());
    // Filters: protocol, substring, reactor.
    let ws_rows = connections(a, "protocol=websocket");
    assert_eq!(ws_rows.len(), 1);
    assert_eq!(ws_rows[0]["user"], "carol");
    assert_eq!(connections(a, "q=bo").len(), 1);
    assert_eq!(connections(a, &format!("q={}", peer)).len(), 1);
    let r0 = connections(a, "reactor=0").len();
    let r1 = connections(a, "reactor=1").len();
    assert_eq!(r0 + r1, 3);
    assert!(connections(a, "reactor=1")
        .iter()
        .all(|c| c["reactor"] == 1));
    // A cursor on another reactor than the one asked for: before it, from its start; after it,
    // nothing.
    assert_eq!(connections(a, "reactor=1&cursor=0:0").len(), r1);
    assert!(connections(a, "reactor=0&cursor=1:0").is_empty());
    // One connection, with its subscriptions.
    let id = row["id"].as_str().unwrap().to_string();
    let d = get(a, &format!("/api/connections/{id}"));
    assert_eq!(d["user"], "alice");
    assert_eq!(d["subscriptions_list"][0]["id"], "s-1");
    assert_eq!(d["subscriptions_list"][0]["destination"], "/topic/a");
    assert_eq!(d["subscriptions_list"][0]["ack"], "client");
    // Close: the client gets an ERROR with the reason, then the connection ends.
    let r = post(
        a,
        &format!("/api/connections/{id}/close"),
        r#"{"reason":"maintenance window"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["closed"], id.as_str());
    let e = alice.expect("ERROR");
    assert_eq!(
        e.h("message"),
        "closed by an administrator: maintenance window"
    );
    eventually("the closed connection is gone", || {
        http(
            a,
            "GET",
            &format!("/api/connections/{id}"),
            Some(&bearer()),
            "",
        )
        .status
            == 404
    });
    assert_eq!(
        post(a, &format!("/api/connections/{id}/close"), "").status,
        404
    );
    // Over WebSocket too; a reason with control characters is cleaned, none is said so.
    let wid = ws_rows[0]["id"].as_str().unwrap().to_string();
    let r = post(a, &format!("/api/connections/{wid}/close"), "");
    assert_eq!(r.status, 200, "{}", r.body);
    let e = ws.expect("ERROR");
    assert_eq!(
        e.h("message"),
        "closed by an administrator: no reason given"
    );
    h.shutdown().unwrap();
}

#[test]
fn destinations_and_purge() {
    let (h, a) = admin_server(|_| {});
    let tcp = h.tcp_addr().unwrap();
    let mut s = stomp(tcp, "s");
    s.send(&frame(
        "SUBSCRIBE",
        &[("id", "1"), ("destination", "/topic/hot"), ("receipt", "r")],
        b"",
    ));
    s.expect_receipt("r");
    s.send(&frame(
        "SUBSCRIBE",
        &[
            ("id", "2"),
            ("destination", "/topic/wild.#"),
            ("receipt", "r2"),
        ],
        b"",
    ));
    s.expect_receipt("r2");
    let mut p = stomp(tcp, "p");
    for i in 0..7 {
        p.send(&frame("SEND", &[("destination", "/topic/hot")], b"m"));
        let receipt = format!("q{i}");
        p.send(&frame(
            "SEND",
            &[("destination", "/queue/jobs"), ("receipt", &receipt)],
            b"job",
        ));
        p.expect_receipt(&receipt);
    }
    let d = get(a, "/api/destinations");
    let topics: HashMap<String, Value> = d["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t.clone()))
        .collect();
    assert_eq!(topics["/topic/hot"]["subscribers"], 1);
    assert_eq!(topics["/topic/hot"]["messages"], 7);
    assert_eq!(topics["/topic/wild.#"]["subscribers"], 1);
    let q = &d["queues"][0];
    assert_eq!(q["name"], "/queue/jobs");
    assert_eq!(q["ready"], 7);
    assert_eq!(q["consumers"], 0);
    assert_eq!(q["messages"], 7);
    assert_eq!(d["truncated"], false);
    // Purge: the waiting messages are gone, a consumer gets none of them.
    let r = post(a, "/api/queues/purge?name=%2Fqueue%2Fjobs", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["purged"], 7);
    assert!(r.json()["stream_purged"].is_null(), "{}", r.body);
    assert_eq!(r.json()["queue"], "/queue/jobs");
    let d = get(a, "/api/destinations");
    assert!(d["queues"]
        .as_array()
        .unwrap()
        .iter()
        .all(|q| q["name"] != "/queue/jobs" || q["ready"] == 0));
    let mut c = stomp(tcp, "c");
    c.send(&frame(
        "SUBSCRIBE",
        &[
            ("id", "1"),
            ("destination", "/queue/jobs"),
            ("receipt", "r"),
        ],
        b"",
    ));
    c.expect_receipt("r");
    p.send(&frame("SEND", &[("destination", "/queue/jobs")], b"after"));
    assert_eq!(c.msg().text(), "after");
    // What is not a queue, or no queue.
    assert_eq!(post(a, "/api/queues/purge?name=/topic/hot", "").status, 400);
    assert_eq!(post(a, "/api/queues/purge", "").status, 400);
    assert_eq!(
        post(a, "/api/queues/purge?name=/queue/none", "").status,
        404
    );
    h.shutdown().unwrap();
}

// ---- HTTPS and HTTP Basic -------------------------------------------------------------------

fn https(tls: &Tls, addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> Reply {
    https_from([127, 0, 0, 1], tls, addr, method, path, auth)
}

/// [`https`] from the loopback address `src`.
fn https_from(
    src: [u8; 4],
    tls: &Tls,
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> Reply {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    sock.connect(&addr.into()).unwrap();
    let sock: TcpStream = sock.into();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let conn = rustls::ClientConnection::new(
        Arc::clone(&tls.client),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    s.write_all(request(method, path, auth, "").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // Some servers close without close_notify; ours sends it, so this is not expected.
        Err(e) => panic!("reading the HTTPS answer: {e}"),
    }
    parse(&raw)
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[test]
fn https_with_basic_for_admin_users_only() {
    let t = certs();
    let hash = hash_password("secret").unwrap();
    let users = stompbox::auth::parse_users(&format!("ops:{hash}:admin\nalice:{hash}\n")).unwrap();
    let auth = Arc::new(PasswordAuth::new(users, false));
    let mut cfg = common::test_config();
    cfg.admin = Some(AdminConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(Arc::clone(&t.server)),
        token: Some(TOKEN.to_string()),
        users: Some(auth),
    });
    let h = stompbox::start(cfg).unwrap();
    let a = h.admin_addr().unwrap();
    // An admin: in, named.
    let r = https(&t, a, "GET", "/api/whoami", Some(&basic("ops", "secret")));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"], "ops");
    assert_eq!(r.json()["method"], "basic");
    assert_eq!(r.json()["tls"], true);
    let r = https(&t, a, "GET", "/api/overview", Some(&basic("ops", "secret")));
    assert_eq!(r.status, 200, "{}", r.body);
    // A user without the role: forbidden.
    let r = https(
        &t,
        a,
        "GET",
        "/api/overview",
        Some(&basic("alice", "secret")),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("admin role"), "{}", r.body);
    // A wrong passcode, an unknown user: unauthorized (then slowed down: 401 or 429).
    let r = https(&t, a, "GET", "/api/overview", Some(&basic("ops", "wrong")));
    assert_eq!(r.status, 401, "{}", r.body);
    let r = https(&t, a, "GET", "/api/overview", Some(&basic("mallory", "x")));
    assert!(
        r.status == 401 || r.status == 429,
        "{} {}",
        r.status,
        r.body
    );
    if r.status == 429 {
        assert_eq!(r.header("retry-after"), Some("5"), "{}", r.head);
    }
    // The token works over TLS too; nothing without credentials.
    let r = https(&t, a, "GET", "/api/whoami", Some(&bearer()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(https(&t, a, "GET", "/api/whoami", None).status, 401);
    // The console over HTTPS.
    assert_eq!(https(&t, a, "GET", "/console/", None).status, 200);
    // Plain HTTP on the TLS listener gets no answer (a TLS alert at most).
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request("GET", "/api/whoami", Some(&bearer()), "").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(!String::from_utf8_lossy(&raw).contains("HTTP/1.1 200"));
    h.shutdown().unwrap();
}

/// A users-file hash that costs argon2 `passes` passes over 19 MiB (the default is 2): a slow
/// check to keep the login worker busy.
fn costly_hash(pass: &str, passes: u32) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(19 * 1024, passes, 1, None).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"a fixed test salt").unwrap();
    a.hash_password(pass.as_bytes(), &salt).unwrap().to_string()
}

#[test]
fn basic_logins_are_checked_off_the_http_thread() {
    let t = certs();
    // About a quarter of a second per check of ops here, about one for slow.
    let (hash, slow) = (costly_hash("secret", 40), costly_hash("secret", 160));
    let users =
        stompbox::auth::parse_users(&format!("ops:{hash}:admin\nslow:{slow}:admin\n")).unwrap();
    let mut cfg = common::test_config();
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.admin = Some(AdminConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(Arc::clone(&t.server)),
        token: Some(TOKEN.to_string()),
        users: Some(Arc::new(PasswordAuth::new(users, false))),
    });
    let h = stompbox::start(cfg).unwrap();
    let (a, m) = (h.admin_addr().unwrap(), h.metrics_addr().unwrap());
    let t = Arc::new(t);

    // Two bad logins from 127.0.0.2 at once: one is checked, slowly; the other is refused at
    // once (not queued behind it).
    let login = |t: &Arc<Tls>| {
        let t = Arc::clone(t);
        std::thread::spawn(move || {
            let auth = basic("slow", "bad");
            let r = https_from([127, 0, 0, 2], &t, a, "GET", "/api/overview", Some(&auth));
            (r, Instant::now())
        })
    };
    let mut pair = vec![login(&t), login(&t)];
    let until = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        if let Some(i) = pair.iter().position(|p| p.is_finished()) {
            break pair.remove(i).join().unwrap().0;
        }
        assert!(Instant::now() < until, "neither login was answered");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body.contains("being checked"), "{}", refused.body);
    let checked = pair.remove(0);
    assert!(!checked.is_finished(), "the check is under way");
    // Meanwhile the HTTP thread answers scrapes and token calls.
    let r = http(m, "GET", "/metrics", None, "");
    assert!(
        r.status == 200 && r.body.contains("stompbox_connections"),
        "{}",
        r.body
    );
    let r = https(&t, a, "GET", "/api/whoami", Some(&bearer()));
    assert_eq!(r.status, 200, "{}", r.body);
    let answered = Instant::now();
    assert!(
        !checked.is_finished(),
        "the slow check ended before the other calls were answered: nothing shown"
    );
    let (r, at) = checked.join().unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(at > answered);

    // A burst from many addresses: one check runs, a few wait, the rest are refused at once.
    let burst: Vec<_> = (10..24u8)
        .map(|i| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                https_from(
                    [127, 0, 0, i],
                    &t,
                    a,
                    "GET",
                    "/api/overview",
                    Some(&basic("ops", "bad")),
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = burst.into_iter().map(|b| b.join().unwrap()).collect();
    println!("burst: {statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.contains(&401), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [401, 503, 504].contains(s)),
        "{statuses:?}"
    );
    // The good login goes through the worker once, then from the cache.
    let good = basic("ops", "secret");
    let as_ops = |path: &str| https_from([127, 0, 0, 30], &t, a, "GET", path, Some(&good));
    let r = as_ops("/api/whoami");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"], "ops");
    let r = as_ops("/api/reactors");
    assert_eq!(r.status, 200, "{}", r.body);
    h.shutdown().unwrap();
}

// ---- paging over 10,000 connections ----------------------------------------------------------

const MANY: usize = 10_000;

/// The broker binary in its own process (this one holds the 10,000 client sockets: both sides
/// in one process would pass the 20,000 open-file limit).
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[test]
fn paging_over_ten_thousand_connections() {
    raise_nofile();
    let tcp_port = nats::free_port();
    let admin_port = nats::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stompbox"))
        .args([
            "--no-ws",
            "--tcp-listen",
            &format!("127.0.0.1:{tcp_port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{admin_port}"),
            "--admin",
            "--reactors",
            "2",
            "--max-connections-per-ip",
            "0",
            "--log-level",
            "info",
        ])
        .env("STOMPBOX_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    let logged = |what: &str| log.lock().unwrap().iter().any(|l| l.contains(what));
    let _broker = Broker(child);
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    let a: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(tcp).is_err() || TcpStream::connect(a).is_err() {
        assert!(Instant::now() < until, "the broker did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // 10,000 sessions, each CONNECTed with its own login; CONNECTED read back in batches.
    let mut socks = Vec::with_capacity(MANY);
    for batch in (0..MANY).collect::<Vec<_>>().chunks(500) {
        for &i in batch {
            let mut s = TcpStream::connect(tcp).unwrap();
            s.write_all(&frame(
                "CONNECT",
                &[
                    ("accept-version", "1.2"),
                    ("host", "/"),
                    ("login", &format!("u{i}")),
                ],
                b"",
            ))
            .unwrap();
            socks.push(s);
        }
        for s in socks.iter_mut().rev().take(batch.len()) {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut b = [0u8; 9];
            s.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"CONNECTED");
        }
    }
    eventually("the overview counts 10,000 connections", || {
        get(a, "/api/overview")["connections"]["total"] == MANY as u64
    });
    // Every page at most its size, every connection exactly once.
    for limit in [1000, 333] {
        let mut seen = HashSet::new();
        let mut users = HashSet::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let q = match &cursor {
                None => format!("/api/connections?limit={limit}"),
                Some(c) => format!("/api/connections?limit={limit}&cursor={c}"),
            };
            let page = get(a, &q);
            assert_eq!(page["total"], MANY as u64);
            let rows = page["connections"].as_array().unwrap();
            assert!(rows.len() <= limit, "{} rows for limit {limit}", rows.len());
            for r in rows {
                assert!(seen.insert(r["id"].as_str().unwrap().to_string()), "{r}");
                users.insert(r["user"].as_str().unwrap().to_string());
            }
            pages += 1;
            assert!(pages <= MANY, "the cursor does not advance");
            match page["next"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), MANY, "limit {limit}");
        assert_eq!(users.len(), MANY, "limit {limit}");
        assert!(pages >= MANY / limit, "{pages} pages for limit {limit}");
    }
    // A filter that matches one connection finds it across the reactors' slabs.
    let one = connections(a, "user=u7777&limit=10");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["user"], "u7777");
    // A filtered listing pages through every slab: `q=u42` matches u42, u420..u429 and
    // u4200..u4299 (111 logins), found over pages of 50.
    let mut found = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            None => "/api/connections?limit=50&q=u42".to_string(),
            Some(c) => format!("/api/connections?limit=50&q=u42&cursor={c}"),
        };
        let page = get(a, &q);
        for r in page["connections"].as_array().unwrap() {
            let u = r["user"].as_str().unwrap().to_string();
            assert!(u.contains("u42"), "{u}");
            assert!(found.insert(u));
        }
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(found.len(), 111);
    // Mutating calls are logged with who made them, refusals (rate-limited) too.
    let id = one[0]["id"].as_str().unwrap().to_string();
    let r = post(
        a,
        &format!("/api/connections/{id}/close"),
        r#"{"reason":"audit"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        http(a, "GET", "/api/overview", Some("Bearer nope"), "").status,
        401
    );
    let mut q = stomp(tcp, "auditor");
    q.send(&frame(
        "SEND",
        &[("destination", "/queue/audit"), ("receipt", "q")],
        b"x",
    ));
    q.expect_receipt("q");
    let r = post(a, "/api/queues/purge?name=/queue/audit", "");
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("the close, the purge and the refusal are logged", || {
        logged(&format!(
            "admin: token from 127.0.0.1 closed connection {id} (audit)"
        )) && logged("admin: token from 127.0.0.1 purged queue /queue/audit (1 messages)")
            && logged("admin: refused GET /api/overview from 127.0.0.1 (401")
    });
    drop(socks);
}

// ---- cluster nodes --------------------------------------------------------------------------

#[test]
fn cluster_nodes_see_each_other_and_a_node_gone_down() {
    let n = nats::Nats::start();
    let servers = vec![n.url()];
    let node = |name: &str| {
        admin_server(|c| {
            c.cluster = Some(nats::joined(&servers, name));
        })
    };
    let (ha, a) = node("node-a");
    let (hb, b) = node("node-b");
    let _client = stomp(hb.tcp_addr().unwrap(), "on-b");
    let peer = |at: SocketAddr, name: &str| -> Option<Value> {
        let v = get(at, "/api/nodes");
        assert_eq!(v["cluster"], true);
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
    };
    eventually(
        "node-a lists itself and node-b (up, with its connection)",
        || {
            let me = peer(a, "node-a");
            let other = peer(a, "node-b");
            me.is_some_and(|m| m["self"] == true)
                && other
                    .is_some_and(|o| o["up"] == true && o["connections"] == 1 && o["self"] == false)
        },
    );
    eventually("node-b lists node-a", || {
        peer(b, "node-a").is_some_and(|o| o["up"] == true)
    });
    assert_eq!(get(a, "/api/overview")["node"], "node-a");
    hb.shutdown().unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let o = peer(a, "node-b").expect("a node gone down is still listed for a while");
        if o["up"] == false {
            assert!(o["last_seen_seconds"].as_f64().unwrap() >= 6.0, "{o}");
            break;
        }
        assert!(Instant::now() < until, "node-b never shown down: {o}");
        std::thread::sleep(Duration::from_millis(200));
    }
    ha.shutdown().unwrap();
}

// ---- hostile use -------------------------------------------------------------------------------

/// Admin calls with odd input (garbage reasons and bodies, bad ids and cursors, malformed and
/// unfinished HTTP, clients that never read) while sessions pipeline traffic and some never
/// read theirs. The broker keeps serving; every session an admin closed and that reads gets
/// the ERROR and its end; every other session still answers; the API still answers.
#[test]
fn admin_calls_amid_hostile_traffic() {
    let (h, a) = admin_server(|c| c.max_outbound = 256 * 1024);
    let tcp = h.tcp_addr().unwrap();
    let ws = h.ws_addr().unwrap();
    // Readers (half over WebSocket) subscribed to a topic and a queue; stalled sessions that
    // subscribe and never read; a publisher pipelining to both.
    let mut readers: Vec<Client> = (0..12)
        .map(|i| {
            let mut c = if i % 2 == 0 {
                Client::connect_tcp(tcp)
            } else {
                Client::connect_ws(ws)
            };
            c.connected(&frame(
                "CONNECT",
                &[
                    ("accept-version", "1.2"),
                    ("host", "/"),
                    ("login", &format!("r{i}")),
                ],
                b"",
            ));
            c.send(&frame(
                "SUBSCRIBE",
                &[
                    ("id", "t"),
                    ("destination", "/topic/storm"),
                    ("receipt", "rt"),
                ],
                b"",
            ));
            c.expect_receipt("rt");
            c.polling()
        })
        .collect();
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut s = TcpStream::connect(tcp).unwrap();
            s.write_all(&frame(
                "CONNECT",
                &[
                    ("accept-version", "1.2"),
                    ("host", "/"),
                    ("login", &format!("stall{i}")),
                ],
                b"",
            ))
            .unwrap();
            s.write_all(&frame(
                "SUBSCRIBE",
                &[("id", "t"), ("destination", "/topic/storm")],
                b"",
            ))
            .unwrap();
            s
        })
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut p = TcpStream::connect(tcp).unwrap();
            p.write_all(&frame(
                "CONNECT",
                &[("accept-version", "1.2"), ("host", "/"), ("login", "pub")],
                b"",
            ))
            .unwrap();
            let mut batch = Vec::new();
            for i in 0..6 {
                batch.extend(frame(
                    "SEND",
                    &[("destination", "/topic/storm")],
                    &[b'x'; 512],
                ));
                let q = format!("/queue/storm{}", i % 3);
                batch.extend(frame("SEND", &[("destination", &q)], b"q"));
            }
            let until = Instant::now() + Duration::from_secs(3);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                if p.write_all(&batch).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // Readers drain what they get meanwhile (on their own threads) until told to stop.
    let drains: Vec<_> = readers
        .drain(..)
        .map(|mut c| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut error = None;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match c.next_within(Duration::from_millis(50)) {
                        Ok(Some(f)) if f.command == "ERROR" => {
                            error = Some(f.h("message").to_string());
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                (c, error)
            })
        })
        .collect();

    // The admin side, hostile and busy.
    let odd_reasons = [
        "\u{0}\r\nmessage:forged\r\n".to_string(),
        "é".repeat(5000),
        "}{\"".to_string(),
        String::new(),
    ];
    let mut closed = HashSet::new();
    let until = Instant::now() + Duration::from_secs(3);
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        let rows = connections(a, &format!("limit={}", 1 + round % 7));
        // Close a reader now and then (never the publisher or the stalled ones: they are
        // checked below), with odd reasons and bodies.
        if let Some(r) = rows
            .iter()
            .find(|r| r["user"].as_str().is_some_and(|u| u.starts_with('r')) && round % 3 == 0)
        {
            let id = r["id"].as_str().unwrap().to_string();
            let reason = &odd_reasons[round % odd_reasons.len()];
            let body = if round % 2 == 0 {
                serde_json::json!({ "reason": reason }).to_string()
            } else {
                "{not json".to_string()
            };
            let resp = post(a, &format!("/api/connections/{id}/close"), &body);
            assert!(
                resp.status == 200 || resp.status == 404,
                "{} {}",
                resp.status,
                resp.body
            );
            if resp.status == 200 {
                closed.insert(r["user"].as_str().unwrap().to_string());
            }
        }
        for path in [
            "/api/connections?cursor=0:99999999999&limit=1000",
            "/api/connections?cursor=1:18446744073709551615",
            "/api/connections?q=%00%ff%&limit=-3",
            "/api/connections/1-18446744073709551615",
            "/api/destinations?limit=0",
        ] {
            let r = http(a, "GET", path, Some(&bearer()), "");
            assert!(r.status < 500, "{path}: {} {}", r.status, r.body);
        }
        for q in [
            "/queue/storm0",
            "/queue/storm1",
            "/queue/none",
            "/topic/x",
            "%zz",
        ] {
            let r = post(a, &format!("/api/queues/purge?name={q}"), "");
            assert!(
                [200, 400, 404].contains(&r.status),
                "{q}: {} {}",
                r.status,
                r.body
            );
        }
        // Malformed and unfinished requests: each gets 400 or is dropped, none holds the rest.
        for raw in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /api/overview HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n",
            b"POST /api/connections/0-1/close HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nx",
            b"GET /api/overview HTTP/1.1\r\n",
        ] {
            let mut s = TcpStream::connect(a).unwrap();
            let _ = s.write_all(raw);
            drop(s);
        }
        let mut big = TcpStream::connect(a).unwrap();
        let _ = big.write_all(
            format!(
                "GET /api/overview HTTP/1.1\r\nX: {}\r\n",
                "a".repeat(20_000)
            )
            .as_bytes(),
        );
        drop(big);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
    let mut survivors = Vec::new();
    for d in drains {
        let (c, error) = d.join().unwrap();
        match error {
            Some(m) => assert!(m.starts_with("closed by an administrator: "), "{m}"),
            None => survivors.push(c),
        }
    }
    assert!(!closed.is_empty(), "no reader was closed");
    assert_eq!(survivors.len() + closed.len(), 12, "closed {closed:?}");
    // Everyone not closed still answers; the API still answers.
    for c in &mut survivors {
        let id = c.next_receipt_id();
        c.send(&frame(
            "SEND",
            &[("destination", "/topic/after"), ("receipt", &id)],
            b"ok",
        ));
        loop {
            let f = c.recv();
            if f.command == "RECEIPT" {
                assert_eq!(f.h("receipt-id"), id);
                break;
            }
            assert_eq!(f.command, "MESSAGE", "{f:?}");
        }
    }
    let o = get(a, "/api/overview");
    assert!(o["messages_in"].as_u64().unwrap() > 0);
    eventually("closed sessions are gone from the listing", || {
        connections(a, "limit=1000")
            .iter()
            .all(|r| !closed.contains(r["user"].as_str().unwrap_or("")))
    });
    stalled.clear();
    h.shutdown().unwrap();
}

// ---- purge with the JetStream queue store ------------------------------------------------------

#[test]
fn purge_with_the_jetstream_store_empties_the_stream_too() {
    let dir = std::env::temp_dir().join(format!("stompbox-admin-js-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let n = nats::Nats::start_with(&["-js", "-sd", dir.to_str().unwrap()]);
    let (h, a) = admin_server(|c| {
        c.cluster = Some(nats::joined(&[n.url()], "js-node"));
        c.queues.store = stompbox::router::QueueStore::JetStream;
    });
    eventually("the node is connected to NATS", || {
        get(a, "/api/nodes")["nodes"][0]["up"] == true
    });
    // Five receipted SENDs with no consumer: stored in JetStream, not held by the node.
    let mut p = stomp(h.tcp_addr().unwrap(), "p");
    for i in 0..5 {
        let r = format!("r{i}");
        p.send(&frame(
            "SEND",
            &[("destination", "/queue/js-purge"), ("receipt", &r)],
            format!("old-{i}").as_bytes(),
        ));
        p.expect_receipt(&r);
    }
    eventually("the stream holds the five", || n.stored() == 5);
    let r = post(a, "/api/queues/purge?name=/queue/js-purge", "");
    assert_eq!(r.status, 200, "{}", r.body);
    // None held here, five dropped from the stream: the answer waits for JetStream's count.
    assert_eq!(r.json()["purged"], 0, "{}", r.body);
    assert_eq!(r.json()["stream_purged"], 5, "{}", r.body);
    eventually("the stream is purged", || n.stored() == 0);
    let r = post(a, "/api/queues/purge?name=/queue/js-purge", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["stream_purged"], 0, "{}", r.body);
    // A consumer now gets only what is sent after the purge.
    let mut c = stomp(h.tcp_addr().unwrap(), "c").polling();
    c.send(&frame(
        "SUBSCRIBE",
        &[
            ("id", "1"),
            ("destination", "/queue/js-purge"),
            ("receipt", "s"),
        ],
        b"",
    ));
    c.expect_receipt("s");
    p.send(&frame(
        "SEND",
        &[("destination", "/queue/js-purge"), ("receipt", "new")],
        b"new",
    ));
    p.expect_receipt("new");
    assert_eq!(c.msg().text(), "new");
    assert!(
        c.next_within(Duration::from_millis(500)).unwrap().is_none(),
        "a purged message came back"
    );
    h.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Idle connections filling the admin listener's slots keep neither scrapes off the metrics
/// listener nor, once they go, a request that waited in the backlog meanwhile.
#[test]
fn idle_clients_on_the_admin_listener_hold_nothing_else() {
    let (h, a) = admin_server(|c| {
        c.admin.as_mut().unwrap().listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let m = h.metrics_addr().unwrap();
    assert_ne!(a, m);
    // The admin listener's own: the API is not on the metrics listener then.
    assert_eq!(
        http(m, "GET", "/api/whoami", Some(&bearer()), "").status,
        404
    );
    let idle: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(http(m, "GET", "/metrics", None, "").status, 200);
    // A request now waits in the admin listener's backlog...
    let waiting = std::thread::spawn(move || http(a, "GET", "/api/whoami", Some(&bearer()), ""));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "answered past the limit of clients");
    // ...and is answered once the idle ones are gone, with no new connection to wake the
    // listener.
    drop(idle);
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    h.shutdown().unwrap();
}
