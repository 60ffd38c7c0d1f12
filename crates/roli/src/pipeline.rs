//! The RoLI pipeline: stage 1 (adversarial linear probing → head artifact), stage 2 (adversarial
//! finetuning per method, from a random head = RanLI or from the stage-1 head = RoLI), and the
//! test evaluation (clean, PGD, AutoAttack) with per-example records. `roli probe`, `roli
//! finetune` and `roli run` are thin wrappers around these functions.
use crate::config::{HeadInitChoice, Init, Method, OptimizerChoice, RunConfig, StageConfig, TransformChoice};
use crate::head::{self, HeadArtifact};
use crate::peft::{self, AdapterSpec, LoraSpec, Peft};
use crate::train::adversarial::{self, StageOutcome, StagePlan};
use crate::train::optim::{weight_decay_for, OptimizerKind};
use crate::train::schedule::{scaled_lr, Schedule};
use crate::zoo::{self, BackboneSource, BuildOptions, Built};
use anyhow::{bail, Context};
use roli_attacks::pgd::{BestIterate, PgdConfig, StepSize};
use roli_attacks::threat::{Norm, ThreatModel};
use roli_attacks::{AaVersion, AttackSpec, EvalOptions, EvalReport, LossKind, Stage};
use roli_data::{Dataset, ImageTransform, LoadOptions, Split, Subset};
use roli_models::HeadInit;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Train / val / test of a run, with limits applied.
pub struct PreparedData {
    pub spec: String,
    pub train: Box<dyn Dataset>,
    pub val: Box<dyn Dataset>,
    pub test: Box<dyn Dataset>,
    pub num_classes: i64,
    pub input: [i64; 3],
}

/// Loads the splits named by the config.
pub fn prepare_data(cfg: &RunConfig) -> anyhow::Result<PreparedData> {
    let spec = roli_data::resolve(&cfg.data.name)?;
    let opts = LoadOptions {
        train_percent: cfg.data.train_percent,
        image_transform: match cfg.data.transform {
            TransformChoice::None => ImageTransform::IDENTITY,
            TransformChoice::Reference => ImageTransform::REFERENCE_TRAIN,
        },
    };
    let limit = |d: Box<dyn Dataset>, n: Option<usize>| -> Box<dyn Dataset> {
        match n {
            Some(n) if n < d.len() => Box::new(Subset::first(d, n)),
            _ => d,
        }
    };
    let train = limit(roli_data::load(&spec, Split::Train, &opts)?, cfg.data.train_limit);
    let val = limit(roli_data::load(&spec, Split::Val, &opts)?, cfg.data.val_limit);
    let test = limit(roli_data::load(&spec, Split::Test, &opts)?, cfg.data.test_limit);
    for (n, d) in [("train", &train), ("val", &val), ("test", &test)] {
        if d.is_empty() {
            bail!("the {n} split of '{}' is empty (check data.train_percent and the limits)", cfg.data.name);
        }
    }
    Ok(PreparedData {
        spec: spec.describe(),
        num_classes: train.num_classes(),
        input: train.image_shape(),
        train,
        val,
        test,
    })
}

pub fn threat(cfg: &RunConfig) -> ThreatModel {
    ThreatModel::new(if cfg.threat.norm == "l2" { Norm::L2 } else { Norm::Linf }, cfg.threat.eps)
}

/// PGD as the reference runs it, with `steps` steps of `step_size`: fixed step, random start, CE,
/// best iterate per example (or per batch with `faithful.batch_best_iterate`).
pub fn pgd_config(cfg: &RunConfig, steps: u32, step_size: f64) -> PgdConfig {
    PgdConfig {
        steps: steps as usize,
        step_size: StepSize::Absolute(step_size),
        restarts: 1,
        random_start: cfg.threat.random_start,
        loss: LossKind::Ce,
        best: if cfg.faithful.batch_best_iterate { BestIterate::FaithfulBatch } else { BestIterate::PerExample },
    }
}

