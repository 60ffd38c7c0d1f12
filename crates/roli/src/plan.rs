//! The study plan: a [`RunConfig`] (the TOML face) resolved once into typed parts, as ripgrep
//! turns raw flags into resolved arguments. Everything below the command line takes the plan or
//! one of its parts — [`DataPlan`], [`ModelPlan`] (with the device),
//! [`ThreatPlan`], the [`StageSpec`]s (the probe, then `Finetune { method, init }`) and the
//! [`EvalPlan`] — never the raw config. `roli run --dry-run` prints it.
use crate::config::{
    run_key, FaithfulConfig, HeadInitChoice, Init, OptimizerChoice, RunConfig, StageConfig, StageKind, TransformChoice,
};
use crate::device::DeviceChoice;
use crate::peft::{self, Method};
use crate::precision::Precision;
use crate::seed::derive_seed;
use crate::train::optim::{OptimImplChoice, OptimizerKind};
use crate::train::schedule::scaled_lr;
use roli_attacks::pgd::{BestIterate, PgdConfig, StepSize};
use roli_attacks::threat::ThreatModel;
use roli_attacks::{AttackSpec, LossKind, Stage as AttackStage};
use roli_models::{AttentionImpl, HeadInit, SourceLayout};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// A whole study: stage 1, every stage 2, their test evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct StudyPlan {
    pub name: String,
    pub seed: u64,
    pub data: DataPlan,
    pub model: ModelPlan,
    pub threat: ThreatPlan,
    /// The probe first, then every (method, init) of the config.
    pub stages: Vec<StageSpec>,
    /// Precision of every training stage.
    pub train_precision: Precision,
    /// Implementation of every stage's optimiser (resolved per device).
    pub optimizer_impl: OptimImplChoice,
    /// `train.checkpoint_every_steps`: mid-epoch checkpoints (none: after every epoch only).
    pub checkpoint_every_steps: Option<u64>,
    pub eval: EvalPlan,
    /// The config with every default written out (`config.resolved.toml`).
    #[serde(skip)]
    pub resolved_toml: String,
    /// Use a stage-1 head probed at another threat or on other train/val splits (`roli finetune
    /// --allow-head-mismatch`); the mismatch is then recorded in the stage's notes.
    #[serde(skip)]
    pub allow_head_mismatch: bool,
}

/// Which data, how much, in which batches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataPlan {
    pub name: String,
    /// The folder's format when given (`data.format`); detected otherwise.
    pub format: Option<roli_data::Format>,
    pub train_percent: u32,
    pub train_limit: Option<usize>,
    pub val_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub batch_size: usize,
    pub transform: TransformChoice,
}

/// The backbone and how each stage's model is built from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelPlan {
    pub backbone: String,
    pub checkpoint: Option<PathBuf>,
    pub layout: SourceLayout,
    /// Resize inputs to the backbone's size inside the model.
    pub resize: bool,
    /// The size `model.resize` names, checked against the backbone when its model is built (roli
    /// resizes to the backbone's own size; it does not interpolate position embeddings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize_to: Option<[i64; 2]>,
    pub head_init: HeadInit,
    /// Stochastic depth for methods that train the backbone in train mode.
    pub drop_path: f64,
    /// Every PEFT method's settings.
    pub peft: peft::Settings,
    /// Seed of random initialisations (head, PEFT tensors, a backbone without weights).
    pub init_seed: u64,
    /// Where the models run (resolved against the machine by [`ModelPlan::device`]).
    pub device: DeviceChoice,
    /// Explicit or fused attention (ViT, Swin).
    pub attention: AttentionImpl,
}

impl ModelPlan {
    /// The device on this machine, or a one-line error ("no CUDA device visible; use --device cpu").
    pub fn device(&self) -> anyhow::Result<tch::Device> {
        self.device.resolve()
    }
}

/// The threat model of training and evaluation, and the PGD of each.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreatPlan {
    pub threat: ThreatModel,
    pub train_pgd: PgdConfig,
    /// PGD of validation (best epoch) and test.
    pub eval_pgd: PgdConfig,
    pub eps_warmup_epochs: u32,
}

