//! The `roli` binary's contract for bad input: one clear error line naming the problem and the fix,
//! exit code 2, nothing written half-way.
use std::process::Command;

fn roli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roli"))
}

fn stderr_of(mut c: Command) -> (i32, String) {
    let out = c.output().expect("roli runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn missing_data_cache_names_the_fetch_command() {
    let empty = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut c = roli();
    c.env("ROLI_CACHE", empty.path())
        .args(["eval", "--model", "lenet5_advertorch", "--data", "fashion-mnist", "--eps", "0.1", "--out"])
        .arg(out.path());
    let (code, err) = stderr_of(c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not in the cache") && err.contains("roli data fetch fashion-mnist"), "{err}");
    let mut c = roli();
    c.env("ROLI_CACHE", empty.path())
        .args(["eval", "--model", "advertorch-lenet5-mnist-at", "--data", "fashion-mnist", "--eps", "0.1", "--out"])
        .arg(out.path());
    let (code, err) = stderr_of(c);
    assert_eq!(code, 2);
    assert!(err.contains("roli data fetch"), "{err}");
}

#[test]
fn unknown_config_key_names_key_line_and_allowed_keys() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[data]\nname = \"mnist\"\n[model]\nbackbone = \"lenet5_advertorch\"\n[threat]\nepsilon = 0.1\n",
    )
    .unwrap();
    let mut c = roli();
    c.args(["run"]).arg(&cfg).arg("--dry-run");
    let (code, err) = stderr_of(c);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml") && err.contains("epsilon") && err.contains("`eps`") && err.contains("line 6"),
        "{err}"
    );
    let mut c = roli();
    c.args(["run"]).arg(&cfg).args(["--dry-run", "--set", "threat.epsilon=1"]);
    let (_, err) = stderr_of(c);
    assert!(err.contains("epsilon"), "{err}");
}

#[test]
fn unknown_source_model_and_attack_list_the_choices() {
    let (code, err) = stderr_of({
        let mut c = roli();
        c.args(["data", "fetch", "cifar10"]);
        c
    });
    assert_eq!(code, 2);
    assert!(err.contains("unknown source 'cifar10'") && err.contains("fashion-mnist"), "{err}");
    let out = tempfile::tempdir().unwrap();
    let (_, err) = stderr_of({
        let mut c = roli();
        c.args(["eval", "--model", "nope", "--data", "mnist", "--eps", "0.1", "--out"]).arg(out.path());
        c
    });
    assert!(err.contains("unknown model 'nope'") && err.contains("advertorch-lenet5-mnist-at"), "{err}");
}

