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
    let (settings, Built { config: cfg, users }) =
        match settings::load(&cli, rust_log.as_deref()).and_then(|s| s.build().map(|b| (s, b))) {
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
    if let Err(e) = logger::init(settings.log_level.clone()) {
        eprintln!("stompbox: cannot install the logger: {e}");
        return ExitCode::FAILURE;
    }
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
    let (ws_tls, tcp_tls) = cfg.tls.as_ref().map_or((false, false), |t| (t.ws, t.tcp));
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
    }
    if let Some(a) = server.tcp_addr() {
        let over = if tcp_tls { "TLS" } else { "TCP" };
        info!("STOMP over {over} on tcp://{a}");
    }
    if let Some(a) = server.metrics_addr() {
        info!("metrics on http://{a}/metrics and http://{a}/healthz");
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
                "# stompbox {}: effective configuration (defaults, --config, RUST_LOG, flags)",
                env!("CARGO_PKG_VERSION")
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

/// A `log` backend: one line per record on stderr, written whole (lines from different threads
/// never interleave): `2026-01-02T03:04:05.678Z INFO  [reactor-0] stompbox::server: text`.
mod logger {
    use std::io::Write;
    use std::time::{SystemTime, UNIX_EPOCH};

    use log::{Log, Metadata, Record, SetLoggerError};
    use stompbox::settings::LogFilter;

    struct Stderr {
        filter: LogFilter,
    }

    pub fn init(filter: LogFilter) -> Result<(), SetLoggerError> {
        let max = filter.max_level();
        log::set_logger(Box::leak(Box::new(Stderr { filter })))?;
        log::set_max_level(max);
        Ok(())
    }

    impl Log for Stderr {
        fn enabled(&self, m: &Metadata<'_>) -> bool {
            m.level() <= self.filter.level_for(m.target())
        }

        fn log(&self, r: &Record<'_>) {
            if !self.enabled(r.metadata()) {
                return;
            }
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let thread = std::thread::current();
            let line = format!(
                "{} {:<5} [{}] {}: {}\n",
                utc(ms),
                r.level(),
                thread.name().unwrap_or("-"),
                r.target(),
                r.args()
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }

        fn flush(&self) {
            let _ = std::io::stderr().flush();
        }
    }

    /// RFC 3339 UTC with milliseconds, from milliseconds since the Unix epoch.
    pub fn utc(ms: u64) -> String {
        let (secs, milli) = (ms / 1000, ms % 1000);
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Days to a civil date (H. Hinnant's algorithm), valid for any date after 1970.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    #[cfg(test)]
    mod tests {
        use super::utc;

        #[test]
        fn timestamps_are_utc_rfc3339() {
            assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
            assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
            assert_eq!(utc(951_868_799_999), "2000-02-29T23:59:59.999Z");
            assert_eq!(utc(1_709_251_199_123), "2024-02-29T23:59:59.123Z");
            assert_eq!(utc(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
            assert_eq!(utc(1_798_761_599_000), "2026-12-31T23:59:59.000Z");
        }
    }
}
