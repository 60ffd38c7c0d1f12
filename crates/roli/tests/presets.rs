//! The 50 paper presets under `configs/paper/`: every file parses as a [`RunConfig`], and its
//! numbers equal the reference's (roli-spec.md §5.1/§5.2). The table below is copied from the
//! spec by hand, independently of `configs/paper/generate.py`, so a changed number in either the
//! script or a file fails here.
use roli::config::{AutoAttackChoice, HeadInitChoice, Init, RunConfig, StageConfig, StageKind, TransformChoice};
use roli::plan::Optimisation;
use roli::train::optim::OptimizerKind;
use roli::train::schedule::scaled_lr;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Effective optimiser the reference actually runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Opt {
    Sgd,
    AdamW,
}

/// One reference config: `<folder>/<dataset>_<init>`, effective LR (BASE_LR·64/256), epochs,
/// effective optimiser, weight decay actually applied, and the LoRA ZEROINIT flag.
struct Row {
    file: &'static str,
    eff_lr: f64,
    epochs: u32,
    opt: Opt,
    wd: f64,
    zero_init: bool,
}

const fn r(file: &'static str, eff_lr: f64, epochs: u32, opt: Opt, wd: f64, zero_init: bool) -> Row {
    Row { file, eff_lr, epochs, opt, wd, zero_init }
}

use Opt::{AdamW as A, Sgd as S};

/// Spec §5.2 ("eff LR", "effective optimizer", "epochs", "extra"); AdamW rows decay by the
/// hard-coded 0.01, the three SGD fallback rows by 0, linear rows by their config WD.
const TABLE: &[Row] = &[
    r("adapter/caltech256_ranli", 0.00125, 40, A, 0.01, false),
    r("adapter/caltech256_roli", 0.000125, 40, S, 0.0, false),
    r("adapter/cifar100_ranli", 0.00125, 20, A, 0.01, false),
    r("adapter/cifar100_roli", 0.0125, 20, A, 0.01, false),
    r("adapter/cifar10_ranli", 0.0125, 20, A, 0.01, false),
    r("adapter/cifar10_roli", 0.0125, 20, A, 0.01, false),
    r("adapter/cub_ranli", 0.0125, 60, A, 0.01, false),
    r("adapter/cub_roli", 0.0125, 60, A, 0.01, false),
    r("adapter/stanforddogs_ranli", 0.00125, 40, A, 0.01, false),
    r("adapter/stanforddogs_roli", 2.5e-5, 40, A, 0.01, false),
    r("bias/caltech256_ranli", 0.00025, 40, A, 0.01, false),
    r("bias/caltech256_roli", 2.5e-6, 40, S, 0.0, false),
    r("bias/cifar100_ranli", 0.00125, 20, A, 0.01, false),
    r("bias/cifar100_roli", 0.00125, 20, A, 0.01, false),
    r("bias/cifar10_ranli", 0.00125, 20, A, 0.01, false),
    r("bias/cifar10_roli", 0.00125, 20, A, 0.01, false),
    r("bias/cub_ranli", 0.00125, 60, A, 0.01, false),
    r("bias/cub_roli", 0.000125, 60, A, 0.01, false),
    r("bias/stanforddogs_ranli", 0.00025, 40, A, 0.01, false),
    r("bias/stanforddogs_roli", 1.25e-5, 40, A, 0.01, false),
    r("full/caltech256_ranli", 0.000125, 40, A, 0.01, false),
    r("full/caltech256_roli", 2.5e-5, 40, A, 0.01, false),
    r("full/cifar100_ranli", 0.000125, 20, A, 0.01, false),
    r("full/cifar100_roli", 2.5e-5, 20, A, 0.01, false),
    r("full/cifar10_ranli", 0.000125, 20, A, 0.01, false),
    r("full/cifar10_roli", 2.5e-5, 20, A, 0.01, false),
    r("full/cub_ranli", 0.000125, 60, A, 0.01, false),
    r("full/cub_roli", 2.5e-5, 60, A, 0.01, false),
    r("full/stanforddogs_ranli", 0.000125, 40, A, 0.01, false),
    r("full/stanforddogs_roli", 1.25e-5, 40, A, 0.01, false),
    r("linear/caltech256_ranli", 0.125, 40, S, 0.01, false),
    r("linear/cifar100_ranli", 0.025, 20, S, 0.001, false),
    r("linear/cifar10_ranli", 0.0125, 20, S, 0.01, false),
    r("linear/cub_ranli", 0.25, 60, S, 0.001, false),
    r("linear/stanforddogs_ranli", 0.25, 40, S, 0.01, false),
    r("lora/caltech256_ranli", 0.00025, 40, A, 0.01, false),
    r("lora/caltech256_roli", 2.5e-5, 40, A, 0.01, true),
    r("lora/cifar100_ranli", 0.0125, 20, S, 0.0, false),
    r("lora/cifar100_roli", 0.00025, 20, A, 0.01, true),
    r("lora/cifar10_ranli", 0.0025, 20, A, 0.01, false),
    r("lora/cifar10_roli", 0.00025, 20, A, 0.01, true),
    r("lora/cub_ranli", 0.00125, 60, A, 0.01, false),
    r("lora/cub_roli", 0.00125, 60, A, 0.01, true),
    r("lora/stanforddogs_ranli", 0.00125, 40, A, 0.01, false),
    r("lora/stanforddogs_roli", 0.00025, 40, A, 0.01, true),
    r("vpt/caltech256_ranli", 0.0125, 40, A, 0.01, false),
    r("vpt/cifar100_ranli", 0.125, 20, A, 0.01, false),
    r("vpt/cifar10_ranli", 0.125, 20, A, 0.01, false),
    r("vpt/cub_ranli", 0.0125, 60, A, 0.01, false),
    r("vpt/stanforddogs_ranli", 0.0125, 40, A, 0.01, false),
];

