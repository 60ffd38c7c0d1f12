//! Finetuned stages as checkpoints and their exports, on one tiny run (vit-nano-mnist-at →
//! fashion-mnist, 128/32/32, one epoch, probe + full/lora/adapter/prompt RoLI, no AutoAttack):
//! `roli eval --model DIR/<stage>` reproduces the run's test numbers; `roli export` to timm and
//! peft gives the same logits in PyTorch (scripts/export_check.py; skipped without the venv);
//! adapters and VPT are refused; the RobustBench JSON carries the run's numbers.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;
use common::{roli, run};

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

const CONFIG: &str = "name = \"export\"\ndevice = \"cpu\"\n[data]\nname = \"fashion-mnist\"\ntrain_limit = 128\n\
    val_limit = 32\ntest_limit = 32\nbatch_size = 32\n[model]\nbackbone = \"vit-nano-mnist-at\"\nhead_init = \"torch\"\n\
    [threat]\neps = 0.1\nstep_size = 0.025\ntrain_steps = 2\neval_steps = 2\n[probe]\nepochs = 1\nbase_lr = 0.4\n\
    weight_decay = 0.0\noptimizer = \"sgd\"\nwarmup_epochs = 0\n[finetune]\n\
    methods = [\"full\", \"lora\", \"adapter\", \"prompt\"]\ninits = [\"roli\"]\n[finetune.roli]\nepochs = 1\n\
    base_lr = 4e-3\nweight_decay = 0.01\noptimizer = \"adamw\"\nwarmup_epochs = 0\n[finetune.lora]\nrank = 2\n\
    alpha = 4.0\n[eval]\nautoattack = \"none\"\n";

/// The tiny run, trained once per test process.
fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("export-test");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let cfg = root.join("tiny.toml");
        std::fs::write(&cfg, CONFIG).unwrap();
        let out = root.join("run");
        let mut c = roli();
        c.arg("run").arg(&cfg).arg("--out").arg(&out);
        let (code, stdout, err) = run(c);
        assert_eq!(code, 0, "{stdout}{err}");
        out
    })
}

fn python() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("note: .venv/bin/python not found; skipping the PyTorch side (run `make setup`)");
        None
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/export_check.py")
}

#[test]
fn every_stage_is_a_checkpoint_that_roli_eval_reproduces() {
    let dir = run_dir();
    for stage in ["linear", "full_roli", "lora_roli", "adapter_roli", "prompt_roli"] {
        let m = dir.join(stage).join("model");
        assert!(m.join("model.json").exists() && m.join("model.safetensors").exists(), "{stage}");
        // The PEFT layers are rebuilt from the record and every tensor loads strictly.
        let (loaded, info) = roli::export::load_stage(&dir.join(stage)).unwrap();
        assert_eq!((info.stage.as_str(), info.num_classes, info.input), (stage, 10, [1, 28, 28]));
        assert_eq!(loaded.sidecar.descriptor.name, "vit_nano_patch7_28");
    }
    let sc = json(&dir.join("lora_roli/model/model.json"));
    let peft = &sc["info"]["roli_stage"]["peft"];
    assert_eq!((peft["method"].as_str(), peft["lora"]["rank"].as_i64()), (Some("lora"), Some(2)), "{sc}");
    assert_eq!(peft["lora"]["alpha"].as_f64(), Some(4.0));
    assert_eq!(json(&dir.join("prompt_roli/model/model.json"))["info"]["roli_stage"]["peft"]["prompt"]["tokens"], 10);

    // `roli eval` on the stage folder (lora) and on its model/ folder (full), with the run's PGD
    // (2 steps of 0.025, its seed and batch size) on the same 32 test examples: the same numbers.
    for (stage, arg) in [("lora_roli", "lora_roli"), ("full_roli", "full_roli/model"), ("adapter_roli", "adapter_roli")]
    {
        let r = json(&dir.join(stage).join("result.json"));
        let pgd = &json(&dir.join(stage).join("test_examples.json"))["pgd"];
        let out = dir.join(format!("eval_{stage}"));
        let mut c = roli();
        c.args(["eval", "--model"]).arg(dir.join(arg)).args(["--data", "fashion-mnist", "--limit", "32"]);
        c.args(["--attack", "pgd", "--eps", "0.1", "--steps", "2", "--step-size", "0.025", "--device", "cpu"]);
        c.args(["--seed", &pgd["seed"].to_string(), "--batch-size", &pgd["batch_size"].to_string()]);
        c.arg("--out").arg(&out);
        let (code, stdout, err) = run(c);
        assert_eq!(code, 0, "{stage}: {stdout}{err}");
        let e = json(&out.join("results.json"));
        let (clean, robust) = (e["clean_accuracy"].as_f64().unwrap(), e["robust_accuracy"].as_f64().unwrap());
        println!(
            "{stage}: eval clean {clean} PGD {robust}; run clean {} PGD {}",
            r["test"]["clean_accuracy"], r["test"]["pgd_accuracy"]
        );
        assert_eq!(e["n"], 32);
        assert_eq!(clean, r["test"]["clean_accuracy"].as_f64().unwrap(), "{stage}");
        assert_eq!(robust, r["test"]["pgd_accuracy"].as_f64().unwrap(), "{stage}");
        let per = |v: &Value| -> Vec<Value> {
            v["examples"].as_array().unwrap().iter().map(|x| x["clean_correct"].clone()).collect()
        };
        assert_eq!(per(&e), per(pgd), "{stage}: per-example clean correctness");
    }
}

