//! `roli run --seeds` end to end on real data (robust advertorch LeNet → Fashion-MNIST, tiny
//! sizes): each seed's study in `OUT/seed-<s>/` as a normal run folder, the pooled
//! `OUT/summary.json`, seeds that change the weights but not the test examples, a re-run that
//! skips finished seeds and resumes an unfinished one to the same numbers, `roli report` pooling
//! the folder, and the seed precedence errors.
mod common;
use common::{roli, run};
use std::path::Path;

fn cached() -> bool {
    common::cached(&["fashion-mnist", "advertorch"])
}

const CFG: &str = r#"
[data]
name = "fashion-mnist"
train_limit = 192
val_limit = 32
test_limit = 40
batch_size = 64
[model]
backbone = "advertorch-lenet5-mnist-at"
head_init = "torch"
[threat]
eps = 0.1
step_size = 0.025
train_steps = 2
eval_steps = 3
[probe]
epochs = 1
base_lr = 0.04
weight_decay = 0.0
optimizer = "sgd"
warmup_epochs = 0
[finetune]
methods = ["bias"]
[finetune.ranli]
epochs = 1
base_lr = 4e-3
weight_decay = 0.01
optimizer = "adamw"
warmup_epochs = 0
[finetune.roli]
epochs = 1
base_lr = 4e-3
weight_decay = 0.01
optimizer = "adamw"
warmup_epochs = 0
# AutoAttack on the probe only: on a robust example of a finetuned model it takes minutes (APGD-T,
# FAB-T, Square at full strength), and the probe's first examples fall to APGD-CE at once.
[eval]
autoattack = "standard"
aa_limit = 2
aa_methods = ["linear"]
aa_seeds = "first"
"#;

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn several_seeds_run_pool_resume_and_report() {
    if !cached() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("tiny.toml");
    std::fs::write(&cfg, CFG).unwrap();
    let out = d.path().join("run");
    let go = || {
        let mut c = roli();
        c.args(["run"]).arg(&cfg).args(["--seeds", "0,1", "--device", "cpu", "--out"]).arg(&out);
        run(c)
    };
    let (code, stdout, stderr) = go();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("pooled over seeds [0, 1]"), "{stdout}");

    // Each seed is a normal run folder; the folder itself holds the pooled summary.
    for f in ["linear/head.json", "bias_roli/result.json", "summary.json", "config.resolved.toml", "manifest.json"] {
        for s in ["seed-0", "seed-1"] {
            assert!(out.join(s).join(f).exists(), "{s}/{f} missing");
        }
    }
    assert!(!out.join("linear").exists() && out.join("manifest.json").exists());
    let pooled = json(&out.join("summary.json"));
    assert_eq!(pooled["format"], "roli-seeds");
    let rows = pooled["pooled"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        let per: Vec<f64> = r["clean"]["per_seed"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).collect();
        assert_eq!(per.len(), 2, "{r}");
        assert!((r["clean"]["mean"].as_f64().unwrap() - (per[0] + per[1]) / 2.0).abs() < 1e-12);
    }
    // AutoAttack on the first seed only (eval.aa_seeds = "first").
    assert_eq!(rows[0]["aa"]["per_seed"].as_array().unwrap().len(), 1, "{}", rows[0]);
    assert_eq!(rows[0]["aa"]["per_seed"][0][0], 0);
    assert_eq!(pooled["seeds"][1]["summary"]["results"][0]["test"]["aa_accuracy"], serde_json::Value::Null);
    let resolved1 = std::fs::read_to_string(out.join("seed-1/config.resolved.toml")).unwrap();
    assert!(resolved1.contains("seed = 1") && resolved1.contains("autoattack = \"none\""), "{resolved1}");

    // The seed changes the weights (probe head, finetuned model) but not the test examples.
    for f in ["linear/head.safetensors", "bias_ranli/best.safetensors", "bias_roli/best.safetensors"] {
        assert_ne!(
            std::fs::read(out.join("seed-0").join(f)).unwrap(),
            std::fs::read(out.join("seed-1").join(f)).unwrap(),
            "{f}"
        );
    }
    let indices = |s: &str| -> Vec<u64> {
        json(&out.join(s).join("bias_roli/test_examples.json"))["pgd"]["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(indices("seed-0"), indices("seed-1"));
    assert_eq!(indices("seed-0").len(), 40);

    // A re-run skips the finished seeds (their summaries are not rewritten).
    let t0 = mtime(&out.join("seed-0/summary.json"));
    let (code, _, stderr) = go();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mtime(&out.join("seed-0/summary.json")), t0);
    // An unfinished seed resumes: only its missing stage runs again, to the same numbers.
    let before = json(&out.join("summary.json"));
    std::fs::remove_file(out.join("seed-1/summary.json")).unwrap();
    std::fs::remove_dir_all(out.join("seed-1/bias_roli")).unwrap();
    let t_probe = mtime(&out.join("seed-1/linear/result.json"));
    let (code, _, stderr) = go();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mtime(&out.join("seed-1/linear/result.json")), t_probe);
    let after = json(&out.join("summary.json"));
    assert_eq!(before["pooled"], after["pooled"]);

    // `roli report` pools the folder; a seed's folder reports as one study.
    let mut c = roli();
    c.args(["report"]).arg(&out);
    let (code, _, stderr) = run(c);
    assert_eq!(code, 0, "{stderr}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("- seeds: 0, 1") && md.contains("| bias | RoLI | 2 |"), "{md}");
    let mut c = roli();
    c.args(["report"]).arg(out.join("seed-1"));
    assert_eq!(run(c).0, 0);
    assert!(!std::fs::read_to_string(out.join("seed-1/report.md")).unwrap().contains("- seeds:"));
}

#[test]
fn seed_choices_that_conflict_are_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("tiny.toml");
    std::fs::write(&cfg, CFG).unwrap();
    let both = d.path().join("both.toml");
    std::fs::write(&both, format!("seed = 1\nseeds = [0, 1]\n{CFG}")).unwrap();
    let one_seed = d.path().join("one");
    std::fs::create_dir_all(one_seed.join("linear")).unwrap();
    std::fs::write(one_seed.join("config.resolved.toml"), "seed = 7\n").unwrap();
    let cases: [(&Path, &[&str], &str); 4] = [
        (&cfg, &["--seeds", "0,1", "--set", "seed=3"], "--seeds and --set seed=3 both choose the seeds"),
        (&both, &[], "both `seed` and `seeds` are set"),
        (&cfg, &["--seeds", "1,1"], "seed 1 twice"),
        (&cfg, &["--seeds", "0,1", "--out", one_seed.to_str().unwrap()], "holds a one-seed run of other settings"),
    ];
    for (file, args, needle) in cases {
        let mut c = roli();
        c.args(["run"]).arg(file).args(args).args(["--device", "cpu"]);
        if !args.contains(&"--out") {
            c.arg("--out").arg(d.path().join("never"));
        }
        let (code, _, stderr) = run(c);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let line = stderr.trim().lines().last().unwrap_or_default();
        assert!(line.contains(needle), "{args:?}: {stderr}");
    }
}