/// The reference's AdamW-with-WD-0 configs, which silently run SGD (spec §5, §9.3).
const FALLBACKS: [&str; 3] = ["adapter/caltech256_roli", "bias/caltech256_roli", "lora/cifar100_ranli"];

fn paper_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/paper")
}

/// Every `*.toml` under configs/paper as `folder/stem`.
fn preset_files() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(paper_dir()).expect("configs/paper exists").flatten() {
        if !dir.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).expect("readable folder").flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "toml") {
                let key = format!(
                    "{}/{}",
                    dir.file_name().to_string_lossy(),
                    p.file_stem().unwrap_or_default().to_string_lossy()
                );
                out.push((key, p));
            }
        }
    }
    out.sort();
    out
}

fn method_of(folder: &str) -> StageKind {
    // The reference's folder `vpt` is roli's method `prompt`.
    StageKind::named(if folder == "vpt" { "prompt" } else { folder })
        .unwrap_or_else(|e| panic!("unexpected preset folder {folder}: {e}"))
}

/// The optimiser a stage actually runs, and the faithful fallback's note if it applied.
fn optimizer_for(cfg: &RunConfig, s: &StageConfig) -> (OptimizerKind, Option<String>) {
    let o = Optimisation::resolve(s, cfg.data.batch_size, &cfg.faithful);
    (o.optimizer, o.notes.into_iter().next())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + 1e-9 * b.abs()
}

#[test]
fn there_are_fifty_presets_one_per_reference_config() {
    let files = preset_files();
    let per = |folder: &str| files.iter().filter(|(k, _)| k.starts_with(&format!("{folder}/"))).count();
    assert_eq!(
        [per("linear"), per("full"), per("bias"), per("lora"), per("adapter"), per("vpt")],
        [5, 10, 10, 10, 10, 5]
    );
    assert_eq!(files.len(), 50);
    let have: BTreeSet<&str> = files.iter().map(|(k, _)| k.as_str()).collect();
    let want: BTreeSet<&str> = TABLE.iter().map(|r| r.file).collect();
    assert_eq!(have, want);
}

