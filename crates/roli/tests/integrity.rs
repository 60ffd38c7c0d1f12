//! The integrity gate end to end (issue 13): a gradient-masked model through the pipeline's test
//! evaluation is marked `unreliable` in its result, the `roli run` and demo tables and report.md,
//! and `roli report` exits 1 (one line naming the model and `--allow-flags`); `--allow-flags`
//! exits 0 with the marks kept. The same model without masking passes every check and exits 0.
//! `roli run` and `roli demo` on finished stages holding those two tests exit 1 / 0 likewise.
mod common;
use roli::config::{Init, RunConfig, StageKind};
use roli::plan::StudyPlan;
use roli::results::{MethodResult, Summary, TestResult};
use roli::train::optim::OptimizerKind;
use roli_attacks::Flag;
use roli_data::TensorDataset;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

/// libtorch's random generator is process-wide and the attacks seed it: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CFG: &str = r#"
seed = 1
[data]
name = "toy"
batch_size = 16
[model]
backbone = "vit_micro_patch4_32"
[threat]
eps = 0.25
step_size = 0.08
train_steps = 2
eval_steps = 5
[probe]
epochs = 1
base_lr = 0.1
weight_decay = 0.0
optimizer = "sgd"
warmup_epochs = 0
[finetune]
methods = ["bias"]
inits = ["ranli"]
[finetune.ranli]
epochs = 1
base_lr = 0.01
weight_decay = 0.0
optimizer = "adamw"
warmup_epochs = 0
[eval]
autoattack = "standard"
aa_limit = 3
"#;

/// A fixed linear classifier of 1×8×8 images into 10 classes.
struct Linear {
    w: Tensor,
}

impl Linear {
    fn new() -> Self {
        tch::manual_seed(11);
        Linear { w: Tensor::randn([64, 10], (Kind::Float, Device::Cpu)) }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.reshape([-1, 64]).matmul(&self.w)
    }
}

/// Test examples labelled by the smooth model itself (clean accuracy 1).
fn test_set(net: &Linear) -> TensorDataset {
    tch::manual_seed(12);
    let x = Tensor::rand([24, 1, 8, 8], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| net.forward(&x).argmax(1, false));
    TensorDataset::new("toy", x, y, (0..10).map(|c| c.to_string()).collect()).unwrap()
}

fn evaluate(masked: bool, out: &Path) -> TestResult {
    let plan = StudyPlan::resolve(&RunConfig::from_toml_str(CFG, &[], "test").unwrap());
    let net = Linear::new();
    let data = test_set(&net);
    let smooth = |x: &Tensor| net.forward(x);
    // 8-bit input quantisation: round() has zero gradient everywhere (the classic masking toy).
    let quantised = |x: &Tensor| net.forward(&((x * 255.0).round() / 255.0));
    let model: &dyn roli_attacks::Model = if masked { &quantised } else { &smooth };
    std::fs::create_dir_all(out).unwrap();
    roli::pipeline::evaluate_test_model(&plan.eval, &plan.eval.attacks, model, Device::Cpu, &data, out).unwrap()
}

fn method_result(dir: PathBuf, method: StageKind, test: TestResult) -> MethodResult {
    MethodResult {
        method,
        init: Init::Ranli,
        dir,
        optimizer: OptimizerKind::REFERENCE_SGD,
        lr: 0.1,
        epochs: 1,
        best_epoch: Some(0),
        best_val_robust: 0.5,
        trainable_tensors: 2,
        trainable_elements: 650,
        effective_elements: None,
        notes: vec![],
        test,
        seconds: 1.0,
    }
}

fn summary(dir: &Path, test: TestResult) -> Summary {
    Summary {
        name: "gate".into(),
        backbone: "linear".into(),
        data: "toy".into(),
        test_n: 24,
        head_artifact: dir.join("linear/head.json"),
        results: vec![method_result(dir.join("linear"), StageKind::Probe, test)],
    }
}

fn report(run: &Path, allow: bool) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roli"));
    c.arg("report").arg(run);
    if allow {
        c.arg("--allow-flags");
    }
    let o = c.output().unwrap();
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    (o.status.code().unwrap(), String::from_utf8_lossy(&o.stderr).into_owned(), md)
}

