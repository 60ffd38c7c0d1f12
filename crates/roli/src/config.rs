//! Run configuration: TOML read with serde, unknown keys rejected (the error names the key and the
//! allowed ones), every default materialised in the run folder's `config.resolved.toml`, and
//! `--set key=value` overrides applied to the TOML tree before it is checked.
//!
//! Defaults are the reference's (spec §4–§5) unless a comment says otherwise; the sound choices
//! that differ from the reference code are switched back by [`FaithfulConfig`].
use crate::device::DeviceChoice;
use crate::peft::adapter::AdapterConfig;
use crate::peft::lora::LoraConfig;
use crate::peft::vpt::PromptConfig;
use crate::peft::Method;
use crate::precision::Precision;
pub use crate::stage::{init_label, run_key, Init, StageKind};
use crate::train::optim::OptimImplChoice;
use anyhow::{bail, Context};
use roli_attacks::threat::Norm;
use roli_attacks::AaVersion;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A complete RoLI study: data, backbone, threat model, stage 1 (adversarial linear probing),
/// stage 2 (adversarial finetuning per method and head initialisation), evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Shown in reports.
    #[serde(default = "defaults::name")]
    pub name: String,
    /// Seeds data order, head init, attacks' random starts (each stage derives its own stream).
    #[serde(default)]
    pub seed: u64,
    /// Several seeds instead of `seed`: the study runs once per seed and the report pools them
    /// (`crate::seeds`). Exclusive with `seed` in one file; the command line replaces either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    /// `auto` (CUDA when visible, else CPU), `cpu`, `cuda` or `cuda:N`. Not a setting of the
    /// results: a run started on one device resumes on another (`--device` overrides it).
    #[serde(default)]
    pub device: DeviceChoice,
    pub data: DataConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub threat: ThreatConfig,
    /// Stage 1: adversarial linear probing (also the RanLI-Linear baseline).
    #[serde(default = "defaults::probe")]
    pub probe: StageConfig,
    #[serde(default)]
    pub finetune: FinetuneConfig,
    /// How every training stage computes.
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub faithful: FaithfulConfig,
}

/// Which data and how much of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A built-in name (`mnist`, `fashion-mnist`, …) or a folder (IDX, CIFAR, ImageFolder, JSON splits).
    pub name: String,
    /// The folder's format (`idx`, `cifar10`, `cifar100`, `imagefolder`, `json-splits`) when its
    /// files match two; detected from the files otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<roli_data::Format>,
    /// Percent of the official train split used for training; the rest is validation (VTAB rule).
    #[serde(default = "defaults::train_percent")]
    pub train_percent: u32,
    /// Use only the first N training examples (None: all).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Use only the first N validation examples.
    #[serde(default)]
    pub val_limit: Option<usize>,
    /// Use only the first N test examples (a fixed subset: the same examples for every method).
    #[serde(default)]
    pub test_limit: Option<usize>,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Image-file datasets: `none` (images share one size) or `reference` (Resize256 + Crop224, flip in training).
    #[serde(default)]
    pub transform: TransformChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformChoice {
    #[default]
    None,
    Reference,
}

/// Head initialisation for a freshly built head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadInitChoice {
    /// The reference's RanLI: kaiming-normal fan_out weights, bias −4.59512.
    #[default]
    Reference,
    /// PyTorch's `nn.Linear` default (uniform ±1/√fan_in).
    Torch,
}

/// The backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A zoo name, a registry preset, a roli checkpoint folder/file, or a TorchScript file.
    pub backbone: String,
    /// Weights for a registry preset (safetensors / .pth / .pt), loaded strictly.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// Resize inputs to `[H, W]` inside the model (e.g. CIFAR 32→224); None: the backbone's own size.
    #[serde(default)]
    pub resize: Option<[i64; 2]>,
    #[serde(default)]
    pub head_init: HeadInitChoice,
    /// Stochastic depth during full finetuning (reference Swin-B: 0.5).
    #[serde(default)]
    pub drop_path: f64,
    /// Key layout of `checkpoint`: `native` (timm ≥ 0.9 / advertorch names) or `swin_legacy`
    /// (official Swin / timm < 0.9: `layers.i.downsample` at the end of stage i, `head`).
    #[serde(default = "defaults::layout")]
    pub layout: roli_models::SourceLayout,
    /// The same architecture trained without an attack: `roli demo` repeats the study on it
    /// (the paper's finding 1, robust vs standard pretraining). Unused by `roli run`.
    #[serde(default)]
    pub standard_backbone: Option<String>,
    /// Attention of ViT/Swin backbones: `explicit` (the reference's softmax(q·kᵀ)·v, default) or
    /// `fused` (scaled_dot_product_attention: one kernel, flash / memory-efficient on CUDA).
    #[serde(default)]
    pub attention: roli_models::AttentionImpl,
}

