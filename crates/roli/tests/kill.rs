//! Real kills: `roli run` and `roli eval` are SIGKILLed at chosen moments (inside epochs, in the
//! middle of atomic writes, right after the state file, between AutoAttack stages) through the
//! `ROLI_KILL_AT` failpoint (`roli_io::failpoint`), resumed with the same command, and must end
//! with exactly the outputs of an uninterrupted run: the summary, every per-example record, the
//! training history, the best and last weights and the optimiser state, bit for bit (CPU). A full
//! disk (`ROLI_FAIL_WRITE`) must stop a run with one clear line and leave a state it resumes from.
//!
//! Each chain kills one folder several times in a row (each resumed process may be killed again),
//! so one uninterrupted reference, computed once, serves every kill point.
mod common;

use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A tiny study: the zoo's ViT-nano, 160 Fashion-MNIST images in batches of 32 (5 per epoch),
/// a 2-epoch probe and a 2-epoch RoLI bias finetuning, PGD-2 training, PGD-3 test on 48 images.
const CFG: &str = r#"
seed = 5
[data]
name = "fashion-mnist"
train_limit = 160
val_limit = 32
test_limit = 48
batch_size = 32
[model]
backbone = "vit-nano-mnist-at"
head_init = "torch"
[threat]
eps = 0.1
step_size = 0.025
train_steps = 2
eval_steps = 3
[probe]
epochs = 2
base_lr = 0.4
weight_decay = 0.0
optimizer = "sgd"
warmup_epochs = 0
[finetune]
methods = ["bias"]
inits = ["roli"]
[finetune.roli]
epochs = 2
base_lr = 4e-2
weight_decay = 0.01
optimizer = "adamw"
warmup_epochs = 0
[eval]
autoattack = "none"
"#;

/// The killed runs checkpoint every 3 optimiser steps (the reference only after every epoch, so
/// the comparison also shows that the cadence changes no result).
const EVERY_3: &str = "train.checkpoint_every_steps=3";

/// AutoAttack-standard on 12 MNIST test images against the standard LeNet at eps 0.155: APGD-CE
/// breaks 8, APGD-T one more, FAB-T and Square work on the last two (about 10 s).
const EVAL: &[&str] = &[
    "eval",
    "--model",
    "lenet5-mnist-std",
    "--data",
    "mnist",
    "--limit",
    "12",
    "--attack",
    "aa-standard",
    "--eps",
    "0.155",
    "--batch-size",
    "8",
    "--resume",
];

fn cached() -> bool {
    common::cached(&["fashion-mnist", "mnist"])
}

/// A fresh folder under the target's test scratch space.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kill").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `roli ARGS` with one intra-op thread: these models are tiny, and two threads on a busy 2-core
/// machine spin-wait ten times slower. Every run here (reference and resumed) uses the same.
fn roli(args: &[&str]) -> Command {
    let mut c = common::roli();
    c.args(args).env("OMP_NUM_THREADS", "1").env_remove("ROLI_KILL_AT").env_remove("ROLI_FAIL_WRITE");
    c
}

fn config_file() -> PathBuf {
    static CFG_PATH: OnceLock<PathBuf> = OnceLock::new();
    CFG_PATH
        .get_or_init(|| {
            let p = scratch("config").join("tiny.toml");
            std::fs::write(&p, CFG).unwrap();
            p
        })
        .clone()
}

fn run_args<'a>(cfg: &'a str, out: &'a str, every: bool) -> Vec<&'a str> {
    let mut a = vec!["run", cfg, "--out", out];
    if every {
        a.extend(["--set", EVERY_3]);
    }
    a
}

/// Runs to the end (exit 0).
fn finish(args: &[&str]) {
    let out = roli(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// Runs with `ROLI_KILL_AT=point` and requires that it died of SIGKILL there.
fn killed_at(args: &[&str], point: &str) {
    let out = roli(args).env("ROLI_KILL_AT", point).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(9), "{point}: not killed there ({:?})\n{stderr}", out.status);
    assert!(stderr.contains(&format!("ROLI_KILL_AT: SIGKILL at {}", point.split(':').next().unwrap())), "{stderr}");
}

/// The uninterrupted `roli run` (no mid-epoch checkpoints), computed once.
fn reference_run() -> &'static Path {
    static REF: OnceLock<PathBuf> = OnceLock::new();
    REF.get_or_init(|| {
        let out = scratch("run-reference").join("out");
        let cfg = config_file();
        finish(&run_args(cfg.to_str().unwrap(), out.to_str().unwrap(), false));
        out
    })
}