#[test]
fn dry_run_reports_trainable_counts_without_data() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, "[data]\nname = \"not-needed\"\n[model]\nbackbone = \"vit_micro_patch4_32\"\n[finetune]\nmethods = [\"full\", \"bias\", \"lora\", \"adapter\"]\n").unwrap();
    let out = roli().args(["run"]).arg(&cfg).args(["--dry-run", "--classes", "3"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for m in ["linear", "full", "bias", "lora", "adapter"] {
        assert!(text.lines().any(|l| l.starts_with(m)), "{m} missing:\n{text}");
    }
    assert!(text.contains("SGD(momentum 0.9)") && text.contains("AdamW-HF"), "{text}");
}

/// `--dry-run` prints the resolved plan, and LayerNorm tuning on Swin-B trains exactly the norm
/// layers' affine parameters plus the head: 2·(24 blocks × 2 norms, widths 128/256/512/1024 in
/// depths 2/2/18/2) + 2·(merge norms 512+1024+2048) + 2·128 (patch embedding) + 2·1024 (final)
/// = 57,600 elements, + the 10-class head (10,250).
#[test]
fn dry_run_prints_the_plan_and_counts_layernorm_tuning_on_swin_b() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/paper/full/cifar10_ranli.toml");
    let out = roli()
        .args([
            "run",
            cfg,
            "--dry-run",
            "--set",
            "finetune.methods=[\"layernorm\"]",
            "--set",
            "finetune.inits=[\"roli\"]",
        ])
        .output()
        .expect("roli runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for part in ["data:", "model:  swin_base_patch4_window7_224", "threat: linf", "stages:", "layernorm/roli", "eval:"]
    {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    let line = text.lines().find(|l| l.starts_with("layernorm ")).expect("a layernorm row");
    let cols: Vec<&str> = line.split_whitespace().collect();
    let (tensors, elements) = (cols[cols.len() - 8], cols[cols.len() - 7]);
    assert_eq!((tensors, elements), ("108", "67850"), "{line}");
}

/// A method that attaches to transformer blocks is refused on a CNN (LeNet) instead of silently
/// training only the head; bias tuning still builds there. The dry run prints every stage, then
/// fails (exit 2) naming the ones that cannot be built.
#[test]
fn block_methods_are_refused_on_a_backbone_without_blocks() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/lenet-fmnist.toml");
    let out = roli()
        .args(["run", cfg, "--dry-run", "--set", "finetune.methods=[\"lora\",\"layernorm\",\"bias\"]"])
        .output()
        .expect("roli runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("lora/ranli") && err.contains("layernorm/roli") && !err.contains("bias/"), "{err}");
    for m in ["lora", "layernorm"] {
        let refused = text.lines().skip_while(|l| !l.starts_with(&format!("{m} "))).nth(1).unwrap_or_default();
        assert!(refused.contains("cannot build") && refused.contains("needs transformer blocks"), "{m}:\n{text}");
    }
    let bias = text.lines().find(|l| l.starts_with("bias ")).expect("a bias row");
    assert!(!bias.contains(" 0 "), "bias tuning builds on LeNet: {bias}");
}

/// `roli bench` end to end on the CPU, PyTorch side included (the project's `.venv`; skipped
/// without it): exit 0, both sides timed for every item that applies (LoRA is n/a on LeNet, with
/// the reason), finite positive ratios, FLOPs from the PyTorch twin, the same logits on both sides.
/// Tiny budgets, and never an assertion on a timing.
#[test]
fn bench_times_both_sides_on_lenet_and_a_micro_vit() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if !python.exists() {
        eprintln!("note: .venv/bin/python not found; skipping the bench test (run `make setup`)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    for (preset, batch) in [("lenet5_advertorch", "8"), ("vit_micro_patch4_32", "4")] {
        let json = d.path().join(format!("{preset}.json"));
        let out = roli()
            .args(["bench", "--preset", preset, "--batch", batch, "--classes", "4", "--device", "cpu"])
            .args(["--iters", "1", "--warmup", "1", "--aa-iters", "2", "--aa-n", "4", "--python"])
            .arg(&python)
            .arg("--json")
            .arg(&json)
            .output()
            .expect("roli runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{preset}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("roli/PyTorch") && stdout.contains("pgd7-train-full"), "{stdout}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(v["torch"]["status"], "ok", "{preset}: {}", v["torch"]);
        assert_eq!(v["settings"]["preset"], preset);
        assert!(v["settings"]["threads"].as_i64().unwrap() >= 1);
        assert!(v["torch"]["parity"]["max_abs_logit_diff"].as_f64().unwrap() < 1e-3, "{}", v["torch"]);
        assert!(v["flops"]["per_image"]["full"]["forward"].as_f64().unwrap() > 0.0, "{}", v["flops"]);
        let items = v["items"].as_array().unwrap();
        let names: Vec<&str> = items.iter().map(|i| i["item"].as_str().unwrap()).collect();
        assert_eq!(names, ["pgd10-eval", "apgd-ce", "apgd-t", "fab-t", "square", "pgd7-train-full", "pgd7-train-lora"]);
        for i in items {
            if preset == "lenet5_advertorch" && i["item"] == "pgd7-train-lora" {
                assert!(i["roli"].is_null() && i["note"].as_str().unwrap().contains("transformer blocks"), "{i}");
                continue;
            }
            for side in ["roli", "torch"] {
                let ips = i[side]["images_per_s"].as_f64().unwrap_or(f64::NAN);
                assert!(ips.is_finite() && ips > 0.0, "{preset} {side}: {i}");
                assert!(i[side]["tflops"].as_f64().is_some_and(|t| t > 0.0), "{preset} {side}: {i}");
                assert!(i[side]["peak_memory_bytes"].is_null(), "CPU: {i}");
            }
            let r = i["ratio"].as_f64().unwrap_or(f64::NAN);
            assert!(r.is_finite() && r > 0.0, "{preset}: {i}");
        }
    }
}
