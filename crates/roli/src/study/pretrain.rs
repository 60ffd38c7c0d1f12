//! Pretraining a backbone from scratch, adversarially (PGD) or standard (`eps = 0`): the
//! project's own robust backbones for the model zoo (`zoo/<name>/model.safetensors` +
//! `model.json`, whose sidecar records the training, data hash, fingerprint and measured
//! accuracies). The run is one full-finetuning stage of a [`StudyPlan`] built from typed values.
use crate::config::{
    AutoAttackChoice, DataConfig, EvalConfig, FinetuneConfig, HeadInitChoice, ModelConfig, OptimizerChoice, RunConfig,
    StageConfig, ThreatConfig, TrainConfig, TransformChoice,
};
use crate::device::ComputeArgs;
use crate::peft::Method;
use crate::pipeline;
use crate::plan::{pgd_config, EvalPlan, Stage, StudyPlan};
use crate::results::TestResult;
use crate::zoo::{self, BackboneSource};
use anyhow::bail;
use roli_attacks::threat::{Norm, ThreatModel};
use roli_attacks::{AttackSpec, Stage as AttackStage};
use std::path::{Path, PathBuf};

/// What to pretrain (the `roli pretrain` flags).
#[derive(Debug, Clone, clap::Args)]
pub struct PretrainSpec {
    /// Registry preset to train (e.g. swin_micro_patch2_window4_32, vit_micro_patch4_32, lenet5_advertorch).
    #[arg(long)]
    pub preset: String,
    /// Dataset (built-in name or folder).
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// L∞ radius of PGD training; 0 = standard training.
    #[arg(long, default_value_t = 0.3, allow_negative_numbers = true)]
    pub eps: f64,
    /// PGD steps in training.
    #[arg(long, default_value_t = 7)]
    pub steps: u32,
    /// PGD step size in training (default 2.5·eps/steps). Large steps put every perturbation on a
    /// corner of the L∞ ball, and a model can learn to resist only those (Swin-nano at 0.3 with step
    /// 0.15: 68 % PGD at that step, 0 % at eps/4); so validation and test use eps/4.
    #[arg(long, allow_negative_numbers = true)]
    pub step_size: Option<f64>,
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// Epochs over which the training eps ramps up linearly from 0 (large radii from scratch
    /// otherwise collapse to a constant prediction).
    #[arg(long, default_value_t = 0)]
    pub eps_warmup: u32,
    /// Use the first N training images.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// AdamW base LR (effective = base·batch/256).
    #[arg(long, default_value_t = 4e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Warm-up epochs (linear from 0), then cosine.
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Evaluate clean/PGD on this many test images, AutoAttack on `--aa-limit`.
    #[arg(long, default_value_t = 1000)]
    pub test_limit: usize,
    #[arg(long, default_value_t = 200)]
    pub aa_limit: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Start from this roli checkpoint (same preset, head included) instead of a random
    /// initialisation: e.g. adversarial training warm-started from the standard twin, for
    /// models that do not get off the ground adversarially from scratch.
    #[arg(long)]
    pub init: Option<PathBuf>,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl PretrainSpec {
    fn standard(&self) -> bool {
        self.eps == 0.0
    }
    /// The training PGD step: given, or 2.5·eps/steps (0.01 for standard training, never used).
    pub fn train_step(&self) -> f64 {
        if self.standard() {
            0.01
        } else {
            self.step_size.unwrap_or(2.5 * self.eps / self.steps.max(1) as f64)
        }
    }

    /// The run as a config (the TOML face, written to `train/config.resolved.toml`): full
    /// finetuning (`finetune.ranli`) of a preset with a PyTorch-default head; validation and test
    /// PGD-10 at eps/4.
    pub fn config(&self) -> anyhow::Result<RunConfig> {
        // Named by their flags here; the config's own checks below would name its keys.
        crate::validate::radius("--eps", self.eps, roli_attacks::threat::Norm::Linf, false, "")?;
        if let Some(s) = self.step_size {
            crate::validate::step_size("--step-size", s)?;
        }
        let standard = self.standard();
        let step = self.train_step();
        let stage = |epochs, base_lr, weight_decay, optimizer, warmup_epochs| StageConfig {
            epochs,
            base_lr,
            weight_decay,
            optimizer,
            warmup_epochs,
        };
        let cfg = RunConfig {
            name: format!("pretrain {} on {}", self.preset, self.data),
            seed: self.seed,
            seeds: Vec::new(),
            device: self.compute.device,
            train: TrainConfig { precision: self.compute.precision, ..TrainConfig::default() },
            data: DataConfig {
                name: self.data.clone(),
                format: None,
                train_percent: 90,
                train_limit: self.train_limit,
                val_limit: Some(1000),
                test_limit: Some(self.test_limit),
                batch_size: self.batch_size,
                transform: TransformChoice::None,
            },
            model: ModelConfig {
                backbone: self.preset.clone(),
                checkpoint: None,
                resize: None,
                head_init: HeadInitChoice::Torch,
                drop_path: 0.0,
                layout: roli_models::SourceLayout::Native,
                standard_backbone: None,
                attention: self.compute.attention,
            },
            threat: ThreatConfig {
                norm: Norm::Linf,
                eps: if standard { 0.3 } else { self.eps },
                step_size: step,
                eval_step_size: Some(if standard { step } else { self.eps / 4.0 }),
                train_steps: if standard { 0 } else { self.steps },
                eval_steps: if standard { 0 } else { 10 },
                random_start: true,
                eps_warmup_epochs: self.eps_warmup,
            },
            probe: stage(1, 0.1, 0.0, OptimizerChoice::Sgd, 10),
            finetune: FinetuneConfig {
                ranli: stage(self.epochs, self.lr, 0.05, OptimizerChoice::Adamw, self.warmup),
                ..FinetuneConfig::default()
            },
            eval: EvalConfig {
                autoattack: if standard { AutoAttackChoice::None } else { AutoAttackChoice::Standard },
                aa_limit: Some(self.aa_limit),
                ..EvalConfig::default()
            },
            faithful: Default::default(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The test: the training threat, except for a standard model, which is tested clean and
    /// with PGD-40 (step 0.01) at L∞ 0.3 to show it is not robust.
    pub fn test_eval(&self, plan: &StudyPlan) -> EvalPlan {
        if !self.standard() {
            return plan.eval.clone();
        }
        let pgd = pgd_config(true, &Default::default(), 40, 0.01);
        EvalPlan {
            threat: ThreatModel::new(Norm::Linf, 0.3),
            attacks: vec![AttackSpec::Single(AttackStage::Pgd(pgd))],
            ..plan.eval.clone()
        }
    }
}

/// A finished pretraining.
pub struct Pretrained {
    pub test: TestResult,
    pub backbone_fingerprint: String,
}

/// Trains in `out/train` (resumable), tests, and saves the classifier with its sidecar in `out`.
pub fn pretrain(spec: &PretrainSpec, out: &Path) -> anyhow::Result<Pretrained> {
    let t0 = std::time::Instant::now();
    let cfg = spec.config()?;
    let plan = StudyPlan::resolve(&cfg);
    let train_dir = out.join("train");
    std::fs::create_dir_all(&train_dir)?;
    pipeline::write_resolved(&plan, &train_dir)?;
    let data = pipeline::prepare_data(&plan.data)?;
    let full = Stage::Finetune { method: Method::named(crate::peft::full::NAME)?, init: crate::config::Init::Ranli };
    let stage = crate::plan::stage_spec(&cfg, full);
    // A warm start keeps its head; its fingerprint (of all tensors) names it even after its folder moves.
    let (src, keep_head, init_fingerprint) = match &spec.init {
        None => (pipeline::source(&plan.model)?, false, None),
        Some(dir) => {
            let (src, fingerprint) = init_source(dir, &spec.preset)?;
            (src, true, Some(fingerprint))
        }
    };
    let opts = zoo::BuildOptions {
        keep_head,
        ..pipeline::build_options(&plan.model, data.num_classes, data.input, full, plan.model.device()?)
    };
    let built = zoo::build(&src, &opts, &roli_models::peft::NoPeft)?;
    tracing::info!("pretrain {}: {}", spec.preset, built.load_summary);
    let sp = pipeline::stage_plan(&plan, &stage, &built, &format!("pretrain {}", spec.preset));
    let outcome = pipeline::train_with_bar(&built, &data, &sp, &train_dir)?;
    let eval = spec.test_eval(&plan);
    let test =
        pipeline::evaluate_test(&eval, &eval.attacks, &built.model, built.vs.device(), data.test.as_ref(), &train_dir)?;
    let (pgd_steps, pgd_step) = match eval.attacks.first() {
        Some(AttackSpec::Single(AttackStage::Pgd(p))) => (p.steps, p.step_size),
        _ => bail!("the pretraining test starts with PGD"),
    };
    let pgd_step = match pgd_step {
        roli_attacks::pgd::StepSize::Absolute(s) => s,
        other => bail!("unexpected PGD step {other:?}"),
    };
    let info = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "training": { "data": data.spec, "train_fingerprint": data.train.fingerprint(), "n_train": data.train.len(),
                      "eps": spec.eps, "pgd_steps": spec.steps, "step_size": spec.train_step(),
                      "init": spec.init.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "random".into()),
                      "init_fingerprint": init_fingerprint,
                      "epochs": spec.epochs, "eps_warmup_epochs": spec.eps_warmup, "base_lr": spec.lr,
                      "batch_size": spec.batch_size, "seed": spec.seed,
                      "best_epoch": outcome.state.best_epoch, "history": outcome.state.history },
        "threat_model": { "norm": "linf", "eps": spec.eps },
        "test": { "n": test.n, "clean_accuracy": test.clean_accuracy, "pgd_accuracy": test.pgd_accuracy,
                  "pgd": format!("PGD-{pgd_steps} L∞ {} step {pgd_step}", eval.threat.eps()),
                  "aa_accuracy": test.aa_accuracy, "aa_n": test.aa_n },
    });
    let sc = roli_models::save_classifier(out, &built.vs, &built.model, info)?;
    crate::manifest::write_pretrain(
        &plan,
        sp.seed,
        &eval,
        &data,
        &sc.backbone_fingerprint,
        t0.elapsed().as_secs_f64(),
        out,
    )?;
    Ok(Pretrained { test, backbone_fingerprint: sc.backbone_fingerprint })
}

/// The checkpoint to warm-start from (a roli checkpoint folder of the same preset) and its fingerprint.
pub fn init_source(dir: &Path, preset: &str) -> anyhow::Result<(BackboneSource, String)> {
    let src = zoo::resolve(&dir.to_string_lossy(), None, roli_models::SourceLayout::Native)?;
    let BackboneSource::Own { dir } = &src else {
        bail!("--init {}: not a roli checkpoint folder (model.safetensors + model.json)", dir.display());
    };
    let sc = roli_models::own::read_sidecar(dir)?;
    if sc.descriptor.name != preset {
        bail!(
            "--init {}: holds a {} model, not {preset}; pass a checkpoint of the same preset",
            dir.display(),
            sc.descriptor.name
        );
    }
    Ok((src, sc.fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        spec: PretrainSpec,
    }

    fn spec(args: &[&str]) -> PretrainSpec {
        P::parse_from(std::iter::once("pretrain").chain(args.iter().copied())).spec
    }

    #[test]
    fn init_must_be_a_checkpoint_of_the_same_preset() {
        let vit = zoo::zoo_dir().join("vit-nano-mnist-std");
        assert!(init_source(&vit, "vit_nano_patch7_28").is_ok());
        let e = init_source(&vit, "swin_nano_patch2_window7_28").unwrap_err().to_string();
        assert!(e.contains("holds a vit_nano_patch7_28 model") && e.contains("same preset"), "{e}");
        let e = init_source(&zoo::zoo_dir(), "vit_nano_patch7_28").unwrap_err().to_string();
        assert!(e.contains("unknown model") || e.contains("not a roli checkpoint"), "{e}");
    }

    #[test]
    fn adversarial_pretraining_plan() {
        let s = spec(&["--preset", "vit_nano_patch7_28", "--eps", "0.3", "--steps", "5", "--step-size", "0.075"]);
        let plan = StudyPlan::resolve(&s.config().unwrap());
        assert_eq!(plan.threat.threat.eps(), 0.3);
        assert_eq!((plan.threat.train_pgd.steps, plan.threat.eval_pgd.steps), (5, 10));
        assert_eq!(plan.threat.eval_pgd.step_size, roli_attacks::pgd::StepSize::Absolute(0.075));
        assert_eq!(s.test_eval(&plan).attacks.len(), 2, "PGD and AutoAttack");
        assert_eq!(plan.model.head_init, roli_models::HeadInit::TorchDefault);
        let d = spec(&["--preset", "vit_nano_patch7_28", "--eps", "0.3", "--steps", "6"]);
        assert!((d.train_step() - 0.125).abs() < 1e-12, "2.5·eps/steps");
    }

    #[test]
    fn standard_pretraining_is_clean_and_tested_at_pgd40() {
        let s = spec(&["--preset", "lenet5_advertorch", "--eps", "0"]);
        let plan = StudyPlan::resolve(&s.config().unwrap());
        assert_eq!(plan.threat.train_pgd.steps, 0, "no attack in training");
        let e = s.test_eval(&plan);
        assert_eq!(e.threat.eps(), 0.3);
        assert!(matches!(e.attacks[..], [AttackSpec::Single(AttackStage::Pgd(p))] if p.steps == 40));
    }
}