#[test]
fn gradient_masked_model_is_unreliable_everywhere_and_blocks_the_report() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let t = evaluate(true, &run.join("linear"));
    assert!(!t.reliable && !t.is_reliable(), "{:#?}", t.checks);
    let zero = t.checks.iter().find(|c| c.name == "zero-gradient" && c.on == "pgd").expect("zero-gradient check ran");
    assert!(!zero.passed && matches!(zero.flag, Some(Flag::ZeroGradient { .. })), "{zero:?}");
    // AA ≤ PGD was evaluated on the shared examples, and its count recorded.
    assert!(t.checks.iter().any(|c| c.name == "aa-weaker-than-pgd" && c.on == "aa-vs-pgd"), "{:#?}", t.checks);
    assert!(t.aa_robust_pgd_broken.is_some() && t.aa_n == Some(3));
    assert!(t.flags.iter().any(|f| f.contains("zero input gradient")), "{:?}", t.flags);

    // result.json / summary.json carry the checks and the mark, and read back.
    let s = summary(run, t);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["results"][0]["test"]["reliable"], false);
    assert_eq!(json["results"][0]["test"]["checks"][0]["on"], "pgd");
    std::fs::write(run.join("summary.json"), serde_json::to_string_pretty(&s).unwrap()).unwrap();

    // The run and demo tables mark the row.
    let table = roli::cli::run::table(&s);
    assert!(table.lines().nth(1).unwrap().contains("unreliable (pgd: zero-gradient"), "{table}");
    assert!(roli::cli::demo::table(&[("robust", &s)]).contains("unreliable"));

    // roli report: written and marked, exit 1 with one line; --allow-flags: exit 0, still marked.
    let (code, err, md) = report(run, false);
    assert_eq!(code, 1, "{err}");
    let line: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(line.len(), 1, "{err}");
    assert!(line[0].contains("linear probe") && line[0].contains("--allow-flags"), "{err}");
    assert!(md.contains("] **unreliable** |") && md.contains("- linear: **unreliable**"), "{md}");
    assert!(md.contains("  - zero-gradient (pgd): "), "{md}");
    let (code, err, md) = report(run, true);
    assert_eq!(code, 0, "{err}");
    assert!(md.contains("] **unreliable** |"), "{md}");
}

#[test]
fn the_smooth_model_passes_every_check_and_the_report_exits_zero() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    let t = evaluate(false, &run.join("linear"));
    assert!(t.is_reliable(), "{:#?}", t.checks);
    for name in ["perturbation-out-of-bounds", "zero-gradient", "randomized", "softmax-output"] {
        assert!(t.checks.iter().any(|c| c.name == name && c.on == "pgd" && c.passed), "{name}: {:#?}", t.checks);
    }
    assert!(t.checks.iter().any(|c| c.name == "square-beats-white-box" && c.on == "autoattack"));
    assert!(t.checks.iter().any(|c| c.name == "aa-weaker-than-pgd" && c.passed));
    let s = summary(run, t);
    assert!(!roli::cli::run::table(&s).contains("unreliable"));
    std::fs::write(run.join("summary.json"), serde_json::to_string_pretty(&s).unwrap()).unwrap();
    let (code, err, md) = report(run, false);
    assert_eq!(code, 0, "{err}");
    assert!(!md.contains("**unreliable**") && md.contains("- linear: all "), "{md}");
}

fn cached() -> bool {
    common::cached(&["fashion-mnist", "advertorch"])
}