/// A JSON file with `dir` replaced by `OUT` in every string and the keys in `drop` removed
/// everywhere (wall-clock times, and for resumed evaluations the per-run pass counts).
fn normalized(path: &Path, dir: &Path, drop: &[&str]) -> Value {
    fn walk(v: &mut Value, dir: &str, drop: &[&str]) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !drop.contains(&k.as_str()));
                m.values_mut().for_each(|x| walk(x, dir, drop));
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, dir, drop)),
            Value::String(s) => *s = s.replace(dir, "OUT"),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: Value = serde_json::from_str(&text).unwrap();
    walk(&mut v, dir.to_str().unwrap(), drop);
    v
}

/// The records of a stage's `metrics.jsonl` without their times: a resumed stage must read as one
/// uninterrupted run (no step twice, none missing).
fn metrics(stage: &Path) -> Vec<Value> {
    let p = stage.join("metrics.jsonl");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", p.display()));
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

/// The tensors of a safetensors file but roli's copy of the stage state (which holds times).
fn tensors(path: &Path) -> Vec<(String, tch::Tensor)> {
    let mut v = tch::Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    v.retain(|(n, _)| n != "__state__");
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn same_tensors(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    let names = |t: &[(String, tch::Tensor)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ta), names(&tb), "{}", b.display());
    for ((n, x), (_, y)) in ta.iter().zip(&tb) {
        assert!(x.equal(y), "{}: tensor {n} differs from the uninterrupted run", b.display());
    }
}

/// No temporary files, no lock, nothing half written anywhere under `dir`.
fn clean_folder(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(roli_io::temp_owner(&name).is_none(), "{}: a temporary file is left", e.path().display());
        assert_ne!(name, roli::lock::LOCK_FILE, "{}: the lock is left", dir.display());
        if e.file_type().unwrap().is_dir() {
            clean_folder(&e.path());
        }
    }
}

/// The resumed run folder `got` holds what the uninterrupted `want` holds: the summary, and per
/// stage the result, every per-example record, the state with its history, the best, last (with
/// the optimiser state), head and exported weights.
fn same_run(want: &Path, got: &Path, chain: &str) {
    let json = |rel: &str| {
        let (a, b) = (normalized(&want.join(rel), want, &["seconds"]), normalized(&got.join(rel), got, &["seconds"]));
        assert!(a == b, "{chain}: {rel} differs from the uninterrupted run:\nwant {a}\ngot  {b}");
    };
    json("summary.json");
    for stage in ["linear", "bias_roli"] {
        for f in ["result.json", "test_examples.json", "state.json", "model/model.json"] {
            json(&format!("{stage}/{f}"));
        }
        for f in ["best.safetensors", "last.safetensors", "model/model.safetensors"] {
            same_tensors(&want.join(stage).join(f), &got.join(stage).join(f));
        }
        let (a, b) = (metrics(&want.join(stage)), metrics(&got.join(stage)));
        assert!(!a.is_empty(), "{stage}: no metrics.jsonl records");
        assert!(a == b, "{chain}: {stage}/metrics.jsonl differs from the uninterrupted run:\nwant {a:?}\ngot  {b:?}");
    }
    json("linear/head.json");
    same_tensors(&want.join("linear/head.safetensors"), &got.join("linear/head.safetensors"));
    clean_folder(got);
}

/// Kills `roli run` at each point in turn on one folder, resuming each time, then finishes it.
fn kill_chain(name: &str, points: &[&str]) {
    if !cached() {
        return;
    }
    let want = reference_run();
    let out = scratch(name).join("out");
    let cfg = config_file();
    let args = run_args(cfg.to_str().unwrap(), out.to_str().unwrap(), true);
    for p in points {
        killed_at(&args, p);
    }
    finish(&args);
    same_run(want, &out, name);
}

