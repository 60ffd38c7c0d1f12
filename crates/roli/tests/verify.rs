//! `manifest.json` and `roli verify` through the binary on a tiny run: the manifest records the
//! environment, seeds and hashes; verify reproduces the run (exit 0), refuses a changed
//! `best.safetensors` naming the file and both hashes (exit 2), and names an environment field
//! that differs from the recorded one.
use std::path::Path;

mod common;
use common::{roli, run};

fn tiny_run(d: &Path) -> std::path::PathBuf {
    let cfg = d.join("tiny.toml");
    std::fs::write(
        &cfg,
        "name = \"tiny\"\ndevice = \"cpu\"\n[data]\nname = \"fashion-mnist\"\ntrain_limit = 128\nval_limit = 32\n\
         test_limit = 32\nbatch_size = 32\n[model]\nbackbone = \"vit-nano-mnist-at\"\nhead_init = \"torch\"\n\
         [threat]\neps = 0.1\nstep_size = 0.025\ntrain_steps = 2\neval_steps = 2\n\
         [probe]\nepochs = 1\nbase_lr = 0.4\nweight_decay = 0.0\noptimizer = \"sgd\"\nwarmup_epochs = 0\n\
         [finetune]\nmethods = [\"bias\"]\ninits = [\"roli\"]\n[finetune.roli]\nepochs = 1\nbase_lr = 4e-3\n\
         weight_decay = 0.01\noptimizer = \"adamw\"\nwarmup_epochs = 0\n[eval]\nautoattack = \"none\"\n",
    )
    .unwrap();
    let out = d.join("run");
    let mut c = roli();
    c.arg("run").arg(&cfg).arg("--out").arg(&out);
    let (code, stdout, err) = run(c);
    assert_eq!(code, 0, "{stdout}{err}");
    out
}

fn verify(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut c = roli();
    c.arg("verify").arg(dir).args(extra);
    run(c)
}

#[test]
fn a_tiny_run_has_a_manifest_and_verifies_and_a_changed_checkpoint_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let out = tiny_run(d.path());
    let mpath = out.join("manifest.json");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    assert_eq!(m["format"], "roli-manifest");
    assert_eq!(m["command"], "run");
    assert_eq!(m["build"]["roli_version"], env!("CARGO_PKG_VERSION"));
    assert!(m["build"]["git_commit"].as_str().unwrap().len() >= 7);
    assert_eq!(m["build"]["tch_version"], "0.24.0");
    assert!(m["build"]["libtorch_version"].as_str().unwrap().starts_with("2."), "{m}");
    assert_eq!(m["environment"]["device"], "cpu");
    assert!(m["environment"]["threads"].as_i64().unwrap() >= 1);
    assert!(m["environment"]["device_name"].is_null());
    assert_eq!(m["settings"]["train_precision"], "fp32");
    assert_eq!(m["settings"]["attention"], "explicit");
    let config = std::fs::read(out.join("config.resolved.toml")).unwrap();
    let sha = |b: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    };
    assert_eq!(m["config_sha256"], sha(&config));
    assert_eq!(m["backbone_fingerprint"].as_str().unwrap().len(), 64);
    for s in ["train", "val", "test"] {
        assert_eq!(m["splits"][s]["fingerprint"].as_str().unwrap().len(), 64, "{s}");
    }
    assert_eq!(m["splits"]["test"]["n"], 32);
    let stages = m["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    for s in stages {
        let name = s["name"].as_str().unwrap();
        assert!(s["seed"].as_u64().is_some() && s["eval_seed"].as_u64().is_some(), "{s}");
        assert!(s["seconds"].as_f64().unwrap() > 0.0);
        assert!(s["passes"]["pgd"]["forward_calls"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["n_evaluated"]["pgd"], 32);
        assert_eq!(s["indices_sha256"]["pgd"].as_str().unwrap().len(), 64);
        let best = std::fs::read(out.join(name).join("best.safetensors")).unwrap();
        assert_eq!(s["files"]["best.safetensors"], sha(&best), "{name}");
    }
    assert!(stages[0]["files"]["head.safetensors"].is_string());
    assert_ne!(stages[0]["seed"], stages[1]["seed"]);

    // Re-evaluating the saved best weights reproduces every record.
    let t0 = std::time::Instant::now();
    let (code, stdout, err) = verify(&out, &[]);
    eprintln!("verify of the tiny run: {:.1}s", t0.elapsed().as_secs_f64());
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.starts_with("identical: 2 stage(s) re-evaluated"), "{stdout}");
    let (code, stdout, err) = verify(&out, &["--stage", "bias/roli"]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("identical: 1 stage(s)"), "{stdout}");
    // --full re-trains (the probe, then bias/roli) into a temp folder: bit-identical on the same machine.
    let (code, stdout, err) = verify(&out, &["--full", "--stage", "bias_roli"]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("identical: 1 stage(s) re-trained and re-evaluated"), "{stdout}");
    let (code, _, err) = verify(&out, &["--stage", "lora_roli"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no such stage") && err.contains("bias_roli"), "{err}");

    // A recorded environment that differs is named (thread count), identical results still exit 0.
    let mut edited = m.clone();
    let threads = m["environment"]["threads"].as_i64().unwrap();
    edited["environment"]["threads"] = serde_json::json!(threads + 7);
    std::fs::write(&mpath, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let (code, stdout, err) = verify(&out, &["--stage", "linear"]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("environment differs"), "{stdout}");
    let line = stdout.lines().find(|l| l.trim_start().starts_with("threads")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(&format!("recorded {}", threads + 7)) && line.contains(&format!("now {threads}")), "{line}");

    // A recorded per-example result that differs from the re-computation: exit 1 with the table,
    // and the differing thread count named as what explains float-level changes. The records'
    // hash is updated in the manifest so that only the content differs.
    let ex_path = out.join("linear").join("test_examples.json");
    let mut ex: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ex_path).unwrap()).unwrap();
    let label = ex["pgd"]["examples"][3]["adv_label"].as_i64().unwrap();
    ex["pgd"]["examples"][3]["adv_label"] = serde_json::json!(label + 1);
    let text = serde_json::to_string(&ex).unwrap();
    std::fs::write(&ex_path, &text).unwrap();
    edited["stages"][0]["files"]["test_examples.json"] = serde_json::json!(sha(text.as_bytes()));
    std::fs::write(&mpath, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let (code, stdout, err) = verify(&out, &["--stage", "linear"]);
    assert_eq!(code, 1, "{stdout}{err}");
    let row = stdout.lines().find(|l| l.contains("adv_label")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("linear") && row.contains(" 3 ") && row.contains(&(label + 1).to_string()), "{row}");
    assert!(stdout.contains("a different threads explains float-level changes"), "{stdout}");

    // One flipped byte of a stage's best weights: refused, naming the file, the stage and both hashes.
    let best = out.join("bias_roli").join("best.safetensors");
    let mut bytes = std::fs::read(&best).unwrap();
    let recorded = sha(&bytes);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&best, &bytes).unwrap();
    let (code, stdout, err) = verify(&out, &[]);
    assert_eq!(code, 2, "{stdout}{err}");
    let want = format!("best.safetensors of bias_roli changed since the run: sha256 {recorded} ≠ {}", sha(&bytes));
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn verify_without_a_manifest_is_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let (code, _, err) = verify(d.path(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no manifest.json"), "{err}");
}