/// A training stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stage {
    /// Stage 1: adversarial linear probing (only the head trains).
    Probe,
    /// Stage 2: one finetuning method from a random (RanLI) or the probe's head (RoLI).
    Finetune { method: Method, init: Init },
}

impl Stage {
    pub fn kind(self) -> StageKind {
        match self {
            Stage::Probe => StageKind::Probe,
            Stage::Finetune { method, .. } => StageKind::Finetune(method),
        }
    }
    pub fn method(self) -> Option<Method> {
        self.kind().method()
    }
    /// The init recorded in results (the probe's random head counts as RanLI).
    pub fn init(self) -> Init {
        match self {
            Stage::Probe => Init::Ranli,
            Stage::Finetune { init, .. } => init,
        }
    }
    /// Progress and log label: `probe`, `full/roli`.
    pub fn label(self) -> String {
        match self {
            Stage::Probe => "probe".into(),
            Stage::Finetune { method, init } => format!("{}/{}", method.as_str(), init.as_str()),
        }
    }
    /// The stage's folder in a run: `linear`, `full_roli`.
    pub fn dir_name(self) -> String {
        match self {
            Stage::Probe => StageKind::PROBE_NAME.into(),
            Stage::Finetune { method, init } => run_key(method, init),
        }
    }
    /// The stage's random stream (shuffle, attack starts, dropout).
    pub fn seed(self, study_seed: u64) -> u64 {
        derive_seed(&[study_seed, self.method().map(|m| m.stream()).unwrap_or(0), self.init() as u64])
    }
}

/// One stage with its optimisation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSpec {
    pub stage: Stage,
    pub optim: Optimisation,
}

/// A stage's optimisation as it will actually run: its TOML table (epochs, base LR, weight
/// decay, warm-up) and what is resolved from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Optimisation {
    /// The TOML face of this stage (`[probe]`, `[finetune.ranli]`, or a per-method table).
    pub source: StageConfig,
    /// Effective LR: `base_lr · batch / 256`, as in the reference.
    pub lr: f64,
    /// The optimiser actually used (the faithful AdamW-wd0→SGD switch applied).
    pub optimizer: OptimizerKind,
    /// Why the optimiser differs from the configured one, if it does.
    pub notes: Vec<String>,
}

impl Optimisation {
    /// Resolves a stage's TOML table.
    pub fn resolve(s: &StageConfig, batch_size: usize, faithful: &FaithfulConfig) -> Self {
        let (optimizer, note) = match s.optimizer {
            OptimizerChoice::Sgd => (OptimizerKind::REFERENCE_SGD, None),
            OptimizerChoice::Adamw if s.weight_decay == 0.0 && faithful.adamw_wd0_is_sgd => (
                OptimizerKind::REFERENCE_SGD,
                Some(
                    "faithful: AdamW with weight_decay 0 runs as SGD(momentum 0.9), as the reference code silently does"
                        .to_string(),
                ),
            ),
            OptimizerChoice::Adamw => (OptimizerKind::REFERENCE_ADAMW, None),
        };
        Optimisation {
            source: s.clone(),
            lr: scaled_lr(s.base_lr, batch_size),
            optimizer,
            notes: note.into_iter().collect(),
        }
    }

    /// The same stage at another base LR (learning-rate selection).
    pub fn with_base_lr(&self, base_lr: f64, batch_size: usize) -> Self {
        Optimisation {
            source: StageConfig { base_lr, ..self.source.clone() },
            lr: scaled_lr(base_lr, batch_size),
            ..self.clone()
        }
    }
}

/// The test evaluation: every example gets the first attack of `attacks` (PGD), AutoAttack runs
/// on the first `aa_limit` examples, for the stages of `aa_for` (empty: all).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalPlan {
    pub threat: ThreatModel,
    pub attacks: Vec<AttackSpec>,
    pub aa_limit: Option<usize>,
    pub aa_for: Vec<StageKind>,
    pub eps_curve: Vec<f64>,
    pub batch_size: usize,
    /// Seed of the test attacks' random starts.
    pub seed: u64,
    /// Precision of the test attacks (fp32 unless configured).
    pub precision: Precision,
}