/// The PEFT layers of a method.
pub fn peft_for(cfg: &RunConfig, method: Method) -> anyhow::Result<Peft> {
    Ok(match method {
        Method::Lora => Peft::Lora(LoraSpec {
            rank: cfg.finetune.lora.rank,
            alpha: cfg.finetune.lora.alpha,
            dropout: cfg.finetune.lora.dropout,
            zero_init: cfg.faithful.lora_zero_init,
        }),
        Method::Adapter => Peft::Adapter(AdapterSpec {
            reduction: cfg.finetune.adapter.reduction,
            zero_init: cfg.faithful.adapter_zero_init,
        }),
        Method::Prompt => {
            let c = roli_models::prompt::VptConfig {
                tokens: cfg.finetune.prompt.tokens,
                dropout: cfg.finetune.prompt.dropout,
                ..roli_models::prompt::VptConfig::REFERENCE
            };
            c.validate().map_err(|e| anyhow::anyhow!("finetune.prompt: {e}"))?;
            Peft::Prompt(c)
        }
        _ => Peft::None,
    })
}

/// The optimiser actually used for a stage, and a note when the faithful fallback changed it.
pub fn optimizer_for(cfg: &RunConfig, s: &StageConfig) -> (OptimizerKind, Option<String>) {
    match s.optimizer {
        OptimizerChoice::Sgd => (OptimizerKind::REFERENCE_SGD, None),
        OptimizerChoice::Adamw if s.weight_decay == 0.0 && cfg.faithful.adamw_wd0_is_sgd => (
            OptimizerKind::REFERENCE_SGD,
            Some(
                "faithful: AdamW with weight_decay 0 runs as SGD(momentum 0.9), as the reference code silently does"
                    .into(),
            ),
        ),
        OptimizerChoice::Adamw => (OptimizerKind::REFERENCE_ADAMW, None),
    }
}

pub fn source(cfg: &RunConfig) -> anyhow::Result<BackboneSource> {
    zoo::resolve(&cfg.model.backbone, cfg.model.checkpoint.as_deref(), cfg.model.layout)
}

/// The backbone of a dry run: a registry preset needs no weights file (shapes suffice).
pub fn dry_source(cfg: &RunConfig) -> anyhow::Result<BackboneSource> {
    if roli_models::descriptor(&cfg.model.backbone).is_ok() {
        return Ok(BackboneSource::Preset {
            preset: cfg.model.backbone.clone(),
            weights: None,
            layout: cfg.model.layout,
        });
    }
    Ok(match source(cfg)? {
        BackboneSource::Preset { preset, layout, .. } => BackboneSource::Preset { preset, weights: None, layout },
        other => other,
    })
}

/// Builds the model of (method, init) with a fresh head.
pub fn build_model(
    cfg: &RunConfig,
    src: &BackboneSource,
    data: &PreparedData,
    method: Method,
) -> anyhow::Result<Built> {
    let peft = peft_for(cfg, method)?;
    zoo::build(src, &build_options(cfg, data, method), &peft)
}

/// The build options of (config, data, method): a fresh head of the data's classes.
pub fn build_options(cfg: &RunConfig, data: &PreparedData, method: Method) -> BuildOptions {
    BuildOptions {
        num_classes: data.num_classes,
        head_init: match cfg.model.head_init {
            HeadInitChoice::Reference => HeadInit::Ranli,
            HeadInitChoice::Torch => HeadInit::TorchDefault,
        },
        resize: cfg.model.resize.is_some(),
        input: data.input,
        keep_head: false,
        drop_path: if method == Method::Full { cfg.model.drop_path } else { 0.0 },
        trainable_script: method == Method::Full,
        init_seed: adversarial::derive_seed(&[cfg.seed, 7]),
    }
}