/// The L-norm threat model of training and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreatConfig {
    #[serde(default = "defaults::norm")]
    pub norm: Norm,
    /// Radius in [0,1] pixel units (reference 8/255).
    #[serde(default = "defaults::eps")]
    pub eps: f64,
    /// PGD step (reference 2/255, hard-coded there).
    #[serde(default = "defaults::step_size")]
    pub step_size: f64,
    /// PGD step for validation and test (default: `step_size`, as the reference). A smaller
    /// evaluation step catches models that resist only the training attack's large steps.
    #[serde(default)]
    pub eval_step_size: Option<f64>,
    /// PGD steps while training (reference 7).
    #[serde(default = "defaults::train_steps")]
    pub train_steps: u32,
    /// PGD steps for validation and test (reference 10).
    #[serde(default = "defaults::eval_steps")]
    pub eval_steps: u32,
    #[serde(default = "defaults::yes")]
    pub random_start: bool,
    /// Epochs over which the training radius ramps up linearly from 0 (0 = full eps from the
    /// start, as the reference). Needed to train from scratch at large radii (MNIST 0.3).
    #[serde(default)]
    pub eps_warmup_epochs: u32,
}

/// One training stage's optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub epochs: u32,
    /// Base LR; the effective LR is `base_lr · batch_size / 256`, as in the reference.
    pub base_lr: f64,
    pub weight_decay: f64,
    pub optimizer: OptimizerChoice,
    #[serde(default = "defaults::warmup")]
    pub warmup_epochs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerChoice {
    Sgd,
    Adamw,
}

/// Stage 2 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    #[serde(default = "defaults::methods")]
    pub methods: Vec<Method>,
    #[serde(default = "defaults::inits")]
    pub inits: Vec<Init>,
    /// Optimisation for RanLI runs (all methods unless overridden in `per_method`).
    #[serde(default = "defaults::ranli_stage")]
    pub ranli: StageConfig,
    /// Optimisation for RoLI runs.
    #[serde(default = "defaults::roli_stage")]
    pub roli: StageConfig,
    /// Per-method overrides, e.g. `[finetune.per_method.lora_roli] base_lr = 1e-3`.
    #[serde(default)]
    pub per_method: std::collections::BTreeMap<String, StageConfig>,
    #[serde(default)]
    pub lora: LoraConfig,
    #[serde(default)]
    pub adapter: AdapterConfig,
    #[serde(default)]
    pub prompt: PromptConfig,
    /// Methods the seeds after the first train (with `seeds`; empty: every method of `methods`).
    #[serde(default)]
    pub extra_seed_methods: Vec<Method>,
}

/// How every training stage computes (probe and finetuning alike).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// `fp32` (default), `tf32` or `bf16` (autocast) for the training forward/backward, the
    /// training attack and validation.
    #[serde(default)]
    pub precision: Precision,
    /// The optimisers' implementation: `auto` (fused on a GPU, reference on the CPU),
    /// `reference` (one small kernel sequence per parameter) or `fused` (multi-tensor kernels;
    /// SGD within one float32 ulp per step of the reference, AdamW bit-identical on CPU).
    #[serde(default)]
    pub optimizer_impl: OptimImplChoice,
    /// Also checkpoint every N optimiser steps inside an epoch (model, optimiser, the epoch's
    /// position, sums and augmentation RNG), so a kill loses at most N steps; a resumed run gives
    /// the same result as an uninterrupted one. Absent (the default): after every epoch only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_steps: Option<u64>,
}

/// Final evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// `standard`, `plus`, `rand` or `none`.
    #[serde(default)]
    pub autoattack: AutoAttackChoice,
    /// AutoAttack on the first N test examples only (it is expensive); None: all.
    #[serde(default)]
    pub aa_limit: Option<usize>,
    /// Extra robust-accuracy-vs-eps curve (PGD) on the test subset; empty: none.
    #[serde(default)]
    pub eps_curve: Vec<f64>,
    /// Run AutoAttack only for these methods (e.g. `["linear", "full"]`, the quick demo's budget:
    /// AA costs ~45 s per robust model on 2 cores whatever the subset size); empty: every method.
    #[serde(default)]
    pub aa_methods: Vec<StageKind>,
    /// Precision of the test attacks: `fp32` (default, the field's norm for AutoAttack), `tf32`
    /// or `bf16` (faster, but low precision can mask gradients and fake robustness).
    #[serde(default)]
    pub precision: Precision,
    /// With `seeds`: `all` (every seed runs AutoAttack and the eps curve) or `first` (only the
    /// first seed does; the others test with PGD, which is what the pooled RoLI − RanLI test needs).
    #[serde(default)]
    pub aa_seeds: crate::seeds::AaSeeds,
}

