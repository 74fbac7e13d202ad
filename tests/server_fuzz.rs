//! The whole server under a stateful fuzzer (`tests/fuzzsrv`): generated scripts of sessions
//! over TCP and WebSocket doing everything STOMP allows and much it does not, checked against a
//! reference model after every step and at the end (see `tests/fuzzsrv/mod.rs` for the
//! invariants).
//!
//! - `cargo test --test server_fuzz` runs for about 60 s (`STOMPBOX_FUZZ_SECS=600` for
//!   longer). Each case runs in a forked child process (proptest `fork`), so a broker that
//!   aborts the process (a stack overflow) is a failing case too, shrunk like the others.
//! - A failure prints the shrunk script with its replay line:
//!   `STOMPBOX_FUZZ_REPLAY=<hex> cargo test --test server_fuzz -- --nocapture` runs just that
//!   script (the same hex is a cargo-fuzz input for `fuzz/fuzz_targets/server.rs`, and back:
//!   `STOMPBOX_FUZZ_REPLAY=@path/to/crash-file`). `PROPTEST_RNG_SEED=<n>` fixes the generator.
//! - `STOMPBOX_FUZZ_AVOID=send-unsub` stops generating a queue SEND pipelined with the next
//!   frame (known bug: SEND + UNSUBSCRIBE of an auto-ack queue subscription in one write
//!   overflows the stack), to look for other bugs meanwhile. `STOMPBOX_FUZZ_AVOID=admin`: no
//!   admin API calls.
//! - The run ends by printing what its rare admin API steps did (sessions closed, queues
//!   purged), and fails if none of either succeeded in 40 cases or more.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fuzzsrv;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

use fuzzsrv::script::{HEADER, MAX_STEPS, STEP};
use fuzzsrv::Script;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const DEADLINE: &str = "STOMPBOX_FUZZ_DEADLINE_MS";
const TALLY: &str = "STOMPBOX_FUZZ_TALLY";

fn scripts() -> impl Strategy<Value = Script> {
    (
        any::<[u8; HEADER]>(),
        prop::collection::vec(any::<[u8; STEP]>(), 1..=MAX_STEPS * 3 / 4),
    )
        .prop_map(|(h, steps)| Script::new(h, steps))
}

fn replay(spec: &str) {
    let script = match spec.strip_prefix('@') {
        Some(path) => Script::from_bytes(&std::fs::read(path).expect("replay file")),
        None => Script::from_hex(spec).expect("replay hex"),
    };
    eprintln!("{script:?}");
    let server = fuzzsrv::start_server();
    if let Err(e) = fuzzsrv::run(&server, &script).and_then(|()| server.stop()) {
        panic!("{e}");
    }
}

#[test]
fn whole_server() {
    if let Ok(spec) = std::env::var("STOMPBOX_FUZZ_REPLAY") {
        return replay(&spec);
    }
    // The parent sets the deadline and the tally file; forked children inherit them.
    let tally = std::env::var_os(DEADLINE).is_none().then(|| {
        let t = std::env::temp_dir().join(format!("stompbox-fuzz-{}.tally", std::process::id()));
        let _ = std::fs::remove_file(&t);
        std::env::set_var(TALLY, &t);
        t
    });
    let deadline = match std::env::var(DEADLINE).ok().and_then(|v| v.parse().ok()) {
        Some(d) => d,
        None => {
            let secs: u64 = std::env::var("STOMPBOX_FUZZ_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(60);
            let d = now_ms() + secs * 1000;
            std::env::set_var(DEADLINE, d.to_string());
            d
        }
    };
    let fork = std::env::var("STOMPBOX_FUZZ_FORK").map_or(true, |v| v != "0");
    let mut runner = TestRunner::new(Config {
        cases: 100_000,
        fork,
        // A timeout needs fork.
        timeout: if fork { 60_000 } else { 0 },
        max_shrink_iters: 400,
        max_shrink_time: std::env::var("STOMPBOX_FUZZ_SHRINK_SECS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(240)
            * 1000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        test_name: Some(concat!(module_path!(), "::whole_server")),
        source_file: Some(file!()),
        ..Config::default()
    });
    let started = now_ms();
    let result = runner.run(&scripts(), |script| {
        // New cases stop at the deadline; a failure found before it still shrinks in this
        // process, since its cases fail rather than return early.
        if now_ms() > deadline && !fuzzsrv::failed() {
            return Ok(());
        }
        // A broker per case: a failure replays without the cases before it.
        let server = fuzzsrv::start_server();
        fuzzsrv::tally("case");
        let r = fuzzsrv::run(&server, &script).and_then(|()| server.stop());
        if r.is_err() {
            fuzzsrv::set_failed();
        }
        prop_assert!(r.is_ok(), "{}\n{:?}", r.unwrap_err(), script);
        Ok(())
    });
    eprintln!(
        "server_fuzz: {:.1} s",
        Duration::from_millis(now_ms() - started).as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    if let Some(t) = tally {
        admin_tally(&t);
    }
}

/// The admin calls that change something happen (rare steps, checked after a run long enough
/// to hold dozens of them): sessions closed (200) and queues purged (200).
fn admin_tally(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let _ = std::fs::remove_file(path);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for l in text.lines() {
        *counts.entry(l).or_default() += 1;
    }
    eprintln!("server_fuzz: {counts:?}");
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    if n("case") >= 40 {
        assert!(n("close") > 0, "no session closed through the admin API");
        let purges = n("purge") + n("purge-empty");
        assert!(purges > 0, "no queue purged through the admin API");
    }
}

/// A script the fuzzer found (2026-12-05): a session floods SENDs with receipts while not
/// reading, the server ends it with an ERROR over its outbound bound, and the session, reading
/// the replies back slowly, still sending, was reset by the close after 300 ms of lingering
/// before it had read the ERROR. The fuzz server lingers 1.5 s now; this replays it each run.
#[test]
fn regression_a_slow_reader_after_a_flood_gets_its_error() {
    if std::env::var_os("STOMPBOX_FUZZ_REPLAY").is_some() {
        return;
    }
    replay(
        "35880a0007ec7e1d5d50540000000000213c29000000000249003000000000001200000006000f02ff\
         5287a3585556d7e7eafdf998cd59655dcd8b1771eb0633",
    );
}
