//! The chat-room flow, end to end.
//!
//! ```sh
//! cargo run --release --example chat -- --listen 127.0.0.1:8080 [--compression]
//! ```
//!
//! `--compression` offers permessage-deflate (RFC 7692) to the browser.
//!
//! Then open http://127.0.0.1:8080/?room=5&name=alice in a browser (and another tab as bob).
//!
//! - SEND to `/app/chat/{room}` with a text body: the handler publishes to `/topic/chat/{room}`
//!   a JSON body `{"room":"...","from":"<login or session id>","text":"..."}` with
//!   `content-type:application/json`, and keeps the room's last 20 lines.
//! - SUBSCRIBE to `/app/chat/{room}/history`: answered once with those lines as a JSON array.
//! - `/` serves the page (stomp.js 7.5.0 from the `@stomp/stompjs` npm package, Apache-2.0,
//!   licence in `examples/chat/STOMPJS-LICENSE`).

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use stompbox::app::AppError;
use stompbox::BrokerBuilder;
use stompbox::Config;

const HISTORY: usize = 20;

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn main() -> ExitCode {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut compression = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--compression" {
            compression = true;
            continue;
        }
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => listen = addr,
                Err(e) => {
                    eprintln!("chat: --listen {v}: {e}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("usage: chat [--listen ADDR] [--compression]");
                return ExitCode::from(2);
            }
        }
    }
    let rooms: Arc<Mutex<HashMap<String, VecDeque<String>>>> = Arc::default();
    let for_send = Arc::clone(&rooms);
    let mut config = Config {
        listen: Some(listen),
        tcp_listen: None,
        ..Config::default()
    };
    if compression {
        config.handshake.deflate = Some(stompbox::ws::deflate::DeflateConfig::default());
    }
    let broker = BrokerBuilder::new(config)
        .handler("/chat/{room}", move |req, ctx| {
            let room = req.var("room").unwrap_or("lobby");
            let text = std::str::from_utf8(req.body)
                .map_err(|_| AppError::new("chat messages must be UTF-8 text"))?;
            let line = format!(
                "{{\"room\":{},\"from\":{},\"text\":{}}}",
                json_str(room),
                json_str(req.session.user()),
                json_str(text)
            );
            {
                let mut rooms = for_send.lock().unwrap_or_else(|p| p.into_inner());
                let h = rooms.entry(room.to_string()).or_default();
                if h.len() == HISTORY {
                    h.pop_front();
                }
                h.push_back(line.clone());
            }
            ctx.publish(
                &format!("/topic/chat/{room}"),
                &[("content-type", "application/json")],
                line.as_bytes(),
            );
            Ok(())
        })
        .subscribe_handler("/chat/{room}/history", move |req| {
            let room = req.var("room").unwrap_or("lobby");
            let rooms = rooms.lock().unwrap_or_else(|p| p.into_inner());
            let lines: Vec<&str> = rooms
                .get(room)
                .map(|h| h.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let body = format!("[{}]", lines.join(","));
            Ok(Some((
                vec![("content-type".into(), "application/json".into())],
                body.into_bytes(),
            )))
        })
        .static_file(
            "/",
            "text/html; charset=utf-8",
            include_bytes!("chat/index.html"),
        )
        .static_file(
            "/stomp.umd.min.js",
            "application/javascript",
            include_bytes!("chat/stomp.umd.min.js"),
        )
        .start();
    let broker = match broker {
        // (signals are registered below, after the listener is up)
        Ok(b) => b,
        Err(e) => {
            eprintln!("chat: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(a) = broker.ws_addr() {
        eprintln!("chat: open http://{a}/?room=5&name=alice (STOMP at ws://{a}/ws)");
    }
    // Run until SIGINT or SIGTERM, then shut down gracefully.
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(mut signals) => {
            let _ = signals.forever().next();
        }
        Err(e) => eprintln!("chat: no signal handling ({e}); stop with SIGKILL"),
    }
    match broker.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}