/// `eval.autoattack`: an AutoAttack version, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoAttackChoice {
    #[default]
    Standard,
    Plus,
    Rand,
    None,
}

impl AutoAttackChoice {
    pub fn version(self) -> Option<AaVersion> {
        match self {
            AutoAttackChoice::Standard => Some(AaVersion::Standard),
            AutoAttackChoice::Plus => Some(AaVersion::Plus),
            AutoAttackChoice::Rand => Some(AaVersion::Rand),
            AutoAttackChoice::None => None,
        }
    }
}

impl EvalConfig {
    /// Whether the test of `kind` includes AutoAttack.
    pub fn runs_aa(&self, kind: StageKind) -> bool {
        self.autoattack != AutoAttackChoice::None && (self.aa_methods.is_empty() || self.aa_methods.contains(&kind))
    }
}

/// Switches back to the reference code's behaviour where it is unsound (spec §9). All off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaithfulConfig {
    /// LoRA A = B = 0 (RoLI-LoRA configs): the LoRA weights never move.
    #[serde(default)]
    pub lora_zero_init: bool,
    /// All-zero adapters: only the up-projection bias ever trains.
    #[serde(default)]
    pub adapter_zero_init: bool,
    /// AdamW with weight_decay 0 silently runs SGD(momentum 0.9).
    #[serde(default)]
    pub adamw_wd0_is_sgd: bool,
    /// PGD keeps the best iterate per batch (scalar loss), not per example.
    #[serde(default)]
    pub batch_best_iterate: bool,
}

mod defaults;

impl ThreatConfig {
    /// The PGD step of validation and test.
    pub fn eval_step(&self) -> f64 {
        self.eval_step_size.unwrap_or(self.step_size)
    }
}

impl Default for ThreatConfig {
    fn default() -> Self {
        toml::from_str("").expect("every ThreatConfig field has a default")
    }
}
impl Default for FinetuneConfig {
    fn default() -> Self {
        toml::from_str("").expect("every FinetuneConfig field has a default")
    }
}
impl Default for EvalConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl RunConfig {
    /// Parses TOML text, applies `key=value` overrides, checks it.
    pub fn from_toml_str(text: &str, overrides: &[String], origin: &str) -> anyhow::Result<Self> {
        let mut tree: toml::Table = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        crate::seeds::settle_seed_keys(&mut tree, overrides, origin)?;
        for o in overrides {
            apply_override(&mut tree, o)?;
        }
        let cfg: RunConfig = if overrides.is_empty() {
            // Straight from the text, so the error names the line (toml's own rendering spans
            // several lines with a source excerpt; the CLI prints one).
            toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?
        } else {
            toml::Value::Table(tree).try_into().map_err(|e: toml::de::Error| {
                anyhow::anyhow!("{origin} (with --set {}): {}", overrides.join(" "), e.message().trim())
            })?
        };
        cfg.validate().with_context(|| format!("{origin}: invalid configuration"))?;
        // `config.resolved.toml` and the run's hashes are written from this text later on.
        toml::to_string_pretty(&cfg)
            .map_err(|e| anyhow::anyhow!("{origin}: the configuration cannot be written back as TOML ({e})"))?;
        Ok(cfg)
    }