impl EvalPlan {
    /// The attacks of a stage's test: AutoAttack dropped where the config leaves it out.
    pub fn attacks_for(&self, kind: StageKind) -> Vec<AttackSpec> {
        let aa = self.aa_for.is_empty() || self.aa_for.contains(&kind);
        self.attacks.iter().copied().filter(|a| aa || !matches!(a, AttackSpec::AutoAttack(_))).collect()
    }
    /// The same evaluation without AutoAttack.
    pub fn without_autoattack(&self) -> EvalPlan {
        EvalPlan {
            attacks: self.attacks.iter().copied().filter(|a| !matches!(a, AttackSpec::AutoAttack(_))).collect(),
            ..self.clone()
        }
    }
}

/// PGD as the reference runs it, with `steps` steps of `step_size`: fixed step, random start, CE,
/// best iterate per example (or per batch with `faithful.batch_best_iterate`).
pub fn pgd_config(random_start: bool, faithful: &FaithfulConfig, steps: u32, step_size: f64) -> PgdConfig {
    PgdConfig {
        steps: steps as usize,
        step_size: StepSize::Absolute(step_size),
        restarts: 1,
        random_start,
        loss: LossKind::Ce,
        best: if faithful.batch_best_iterate { BestIterate::FaithfulBatch } else { BestIterate::PerExample },
    }
}

/// The optimisation of one stage of the config (any method, even one the study does not list).
pub fn stage_spec(cfg: &RunConfig, stage: Stage) -> StageSpec {
    let s = match stage {
        Stage::Probe => &cfg.probe,
        Stage::Finetune { method, init } => cfg.stage_for(method, init),
    };
    StageSpec { stage, optim: Optimisation::resolve(s, cfg.data.batch_size, &cfg.faithful) }
}

impl StudyPlan {
    /// Resolves a checked config. A config with several `seeds` resolves to its first seed's study
    /// (`roli probe`, `finetune`, `tune` run one study; `crate::study::seeds` runs them all).
    pub fn resolve(cfg: &RunConfig) -> StudyPlan {
        if let Some(&first) = cfg.seeds.first() {
            return StudyPlan::resolve(&cfg.for_seed(first, true));
        }
        let t = &cfg.threat;
        let threat = ThreatModel::new(t.norm, t.eps);
        let eval_pgd = pgd_config(t.random_start, &cfg.faithful, t.eval_steps, t.eval_step());
        let mut stages = vec![stage_spec(cfg, Stage::Probe)];
        for &method in &cfg.finetune.methods {
            for &init in &cfg.finetune.inits {
                stages.push(stage_spec(cfg, Stage::Finetune { method, init }));
            }
        }
        let mut attacks = vec![AttackSpec::Single(AttackStage::Pgd(eval_pgd))];
        attacks.extend(cfg.eval.autoattack.version().map(AttackSpec::AutoAttack));
        StudyPlan {
            name: cfg.name.clone(),
            seed: cfg.seed,
            data: DataPlan {
                name: cfg.data.name.clone(),
                format: cfg.data.format,
                train_percent: cfg.data.train_percent,
                train_limit: cfg.data.train_limit,
                val_limit: cfg.data.val_limit,
                test_limit: cfg.data.test_limit,
                batch_size: cfg.data.batch_size,
                transform: cfg.data.transform,
            },
            model: ModelPlan {
                backbone: cfg.model.backbone.clone(),
                checkpoint: cfg.model.checkpoint.clone(),
                layout: cfg.model.layout,
                resize: cfg.model.resize.is_some(),
                resize_to: cfg.model.resize,
                head_init: match cfg.model.head_init {
                    HeadInitChoice::Reference => HeadInit::Ranli,
                    HeadInitChoice::Torch => HeadInit::TorchDefault,
                },
                drop_path: cfg.model.drop_path,
                peft: peft::Settings {
                    lora: cfg.finetune.lora.clone(),
                    adapter: cfg.finetune.adapter.clone(),
                    prompt: cfg.finetune.prompt.clone(),
                    lora_zero_init: cfg.faithful.lora_zero_init,
                    adapter_zero_init: cfg.faithful.adapter_zero_init,
                },
                init_seed: derive_seed(&[cfg.seed, crate::seed::INIT]),
                device: cfg.device,
                attention: cfg.model.attention,
            },
            threat: ThreatPlan {
                threat,
                train_pgd: pgd_config(t.random_start, &cfg.faithful, t.train_steps, t.step_size),
                eval_pgd,
                eps_warmup_epochs: t.eps_warmup_epochs,
            },
            stages,
            train_precision: cfg.train.precision,
            optimizer_impl: cfg.train.optimizer_impl,
            checkpoint_every_steps: cfg.train.checkpoint_every_steps,
            eval: EvalPlan {
                threat,
                attacks,
                aa_limit: cfg.eval.aa_limit,
                aa_for: cfg.eval.aa_methods.clone(),
                eps_curve: cfg.eval.eps_curve.clone(),
                batch_size: cfg.data.batch_size.max(128),
                seed: derive_seed(&[cfg.seed, crate::seed::TEST]),
                precision: cfg.eval.precision,
            },
            resolved_toml: cfg.to_resolved_toml(),
            allow_head_mismatch: false,
        }
    }

