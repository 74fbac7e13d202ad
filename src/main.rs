//! The `stompbox` binary: command-line configuration, then the server from the library.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use stompbox::Config;

/// A STOMP 1.0/1.1/1.2 broker over WebSocket and TCP.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// WebSocket listen address (STOMP at /ws; /echo with --echo).
    #[arg(long, default_value = "127.0.0.1:61614")]
    listen: SocketAddr,
    /// STOMP over plain TCP listen address.
    #[arg(long, default_value = "127.0.0.1:61613")]
    tcp_listen: SocketAddr,
    /// Reactor threads (default: available cores).
    #[arg(long)]
    reactors: Option<usize>,
    /// Serve a WebSocket echo endpoint at /echo.
    #[arg(long)]
    echo: bool,
    /// Largest WebSocket frame payload, bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_frame_size: u64,
    /// Largest WebSocket message, bytes, over all fragments.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_message_size: u64,
    /// Largest opening-handshake request, bytes.
    #[arg(long, default_value_t = 8 * 1024)]
    max_handshake_size: usize,
    /// Seconds a client has to complete the opening handshake.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Allowed Origin values (repeatable); none given: any origin.
    #[arg(long = "allow-origin")]
    allow_origin: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = Config {
        listen: Some(args.listen),
        tcp_listen: Some(args.tcp_listen),
        echo: args.echo,
        max_frame_size: args.max_frame_size,
        max_message_size: args.max_message_size,
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        ..Config::default()
    };
    if let Some(n) = args.reactors {
        if n == 0 {
            eprintln!("stompbox: --reactors must be at least 1");
            return ExitCode::from(2);
        }
        cfg.reactors = n;
    }
    cfg.handshake.max_request_bytes = args.max_handshake_size;
    if !args.allow_origin.is_empty() {
        cfg.handshake.allowed_origins = Some(args.allow_origin);
    }
    if cfg.handshake.max_request_bytes > cfg.read_buffer_size {
        cfg.read_buffer_size = cfg.handshake.max_request_bytes;
    }
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stompbox: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reactors = cfg.reactors;
    let server = match stompbox::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stompbox: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(w), Some(t)) = (server.ws_addr(), server.tcp_addr()) {
        eprintln!("stompbox: STOMP on ws://{w}/ws and tcp://{t} ({reactors} reactors)");
    }
    let trigger = server.trigger();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("stompbox: shutting down");
            trigger.fire();
        }
    });
    match server.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stompbox: {e}");
            ExitCode::FAILURE
        }
    }
}
