//! The `stompbox` binary as an operator runs it: `--print-config`, `--config` files, flags over
//! the file, `RUST_LOG` and `--log-level`, invalid configuration (exit 2, nothing bound), and a
//! clean SIGTERM shutdown. Every wait is bounded; a child left running is killed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use stompbox::settings::Settings;

const TIMEOUT: Duration = Duration::from_secs(10);

fn stompbox() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stompbox"));
    c.env_remove("RUST_LOG").stdin(Stdio::null());
    c
}

/// Run to completion (bounded): a server that starts when it should not fails here, not hangs.
fn run(cmd: &mut Command) -> Output {
    let mut child = Running(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = Output {
        status: wait_bounded(&mut child.0),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let c = &mut child.0;
    c.stdout
        .take()
        .unwrap()
        .read_to_end(&mut out.stdout)
        .unwrap();
    c.stderr
        .take()
        .unwrap()
        .read_to_end(&mut out.stderr)
        .unwrap();
    out
}

/// A child process killed if the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn temp_file(text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "stompbox-cli-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn print_config_parses_back_and_round_trips() {
    let out = run(stompbox().arg("--print-config"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    // Plain TOML, and exactly the defaults.
    let table: toml::Table = toml::from_str(&printed).unwrap();
    assert_eq!(table["listen"]["metrics"].as_str(), Some("127.0.0.1:9100"));
    assert_eq!(
        table["listen"]["websocket"].as_str(),
        Some("127.0.0.1:61614")
    );
    assert_eq!(table["listen"]["tcp"].as_str(), Some("127.0.0.1:61613"));
    assert_eq!(
        Settings::from_toml(&printed, "stdout").unwrap(),
        Settings::default()
    );

    // Fed back with --config, it prints itself.
    let path = temp_file(&printed);
    let again = run(stompbox().arg("--config").arg(&path).arg("--print-config"));
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), printed);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn invalid_config_exits_2_names_the_option_and_binds_nothing() {
    let port = free_port();
    // The server itself would start with grace 0; only the configuration check stops it.
    let path = temp_file(&format!(
        "[listen]\nwebsocket = \"127.0.0.1:{port}\"\ntcp = \"off\"\nmetrics = \"off\"\n\
         [heartbeat]\ngrace = 0\n"
    ));
    let out = run(stompbox().arg("--config").arg(&path));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        "stompbox: invalid configuration: heartbeat.grace: must be between 1 and 100"
    );
    assert!(out.stdout.is_empty());
    TcpListener::bind(("127.0.0.1", port)).expect("the port was left free");

    // A type error in the file, and an invalid flag value, are refused the same way.
    std::fs::write(
        &path,
        format!("[listen]\nwebsocket = \"127.0.0.1:{port}\"\n[timeouts]\nclose = 5\n"),
    )
    .unwrap();
    let out = run(stompbox().arg("--config").arg(&path));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("timeouts.close: invalid type: integer `5`"));
    let out = run(stompbox().args(["--listen", &format!("127.0.0.1:{port}"), "--reactors", "0"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("reactors: must be between 1 and 64"));
    TcpListener::bind(("127.0.0.1", port)).expect("the port was left free");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn flags_override_the_config_file() {
    let path = temp_file(
        "reactors = 1\n\
         [listen]\nwebsocket = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\nmetrics = \"off\"\n\
         [stomp]\nmax_body = 1000\n\
         [session]\nserver_name = \"from-file\"\n",
    );
    let out = run(stompbox().arg("--config").arg(&path).args([
        "--server-name",
        "from-flag",
        "--reactors",
        "2",
        "--print-config",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = Settings::from_toml(&text(&out.stdout), "stdout").unwrap();
    assert_eq!(s.session.server_name, "from-flag");
    assert_eq!(s.reactors, 2);
    assert_eq!(s.stomp.max_body, 1000);
    assert_eq!(s.listen.metrics.to_string(), "off");

    // The running server has both: the flag's name and the file's body limit. RUST_LOG says
    // error, --log-level says info: the startup lines show.
    let server = Server::start(
        stompbox()
            .env("RUST_LOG", "error")
            .arg("--config")
            .arg(&path)
            .args(["--server-name", "from-flag", "--log-level", "info"]),
    );
    let mut conn = TcpStream::connect(server.tcp).unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    conn.write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
        .unwrap();
    let connected = read_frame(&mut conn);
    assert!(connected.starts_with("CONNECTED\n"), "{connected}");
    assert!(connected.contains("\nserver:from-flag\n"), "{connected}");
    let body = vec![b'x'; 1001];
    conn.write_all(b"SEND\ndestination:/topic/a\ncontent-length:1001\n\n")
        .unwrap();
    conn.write_all(&body).unwrap();
    conn.write_all(b"\0").unwrap();
    let error = read_frame(&mut conn);
    assert!(error.starts_with("ERROR\n"), "{error}");
    drop(conn);

    let log = server.stop();
    // tracing-subscriber's lines: time, level, thread (padded), target, message.
    let line = |level: &str, end: &str| {
        log.lines()
            .any(|l| l.contains(&format!(" {level} ")) && l.contains(" main ") && l.contains(end))
    };
    assert!(line("INFO", "stompbox: stompbox "), "{log}");
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(line("INFO", "stompbox: stopped"), "{log}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn rust_log_sets_the_level_without_a_flag() {
    // At warn the startup lines (info) are not printed, so the test picks the port itself.
    let tcp = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let server = Server::start_at(
        stompbox().env("RUST_LOG", "warn").args([
            "--listen",
            "127.0.0.1:0",
            "--tcp-listen",
            &tcp.to_string(),
            "--no-metrics",
            "--reactors",
            "1",
        ]),
        Some(tcp),
    );
    let log = server.stop();
    assert!(!log.contains(" INFO "), "{log}");
}

#[test]
fn users_file_from_a_flag_and_sighup_reload() {
    // --hash-password makes the users file's line.
    let mut child = Running(
        stompbox()
            .arg("--hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    child
        .0
        .stdin
        .take()
        .unwrap()
        .write_all(b"secret\n")
        .unwrap();
    assert!(wait_bounded(&mut child.0).success());
    let mut hash = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut hash)
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let users = temp_file(&format!("alice:{}\n", hash.trim()));

    let server = Server::start(stompbox().args([
        "--listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:0",
        "--no-metrics",
        "--reactors",
        "1",
        "--users-file",
        users.to_str().unwrap(),
    ]));
    let connect = |login: &str, passcode: &str| {
        let mut c = TcpStream::connect(server.tcp).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let frame = format!(
            "CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{login}\npasscode:{passcode}\n\n\0"
        );
        c.write_all(frame.as_bytes()).unwrap();
        read_frame(&mut c)
    };
    assert!(connect("alice", "secret").starts_with("CONNECTED\n"));
    assert!(connect("alice", "wrong").starts_with("ERROR\n"));

    // SIGHUP: the file now names bob only; alice is refused without a restart.
    std::fs::write(&users, format!("bob:{}\n", hash.trim())).unwrap();
    signal(&server.child.0, "-HUP");
    let deadline = Instant::now() + TIMEOUT;
    while !connect("alice", "secret").starts_with("ERROR\n") {
        assert!(Instant::now() < deadline, "users file not reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(connect("bob", "secret").starts_with("CONNECTED\n"));

    let log = server.stop();
    assert!(log.contains("SIGHUP: 1 users reloaded from "), "{log}");
    std::fs::remove_file(users).unwrap();
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success());
}

/// A running `stompbox` with its stderr collected line by line.
struct Server {
    child: Running,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    tcp: SocketAddr,
}

impl Server {
    /// Start, reading the TCP address from the startup line (logged at info).
    fn start(cmd: &mut Command) -> Server {
        Server::start_at(cmd, None)
    }

    /// Start; with `tcp` given, wait until it accepts instead of reading the log.
    fn start_at(cmd: &mut Command, tcp: Option<SocketAddr>) -> Server {
        let mut child = Running(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stderr = child.0.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            seen: Vec::new(),
            tcp: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        server.tcp = match tcp {
            Some(a) => server.wait_until_accepting(a),
            None => server.wait_for_tcp_addr(),
        };
        server
    }

    fn wait_for_tcp_addr(&mut self) -> SocketAddr {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no TCP address logged ({e}): {:?}", self.seen));
            let addr = line
                .split_once("STOMP over TCP on tcp://")
                .and_then(|(_, a)| a.trim().parse().ok());
            self.seen.push(line);
            if let Some(a) = addr {
                return a;
            }
        }
    }

    fn wait_until_accepting(&mut self, addr: SocketAddr) -> SocketAddr {
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            assert!(
                self.child.0.try_wait().unwrap().is_none(),
                "stompbox exited early"
            );
            assert!(Instant::now() < deadline, "{addr} never accepted");
            std::thread::sleep(Duration::from_millis(20));
        }
        addr
    }

    /// SIGTERM; the exit must be clean. Returns everything it logged.
    fn stop(mut self) -> String {
        signal(&self.child.0, "-TERM");
        let status = wait_bounded(&mut self.child.0);
        while let Ok(line) = self.lines.recv_timeout(TIMEOUT) {
            self.seen.push(line);
        }
        let log = self.seen.join("\n");
        assert!(status.success(), "exit {status:?}: {log}");
        log
    }
}

fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "stompbox did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One STOMP frame as text, up to its NUL.
fn read_frame(conn: &mut TcpStream) -> String {
    let mut frame = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        conn.read_exact(&mut byte).unwrap();
        match byte[0] {
            0 => break,
            b'\n' if frame.is_empty() => {} // heart-beat
            b => frame.push(b),
        }
    }
    text(&frame)
}