/// roli's logits of the stage on a fixed [0,1] batch, written with the batch for the Python check.
fn batch_with_logits(stage: &Path, file: &Path) {
    let (loaded, info) = roli::export::load_stage(stage).unwrap();
    tch::manual_seed(7);
    let [c, h, w] = info.input;
    let x = tch::Tensor::rand([6, c, h, w], (tch::Kind::Float, tch::Device::Cpu));
    let logits = tch::no_grad(|| loaded.model.forward_with(&x, false));
    tch::Tensor::write_safetensors(&[("x", &x), ("logits", &logits.contiguous())], file).unwrap();
}

fn check(python: &Path, mode: &str, export: &Path, batch: &Path) -> f64 {
    let out = Command::new(python).arg(script()).arg(mode).arg(export).arg(batch).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    v["max_abs_diff"].as_f64().unwrap()
}

#[test]
fn timm_export_merges_lora_and_matches_timm_logits() {
    let dir = run_dir();
    let x = dir.join("exports");
    for stage in ["lora_roli", "full_roli", "linear"] {
        let out = x.join(format!("{stage}.safetensors"));
        let mut c = roli();
        c.arg("export").arg(dir.join(stage)).args(["--format", "timm", "--out"]).arg(&out);
        let (code, stdout, err) = run(c);
        assert_eq!(code, 0, "{stdout}{err}");
        assert!(out.with_extension("json").exists());
        let t = tch::Tensor::read_safetensors(&out).unwrap();
        assert!(t.iter().all(|(n, _)| !n.contains("lora_")), "LoRA tensors left in the timm export");
        assert!(t.iter().any(|(n, _)| n == "blocks.0.attn.qkv.weight" || n == "head.weight"));
        let Some(py) = python() else { continue };
        let batch = x.join(format!("{stage}_batch.safetensors"));
        batch_with_logits(&dir.join(stage), &batch);
        let d = check(&py, "timm", &out, &batch);
        println!("timm export of {stage}: max |logits(timm) - logits(roli)| = {d:e}");
        assert!(d <= 1e-5, "{stage}: {d}");
    }
}

