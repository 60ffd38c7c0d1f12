//! Helpers shared by the integration tests that drive the `roli` binary.
#![allow(dead_code)] // each test file uses a part
use std::process::Command;

/// The binary under test.
pub fn roli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roli"))
}

/// Runs `c`: (exit code, stdout, stderr).
pub fn run(mut c: Command) -> (i32, String, String) {
    let out = c.output().expect("roli runs");
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

/// Whether every data source of `sources` is in the cache; says how to fetch them when not (the
/// test that asked is then skipped).
pub fn cached(sources: &[&str]) -> bool {
    let ok =
        sources.iter().all(|s| roli_data::fetch::cached_manifest(roli_data::fetch::find_source(s).unwrap()).is_some());
    if !ok {
        eprintln!("note: {} not cached; run `roli data fetch all` — test skipped", sources.join("/"));
    }
    ok
}