/// `roli run` and `roli demo` on a run folder whose stages are finished (reused, no training): the
/// probe's test is the masked model's, the bias stage's the smooth model's. Both commands print
/// their table with the probe marked, write summary.json (and the demo's report.md), and exit 1
/// naming only the probe; with --allow-flags they exit 0 and keep the marks.
#[test]
fn roli_run_and_demo_exit_1_on_an_unreliable_stage_and_0_with_allow_flags() {
    if !cached() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("tiny.toml");
    let text = CFG
        .replace("name = \"toy\"", "name = \"fashion-mnist\"\ntrain_limit = 32\nval_limit = 8\ntest_limit = 24")
        .replace("vit_micro_patch4_32", "advertorch-lenet5-mnist-at");
    std::fs::write(&cfg, &text).unwrap();
    let plan = StudyPlan::resolve(&RunConfig::from_toml_str(&text, &[], "test").unwrap());
    let dirs: Vec<String> = plan.stages.iter().map(|s| s.stage.dir_name()).collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    // `run` is the folder of `roli run`; the demo runs its robust study in `demo/robust`.
    // Each test is evaluated once; the demo's copy points to the same per-example records.
    let tests: Vec<TestResult> =
        dirs.iter().zip([true, false]).map(|(d, masked)| evaluate(masked, &tmp.path().join("run").join(d))).collect();
    assert_eq!(tests.iter().map(|t| t.is_reliable()).collect::<Vec<_>>(), [false, true]);
    for root in [tmp.path().join("run"), tmp.path().join("demo/robust")] {
        for (i, (d, t)) in dirs.iter().zip(&tests).enumerate() {
            let dir = root.join(d);
            std::fs::create_dir_all(&dir).unwrap();
            let t = t.clone();
            let r = method_result(dir.clone(), plan.stages[i].stage.kind(), t);
            std::fs::write(dir.join("result.json"), serde_json::to_string_pretty(&r).unwrap()).unwrap();
            if i == 0 {
                // A finished probe has its head artifact (its presence is checked on reuse, its
                // metadata read for the manifest).
                std::fs::write(dir.join(roli::artifacts::HEAD_TENSORS), b"").unwrap();
                let meta = serde_json::json!({
                    "format": roli::head::HEAD_FORMAT, "version": roli::head::HEAD_VERSION,
                    "backbone": "test", "backbone_fingerprint": "0", "num_classes": 10, "feature_dim": 200,
                    "head_names": ["linear2.weight", "linear2.bias"], "threat_norm": "linf", "threat_eps": 0.1,
                    "data": "test", "train_fingerprint": "0", "val_fingerprint": "0", "best_epoch": null,
                    "val_clean": 0.0, "val_robust": 0.0,
                });
                std::fs::write(dir.join(roli::artifacts::HEAD_JSON), meta.to_string()).unwrap();
            }
        }
    }
    let roli = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_roli")).args(args).output().unwrap();
        let (out, err) =
            (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
        (o.status.code().unwrap(), out, err)
    };
    let (cfg, run, demo) = (cfg.to_str().unwrap(), tmp.path().join("run"), tmp.path().join("demo"));
    let (run, demo) = (run.to_str().unwrap(), demo.to_str().unwrap());
    for allow in [false, true] {
        let flag: &[&str] = if allow { &["--allow-flags"] } else { &[] };
        let (code, out, err) = roli(&[&["run", cfg, "--out", run], flag].concat());
        assert_eq!(code, if allow { 0 } else { 1 }, "{out}{err}");
        let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("linear") || l.starts_with("bias")).collect();
        assert_eq!(rows.len(), 2, "{out}");
        assert!(rows[0].contains("unreliable (pgd: zero-gradient") && !rows[1].contains("unreliable"), "{out}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        if allow {
            assert!(errors.is_empty(), "{err}");
        } else {
            assert_eq!(errors.len(), 1, "{err}");
            assert!(
                errors[0].contains("linear probe (")
                    && !errors[0].contains("bias/")
                    && errors[0].contains("--allow-flags")
            );
        }
        let s: Summary =
            serde_json::from_str(&std::fs::read_to_string(Path::new(run).join("summary.json")).unwrap()).unwrap();
        assert_eq!(s.results.iter().map(|r| r.test.reliable).collect::<Vec<_>>(), [false, true]);

        let (code, out, err) = roli(&[&["demo", "--config", cfg, "--no-standard", "--out", demo], flag].concat());
        assert_eq!(code, if allow { 0 } else { 1 }, "{out}{err}");
        assert!(
            out.lines().any(|l| l.starts_with("robust") && l.contains("linear") && l.contains("unreliable")),
            "{out}"
        );
        let md = std::fs::read_to_string(Path::new(demo).join("report.md")).unwrap();
        assert!(md.contains("- linear: **unreliable**") && md.contains("- bias/RanLI: all "), "{md}");
    }
}
