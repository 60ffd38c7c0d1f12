//! One writer per output folder, across processes: a second `roli` on a folder a live roli holds
//! exits 2 naming the holder; once the holder is SIGKILLed, the next `roli` takes the stale lock
//! over with a warning and finishes; a finished command leaves no lock behind.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cached() -> bool {
    common::cached(&["mnist"])
}

/// `roli eval` of the standard LeNet on `limit` MNIST test images into `out`.
fn eval(out: &Path, attack: &str, limit: &str) -> Command {
    eval_model(out, "lenet5-mnist-std", attack, limit)
}

fn eval_model(out: &Path, model: &str, attack: &str, limit: &str) -> Command {
    let mut c = common::roli();
    c.args(["eval", "--model", model, "--data", "mnist", "--eps", "0.1", "--batch-size", "8"])
        .args(["--attack", attack, "--limit", limit, "--out"])
        .arg(out)
        .env("OMP_NUM_THREADS", "1")
        .env_remove("ROLI_KILL_AT")
        .env_remove("ROLI_FAIL_WRITE");
    c
}

#[test]
fn a_second_roli_is_refused_while_the_first_lives_and_takes_over_once_it_is_killed() {
    if !cached() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let lock = out.join(roli::lock::LOCK_FILE);
    // The first writer: a long AutoAttack (minutes), killed by the test once it holds the folder.
    let mut first = eval(&out, "aa-standard", "200").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    let holder = loop {
        let h = std::fs::read_to_string(&lock).ok().and_then(|s| serde_json::from_str::<roli::lock::Holder>(&s).ok());
        match h {
            Some(h) if h.pid == first.id() => break h,
            _ if t0.elapsed() > Duration::from_secs(60) => panic!("the first roli never took the lock"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert!(holder.command.contains("eval") && holder.command.contains("aa-standard"), "{holder:?}");

    let (code, _, stderr) = common::run(eval(&out, "none", "4"));
    assert_eq!(code, 2, "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(line.contains("is in use by another roli") && line.contains(&format!("pid {} on ", first.id())), "{line}");
    assert!(line.contains(&holder.host) && line.contains("aa-standard"), "{line}");

    first.kill().unwrap(); // SIGKILL: the lock file stays, naming a dead process
    first.wait().unwrap();
    assert!(lock.exists());
    let (code, _, stderr) = common::run(eval(&out, "none", "4"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("taking over the stale lock") && stderr.contains(&format!("pid {}", holder.pid)),
        "{stderr}"
    );
    assert!(!lock.exists(), "released on exit");

    // Released on an error too (an unknown model fails after the lock is taken).
    let (code, _, stderr) = common::run(eval_model(&out, "no-such-model", "none", "4"));
    assert_eq!(code, 2, "{stderr}");
    assert!(!lock.exists(), "released on error");
}