    /// Models the study trains: the probe and every (method, init).
    pub fn model_count(&self) -> usize {
        self.stages.len()
    }
}

/// `PGD-7 step 0.007843`, `PGD-10 step eps×0.25`: a PGD configuration in one phrase.
fn pgd_label(p: &PgdConfig) -> String {
    let step = match p.step_size {
        StepSize::Absolute(s) => format!("{s:.6}"),
        StepSize::RelativeToEps(r) => format!("eps×{r}"),
    };
    let best = match p.best {
        BestIterate::PerExample => "",
        BestIterate::FaithfulBatch => ", batch-best (faithful)",
        BestIterate::Last => ", last iterate",
    };
    format!("PGD-{} step {step}{}{best}", p.steps, if p.random_start { "" } else { ", no random start" })
}

impl fmt::Display for StudyPlan {
    /// The plan as `--dry-run` prints it, before any model is built.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data;
        let lim = |l: Option<usize>| l.map(|n| n.to_string()).unwrap_or_else(|| "all".into());
        writeln!(f, "# study '{}' (seed {})", self.name, self.seed)?;
        writeln!(
            f,
            "data:   {} ({}% train, rest validation; train {} / val {} / test {}), batch {}, transform {:?}",
            d.name,
            d.train_percent,
            lim(d.train_limit),
            lim(d.val_limit),
            lim(d.test_limit),
            d.batch_size,
            d.transform
        )?;
        let m = &self.model;
        writeln!(
            f,
            "model:  {}{}, head init {:?}, resize {}, drop path {} (full), {} attention; device {}, train precision {}",
            m.backbone,
            m.checkpoint.as_ref().map(|c| format!(" ← {}", c.display())).unwrap_or_default(),
            m.head_init,
            m.resize,
            m.drop_path,
            m.attention,
            m.device,
            self.train_precision
        )?;
        let t = &self.threat;
        writeln!(
            f,
            "threat: {} eps {:.6}; train {}; eval {}; eps warm-up {} epochs",
            t.threat.norm(),
            t.threat.eps(),
            pgd_label(&t.train_pgd),
            pgd_label(&t.eval_pgd),
            t.eps_warmup_epochs
        )?;
        writeln!(f, "stages:")?;
        for s in &self.stages {
            let (o, t) = (&s.optim, &s.optim.source);
            writeln!(
                f,
                "  {:<16} {:<32} lr {:.3e} (base {:.3e}) wd {} epochs {} warm-up {}",
                s.stage.label(),
                o.optimizer.to_string(),
                o.lr,
                t.base_lr,
                t.weight_decay,
                t.epochs,
                t.warmup_epochs
            )?;
        }
        let e = &self.eval;
        let names: Vec<String> = e
            .attacks
            .iter()
            .map(|a| match a {
                AttackSpec::Single(AttackStage::Pgd(p)) => pgd_label(p),
                other => other.to_string(),
            })
            .collect();
        let aa_for: Vec<&str> = e.aa_for.iter().map(|k| k.as_str()).collect();
        writeln!(
            f,
            "eval:   {}; AutoAttack on {} examples for {}; eps curve {:?}; precision {}",
            names.join(" + "),
            lim(e.aa_limit),
            if aa_for.is_empty() { "every stage".to_string() } else { aa_for.join(", ") },
            e.eps_curve,
            e.precision
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[data]\nname = \"fashion-mnist\"\n[model]\nbackbone = \"lenet5_advertorch\"\n";

    #[test]
    fn stages_are_the_probe_then_every_method_and_init() {
        let cfg = RunConfig::from_toml_str(MIN, &["finetune.methods=[\"full\",\"layernorm\"]".into()], "t").unwrap();
        let p = StudyPlan::resolve(&cfg);
        let labels: Vec<String> = p.stages.iter().map(|s| s.stage.label()).collect();
        assert_eq!(labels, ["probe", "full/ranli", "full/roli", "layernorm/ranli", "layernorm/roli"]);
        assert_eq!(p.stages[0].optim.optimizer, OptimizerKind::REFERENCE_SGD);
        assert_eq!(p.stages[1].optim.lr, scaled_lr(5e-4, 64));
        assert_eq!(p.stages[0].stage.dir_name(), "linear");
        assert_eq!(p.stages[4].stage.dir_name(), "layernorm_roli");
    }

    #[test]
    fn stage_seeds_keep_the_historic_method_words() {
        // The enum order of the past (linear 0, full 1, …, prompt 5) seeded every run; keep it.
        let m = |n| Method::named(n).unwrap();
        for (name, word) in [("full", 1u64), ("bias", 2), ("lora", 3), ("adapter", 4), ("prompt", 5)] {
            let s = Stage::Finetune { method: m(name), init: Init::Roli };
            assert_eq!(s.seed(7), derive_seed(&[7, word, 1]), "{name}");
        }
        assert_eq!(Stage::Probe.seed(7), derive_seed(&[7, 0, 0]));
    }

    #[test]
    fn eval_plan_drops_autoattack_where_configured() {
        let cfg = RunConfig::from_toml_str(MIN, &["eval.aa_methods=[\"linear\",\"full\"]".into()], "t").unwrap();
        let e = StudyPlan::resolve(&cfg).eval;
        assert_eq!(e.attacks.len(), 2);
        assert_eq!(e.attacks_for(StageKind::Probe).len(), 2);
        assert_eq!(e.attacks_for(StageKind::Finetune(Method::named("lora").unwrap())).len(), 1);
        assert_eq!(e.without_autoattack().attacks.len(), 1);
        let none = RunConfig::from_toml_str(MIN, &["eval.autoattack=\"none\"".into()], "t").unwrap();
        assert_eq!(StudyPlan::resolve(&none).eval.attacks.len(), 1);
    }

    #[test]
    fn faithful_adamw_wd0_becomes_sgd_with_a_note() {
        let text =
            format!("{MIN}[finetune.ranli]\nepochs = 1\nbase_lr = 1e-3\nweight_decay = 0.0\noptimizer = \"adamw\"\n");
        let cfg = RunConfig::from_toml_str(&text, &["faithful.adamw_wd0_is_sgd=true".into()], "t").unwrap();
        let p = StudyPlan::resolve(&cfg);
        let full = &p.stages[1].optim;
        assert_eq!(full.optimizer, OptimizerKind::REFERENCE_SGD);
        assert!(full.notes[0].contains("faithful"));
        let text = p.to_string();
        assert!(text.contains("full/ranli") && text.contains("eval:   PGD-10 step 0.007843 + aa-standard"), "{text}");
    }
}