#[test]
fn every_preset_parses_and_matches_the_reference_table() {
    let files = preset_files();
    assert!(!files.is_empty(), "no presets under {}", paper_dir().display());
    let mut fallbacks = BTreeSet::new();
    for (key, path) in &files {
        let cfg = RunConfig::load(path, &[]).unwrap_or_else(|e| panic!("{key}: {e:#}"));
        let row = TABLE.iter().find(|r| r.file == key).unwrap_or_else(|| panic!("{key} is not a reference config"));
        let (folder, stem) = key.split_once('/').expect("folder/stem");
        let (dataset, init) = stem.rsplit_once('_').expect("<dataset>_<init>");
        let method = method_of(folder);
        let init = if init == "roli" { Init::Roli } else { Init::Ranli };
        let cifar = dataset.starts_with("cifar");

        // Shared by every reference config.
        assert_eq!(cfg.data.batch_size, 64, "{key}");
        assert_eq!(cfg.data.train_percent, 90, "{key}");
        assert_eq!(cfg.data.transform, if cifar { TransformChoice::None } else { TransformChoice::Reference }, "{key}");
        assert_eq!(cfg.model.backbone, "swin_base_patch4_window7_224", "{key}");
        assert_eq!(
            cfg.model.checkpoint.as_deref(),
            Some(Path::new("pretrain/ARES_Swin_base_patch4_window7_224_AT.pth")),
            "{key}"
        );
        assert_eq!(cfg.model.resize, cifar.then_some([224, 224]), "{key}");
        assert_eq!(cfg.model.head_init, HeadInitChoice::Reference, "{key}");
        assert_eq!(cfg.model.drop_path, 0.5, "{key}");
        assert_eq!(cfg.threat.norm, roli::attacks::threat::Norm::Linf, "{key}");
        assert!(close(cfg.threat.eps, 8.0 / 255.0) && close(cfg.threat.step_size, 2.0 / 255.0), "{key}: eps/step");
        assert_eq!((cfg.threat.train_steps, cfg.threat.eval_steps, cfg.threat.random_start), (7, 10, true), "{key}");
        assert_eq!(cfg.eval.autoattack, AutoAttackChoice::Standard, "{key}");
        assert_eq!(cfg.eval.aa_limit, None, "{key}: AutoAttack runs on the full test split");
        assert!(cfg.faithful.batch_best_iterate, "{key}");

        // Stage 1 is always this dataset's linear probe.
        let probe =
            TABLE.iter().find(|r| r.file == format!("linear/{dataset}_ranli")).expect("a linear row per dataset");
        assert!(close(scaled_lr(cfg.probe.base_lr, cfg.data.batch_size), probe.eff_lr), "{key}: probe LR");
        assert_eq!((cfg.probe.epochs, cfg.probe.warmup_epochs), (probe.epochs, 10), "{key}: probe epochs");
        assert!(close(cfg.probe.weight_decay, probe.wd), "{key}: probe WD");
        assert!(matches!(optimizer_for(&cfg, &cfg.probe).0, OptimizerKind::Sgd { .. }), "{key}: probe optimiser");

        // The stage this file stands for.
        let stage = match method {
            StageKind::Probe => {
                assert!(cfg.finetune.methods.is_empty(), "{key}: a linear preset runs stage 1 only");
                &cfg.probe
            }
            StageKind::Finetune(m) => {
                assert_eq!(
                    (cfg.finetune.methods.as_slice(), cfg.finetune.inits.as_slice()),
                    ([m].as_slice(), [init].as_slice()),
                    "{key}"
                );
                cfg.stage_for(m, init)
            }
        };
        assert!(
            close(scaled_lr(stage.base_lr, cfg.data.batch_size), row.eff_lr),
            "{key}: effective LR {} ≠ {}",
            scaled_lr(stage.base_lr, 64),
            row.eff_lr
        );
        assert_eq!((stage.epochs, stage.warmup_epochs), (row.epochs, 10), "{key}: epochs");
        assert!(close(stage.weight_decay, row.wd), "{key}: weight decay {} ≠ {}", stage.weight_decay, row.wd);
        let (kind, note) = optimizer_for(&cfg, stage);
        let got = if matches!(kind, OptimizerKind::Sgd { .. }) { Opt::Sgd } else { Opt::AdamW };
        assert_eq!(got, row.opt, "{key}: effective optimiser");
        if note.is_some() {
            fallbacks.insert(key.clone());
        }

        // Method details and the faithful switches.
        assert_eq!(cfg.faithful.lora_zero_init, row.zero_init, "{key}: lora_zero_init (reference ZEROINIT)");
        assert_eq!(cfg.faithful.adapter_zero_init, method.as_str() == "adapter", "{key}: adapter_zero_init");
        assert_eq!(cfg.faithful.adamw_wd0_is_sgd, FALLBACKS.contains(&key.as_str()), "{key}: adamw_wd0_is_sgd");
        match method.as_str() {
            "lora" => assert_eq!(
                (cfg.finetune.lora.rank, cfg.finetune.lora.alpha, cfg.finetune.lora.dropout),
                (16, 16.0, 0.1),
                "{key}"
            ),
            "adapter" => assert_eq!(cfg.finetune.adapter.reduction, 8, "{key}"),
            "prompt" => {
                assert_eq!(cfg.finetune.prompt.tokens, if dataset == "cub" { 20 } else { 10 }, "{key}: VPT tokens");
                assert_eq!(cfg.finetune.prompt.dropout, 0.1, "{key}");
            }
            _ => {}
        }
    }
    assert_eq!(
        fallbacks,
        FALLBACKS.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        "the three AdamW-WD-0 → SGD configs"
    );
}

#[test]
fn a_preset_accepts_a_data_override() {
    let p = paper_dir().join("lora/cifar10_roli.toml");
    let cfg = RunConfig::load(&p, &["data.name=/elsewhere/cifar-10-batches-bin".into(), "eval.aa_limit=1000".into()])
        .expect("override applies");
    assert_eq!(cfg.data.name, "/elsewhere/cifar-10-batches-bin");
    assert_eq!(cfg.eval.aa_limit, Some(1000));
    assert!(cfg.faithful.lora_zero_init);
}
