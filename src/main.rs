//! The `stompbox` binary: configuration (defaults, `--config` file, `RUST_LOG`, flags; see
//! [`stompbox::settings`]), the stderr logger, then the server from the library until SIGINT or
//! SIGTERM. SIGHUP re-reads the users and ACL files.
//!
//! Exit codes: 0 after a clean shutdown (or `--print-config`, `--hash-password`), 1 when the
//! server cannot start or fails, 2 for invalid configuration (nothing is started).

// Forbidden everywhere but the counting allocator, which cannot be written without it.
#![deny(unsafe_code)]

mod counting;

#[global_allocator]
static ALLOC: counting::CountingAlloc = counting::CountingAlloc;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use log::{error, info};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use stompbox::auth::{AclHandle, PasswordAuth};
use stompbox::settings::{self, Built, Cli, Settings};

/// Invalid configuration (the same code clap uses for bad flags).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    stompbox::memory::set_meter(counting::allocated);
    let cli = Cli::parse();
    if cli.hash_password {
        return hash_password();
    }
    let rust_log = match std::env::var("RUST_LOG") {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("stompbox: invalid configuration: RUST_LOG: not valid UTF-8");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // STOMPBOX_* variables (not valid UTF-8: reported as naming no option).
    let mut odd = Vec::new();
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            if !k.starts_with(settings::ENV_PREFIX) {
                return None;
            }
            match v.into_string() {
                Ok(v) => Some((k, v)),
                Err(_) => {
                    odd.push(k);
                    None
                }
            }
        })
        .collect();
    let loaded = settings::load_with_env(&cli, rust_log.as_deref(), env);
    let (settings, Built { config: cfg, users }) = match loaded.and_then(|(s, unknown)| {
        for name in unknown.iter().chain(&odd) {
            eprintln!("stompbox: ignoring {name}: it names no option (or is not UTF-8)");
        }
        s.build().map(|b| (s, b))
    }) {
        Ok(v) => v,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("stompbox: {line}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.print_config {
        return print_config(&settings);
    }
    if let Err(e) = init_logging(&settings.log_level, settings.log_format) {
        eprintln!("stompbox: cannot install the logger: {e}");
        return ExitCode::FAILURE;
    }
    open_files(cfg.max_connections);
    info!(
        "stompbox {} starting: {} reactors, configuration from {}",
        env!("CARGO_PKG_VERSION"),
        cfg.reactors,
        cli.config.as_deref().map_or_else(
            || "defaults and flags".to_owned(),
            |p| p.display().to_string()
        ),
    );
    let reload = Reload {
        users: users.map(|u| (u, settings.auth.users_file.clone())),
        acl: cfg.acl.clone().map(|a| (a, settings.auth.acl_file.clone())),
    };
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => return fatal(format_args!("cannot install signal handlers: {e}")),
    };
    let echo = cfg.echo;
    let sockjs = cfg.sockjs.as_ref().map(|j| j.prefix.clone());
    let (ws_tls, tcp_tls) = cfg.tls.as_ref().map_or((false, false), |t| (t.ws, t.tcp));
    let admin_tls = cfg.admin.as_ref().is_some_and(|a| a.tls.is_some());
    let server = match stompbox::start(cfg) {
        Ok(s) => s,
        Err(e) => return fatal(format_args!("cannot start: {e}")),
    };
    if let Some(a) = server.ws_addr() {
        let scheme = if ws_tls { "wss" } else { "ws" };
        info!("STOMP over WebSocket on {scheme}://{a}/ws");
        if echo {
            info!("WebSocket echo on {scheme}://{a}/echo");
        }
        if let Some(prefix) = &sockjs {
            let http = if ws_tls { "https" } else { "http" };
            info!("SockJS on {http}://{a}{prefix}");
        }
    }
    if let Some(a) = server.tcp_addr() {
        let over = if tcp_tls { "TLS" } else { "TCP" };
        info!("STOMP over {over} on tcp://{a}");
    }
    if let Some(a) = server.metrics_addr() {
        info!("metrics on http://{a}/metrics and http://{a}/healthz");
    }
    if let Some(a) = server.admin_addr() {
        let scheme = if admin_tls { "https" } else { "http" };
        info!("admin console on {scheme}://{a}/console/ (API under /api/)");
    }
    let trigger = server.trigger();
    let waiter = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    reload.run();
                    continue;
                }
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                info!("{name}: shutting down");
                trigger.fire();
                break;
            }
        });
    if let Err(e) = waiter {
        return fatal(format_args!("cannot start the signal thread: {e}"));
    }
    match server.wait() {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fatal(format_args!("{e}")),
    }
}

