//! Build script: the git revision the binary is built from, for `--version` and
//! `stompbox_build_info` (`unknown` outside a git checkout, e.g. from a source tarball).

use std::process::Command;

fn main() {
    // A build without .git (a container's context) may say its revision itself.
    let given = std::env::var("BUILD_GIT_REV")
        .ok()
        .filter(|r| r != "unknown");
    let rev = given
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BUILD_REVISION={rev}");
    // Rebuild when HEAD moves (a commit, a checkout); harmless when there is no .git.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BUILD_GIT_REV");
}
