//! The RoLI pipeline: stage 1 (adversarial linear probing → head artifact), stage 2 (adversarial
//! finetuning per method, from a random head = RanLI or from the stage-1 head = RoLI), and the
//! test evaluation (clean, PGD, AutoAttack) with per-example records. Every function takes the
//! resolved [`StudyPlan`] or one of its parts; `roli probe`, `roli finetune` and `roli run` are
//! thin wrappers around them.
use crate::artifacts;
use crate::config::{Init, StageKind};
use crate::examples::DatasetExamples;
use crate::head::{self, HeadArtifact};
use crate::peft;
use crate::plan::{DataPlan, EvalPlan, ModelPlan, Stage, StageSpec, StudyPlan};
use crate::results::{MethodResult, Summary, TestResult};
use crate::seed::derive_seed;
use crate::train::adversarial::{self, StageOutcome, StagePlan};
use crate::train::schedule::Schedule;
use crate::zoo::{self, BackboneSource, BuildOptions, Built};
use anyhow::{bail, Context};
use roli_attacks::pgd::{PgdConfig, StepSize};
use roli_attacks::{AttackSpec, EvalOptions, EvalReport, Stage as AttackStage};
use roli_data::{Dataset, ImageTransform, LoadOptions, Split, Subset};
use roli_models::ArchConfig;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub use crate::dry_run::{dry_run, PlanLine};

/// Train / val / test of a run, with limits applied.
pub struct PreparedData {
    pub spec: String,
    pub train: Box<dyn Dataset>,
    pub val: Box<dyn Dataset>,
    pub test: Box<dyn Dataset>,
    pub num_classes: i64,
    pub input: [i64; 3],
}