/// The stage plan of (method, init).
pub fn stage_plan(cfg: &RunConfig, built: &Built, method: Method, init: Init, label: &str) -> (StagePlan, Vec<String>) {
    let s = if method == Method::Linear { &cfg.probe } else { cfg.stage_for(method, init) };
    let (optimizer, note) = optimizer_for(cfg, s);
    let all: Vec<String> = built.vs.variables().into_keys().collect();
    let trainable = peft::trainable_names(method, &all, built.model.head_var_names());
    let plan = StagePlan {
        label: label.to_string(),
        epochs: s.epochs,
        lr: scaled_lr(s.base_lr, cfg.data.batch_size),
        optimizer,
        weight_decay: s.weight_decay,
        schedule: Schedule::WarmupCosine { warmup_epochs: s.warmup_epochs },
        batch_size: cfg.data.batch_size,
        threat: threat(cfg),
        train_pgd: pgd_config(cfg, cfg.threat.train_steps, cfg.threat.step_size),
        eval_pgd: pgd_config(cfg, cfg.threat.eval_steps, cfg.threat.eval_step()),
        backbone_train: method == Method::Full,
        peft_train: method == Method::Prompt,
        seed: adversarial::derive_seed(&[cfg.seed, method as u64, init as u64]),
        allow_dead: cfg.faithful.lora_zero_init || cfg.faithful.adapter_zero_init,
        trainable,
        head_bias: built.model.head_var_names().iter().find(|n| n.ends_with("bias")).cloned().unwrap_or_default(),
        eps_warmup_epochs: cfg.threat.eps_warmup_epochs,
    };
    (plan, note.into_iter().collect())
}

/// Test results of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub n: usize,
    pub clean_accuracy: f64,
    pub pgd_accuracy: f64,
    pub aa_accuracy: Option<f64>,
    pub aa_n: Option<usize>,
    /// Per-example records (JSON with the PGD and AutoAttack reports).
    pub examples_path: PathBuf,
    pub flags: Vec<String>,
}

/// Clean + PGD on the whole test subset, AutoAttack on its first `aa_limit` examples.
pub fn evaluate_test(
    cfg: &RunConfig,
    model: &roli_models::Classifier,
    test: &dyn Dataset,
    out: &Path,
    seed: u64,
) -> anyhow::Result<TestResult> {
    let idx: Vec<usize> = (0..test.len()).collect();
    let (x, y) = test.batch(&idx, None)?;
    let m = |t: &Tensor| model.forward_with(t, false);
    let mut opts = EvalOptions::new(threat(cfg));
    opts.seed = seed;
    opts.batch_size = cfg.data.batch_size.max(128);
    let pgd_spec = AttackSpec::Single(Stage::Pgd(pgd_config(cfg, cfg.threat.eval_steps, cfg.threat.eval_step())));
    let pgd = roli_attacks::evaluate(&m, &x, &y, &pgd_spec, &opts)?;
    let mut aa: Option<EvalReport> = None;
    let n = cfg.eval.aa_limit.unwrap_or(test.len()).min(test.len());
    // `aa_limit = 0` skips AutoAttack like `autoattack = "none"`.
    if cfg.eval.autoattack != "none" && n > 0 {
        let version = match cfg.eval.autoattack.as_str() {
            "plus" => AaVersion::Plus,
            "rand" => AaVersion::Rand,
            _ => AaVersion::Standard,
        };
        let (xa, ya) = (x.narrow(0, 0, n as i64), y.narrow(0, 0, n as i64));
        aa = Some(roli_attacks::evaluate(&m, &xa, &ya, &AttackSpec::AutoAttack(version), &opts)?);
    }
    let mut flags: Vec<String> = pgd.flags.iter().map(|f| format!("{f:?}")).collect();
    if let Some(a) = &aa {
        flags.extend(a.flags.iter().map(|f| format!("{f:?}")));
    }
    let examples_path = out.join("test_examples.json");
    let doc = serde_json::json!({ "pgd": pgd, "autoattack": aa });
    roli_data::cache::write_atomic(&examples_path, serde_json::to_string(&doc)?.as_bytes())?;
    Ok(TestResult {
        n: pgd.n,
        clean_accuracy: pgd.clean_accuracy,
        pgd_accuracy: pgd.robust_accuracy,
        aa_accuracy: aa.as_ref().map(|a| a.robust_accuracy),
        aa_n: aa.as_ref().map(|a| a.n),
        examples_path,
        flags,
    })
}

/// One trained (method, init) with its test results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: Method,
    pub init: Init,
    pub dir: PathBuf,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub epochs: u32,
    pub best_epoch: Option<u32>,
    pub best_val_robust: f64,
    pub trainable_tensors: usize,
    pub trainable_elements: i64,
    pub effective_elements: Option<i64>,
    pub notes: Vec<String>,
    pub test: TestResult,
    pub seconds: f64,
}

