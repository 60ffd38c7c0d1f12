//! Devices and precision through the `roli` binary on a machine without a GPU: a CUDA request is a
//! one-line error (never a panic), `roli device` reports and checks, and a run trained with the
//! fused optimiser and bf16 autocast on the CPU goes end to end.

mod common;
use common::{roli, run};

fn has_cuda() -> bool {
    tch::Cuda::is_available()
}

#[test]
fn cuda_without_a_gpu_is_one_line_naming_the_fix() {
    if has_cuda() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["eval", "--model", "advertorch-lenet5-mnist-at", "--data", "mnist", "--eps", "0.3", "--device", "cuda"],
        vec!["run", "configs/lenet-fmnist.toml", "--device", "cuda:1"],
        vec!["device", "parity", "--preset", "lenet5_advertorch", "--device", "cuda"],
    ];
    for args in cases {
        let mut c = roli();
        c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).args(&args).arg("--out").arg(out.path());
        if args[0] == "device" {
            c = roli();
            c.args(&args);
        }
        let (code, _, err) = run(c);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("no CUDA device visible; use --device cpu"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let mut c = roli();
    c.args(["device", "parity", "--preset", "lenet5_advertorch", "--device", "tpu"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown device 'tpu'"), "{err}");
}

#[test]
fn device_info_and_parity_report_json() {
    let d = tempfile::tempdir().unwrap();
    let info = d.path().join("info.json");
    let mut c = roli();
    c.args(["device", "info", "--json"]).arg(&info);
    let (code, _, err) = run(c);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    assert_eq!(v["cuda_available"].as_bool(), Some(has_cuda()));
    assert!(v["threads"].as_i64().unwrap() >= 1);

    // bf16 autocast on the CPU changes the numbers: a tolerance it cannot meet fails the check.
    let p = d.path().join("parity.json");
    let mut c = roli();
    c.args(["device", "parity", "--preset", "vit_micro_patch4_32", "--device", "cpu", "--precision", "bf16"])
        .args(["--batch", "2", "--tolerance", "1e-7", "--json"])
        .arg(&p);
    let (code, out, err) = run(c);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("exceeds the tolerance"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert!(v["max_abs_logits"].as_f64().unwrap() > 1e-7, "{v}");
    // Fused attention on the same device is within the documented 1e-5.
    let mut c = roli();
    c.args(["device", "parity", "--preset", "swin_micro_patch2_window4_32", "--device", "cpu"]).args([
        "--attention",
        "fused",
        "--batch",
        "2",
        "--tolerance",
        "1e-5",
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_bf16_fused_run_on_the_cpu_goes_end_to_end_and_resumes_with_another_device_setting() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("tiny.toml");
    std::fs::write(
        &cfg,
        "name = \"tiny\"\ndevice = \"cpu\"\n[data]\nname = \"fashion-mnist\"\ntrain_limit = 128\nval_limit = 32\n\
         test_limit = 32\nbatch_size = 32\n[model]\nbackbone = \"vit-nano-mnist-at\"\nhead_init = \"torch\"\n\
         attention = \"fused\"\n[threat]\neps = 0.1\nstep_size = 0.025\ntrain_steps = 2\neval_steps = 2\n\
         [probe]\nepochs = 1\nbase_lr = 0.4\nweight_decay = 0.0\noptimizer = \"sgd\"\nwarmup_epochs = 0\n\
         [finetune]\nmethods = [\"lora\"]\ninits = [\"roli\"]\n[finetune.roli]\nepochs = 1\nbase_lr = 4e-3\n\
         weight_decay = 0.01\noptimizer = \"adamw\"\nwarmup_epochs = 0\n[train]\nprecision = \"bf16\"\n\
         optimizer_impl = \"fused\"\n[eval]\nautoattack = \"none\"\n",
    )
    .unwrap();
    let out = d.path().join("run");
    let mut c = roli();
    c.arg("run").arg(&cfg).arg("--out").arg(&out);
    let (code, stdout, err) = run(c);
    assert_eq!(code, 0, "{stdout}{err}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let results = s["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let clean = r["test"]["clean_accuracy"].as_f64().unwrap();
        assert!(clean.is_finite() && (0.0..=1.0).contains(&clean), "{r}");
    }
    // The same folder with another device and optimiser implementation is the same run: reused.
    let mut c = roli();
    c.arg("run").arg(&cfg).arg("--out").arg(&out).args([
        "--device",
        "auto",
        "--set",
        "train.optimizer_impl=\"reference\"",
    ]);
    let (code, stdout, err) = run(c);
    assert_eq!(code, 0, "{stdout}{err}");
    // Another precision is another run, refused.
    let mut c = roli();
    c.arg("run").arg(&cfg).arg("--out").arg(&out).args(["--set", "train.precision=\"fp32\""]);
    let (code, _, err) = run(c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("different settings"), "{err}");
}
