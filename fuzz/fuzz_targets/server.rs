//! The whole broker under a stateful fuzzer: libFuzzer's bytes decode into a script of
//! sessions and steps (`tests/fuzzsrv/script.rs`: an 8-byte header, then 8 bytes per step)
//! run against ONE in-process broker started on first use, with every invariant of
//! `tests/fuzzsrv` checked (well-formed output, ERROR rules, topic order, queue conservation,
//! transactions all-or-nothing, bounded output, liveness, loop turns, memory). A broken
//! invariant panics with the decoded script and its replay hex, so libFuzzer keeps the input
//! as a crash artifact; `STOMPBOX_FUZZ_REPLAY=@<artifact> cargo test --test server_fuzz`
//! replays it outside the fuzzer.
#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/fuzzsrv/mod.rs"]
mod fuzzsrv;

fuzz_target!(|data: &[u8]| {
    let script = fuzzsrv::Script::from_bytes(data);
    if script.steps.is_empty() {
        return;
    }
    if let Err(e) = fuzzsrv::run(fuzzsrv::shared(), &script) {
        panic!("{e}\n{script:?}");
    }
});
