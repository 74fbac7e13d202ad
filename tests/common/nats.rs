//! Real NATS servers for the cluster tests: Debian's `nats-server` (2.9.x), started by the test
//! itself on free loopback ports (`.ci/run` installs the package); nothing assumes a NATS
//! already running. Each server is killed when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `nats-server` binary (`NATS_SERVER` overrides); a clear failure when it is missing.
fn binary() -> String {
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let ok = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{bin}` not found: the cluster tests need Debian's nats-server \
         (`apt-get install nats-server`; .ci/run installs it)"
    );
    bin
}

/// One `nats-server` process.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub monitor: u16,
    /// This server's cluster (route) port and its peers', when it is part of a NATS cluster.
    route: Option<(u16, Vec<u16>)>,
    /// More command-line options (authorization, TLS).
    extra: Vec<String>,
    conf: PathBuf,
    log: PathBuf,
}

impl Nats {
    /// A standalone server on free loopback ports.
    pub fn start() -> Nats {
        Nats::with_route(None)
    }

    /// A standalone server with more options (`--user u --pass p`, `--tls ...`).
    pub fn start_with(extra: &[&str]) -> Nats {
        Nats::build(None, extra.iter().map(|s| s.to_string()).collect())
    }

    /// `n` servers routed to each other as one NATS cluster.
    pub fn cluster(n: usize) -> Vec<Nats> {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let servers: Vec<Nats> = routes
            .iter()
            .map(|&r| {
                let peers = routes.iter().copied().filter(|&p| p != r).collect();
                Nats::with_route(Some((r, peers)))
            })
            .collect();
        servers
    }

    fn with_route(route: Option<(u16, Vec<u16>)>) -> Nats {
        Nats::build(route, Vec::new())
    }

    fn build(route: Option<(u16, Vec<u16>)>, extra: Vec<String>) -> Nats {
        let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = std::env::temp_dir();
        let id = format!("stompbox-nats-{}-{k}", std::process::id());
        let mut n = Nats {
            child: None,
            port: free_port(),
            monitor: free_port(),
            route,
            extra,
            conf: tmp.join(format!("{id}.conf")),
            log: tmp.join(format!("{id}.log")),
        };
        // Messages up to stompbox's largest frame (NATS's default is 1 MB).
        std::fs::write(&n.conf, "max_payload: 8MB\n").expect("write nats conf");
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.arg("-c")
            .arg(&self.conf)
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-m"])
            .arg(self.monitor.to_string());
        if let Some((r, peers)) = &self.route {
            let routes: Vec<String> = peers
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            cmd.arg("--cluster")
                .arg(format!("nats://127.0.0.1:{r}"))
                .arg("--cluster_name")
                .arg("stompbox-test")
                .arg("--routes")
                .arg(routes.join(","));
        }
        cmd.args(&self.extra);
        let log = std::fs::File::create(&self.log).expect("nats log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < end,
                "nats-server did not start on {addr}: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop the server as an operator would (SIGTERM: it finishes writing its state).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let end = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop it (SIGTERM) and start it again on the same ports and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A monitoring endpoint's JSON, whitespace removed (`"subject":"x"`).
    pub fn monitor(&self, path: &str) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.monitor));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("monitor");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        body.chars().filter(|c| !c.is_whitespace()).collect()
    }

    /// Whether some client holds a subscription to `subject` on this server.
    /// Messages JetStream holds (`/jsz`'s total over the streams).
    pub fn stored(&self) -> u64 {
        let j = self.monitor("/jsz?streams=true");
        let i = j.find("\"messages\":").expect("jsz shows messages");
        j[i + 11..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap()
    }

    pub fn has_subscription(&self, subject: &str) -> bool {
        self.monitor("/connz?subs=1")
            .contains(&json_string(subject))
    }

    /// The names of the clients connected to this server.
    pub fn client_names(&self) -> String {
        self.monitor("/connz")
    }
}

/// A subject as NATS's JSON writes it (Go escapes `<`, `>` and `&`), quotes included.
pub fn json_string(subject: &str) -> String {
    let escaped = subject
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!("\"{escaped}\"")
}

/// A node's cluster settings: these NATS servers, this name, defaults otherwise.
pub fn joined(servers: &[String], name: &str) -> stompbox::cluster::ClusterConfig {
    stompbox::cluster::ClusterConfig {
        servers: servers.to_vec(),
        node_name: name.into(),
        ..Default::default()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.conf);
        let _ = std::fs::remove_file(&self.log);
    }
}