/// Loads the splits of the data plan.
pub fn prepare_data(d: &DataPlan) -> anyhow::Result<PreparedData> {
    let spec = roli_data::resolve_as(&d.name, d.format)?;
    let opts = LoadOptions {
        train_percent: d.train_percent,
        image_transform: match d.transform {
            crate::config::TransformChoice::None => ImageTransform::IDENTITY,
            crate::config::TransformChoice::Reference => ImageTransform::REFERENCE_TRAIN,
        },
    };
    let limit = |ds: Box<dyn Dataset>, n: Option<usize>, split: Split| -> Box<dyn Dataset> {
        let key = format!("data.{split}_limit");
        let (n, clamped) = crate::validate::clamp_limit(&key, n, ds.len(), &format!("the {split} split of {}", d.name));
        if let Some(w) = clamped {
            tracing::warn!("{w}");
        }
        if n < ds.len() {
            Box::new(Subset::first(ds, n))
        } else {
            ds
        }
    };
    let train = limit(roli_data::load(&spec, Split::Train, &opts)?, d.train_limit, Split::Train);
    let val = limit(roli_data::load(&spec, Split::Val, &opts)?, d.val_limit, Split::Val);
    let test = limit(roli_data::load(&spec, Split::Test, &opts)?, d.test_limit, Split::Test);
    for (n, s) in [("train", &train), ("val", &val), ("test", &test)] {
        if s.is_empty() {
            bail!(
                "the {n} split of '{}' is empty; lower data.train_percent (now {}: the rest of train is val) or add {n} examples",
                d.name,
                d.train_percent
            );
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

pub fn source(m: &ModelPlan) -> anyhow::Result<BackboneSource> {
    zoo::resolve(&m.backbone, m.checkpoint.as_deref(), m.layout)
}

/// The backbone of a dry run: a registry preset needs no weights file (shapes suffice).
pub fn dry_source(m: &ModelPlan) -> anyhow::Result<BackboneSource> {
    if roli_models::descriptor(&m.backbone).is_ok() {
        return Ok(BackboneSource::Preset { preset: m.backbone.clone(), weights: None, layout: m.layout });
    }
    Ok(match source(m)? {
        BackboneSource::Preset { preset, layout, .. } => BackboneSource::Preset { preset, weights: None, layout },
        other => other,
    })
}

/// The build options of a stage's model: a fresh head of `num_classes` for `input` images, on `device`.
pub fn build_options(
    m: &ModelPlan,
    num_classes: i64,
    input: [i64; 3],
    stage: Stage,
    device: tch::Device,
) -> BuildOptions {
    let trains_backbone = stage.method().is_some_and(|m| m.backbone_train());
    BuildOptions {
        num_classes,
        head_init: m.head_init,
        resize: m.resize,
        input,
        keep_head: false,
        drop_path: if trains_backbone { m.drop_path } else { 0.0 },
        trainable_script: trains_backbone,
        init_seed: m.init_seed,
        attention: m.attention,
        device,
    }
}

/// Builds the model of a stage with a fresh head, the stage's PEFT layers injected. A method that
/// attaches to transformer blocks is refused on a backbone without them (it would silently train
/// only the head).
pub fn build_model(m: &ModelPlan, src: &BackboneSource, opts: &BuildOptions, stage: Stage) -> anyhow::Result<Built> {
    let injector = match stage.method() {
        Some(method) => method.injector(&m.peft)?,
        None => None,
    };
    let none = roli_models::peft::NoPeft;
    let built = zoo::build(src, opts, injector.as_deref().unwrap_or(&none))?;
    crate::validate::resize_target(&built.descriptor.name, built.descriptor.input_size(), m.resize_to)?;
    let has_blocks = matches!(built.descriptor.arch, ArchConfig::Vit(_) | ArchConfig::Swin(_));
    if let Some(method) = stage.method().filter(|m| m.needs_blocks() && !has_blocks) {
        bail!(
            "finetuning method '{method}' needs transformer blocks (ViT, Swin), and backbone '{}' has none; \
             use full or bias finetuning, or a ViT/Swin backbone",
            built.descriptor.name
        );
    }
    Ok(built)
}

/// The training plan of a stage on a built model.
pub fn stage_plan(plan: &StudyPlan, spec: &StageSpec, built: &Built, label: &str) -> StagePlan {
    let (o, t) = (&spec.optim, &spec.optim.source);
    let method = spec.stage.method();
    let all: Vec<String> = built.vs.variables().into_keys().collect();
    let head = built.model.head_var_names();
    StagePlan {
        label: label.to_string(),
        epochs: t.epochs,
        lr: o.lr,
        optimizer: o.optimizer,
        weight_decay: t.weight_decay,
        schedule: Schedule::WarmupCosine { warmup_epochs: t.warmup_epochs },
        batch_size: plan.data.batch_size,
        threat: plan.threat.threat,
        train_pgd: plan.threat.train_pgd,
        eval_pgd: plan.threat.eval_pgd,
        backbone_train: method.is_some_and(|m| m.backbone_train()),
        peft_train: method.is_some_and(|m| m.peft_train()),
        seed: spec.stage.seed(plan.seed),
        allow_dead: plan.model.peft.lora_zero_init || plan.model.peft.adapter_zero_init,
        trainable: peft::trainable_names(method, &all, head),
        head_bias: head.iter().find(|n| n.ends_with("bias")).cloned().unwrap_or_default(),
        eps_warmup_epochs: plan.threat.eps_warmup_epochs,
        precision: plan.train_precision,
        device: built.vs.device(),
        optim_impl: plan.optimizer_impl.resolve(built.vs.device()),
        checkpoint_every_steps: plan.checkpoint_every_steps,
    }
}

/// The test of one model on `device`: the first attack of `attacks` (PGD) on the whole test
/// subset, AutoAttack on its first `aa_limit` examples, batches streamed from the dataset, the
/// attacks at the plan's precision; per-example records in `out/test_examples.json`.
pub fn evaluate_test(
    eval: &EvalPlan,
    attacks: &[AttackSpec],
    model: &roli_models::Classifier,
    device: tch::Device,
    test: &dyn Dataset,
    out: &Path,
) -> anyhow::Result<TestResult> {
    let _precision = eval.precision.enter(device)?;
    let m = |t: &Tensor| eval.precision.forward(device, || model.forward_with(t, false));
    evaluate_test_model(eval, attacks, &m, device, test, out)
}

/// [`evaluate_test`] of any model (taking [0, 1] inputs on `device`, returning logits), with the
/// integrity checks of both evaluations and AutoAttack ≤ PGD on their shared examples
/// (`crate::integrity`): a failed check makes the result `reliable: false`.
pub fn evaluate_test_model(
    eval: &EvalPlan,
    attacks: &[AttackSpec],
    m: &dyn roli_attacks::Model,
    device: tch::Device,
    test: &dyn Dataset,
    out: &Path,
) -> anyhow::Result<TestResult> {
    let label = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bars = crate::progress::EvalBars::new(&format!("{label} test"));
    let on_event = |e: &roli_attacks::ProgressEvent| bars.on_event(e);
    let mut opts = EvalOptions::new(eval.threat);
    opts.seed = eval.seed;
    opts.batch_size = eval.batch_size;
    opts.progress = Some(&on_event);
    let mut pgd: Option<(AttackSpec, EvalReport)> = None;
    let mut aa: Option<(AttackSpec, EvalReport)> = None;
    let n_aa = eval.aa_limit.unwrap_or(test.len()).min(test.len());
    for spec in attacks {
        match spec {
            // `aa_limit = 0` skips AutoAttack like `autoattack = "none"`.
            AttackSpec::AutoAttack(_) if n_aa == 0 => {}
            AttackSpec::AutoAttack(_) => {
                let first = DatasetExamples::new(test, n_aa, device);
                aa = Some((*spec, roli_attacks::evaluate_examples(m, &first, spec, &opts)?));
            }
            _ => {
                let all = DatasetExamples::new(test, test.len(), device);
                pgd = Some((*spec, roli_attacks::evaluate_examples(m, &all, spec, &opts)?));
            }
        }
    }
    bars.finish();
    let (pgd_spec, pgd) = pgd.context("the test evaluation needs a whole-set attack (PGD) first")?;
    let (checks, aa_robust_pgd_broken) =
        crate::integrity::test_checks((&pgd_spec, &pgd), aa.as_ref().map(|(s, r)| (s, r)));
    let aa = aa.map(|(_, r)| r);
    let examples_path = out.join(artifacts::TEST_EXAMPLES);
    artifacts::write_json_compact(&examples_path, &serde_json::json!({ "pgd": pgd, "autoattack": aa }))?;
    let mut result = TestResult {
        n: pgd.n,
        clean_accuracy: pgd.clean_accuracy,
        pgd_accuracy: pgd.robust_accuracy,
        aa_accuracy: aa.as_ref().map(|a| a.robust_accuracy),
        aa_n: aa.as_ref().map(|a| a.n),
        examples_path,
        flags: Vec::new(),
        checks: Vec::new(),
        reliable: true,
        aa_robust_pgd_broken,
    };
    crate::integrity::apply(&mut result, checks);
    Ok(result)
}

/// Trains one stage (resuming in `dir`) behind a progress bar over its batches.
pub fn train_with_bar(
    built: &Built,
    data: &PreparedData,
    plan: &StagePlan,
    dir: &Path,
) -> anyhow::Result<StageOutcome> {
    let per = data.train.len().div_ceil(plan.batch_size.max(1)) as u64;
    let pb = crate::progress::bar(per * plan.epochs as u64, &plan.label);
    // A resumed stage starts the bar at its completed epochs.
    let done_before = adversarial::read_state(dir, plan)?.map(|s| s.epochs_done).unwrap_or(0);
    pb.set_position(done_before as u64 * per);
    let cb = |e: u32, b: usize, _n: usize, loss: Option<f64>| {
        pb.set_position(e as u64 * per + b as u64 + 1);
        if let Some(loss) = loss {
            pb.set_message(format!("epoch {e} loss {loss:.3}"));
        }
    };
    let outcome =
        adversarial::train_stage(&built.model, &built.vs, data.train.as_ref(), data.val.as_ref(), plan, dir, &cb)?;
    pb.finish_and_clear();
    Ok(outcome)
}

/// Trains one stage with a progress bar, saves its best weights as a roli checkpoint
/// (`dir/model/`, [`crate::export`]), then evaluates on test; writes `result.json`.
fn train_and_test(
    eval: &EvalPlan,
    model: &ModelPlan,
    built: &Built,
    data: &PreparedData,
    spec: &StageSpec,
    plan: &StagePlan,
    dir: &Path,
) -> anyhow::Result<(StageOutcome, MethodResult)> {
    let t0 = std::time::Instant::now();
    let outcome = train_with_bar(built, data, plan, dir)?;
    let info = crate::export::StageInfo {
        stage: spec.stage.dir_name(),
        peft: crate::export::PeftRecord::new(spec.stage.method(), &model.peft),
        num_classes: data.num_classes,
        input: data.input,
        resize: model.resize,
        attention: model.attention,
        data: data.spec.clone(),
        norm: plan.threat.norm().to_string(),
        eps: plan.threat.eps(),
        best_epoch: outcome.state.best_epoch,
        best_val_robust: outcome.state.best_val_robust,
    };
    crate::export::save_stage(dir, built, &info)?;
    let kind = spec.stage.kind();
    let test = evaluate_test(eval, &eval.attacks_for(kind), &built.model, built.vs.device(), data.test.as_ref(), dir)?;
    let vars = built.vs.variables();
    let result = MethodResult {
        method: kind,
        init: spec.stage.init(),
        dir: dir.to_path_buf(),
        optimizer: plan.optimizer,
        lr: plan.lr,
        epochs: plan.epochs,
        best_epoch: outcome.state.best_epoch,
        best_val_robust: outcome.state.best_val_robust,
        trainable_tensors: plan.trainable.len(),
        trainable_elements: peft::count_elements(&vars, &plan.trainable),
        effective_elements: outcome.state.trainability.as_ref().map(|t| t.effective_elements),
        notes: spec.optim.notes.clone(),
        test,
        seconds: t0.elapsed().as_secs_f64(),
    };
    artifacts::write_json(&dir.join(artifacts::RESULT), &result)?;
    Ok((outcome, result))
}

/// Stage 1: adversarial linear probing with the plan's probe stage and the given test
/// evaluation. Writes the head artifact to `dir/head.{json,safetensors}`.
pub fn probe(
    plan: &StudyPlan,
    spec: &StageSpec,
    eval: &EvalPlan,
    data: &PreparedData,
    src: &BackboneSource,
    dir: &Path,
) -> anyhow::Result<(MethodResult, PathBuf)> {
    let (built, spec, sp) = prepare_stage(plan, spec, data, src, None)?;
    tracing::info!("stage 1 (linear probe): {}; {}", src.describe(), built.load_summary);
    let (outcome, result) = train_and_test(eval, &plan.model, &built, data, &spec, &sp, dir)?;
    let vars = built.vs.variables();
    let names = built.model.head_var_names().to_vec();
    let tensors: Vec<(String, Tensor)> = names.iter().map(|n| (n.clone(), vars[n].shallow_clone())).collect();
    let last = outcome.state.best_epoch.and_then(|e| outcome.state.history.iter().find(|h| h.epoch == e));
    let meta = HeadArtifact {
        format: head::HEAD_FORMAT.into(),
        version: head::HEAD_VERSION,
        backbone: src.describe(),
        backbone_fingerprint: built.backbone_fingerprint.clone(),
        num_classes: data.num_classes,
        feature_dim: built.model.backbone().num_features(),
        head_names: names,
        threat_norm: plan.threat.threat.norm().to_string(),
        threat_eps: plan.threat.threat.eps(),
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

/// Builds the model of a stage with a random head (the probe, RanLI: `init_head = None`) or the
/// stage-1 artifact's head (RoLI), refusing a head of another backbone, class count or width, and
/// (unless the plan allows it) one probed at another threat or on other splits. Returns the
/// model and the notes to record (allowed mismatches).
fn stage_model(
    plan: &StudyPlan,
    data: &PreparedData,
    src: &BackboneSource,
    stage: Stage,
    init_head: Option<&Path>,
) -> anyhow::Result<(Built, Vec<String>)> {
    let opts = build_options(&plan.model, data.num_classes, data.input, stage, plan.model.device()?);
    let built = build_model(&plan.model, src, &opts, stage)?;
    let mut notes = Vec::new();
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
        let t = plan.threat.threat;
        let mismatches = head::handoff_mismatches(
            &meta,
            &t.norm().to_string(),
            t.eps(),
            &data.train.fingerprint(),
            &data.val.fingerprint(),
        );
        if let Some(first) = mismatches.first().filter(|_| !plan.allow_head_mismatch) {
            bail!(
                "refusing head {}: {first}; probe again with this config, or pass --allow-head-mismatch to use it anyway",
                p.display()
            );
        }
        for m in &mismatches {
            tracing::warn!("--allow-head-mismatch: {m}");
            notes.push(format!("head hand-off: {m}"));
        }
        artifacts::load_into(&built.vs, &tensors, p)?;
    }
    Ok((built, notes))
}

/// The stage a spec trains as: the probe, or a stage-2 method with the init that `init_head`
/// gives (RoLI when present).
fn resolved_stage(spec: &StageSpec, init_head: Option<&Path>) -> Stage {
    match spec.stage {
        Stage::Probe => Stage::Probe,
        Stage::Finetune { method, .. } => {
            Stage::Finetune { method, init: if init_head.is_some() { Init::Roli } else { Init::Ranli } }
        }
    }
}

/// The model and training plan of a spec: the probe's fresh model, or a stage-2 model whose
/// head is random (RanLI) or the stage-1 artifact's (RoLI).
fn prepare_stage(
    plan: &StudyPlan,
    spec: &StageSpec,
    data: &PreparedData,
    src: &BackboneSource,
    init_head: Option<&Path>,
) -> anyhow::Result<(Built, StageSpec, StagePlan)> {
    let stage = resolved_stage(spec, init_head);
    let (built, notes) = stage_model(plan, data, src, stage, init_head)?;
    let mut spec = StageSpec { stage, optim: spec.optim.clone() };
    spec.optim.notes.extend(notes);
    let sp = stage_plan(plan, &spec, &built, &stage.label());
    Ok((built, spec, sp))
}

/// Stage 2 for one method: RanLI (`init_head = None`) or RoLI (the stage-1 artifact).
pub fn finetune(
    plan: &StudyPlan,
    spec: &StageSpec,
    data: &PreparedData,
    src: &BackboneSource,
    init_head: Option<&Path>,
    dir: &Path,
) -> anyhow::Result<MethodResult> {
    if spec.stage == Stage::Probe {
        bail!("'linear' is stage 1: use `roli probe`");
    }
    let (built, spec, sp) = prepare_stage(plan, spec, data, src, init_head)?;
    let (_, result) = train_and_test(&plan.eval, &plan.model, &built, data, &spec, &sp, dir)?;
    Ok(result)
}

/// Trains one stage — the probe or a stage-2 spec — without touching the test split: the
/// building block of learning-rate selection on validation (`roli tune`).
pub fn train_only(
    plan: &StudyPlan,
    spec: &StageSpec,
    data: &PreparedData,
    src: &BackboneSource,
    init_head: Option<&Path>,
    dir: &Path,
) -> anyhow::Result<StageOutcome> {
    let (built, _, sp) = prepare_stage(plan, spec, data, src, init_head)?;
    train_with_bar(&built, data, &sp, dir)
}

/// Rebuilds a finished stage's model with its best weights.
pub fn load_trained(
    model: &ModelPlan,
    src: &BackboneSource,
    data: &PreparedData,
    r: &MethodResult,
) -> anyhow::Result<Built> {
    let stage = match r.method {
        StageKind::Probe => Stage::Probe,
        StageKind::Finetune(method) => Stage::Finetune { method, init: r.init },
    };
    let opts = build_options(model, data.num_classes, data.input, stage, model.device()?);
    let built = build_model(model, src, &opts, stage)?;
    let p = r.dir.join(artifacts::BEST);
    let t = Tensor::read_safetensors(&p).with_context(|| format!("reading {}", p.display()))?;
    artifacts::load_into(&built.vs, &t, &p)?;
    Ok(built)
}

/// PGD robust accuracy at each eps on the first `limit` test examples (a robustness curve).
/// The curve keeps the sweep's flags (non-monotone in eps; eps = 0 ≠ clean when 0 is on it).
pub fn eps_curve(
    plan: &StudyPlan,
    src: &BackboneSource,
    data: &PreparedData,
    r: &MethodResult,
    limit: usize,
) -> anyhow::Result<crate::integrity::Curve> {
    let built = load_trained(&plan.model, src, data, r)?;
    let device = built.vs.device();
    let first = DatasetExamples::new(data.test.as_ref(), limit, device);
    let _precision = plan.eval.precision.enter(device)?;
    let m = |t: &Tensor| plan.eval.precision.forward(device, || built.model.forward_with(t, false));
    let mut opts = EvalOptions::new(plan.threat.threat);
    opts.seed = derive_seed(&[plan.seed, crate::seed::EPS_CURVE]);
    opts.batch_size = 250;
    let pgd = PgdConfig { step_size: StepSize::RelativeToEps(0.25), ..plan.threat.eval_pgd };
    let spec = AttackSpec::Single(AttackStage::Pgd(pgd));
    let sw = roli_attacks::sweep_examples(&m, &first, &spec, &plan.eval.eps_curve, &opts)?;
    Ok(crate::integrity::Curve {
        points: sw.reports.iter().map(|r| (r.eps, r.robust_accuracy)).collect(),
        flags: sw.flags,
    })
}

/// Stage 1, then every (method, init) of the plan. Finished stages are skipped on a re-run
/// (their `result.json` is reused); unfinished ones resume from their last epoch.
pub fn run(plan: &StudyPlan, out: &Path) -> anyhow::Result<Summary> {
    run_with(plan, out, &|_, _| {})
}

/// [`run`], calling `on_model(result, reused)` after each model (for an overall ETA).
pub fn run_with(plan: &StudyPlan, out: &Path, on_model: &dyn Fn(&MethodResult, bool)) -> anyhow::Result<Summary> {
    let device = plan.model.device()?;
    tracing::info!("device: {}", crate::device::name(device));
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    check_same_run(plan, out)?;
    write_resolved(plan, out)?;
    let data = prepare_data(&plan.data)?;
    let src = source(&plan.model)?;
    let mut results = Vec::new();
    let mut head_path: Option<PathBuf> = None;
    for spec in &plan.stages {
        let dir = out.join(spec.stage.dir_name());
        let reused = reuse(&dir)?.filter(|_| spec.stage != Stage::Probe || head::paths(&dir).1.exists());
        let (r, was_reused) = match (reused, spec.stage) {
            (Some(r), _) => (r, true),
            (None, Stage::Probe) => {
                let (r, _) = probe(plan, spec, &plan.eval, &data, &src, &dir)?;
                (r, false)
            }
            (None, Stage::Finetune { init, .. }) => {
                let head = match init {
                    Init::Roli => Some(head_path.as_deref().context("RoLI needs the probe's head first")?),
                    Init::Ranli => None,
                };
                (finetune(plan, spec, &data, &src, head, &dir)?, false)
            }
        };
        if spec.stage == Stage::Probe {
            head_path = Some(head::paths(&dir).1);
        }
        on_model(&r, was_reused);
        results.push(r);
    }
    let summary = Summary {
        name: plan.name.clone(),
        backbone: src.describe(),
        data: data.spec.clone(),
        test_n: data.test.len(),
        head_artifact: head_path.unwrap_or_default(),
        results,
    };
    artifacts::write_json(&out.join(artifacts::SUMMARY), &summary)?;
    crate::manifest::write_run(plan, out, &data, &src, &summary)?;
    Ok(summary)
}

/// Writes `config.resolved.toml` (every default written out) into `dir`.
pub fn write_resolved(plan: &StudyPlan, dir: &Path) -> anyhow::Result<PathBuf> {
    let p = dir.join(artifacts::RESOLVED_CONFIG);
    if plan.resolved_toml.trim().is_empty() {
        bail!("the configuration of '{}' could not be serialised as TOML; {} was not written", plan.name, p.display());
    }
    artifacts::write_atomic(&p, plan.resolved_toml.as_bytes())?;
    Ok(p)
}

/// Refuses an output folder that holds a run of other settings: its finished stages would
/// otherwise be reused as if they belonged to this plan. The title (`name`) may differ.
pub fn check_same_run(plan: &StudyPlan, out: &Path) -> anyhow::Result<()> {
    let p = out.join(artifacts::RESOLVED_CONFIG);
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(()) };
    if !crate::config::same_settings(&text, &plan.resolved_toml) {
        bail!(
            "{} holds a run of different settings ({}); use another --out folder, or delete it to start over",
            out.display(),
            p.display()
        );
    }
    Ok(())
}

/// A finished stage's result: none when the stage has not finished (no `result.json`), an error
/// when its `result.json` cannot be read (never silently re-run over it).
fn reuse(dir: &Path) -> anyhow::Result<Option<MethodResult>> {
    let p = dir.join(artifacts::RESULT);
    if !p.exists() {
        return Ok(None);
    }
    artifacts::read_json(&p)
        .map(Some)
        .with_context(|| format!("{} cannot be read; delete it to run the stage again", p.display()))
}

#[cfg(test)]
mod tests;