#[test]
fn peft_export_of_lora_loads_in_peft_with_the_same_logits() {
    let dir = run_dir();
    let out = dir.join("exports/lora_peft");
    let mut c = roli();
    c.arg("export").arg(dir.join("lora_roli")).args(["--format", "peft", "--out"]).arg(&out);
    let (code, stdout, err) = run(c);
    assert_eq!(code, 0, "{stdout}{err}");
    let cfg = json(&out.join("adapter_config.json"));
    assert_eq!((cfg["r"].as_i64(), cfg["lora_alpha"].as_f64()), (Some(4), Some(8.0)), "{cfg}");
    assert_eq!(cfg["target_modules"], serde_json::json!(["qkv"]));
    let a = tch::Tensor::read_safetensors(out.join("adapter_model.safetensors")).unwrap();
    let b = a.iter().find(|(n, _)| n == "base_model.model.blocks.0.attn.qkv.lora_B.weight").unwrap();
    assert_eq!(b.1.size(), vec![192, 4]);
    // Only the q and v rows change: the k rows of B are zero.
    assert_eq!(f64::try_from(b.1.narrow(0, 64, 64).abs().max()).unwrap(), 0.0);
    // …and the q and v rows did train (B starts at zero), so the comparison below tests the LoRA.
    for rows in [0, 128] {
        assert!(f64::try_from(b.1.narrow(0, rows, 64).abs().max()).unwrap() > 0.0, "B rows {rows}.. never trained");
    }
    let Some(py) = python() else { return };
    let has_peft = Command::new(&py).args(["-c", "import peft"]).output().is_ok_and(|o| o.status.success());
    if !has_peft {
        eprintln!("note: peft is not installed in the venv; skipping the peft load (run `make setup`)");
        return;
    }
    let batch = dir.join("exports/lora_peft_batch.safetensors");
    batch_with_logits(&dir.join("lora_roli"), &batch);
    let d = check(&py, "peft", &out, &batch);
    println!("peft export of lora_roli: max |logits(peft) - logits(roli)| = {d:e}");
    assert!(d <= 1e-5, "{d}");
}

#[test]
fn adapters_and_prompts_are_refused_with_the_reason() {
    let dir = run_dir();
    let cases = [
        ("adapter_roli", "timm", "adapter"),
        ("prompt_roli", "timm", "prompt"),
        ("adapter_roli", "peft", "adapter"),
        ("prompt_roli", "peft", "VPT"),
        ("full_roli", "peft", "--format timm"),
    ];
    for (stage, format, word) in cases {
        let out = dir.join(format!("exports/refused_{stage}_{format}"));
        let mut c = roli();
        c.arg("export").arg(dir.join(stage)).args(["--format", format, "--out"]).arg(&out);
        let (code, _, err) = run(c);
        assert_eq!(code, 2, "{stage} {format}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("cannot be exported") && err.contains(word), "{err}");
        assert!(!out.exists(), "{stage} {format}: nothing written");
    }
}

#[test]
fn robustbench_json_carries_the_runs_numbers() {
    let dir = run_dir();
    let out = dir.join("exports/model_info.json");
    let mut c = roli();
    c.arg("export").arg(dir.join("lora_roli")).args(["--format", "robustbench", "--out"]).arg(&out);
    let (code, stdout, err) = run(c);
    assert_eq!(code, 0, "{stdout}{err}");
    let v = json(&out);
    let r = json(&dir.join("lora_roli/result.json"));
    assert_eq!(
        v["clean_acc"].as_str().unwrap(),
        format!("{:.2}", 100.0 * r["test"]["clean_accuracy"].as_f64().unwrap())
    );
    assert!(v["autoattack_acc"].is_null(), "no AutoAttack in this run: {v}");
    assert_eq!((v["threat_model"].as_str(), v["eps"].as_str()), (Some("Linf"), Some("0.1")));
    assert_eq!(
        (v["dataset"].as_str(), v["architecture"].as_str()),
        (Some("fashion-mnist"), Some("vit_nano_patch7_28"))
    );
    assert_eq!((v["n_eval_examples"].as_i64(), v["number_forward_passes"].as_i64()), (Some(32), Some(1)));
    assert_eq!(v["additional_data"], false);
    for user in ["name", "authors", "venue", "link", "reported", "footnote"] {
        assert!(v[user].is_null(), "{user}: {v}");
    }
}