/// Descriptors the server needs besides client sockets (listeners, polls, wakers, files).
const FD_OVERHEAD: u64 = 64;

/// Raise the soft open-file limit to the hard one (as NATS does: the usual soft limit of 1024
/// would cap the broker at about 1,000 sessions), log the limit it runs with, and warn when
/// `connections.max` is more than it allows.
fn open_files(max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        log::warn!("cannot read the open-file limit");
        return;
    };
    let now = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                info!("open-file limit raised from {soft} to {hard} (the hard limit)");
                hard
            }
            Err(e) => {
                log::warn!("open-file limit {soft}: cannot raise it to {hard}: {e}");
                soft
            }
        }
    } else {
        info!("open-file limit {soft}");
        soft
    };
    let sockets = now.saturating_sub(FD_OVERHEAD);
    if max_connections as u64 > sockets {
        log::warn!(
            "connections.max is {max_connections} but the open-file limit ({now}) allows about \
             {sockets} connections: past that they are refused; raise the limit (ulimit -n, \
             systemd LimitNOFILE=, docker --ulimit nofile=) or lower connections.max"
        );
    }
}

/// What SIGHUP re-reads: the users file and the ACL file, each with its path.
struct Reload {
    users: Option<(Arc<PasswordAuth>, PathBuf)>,
    acl: Option<(Arc<AclHandle>, PathBuf)>,
}

impl Reload {
    /// A file that no longer reads or parses is reported; the running contents stay.
    fn run(&self) {
        if self.users.is_none() && self.acl.is_none() {
            info!("SIGHUP: no users or ACL file to reload");
        }
        if let Some((users, path)) = &self.users {
            match users.reload(path) {
                Ok(n) => info!("SIGHUP: {n} users reloaded from {}", path.display()),
                Err(e) => error!("SIGHUP: users kept, the users file did not load: {e}"),
            }
        }
        if let Some((acl, path)) = &self.acl {
            match acl.reload(path) {
                Ok(()) => info!("SIGHUP: ACL reloaded from {}", path.display()),
                Err(e) => error!("SIGHUP: ACL kept, the ACL file did not load: {e}"),
            }
        }
    }
}

/// `--hash-password`: one passcode from stdin (its line ending removed), its hash on stdout.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("stompbox: cannot read the passcode from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let passcode = line.strip_suffix('\n').unwrap_or(&line);
    let passcode = passcode.strip_suffix('\r').unwrap_or(passcode);
    if passcode.is_empty() {
        eprintln!("stompbox: --hash-password: no passcode on stdin");
        return ExitCode::from(EXIT_CONFIG);
    }
    match stompbox::auth::hash_password(passcode) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stompbox: cannot hash the passcode: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_config(settings: &Settings) -> ExitCode {
    match settings.to_toml() {
        Ok(text) => {
            println!(
                "# stompbox {}: effective configuration (defaults, --config, STOMPBOX_* variables, RUST_LOG, flags)",
                stompbox::VERSION
            );
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stompbox: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Report an error that ends the process, even when logging is off.
fn fatal(msg: std::fmt::Arguments<'_>) -> ExitCode {
    if log::log_enabled!(log::Level::Error) {
        error!("{msg}");
    } else {
        eprintln!("stompbox: {msg}");
    }
    ExitCode::FAILURE
}

/// Log lines on stderr through tracing-subscriber (the library logs with the `log` macros,
/// bridged by tracing-log): text, `2026-01-02T03:04:05.678901Z  INFO main stompbox: ...`, or
/// one JSON object per line (`--log-format json`).
fn init_logging(
    filter: &settings::LogFilter,
    format: settings::LogFormat,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter.env_filter())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_thread_names(true)
        .with_target(true);
    match format {
        settings::LogFormat::Text => b.try_init(),
        settings::LogFormat::Json => b.json().flatten_event(true).try_init(),
    }
}