/// Trains one stage (resuming in `dir`) behind a progress bar over its batches.
fn train_with_bar(built: &Built, data: &PreparedData, plan: &StagePlan, dir: &Path) -> anyhow::Result<StageOutcome> {
    let per = data.train.len().div_ceil(plan.batch_size.max(1)) as u64;
    let pb = crate::progress::bar(per * plan.epochs as u64, &plan.label);
    // A resumed stage starts the bar at its completed epochs.
    let done_before = adversarial::read_state(dir, plan)?.map(|s| s.epochs_done).unwrap_or(0);
    pb.set_position(done_before as u64 * per);
    let cb = |e: u32, b: usize, _n: usize, loss: f64| {
        pb.set_position(e as u64 * per + b as u64 + 1);
        pb.set_message(format!("epoch {e} loss {loss:.3}"));
    };
    let outcome =
        adversarial::train_stage(&built.model, &built.vs, data.train.as_ref(), data.val.as_ref(), plan, dir, &cb)?;
    pb.finish_and_clear();
    Ok(outcome)
}

/// Trains one stage with a progress bar, then evaluates on test.
fn train_and_test(
    cfg: &RunConfig,
    built: &Built,
    data: &PreparedData,
    method: Method,
    init: Init,
    (plan, notes): (StagePlan, Vec<String>),
    dir: &Path,
) -> anyhow::Result<(StageOutcome, MethodResult)> {
    let t0 = std::time::Instant::now();
    let outcome = train_with_bar(built, data, &plan, dir)?;
    let mut test_cfg = cfg.clone();
    if !cfg.eval.runs_aa(method) {
        test_cfg.eval.autoattack = "none".into();
    }
    let test =
        evaluate_test(&test_cfg, &built.model, data.test.as_ref(), dir, adversarial::derive_seed(&[cfg.seed, 99]))?;
    let vars = built.vs.variables();
    let result = MethodResult {
        method,
        init,
        dir: dir.to_path_buf(),
        optimizer: plan.optimizer,
        lr: plan.lr,
        epochs: plan.epochs,
        best_epoch: outcome.state.best_epoch,
        best_val_robust: outcome.state.best_val_robust,
        trainable_tensors: plan.trainable.len(),
        trainable_elements: peft::count_elements(&vars, &plan.trainable),
        effective_elements: outcome.state.trainability.as_ref().map(|t| t.effective_elements),
        notes,
        test,
        seconds: t0.elapsed().as_secs_f64(),
    };
    roli_data::cache::write_atomic(&dir.join("result.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    Ok((outcome, result))
}

/// Stage 1: adversarial linear probing. Writes the head artifact to `dir/head.{json,safetensors}`.
pub fn probe(
    cfg: &RunConfig,
    data: &PreparedData,
    src: &BackboneSource,
    dir: &Path,
) -> anyhow::Result<(MethodResult, PathBuf)> {
    let built = build_model(cfg, src, data, Method::Linear)?;
    tracing::info!("stage 1 (linear probe): {}; {}", src.describe(), built.load_summary);
    let planned = stage_plan(cfg, &built, Method::Linear, Init::Ranli, "probe");
    let (outcome, result) = train_and_test(cfg, &built, data, Method::Linear, Init::Ranli, planned, dir)?;
    let vars = built.vs.variables();
    let names = built.model.head_var_names().to_vec();
    let tensors: Vec<(String, Tensor)> = names.iter().map(|n| (n.clone(), vars[n].shallow_clone())).collect();
    let feature_dim = built.model.backbone().num_features();
    let last = outcome.state.best_epoch.and_then(|e| outcome.state.history.iter().find(|h| h.epoch == e));
    let meta = HeadArtifact {
        format: head::HEAD_FORMAT.into(),
        version: head::HEAD_VERSION,
        backbone: src.describe(),
        backbone_fingerprint: built.backbone_fingerprint.clone(),
        num_classes: data.num_classes,
        feature_dim,
        head_names: names,
        threat_norm: cfg.threat.norm.clone(),
        threat_eps: cfg.threat.eps,
        data: data.spec.clone(),
        train_fingerprint: data.train.fingerprint(),
        val_fingerprint: data.val.fingerprint(),
        best_epoch: outcome.state.best_epoch,
        val_clean: last.map(|h| h.val_clean).unwrap_or(0.0),
        val_robust: outcome.state.best_val_robust,
    };
    let path = head::save(dir, &meta, &tensors)?;
    Ok((result, path))
}

/// Builds the model of stage 2 for one method: a random head (RanLI, `init_head = None`) or the
/// stage-1 artifact's head (RoLI), refusing a head of another backbone, class count or width.
fn stage2_model(
    cfg: &RunConfig,
    data: &PreparedData,
    src: &BackboneSource,
    method: Method,
    init_head: Option<&Path>,
) -> anyhow::Result<(Built, Init)> {
    let built = build_model(cfg, src, data, method)?;
    let init = if init_head.is_some() { Init::Roli } else { Init::Ranli };
    if let Some(p) = init_head {
        let (meta, tensors) = head::load(p)?;
        head::check_compatible(
            &meta,
            &built.backbone_fingerprint,
            data.num_classes,
            built.model.backbone().num_features(),
            built.model.head_var_names(),
        )
        .map_err(|e| anyhow::anyhow!("refusing head {}: {e}", p.display()))?;
        if (meta.threat_eps - cfg.threat.eps).abs() > 1e-12 || meta.threat_norm != cfg.threat.norm {
            tracing::warn!(
                "the head was probed at {} eps {} but stage 2 uses {} eps {}",
                meta.threat_norm,
                meta.threat_eps,
                cfg.threat.norm,
                cfg.threat.eps
            );
        }
        adversarial::load_into(&built.vs, &tensors, p)?;
    }
    Ok((built, init))
}

fn stage_label(method: Method, init: Init) -> String {
    match method {
        Method::Linear => "probe".into(),
        _ => format!("{}/{}", method.as_str(), init.as_str()),
    }
}

/// Stage 2 for one method: RanLI (`init_head = None`) or RoLI (the stage-1 artifact).
pub fn finetune(
    cfg: &RunConfig,
    data: &PreparedData,
    src: &BackboneSource,
    method: Method,
    init_head: Option<&Path>,
    dir: &Path,
) -> anyhow::Result<MethodResult> {
    if method == Method::Linear {
        bail!("'linear' is stage 1: use `roli probe`");
    }
    let (built, init) = stage2_model(cfg, data, src, method, init_head)?;
    let planned = stage_plan(cfg, &built, method, init, &stage_label(method, init));
    let (_, result) = train_and_test(cfg, &built, data, method, init, planned, dir)?;
    Ok(result)
}

/// Trains one (method, init) — `Linear` is the probe — without touching the test split: the
/// building block of learning-rate selection on validation (`roli tune`).
pub fn train_only(
    cfg: &RunConfig,
    data: &PreparedData,
    src: &BackboneSource,
    method: Method,
    init_head: Option<&Path>,
    dir: &Path,
) -> anyhow::Result<StageOutcome> {
    let (built, init) = if method == Method::Linear {
        (build_model(cfg, src, data, method)?, Init::Ranli)
    } else {
        stage2_model(cfg, data, src, method, init_head)?
    };
    let (plan, _) = stage_plan(cfg, &built, method, init, &stage_label(method, init));
    train_with_bar(&built, data, &plan, dir)
}

/// Rebuilds a finished (method, init) model with its best weights.
pub fn load_trained(
    cfg: &RunConfig,
    src: &BackboneSource,
    data: &PreparedData,
    r: &MethodResult,
) -> anyhow::Result<Built> {
    let built = build_model(cfg, src, data, r.method)?;
    let p = r.dir.join("best.safetensors");
    let t = Tensor::read_safetensors(&p).with_context(|| format!("reading {}", p.display()))?;
    adversarial::load_into(&built.vs, &t, &p)?;
    Ok(built)
}

/// PGD robust accuracy at each eps on the first `limit` test examples (a robustness curve).
pub fn eps_curve(
    cfg: &RunConfig,
    src: &BackboneSource,
    data: &PreparedData,
    r: &MethodResult,
    eps: &[f64],
    limit: usize,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let built = load_trained(cfg, src, data, r)?;
    let n = limit.min(data.test.len());
    let (x, y) = data.test.batch(&(0..n).collect::<Vec<_>>(), None)?;
    let m = |t: &Tensor| built.model.forward_with(t, false);
    let mut opts = EvalOptions::new(threat(cfg));
    opts.seed = adversarial::derive_seed(&[cfg.seed, 98]);
    opts.batch_size = 250;
    let spec = AttackSpec::Single(Stage::Pgd(PgdConfig {
        step_size: StepSize::RelativeToEps(0.25),
        ..pgd_config(cfg, cfg.threat.eval_steps, cfg.threat.eval_step())
    }));
    let sw = roli_attacks::sweep(&m, &x, &y, &spec, eps, &opts)?;
    Ok(sw.reports.iter().map(|r| (r.eps, r.robust_accuracy)).collect())
}

/// `summary.json` of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub backbone: String,
    pub data: String,
    pub test_n: usize,
    pub head_artifact: PathBuf,
    pub results: Vec<MethodResult>,
}

/// Stage 1, then every (method, init) of the config. Finished stages are skipped on a re-run
/// (their `result.json` is reused); unfinished ones resume from their last epoch.
pub fn run(cfg: &RunConfig, out: &Path) -> anyhow::Result<Summary> {
    run_with(cfg, out, &|_, _| {})
}

/// Models a run trains: the probe, then every (method, init).
pub fn model_count(cfg: &RunConfig) -> usize {
    1 + cfg.finetune.methods.len() * cfg.finetune.inits.len()
}

/// [`run`], calling `on_model(result, reused)` after each model (for an overall ETA).
pub fn run_with(cfg: &RunConfig, out: &Path, on_model: &dyn Fn(&MethodResult, bool)) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    check_same_run(cfg, out)?;
    crate::config::write_resolved(cfg, out)?;
    let data = prepare_data(cfg)?;
    let src = source(cfg)?;
    let mut results = Vec::new();
    let probe_dir = out.join("linear");
    let (probe_result, head_path) = match reuse(&probe_dir) {
        Some(r) if head::paths(&probe_dir).1.exists() => {
            on_model(&r, true);
            (r, head::paths(&probe_dir).1)
        }
        _ => {
            let (r, p) = probe(cfg, &data, &src, &probe_dir)?;
            on_model(&r, false);
            (r, p)
        }
    };
    results.push(probe_result);
    for &method in &cfg.finetune.methods {
        for &init in &cfg.finetune.inits {
            let dir = out.join(crate::config::run_key(method, init));
            let (r, reused) = match reuse(&dir) {
                Some(r) => (r, true),
                None => (
                    finetune(cfg, &data, &src, method, (init == Init::Roli).then_some(head_path.as_path()), &dir)?,
                    false,
                ),
            };
            on_model(&r, reused);
            results.push(r);
        }
    }
    let summary = Summary {
        name: cfg.name.clone(),
        backbone: src.describe(),
        data: data.spec.clone(),
        test_n: data.test.len(),
        head_artifact: head_path,
        results,
    };
    roli_data::cache::write_atomic(&out.join("summary.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    Ok(summary)
}

/// Refuses an output folder that holds a run of other settings: its finished stages would
/// otherwise be reused as if they belonged to this config. The title (`name`) may differ.
pub fn check_same_run(cfg: &RunConfig, out: &Path) -> anyhow::Result<()> {
    let p = out.join("config.resolved.toml");
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(()) };
    let same = toml::from_str::<RunConfig>(&text)
        .map(|old| RunConfig { name: cfg.name.clone(), ..old } == *cfg)
        .unwrap_or(false);
    if !same {
        bail!(
            "{} holds a run of different settings ({}); use another --out folder, or delete it to start over",
            out.display(),
            p.display()
        );
    }
    Ok(())
}

fn reuse(dir: &Path) -> Option<MethodResult> {
    let r: MethodResult = serde_json::from_slice(&std::fs::read(dir.join("result.json")).ok()?).ok()?;
    Some(r)
}

/// One line of a dry-run plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanLine {
    pub method: String,
    pub init: String,
    pub optimizer: String,
    pub lr: f64,
    pub weight_decay_applied: String,
    pub epochs: u32,
    pub trainable_tensors: usize,
    pub trainable_elements: i64,
    /// Forward+backward passes through the model per epoch (PGD steps + 1 per training example,
    /// plus clean + PGD on validation).
    pub passes_per_epoch: u64,
    pub notes: Vec<String>,
}

