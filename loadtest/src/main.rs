//! The `loadtest` binary: parse the command line, run, print, write the files asked for.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use loadtest::cli::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Table(t) = &cli.cmd {
        return match loadtest::scenario::table::run(&t.runs) {
            Ok(s) => {
                print!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadtest: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if loadtest::is_child(&cli) {
        // One process of a --processes run: its results went to the parent on stdout.
        return match loadtest::run_scenario(&cli) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                // The parent reports it (once, for the whole run).
                println!("error {}", e.replace('\n', " "));
                ExitCode::FAILURE
            }
        };
    }
    let r = match loadtest::run_scenario(&cli) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", r.human());
    if let Err(e) = loadtest::write_outputs(&cli, &r) {
        eprintln!("loadtest: {e}");
        return ExitCode::FAILURE;
    }
    let failed = loadtest::verdict::failures(&r, &cli.fail_if);
    for why in &failed {
        eprintln!("loadtest: FAILED: {why}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
