//! The whole pipeline on real data (robust advertorch LeNet → Fashion-MNIST, tiny sizes): it runs
//! end to end, writes every artifact, and the same seed gives the same numbers (CPU).
mod common;
use roli::config::RunConfig;
use roli::pipeline;

fn cached() -> bool {
    common::cached(&["fashion-mnist", "advertorch"])
}

const CFG: &str = r#"
seed = 3
[data]
name = "fashion-mnist"
train_limit = 256
val_limit = 64
test_limit = 48
batch_size = 64
[model]
backbone = "advertorch-lenet5-mnist-at"
head_init = "torch"
[threat]
eps = 0.1
step_size = 0.025
train_steps = 3
eval_steps = 5
[probe]
epochs = 2
base_lr = 0.04
weight_decay = 0.0
optimizer = "sgd"
warmup_epochs = 0
[finetune]
methods = ["bias"]
inits = ["ranli", "roli"]
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
[eval]
autoattack = "standard"
aa_limit = 4
"#;

#[test]
fn real_pipeline_runs_and_repeats_exactly() {
    if !cached() {
        return;
    }
    let cfg = RunConfig::from_toml_str(CFG, &[], "test").unwrap();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let s1 = pipeline::run(&roli::plan::StudyPlan::resolve(&cfg), a.path()).unwrap();
    let s2 = pipeline::run(&roli::plan::StudyPlan::resolve(&cfg), b.path()).unwrap();
    assert_eq!(s1.results.len(), 3);
    for (r1, r2) in s1.results.iter().zip(&s2.results) {
        assert_eq!((r1.method, r1.init), (r2.method, r2.init));
        assert_eq!(r1.test.clean_accuracy, r2.test.clean_accuracy, "{:?}", r1.method);
        assert_eq!(r1.test.pgd_accuracy, r2.test.pgd_accuracy);
        assert_eq!(r1.test.aa_accuracy, r2.test.aa_accuracy);
        assert_eq!(r1.best_val_robust, r2.best_val_robust);
        assert_eq!(r1.test.aa_n, Some(4));
    }
    // The robust LeNet's features are linearly useful for Fashion-MNIST even after 2 tiny epochs.
    assert!(
        s1.results[0].test.clean_accuracy > 0.3,
        "linear probe learned nothing: {}",
        s1.results[0].test.clean_accuracy
    );
    for f in [
        "config.resolved.toml",
        "summary.json",
        "linear/head.json",
        "linear/head.safetensors",
        "bias_roli/result.json",
        "bias_ranli/test_examples.json",
    ] {
        assert!(a.path().join(f).exists(), "{f} missing");
    }
    // A re-run reuses the finished stages and gives the same summary.
    let s3 = pipeline::run(&roli::plan::StudyPlan::resolve(&cfg), a.path()).unwrap();
    assert_eq!(serde_json::to_value(&s1.results).unwrap(), serde_json::to_value(&s3.results).unwrap());
}

/// `roli tune` tries each LR factor per (method, init) on validation only, and its `tuned.toml`
/// is a valid config fragment whose chosen LRs are among the candidates with the best val PGD.
#[test]
fn tune_selects_on_validation_and_writes_a_config_fragment() {
    if !cached() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let cfg_path = d.path().join("tiny.toml");
    std::fs::write(&cfg_path, CFG).unwrap();
    let out = d.path().join("tune");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_roli"))
        .arg("tune")
        .arg(&cfg_path)
        .args(["--factors", "0.5,2", "--set", "data.train_limit=128", "--set", "probe.epochs=1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let cands: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(out.join("tune.json")).unwrap()).unwrap();
    // linear ×2 factors, bias × {ranli, roli} × 2 factors.
    assert_eq!(cands.len(), 6);
    let frag = std::fs::read_to_string(out.join("tuned.toml")).unwrap();
    let v: toml::Table = toml::from_str(&frag).unwrap();
    // Every table is a complete stage config (the same type the config file uses).
    let _: roli::config::StageConfig = v["probe"].clone().try_into().unwrap();
    let _: roli::config::StageConfig = v["finetune"]["per_method"]["bias_roli"].clone().try_into().unwrap();
    for (key, m, i) in [("bias_ranli", "bias", "ranli"), ("bias_roli", "bias", "roli")] {
        let chosen = v["finetune"]["per_method"][key]["base_lr"].as_float().unwrap();
        let mine: Vec<&serde_json::Value> = cands.iter().filter(|c| c["method"] == m && c["init"] == i).collect();
        let best = mine.iter().map(|c| c["val_robust"].as_f64().unwrap()).fold(f64::MIN, f64::max);
        let pick = mine
            .iter()
            .find(|c| (c["base_lr"].as_f64().unwrap() - chosen).abs() < 1e-15)
            .expect("chosen LR is a candidate");
        assert_eq!(pick["val_robust"].as_f64().unwrap(), best);
    }
    // Nothing was evaluated on test during tuning candidates.
    assert!(!out.join("bias_roli_x2").join("test_examples.json").exists());
}