/// The resolved plan without data or weights: builds each model with random weights of the
/// right shape (input size and classes from the config or given) and counts what trains.
pub fn dry_run(
    cfg: &RunConfig,
    num_classes: i64,
    input: [i64; 3],
    n_train: usize,
    n_val: usize,
) -> anyhow::Result<Vec<PlanLine>> {
    let src = dry_source(cfg)?;
    let fake = PreparedData {
        spec: cfg.data.name.clone(),
        train: Box::new(Empty),
        val: Box::new(Empty),
        test: Box::new(Empty),
        num_classes,
        input,
    };
    let mut out = Vec::new();
    let mut combos = vec![(Method::Linear, Init::Ranli)];
    for &m in &cfg.finetune.methods {
        for &i in &cfg.finetune.inits {
            combos.push((m, i));
        }
    }
    for (method, init) in combos {
        let built = match build_model(cfg, &src, &fake, method) {
            Ok(b) => b,
            Err(e) => {
                out.push(PlanLine {
                    method: method.as_str().into(),
                    init: format!("{init:?}").to_lowercase(),
                    optimizer: "-".into(),
                    lr: 0.0,
                    weight_decay_applied: "-".into(),
                    epochs: 0,
                    trainable_tensors: 0,
                    trainable_elements: 0,
                    passes_per_epoch: 0,
                    notes: vec![format!("cannot build: {e:#}")],
                });
                continue;
            }
        };
        let (plan, notes) = stage_plan(cfg, &built, method, init, "dry");
        let vars = built.vs.variables();
        let decayed: i64 = plan
            .trainable
            .iter()
            .filter(|n| weight_decay_for(&plan.optimizer, n, plan.weight_decay, &plan.head_bias) > 0.0)
            .map(|n| vars[n].numel() as i64)
            .sum();
        let total = peft::count_elements(&vars, &plan.trainable);
        let steps = cfg.threat.train_steps as u64 + 1;
        out.push(PlanLine {
            method: method.as_str().into(),
            init: if method == Method::Linear { "-".into() } else { format!("{init:?}").to_lowercase() },
            optimizer: match plan.optimizer {
                OptimizerKind::Sgd { momentum } => format!("SGD(momentum {momentum})"),
                OptimizerKind::AdamW { beta1, beta2, eps } => format!("AdamW-HF(β {beta1}/{beta2}, eps {eps:e})"),
            },
            lr: plan.lr,
            weight_decay_applied: format!("{} on {decayed} of {total} elements", plan.weight_decay),
            epochs: plan.epochs,
            trainable_tensors: plan.trainable.len(),
            trainable_elements: total,
            passes_per_epoch: n_train as u64 * (steps + 1) + n_val as u64 * (cfg.threat.eval_steps as u64 + 2),
            notes,
        });
    }
    Ok(out)
}

/// A placeholder dataset for dry runs (never read).
struct Empty;
impl Dataset for Empty {
    fn name(&self) -> &str {
        "dry-run"
    }
    fn len(&self) -> usize {
        0
    }
    fn num_classes(&self) -> i64 {
        0
    }
    fn class_names(&self) -> &[String] {
        &[]
    }
    fn image_shape(&self) -> [i64; 3] {
        [0, 0, 0]
    }
    fn batch(&self, _: &[usize], _: Option<&mut rand_chacha::ChaCha8Rng>) -> roli_data::Result<(Tensor, Tensor)> {
        Err(roli_data::DataError::Invalid("dry run: no data".into()))
    }
    fn labels(&self) -> Vec<i64> {
        vec![]
    }
    fn fingerprint(&self) -> String {
        String::new()
    }
}