    /// Reads a TOML file (see [`RunConfig::from_toml_str`]).
    pub fn load(path: &Path, overrides: &[String]) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_toml_str(&text, overrides, &path.display().to_string())
    }

    /// The configuration with every default written out. Empty only if it cannot be serialised,
    /// which [`RunConfig::from_toml_str`] has already refused, and which
    /// `pipeline::write_resolved` refuses again rather than write an empty file.
    pub fn to_resolved_toml(&self) -> String {
        crate::seeds::resolved_toml(self)
    }

    /// Impossible combinations, each naming the key and what is allowed.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.threat.norm == Norm::L1 {
            bail!("threat.norm = 'l1' is not supported (no L1 FAB/Square for AutoAttack); use \"linf\" or \"l2\"");
        }
        use crate::validate;
        validate::radius("threat.eps", self.threat.eps, self.threat.norm, false, "")?;
        for &e in &self.eval.eps_curve {
            validate::radius("eval.eps_curve", e, self.threat.norm, false, "")?;
        }
        validate::step_size("threat.step_size", self.threat.step_size)?;
        if let Some(s) = self.threat.eval_step_size {
            validate::step_size("threat.eval_step_size", s)?;
        }
        validate::limit("data.train_limit", self.data.train_limit)?;
        validate::limit("data.val_limit", self.data.val_limit)?;
        validate::limit("data.test_limit", self.data.test_limit)?;
        validate::limit("eval.aa_limit", self.eval.aa_limit)?;
        if self.train.checkpoint_every_steps == Some(0) {
            bail!("train.checkpoint_every_steps must be ≥ 1 (leave it out to checkpoint after every epoch only)");
        }
        if self.data.batch_size == 0 {
            bail!("data.batch_size must be ≥ 1");
        }
        if !(1..=100).contains(&self.data.train_percent) {
            bail!("data.train_percent = {} must lie in 1..=100", self.data.train_percent);
        }
        if !(0.0..1.0).contains(&self.model.drop_path) {
            bail!("model.drop_path = {} must lie in [0, 1)", self.model.drop_path);
        }
        for (k, s) in std::iter::once(("probe", &self.probe))
            .chain([("finetune.ranli", &self.finetune.ranli), ("finetune.roli", &self.finetune.roli)])
            .chain(self.finetune.per_method.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if s.base_lr < 0.0 || !s.base_lr.is_finite() {
                bail!("{k}.base_lr = {} must be a finite number ≥ 0", s.base_lr);
            }
            if s.weight_decay < 0.0 {
                bail!("{k}.weight_decay must be ≥ 0");
            }
        }
        for k in self.finetune.per_method.keys() {
            let ok = StageKind::all().any(|m| Init::ALL.iter().any(|&i| run_key(m, i) == *k));
            if !ok {
                bail!("finetune.per_method.{k}: unknown key; use <method>_<init> with method in {:?} and init in [ranli, roli]", StageKind::all().map(|m| m.as_str()).collect::<Vec<_>>());
            }
        }
        crate::seeds::validate(self)?;
        if self.finetune.lora.rank < 1 || self.finetune.adapter.reduction < 1 || self.finetune.prompt.tokens < 1 {
            bail!("finetune.lora.rank, finetune.adapter.reduction and finetune.prompt.tokens must be ≥ 1");
        }
        Ok(())
    }

    /// The study on the standard-trained twin of the backbone (`model.standard_backbone`), the
    /// paper's finding 1; `None` when the config names no twin.
    pub fn standard_twin(&self) -> Option<RunConfig> {
        let twin = self.model.standard_backbone.clone()?;
        Some(RunConfig {
            name: format!("{} (standard backbone)", self.name),
            model: ModelConfig { backbone: twin, ..self.model.clone() },
            ..self.clone()
        })
    }

    /// The optimisation of stage 2 for (method, init): the per-method override or the init's default.
    pub fn stage_for(&self, method: Method, init: Init) -> &StageConfig {
        self.finetune.per_method.get(&run_key(method, init)).unwrap_or(match init {
            Init::Ranli => &self.finetune.ranli,
            Init::Roli => &self.finetune.roli,
        })
    }
}

/// A TOML error as one line naming the file and line (toml's own rendering adds a multi-line
/// source excerpt).
fn toml_error(origin: &str, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let at = e.span().map(|r| format!(" line {}", text[..r.start.min(text.len())].matches('\n').count() + 1));
    anyhow::anyhow!("{origin}{}: {}", at.unwrap_or_default(), crate::cli::one_line(e.message()))
}

/// Most dotted parts a `--set` key may have (the config nests 3 deep: `finetune.ranli.epochs`).
pub const MAX_KEY_PARTS: usize = 8;

/// Sets `a.b.c = value` in a TOML tree. The value is parsed as TOML (`3`, `1e-3`, `true`,
/// `["full","lora"]`), and taken as a string if that fails (`data=/path/to/set`).
pub fn apply_override(tree: &mut toml::Table, assignment: &str) -> anyhow::Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .with_context(|| format!("--set '{assignment}': expected key=value, e.g. --set finetune.ranli.epochs=5"))?;
    let key = key.trim();
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set '{assignment}': empty key segment");
    }
    // Bounded: a 13,000-segment key built tables that deep, and reading them overflowed the stack.
    if parts.len() > MAX_KEY_PARTS {
        bail!("--set: the key has {} dotted parts; the config nests at most {MAX_KEY_PARTS} deep", parts.len());
    }
    let mut cur = tree;
    for p in &parts[..parts.len() - 1] {
        let entry = cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().with_context(|| format!("--set '{assignment}': '{p}' is not a table"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Do two resolved configs describe the same run? The title (`name`), the device, the
/// optimiser implementation and the checkpoint cadence may differ (a run resumes on another
/// device, or with more frequent checkpoints); unreadable text never matches.
pub fn same_settings(old: &str, new: &str) -> bool {
    match (toml::from_str::<RunConfig>(old), toml::from_str::<RunConfig>(new)) {
        (Ok(a), Ok(b)) => {
            let train = TrainConfig {
                optimizer_impl: b.train.optimizer_impl,
                checkpoint_every_steps: b.train.checkpoint_every_steps,
                ..a.train.clone()
            };
            RunConfig { name: b.name.clone(), device: b.device, train, ..a } == b
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