/// The probe: killed before its first checkpoint, after a mid-epoch one, while writing the
/// epoch's `last.safetensors`, between `last.safetensors` and `state.json`, right after a
/// mid-epoch state file, while writing the test's `result.json` and the head artifact.
#[test]
fn kills_inside_the_probe_resume_to_the_uninterrupted_result() {
    kill_chain(
        "probe",
        &[
            "batch:2",
            "batch:4",
            "write:last.safetensors:1",
            "renamed:last.safetensors:1",
            "renamed:state.json:2",
            "write:result.json:1",
            "write:head.safetensors:1",
        ],
    );
}

/// The finetuning stage: right after a mid-epoch checkpoint, again one epoch later, while
/// writing a state file, while writing the test's per-example records, and after the summary.
#[test]
fn kills_inside_finetuning_resume_to_the_uninterrupted_result() {
    kill_chain(
        "finetune",
        &["batch:13", "batch:3", "write:state.json:1", "write:test_examples.json:1", "renamed:summary.json:1"],
    );
}

/// `roli eval` with AutoAttack: killed after APGD-CE, while saving the state after APGD-T,
/// after FAB-T, and while writing `results.json`; every record equals the uninterrupted run's.
#[test]
fn kills_between_autoattack_stages_resume_to_the_uninterrupted_records() {
    if !cached() {
        return;
    }
    let run_eval = |dir: &Path| -> Vec<String> {
        let mut a: Vec<String> = EVAL.iter().map(|s| s.to_string()).collect();
        a.extend(["--out".into(), dir.to_str().unwrap().into()]);
        a
    };
    let want = scratch("eval-reference");
    let args = run_eval(&want);
    finish(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let got = scratch("eval-killed");
    let args = run_eval(&got);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for p in ["aa-stage:1", "write:state.json:2", "aa-stage:2", "write:results.json:1"] {
        killed_at(&args, p);
    }
    finish(&args);
    // What depends on how the work was split across processes: times, model passes, how many
    // stages came from the state, and the extremes of this process's adversarial batch.
    let drop = ["seconds", "passes", "resumed_stages", "min_value", "max_value"];
    let (a, b) =
        (normalized(&want.join("results.json"), &want, &drop), normalized(&got.join("results.json"), &got, &drop));
    assert!(a == b, "results.json differs from the uninterrupted evaluation:\nwant {a}\ngot  {b}");
    assert_eq!(a["examples"].as_array().unwrap().len(), 12);
    assert!(!got.join("state.json").exists(), "the finished evaluation removes its state");
    clean_folder(&got);
}

/// A full disk (injected ENOSPC in the one atomic writer): exit 2 with one line naming the file,
/// the previous state intact, no temporary file left, the lock released; the re-run resumes.
#[test]
fn a_full_disk_stops_with_one_line_and_the_previous_state_resumes() {
    if !cached() {
        return;
    }
    let want = reference_run();
    let out = scratch("enospc").join("out");
    let cfg = config_file();
    let args = run_args(cfg.to_str().unwrap(), out.to_str().unwrap(), true);
    let state = out.join("linear/state.json");
    // 1. The probe's third `last.safetensors` (the mid-epoch checkpoint at step 6) cannot be written.
    // 2. After resuming, its first `state.json` cannot be written either.
    for (fail, file) in [("last.safetensors:3", "last.safetensors"), ("state.json:1", "state.json")] {
        let o = roli(&args).env("ROLI_FAIL_WRITE", fail).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{fail}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        let target = out.join("linear").join(file);
        let said = format!("error: writing {}: No space left on device (os error 28)", target.display());
        assert_eq!(errors[0], said, "named once, said once");
        assert_eq!(stderr.trim_end().lines().last(), Some(errors[0]), "the error is the last line");
        // The state of the last good checkpoint: after epoch 0 (5 steps).
        let st: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert_eq!((st["epochs_done"].as_u64(), st["optimizer_steps"].as_u64()), (Some(1), Some(5)), "{fail}");
        assert!(st.get("mid_epoch").is_none(), "{st}");
        clean_folder(&out);
    }
    finish(&args);
    same_run(want, &out, "enospc");
}
