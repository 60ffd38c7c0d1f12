//! Robust evaluation behind `roli eval`: the runner, the report and eps sweeps (attack names: [`crate::spec`]).
//!
//! [`evaluate_examples`] streams the examples from an [`Examples`] source batch by batch, so memory
//! is bounded by the batch size, not the split; [`evaluate`] and [`sweep`] are the in-memory wrappers
//! and give the same report. It runs the clean pass, the integrity checks and the cascade of the chosen attack, and
//! returns an [`EvalReport`] that serialises to the `results.json` contract (n, clean_accuracy,
//! robust_accuracy, eps, norm, attack, examples[...]). Nothing is skipped silently: the report
//! carries the example count, every stage with its cost in model passes, and all flags.

use crate::cascade::{self, CascadeOptions, CascadeState, ProgressEvent, StageResult};
use crate::checks::{self, Flag};
use crate::model::{Counting, Model, PassCounts};
use crate::presets::{AaVersion, Stage};
use crate::source::{Examples, TensorExamples};
use crate::stage_id::StageId;
use crate::threat::{Norm, ThreatModel};
use crate::AttackError;

/// Moved to [`crate::spec`] (the attack-name table); re-exported so `eval::AttackSpec` keeps working.
pub use crate::spec::{AttackSpec, ATTACK_NAMES};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Tensor};

/// Options of one evaluation.
pub struct EvalOptions<'a> {
    /// Threat model (norm and eps).
    pub threat: ThreatModel,
    /// Seed for every attack call.
    pub seed: u64,
    /// Batch size (AutoAttack's default is 250).
    pub batch_size: usize,
    /// Position in the split of each row of `x` (defaults to 0..n).
    pub indices: Option<&'a [usize]>,
    /// Run the integrity checks (randomness, softmax output, zero gradients, bounds, Square).
    pub run_checks: bool,
    /// Resumable state file: written after each stage, resumed from if it exists and matches.
    pub state_path: Option<PathBuf>,
    /// Optional progress callback.
    pub progress: Option<&'a dyn Fn(&ProgressEvent)>,
    /// What the caller evaluates (model, data), recorded in the state: resuming a state written
    /// for another context is refused with both named, since the fingerprint cannot see the model.
    pub context: Option<String>,
}

impl<'a> EvalOptions<'a> {
    /// Defaults: seed 0, batch 250, checks on, no state, no progress.
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            seed: 0,
            batch_size: 250,
            indices: None,
            run_checks: true,
            state_path: None,
            progress: None,
            context: None,
        }
    }
}

/// One example's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExampleRecord {
    /// Position in the split.
    pub index: usize,
    /// True label.
    pub label: i64,
    /// Clean prediction correct.
    pub clean_correct: bool,
    /// Correct under every attack (false if not clean-correct).
    pub robust: bool,
    /// First attack that broke it (null if robust or misclassified clean).
    pub broken_by: Option<StageId>,
    /// Predicted label of the returned (adversarial or clean) input.
    pub adv_label: i64,
    /// Norm of the successful perturbation (null unless broken).
    pub perturbation_norm: Option<f64>,
    /// Outcome of each attack that ran on this example (true = survived).
    pub attacks: BTreeMap<StageId, bool>,
}

/// Final sanity values of the adversarial batch (AutoAttack's closing log line, as data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sanity {
    /// Largest perturbation norm over broken points.
    pub max_perturbation: f64,
    /// NaN entries in x_adv (this run).
    pub nan: usize,
    /// Smallest value in x_adv.
    pub min_value: f64,
    /// Largest value in x_adv.
    pub max_value: f64,
}

/// Everything `roli eval` writes to `results.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Attack name as on the command line.
    pub attack: String,
    /// Norm.
    pub norm: Norm,
    /// Radius.
    pub eps: f64,
    /// Attack seed.
    pub seed: u64,
    /// Batch size.
    pub batch_size: usize,
    /// Examples evaluated.
    pub n: usize,
    /// Clean accuracy in [0, 1].
    pub clean_accuracy: f64,
    /// Robust accuracy in [0, 1] (equals clean for `none`).
    pub robust_accuracy: f64,
    /// The resolved stages with per-stage results.
    pub stages: Vec<StageResult>,
    /// Per-example records.
    pub examples: Vec<ExampleRecord>,
    /// Final sanity values.
    pub sanity: Sanity,
    /// Integrity flags raised.
    pub flags: Vec<Flag>,
    /// All model passes, checks and clean pass included.
    pub passes: PassCounts,
    /// Wall-clock seconds of this call.
    pub seconds: f64,
    /// Whether stages were restored from a state file.
    pub resumed_stages: usize,
}

/// The on-disk resumable state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalState {
    /// Hash of everything that determines the result (attack, stages, threat, seed, batch, data).
    /// The data enters as its labels, shape and pixel sum, the sum taken batch by batch as the data
    /// streams: a state written before streaming evaluation may differ in the sum's last bits and
    /// then be refused as "another configuration" (delete it and start over).
    pub fingerprint: String,
    /// Stage plan.
    pub stages: Vec<Stage>,
    /// Flags from the checks of the first run.
    pub flags: Vec<Flag>,
    /// Per-example state.
    pub cascade: CascadeState,
    /// [`EvalOptions::context`] of the run that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl EvalState {
    /// Reads a state file.
    pub fn load(path: &Path) -> Result<Self, AttackError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AttackError::State { path: path.into(), detail: format!("cannot read: {e}") })?;
        serde_json::from_str(&text).map_err(|e| AttackError::State {
            path: path.into(),
            detail: format!("not a roli eval state ({e}); delete it to start over"),
        })
    }

    /// Writes atomically (temp file + rename), so a crash never leaves a half-written state.
    pub fn save(&self, path: &Path) -> Result<(), AttackError> {
        let err = |e: std::io::Error| AttackError::State { path: path.into(), detail: format!("cannot write: {e}") };
        let text =
            serde_json::to_string(self).map_err(|e| AttackError::State { path: path.into(), detail: e.to_string() })?;
        roli_io::write_atomic(path, text.as_bytes()).map_err(err)
    }
}

/// What one read of the data records, batch by batch: the fingerprint's inputs and, per row, what
/// the sanity values and the bounds check need of the clean input (a row the cascade does not break
/// is returned as its clean input). Bounded by the number of rows, not their size.
struct DataSummary {
    /// SHA-256 of every pixel (f32 bytes in row order, little-endian on every platform libtorch
    /// ships for): a resumed evaluation must see the very same inputs (a pixel sum would accept
    /// permuted or compensating changes).
    x_hash: Sha256,
    /// `[N, C, H, W]`.
    shape: Vec<i64>,
    labels: Vec<i64>,
    row_min: Vec<f32>,
    row_max: Vec<f32>,
    row_nan: Vec<u32>,
    row_out_of_box: Vec<u32>,
    /// The first batch (rows `0..min(batch_size, N)`), for the pre-checks.
    first: Option<(Tensor, Tensor)>,
}

impl DataSummary {
    fn new(n: usize) -> Self {
        Self {
            x_hash: Sha256::new(),
            shape: Vec::new(),
            labels: Vec::with_capacity(n),
            row_min: Vec::with_capacity(n),
            row_max: Vec::with_capacity(n),
            row_nan: Vec::with_capacity(n),
            row_out_of_box: Vec::with_capacity(n),
            first: None,
        }
    }

    fn add(&mut self, n: usize, x: &Tensor, y: &Tensor) -> Result<(), AttackError> {
        let _g = tch::no_grad_guard();
        let torch = |source| AttackError::Torch { context: "summarising a batch", source };
        if self.first.is_none() {
            self.shape = x.size();
            self.shape[0] = n as i64;
            self.first = Some((x.shallow_clone(), y.shallow_clone()));
        }
        let cpu = tch::Device::Cpu;
        // The f32 pixels' bytes in one copy and one update (a 4-byte update per pixel would cost
        // a hasher call per pixel on every evaluation's clean pass).
        let bytes = x.to_device(cpu).to_kind(Kind::Float).contiguous().view_dtype(Kind::Uint8).reshape([-1]);
        self.x_hash.update(Vec::<u8>::try_from(&bytes).map_err(torch)?);
        self.labels.extend(Vec::<i64>::try_from(&y.to_device(cpu)).map_err(torch)?);
        let rows = x.reshape([x.size()[0], -1]);
        self.row_min.extend(Vec::<f32>::try_from(&rows.amin([1i64], false).to_device(cpu)).map_err(torch)?);
        self.row_max.extend(Vec::<f32>::try_from(&rows.amax([1i64], false).to_device(cpu)).map_err(torch)?);
        let count = |mask: Tensor| -> Result<Vec<u32>, AttackError> {
            let c = mask.sum_dim_intlist(&[1i64][..], false, Kind::Int64).to_device(cpu);
            Ok(Vec::<i64>::try_from(&c).map_err(torch)?.into_iter().map(|v| v as u32).collect())
        };
        self.row_nan.extend(count(rows.isnan())?);
        self.row_out_of_box.extend(count(rows.lt(0.0).logical_or(&rows.gt(1.0)))?);
        Ok(())
    }
}

fn fingerprint(
    spec: &AttackSpec,
    stages: &[Stage],
    opts: &EvalOptions<'_>,
    indices: &[usize],
    data: &DataSummary,
) -> String {
    let key = serde_json::json!({
        "attack": spec.to_string(), "stages": stages, "threat": opts.threat, "seed": opts.seed,
        "batch_size": opts.batch_size, "indices": indices, "labels": data.labels,
        "x_sha256": format!("{:x}", data.x_hash.clone().finalize()),
        "x_shape": data.shape, "crate": env!("CARGO_PKG_VERSION"),
    });
    format!("{:x}", Sha256::digest(key.to_string().as_bytes()))
}

/// Smallest/largest of two values, NaN if either is (as `Tensor::min`/`max` over both would be).
fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn n_classes(model: &dyn Model, x: &Tensor) -> i64 {
    tch::no_grad(|| model.logits(&x.narrow(0, 0, 1))).size()[1]
}

/// Evaluates `model` on the in-memory split `(x, y)` under `spec`. `x`: `[N, C, H, W]` f32 in
/// [0, 1]; `y`: `[N]` int64. The same as [`evaluate_examples`] on [`TensorExamples`].
pub fn evaluate(
    model: &dyn Model,
    x: &Tensor,
    y: &Tensor,
    spec: &AttackSpec,
    opts: &EvalOptions<'_>,
) -> Result<EvalReport, AttackError> {
    crate::attack::check_inputs(x, y)?;
    evaluate_examples(model, &TensorExamples::new(x, y), spec, opts)
}

/// Evaluates `model` on the examples of `data` under `spec`, holding at most a few batches of
/// `opts.batch_size` examples at a time (plus per-example bookkeeping).
///
/// One read of the data in order does the clean pass and records what the fingerprint and the final
/// sanity values need; the pre-checks run on the first batch; each stage then fetches its
/// still-robust rows chunk by chunk. The per-example records are those of the whole split in one
/// tensor. With `opts.state_path` set to an existing state, the data is read once without the model
/// to check the state's fingerprint (a SHA-256 of the configuration, labels and every pixel; a state
/// written by a roli before 2026-12 is refused as "another configuration": delete it).
pub fn evaluate_examples(
    model: &dyn Model,
    data: &dyn Examples,
    spec: &AttackSpec,
    opts: &EvalOptions<'_>,
) -> Result<EvalReport, AttackError> {
    let t0 = Instant::now();
    let n = data.len();
    if n == 0 {
        return Err(AttackError::BadInput { what: "x", detail: "no examples to evaluate".into() });
    }
    if opts.batch_size == 0 {
        return Err(AttackError::BadConfig("batch size must be >= 1".into()));
    }
    let indices: Vec<usize> = match opts.indices {
        Some(ix) if ix.len() != n => {
            return Err(AttackError::BadInput {
                what: "indices",
                detail: format!("{} indices for {n} examples", ix.len()),
            });
        }
        Some(ix) => ix.to_vec(),
        None => (0..n).collect(),
    };
    let stages = spec.stages(opts.threat.norm())?;
    for s in &stages {
        s.build(opts.threat)?; // refuse unsupported norms before any work
    }
    let counting = Counting::new(model);
    let notify = |e: ProgressEvent| {
        if let Some(p) = opts.progress {
            p(&e)
        }
    };

    // Resume (after reading the data once to check the fingerprint) or start with the clean pass.
    let previous = match &opts.state_path {
        Some(p) if p.exists() => Some((p, EvalState::load(p)?)),
        _ => None,
    };
    let mut summary = DataSummary::new(n);
    let (mut state, mut flags, fp) = match previous {
        Some((path, st)) => {
            if opts.context.is_some() && st.context != opts.context {
                return Err(AttackError::State {
                    path: path.clone(),
                    detail: format!(
                        "was written for {}, not {}; use another --out, or drop --resume to start over",
                        st.context.as_deref().unwrap_or("an unrecorded model and data"),
                        opts.context.as_deref().unwrap_or_default()
                    ),
                });
            }
            crate::source::for_each_batch(data, opts.batch_size, |_, x, y| {
                summary.add(n, x, y)?;
                notify(ProgressEvent::ResumeCheckBatch { done: summary.labels.len(), n });
                Ok(())
            })?;
            let fp = fingerprint(spec, &stages, opts, &indices, &summary);
            if st.fingerprint != fp {
                return Err(AttackError::State {
                    path: path.clone(),
                    detail: format!("was written for another configuration (fingerprint {} != {fp}); use another --out or delete it", st.fingerprint),
                });
            }
            (st.cascade, st.flags, fp)
        }
        None => {
            let state =
                cascade::clean_pass_examples(&counting, data, opts.batch_size, opts.progress, &mut |_, x, y| {
                    summary.add(n, x, y)
                })?;
            let fp = fingerprint(spec, &stages, opts, &indices, &summary);
            let flags = if opts.run_checks {
                pre_checks(&counting, data, &summary, spec, &stages, &state, opts)?
            } else {
                Vec::new()
            };
            (state, flags, fp)
        }
    };
    summary.first = None;
    let resumed_stages = state.stages.len();
    notify(ProgressEvent::Clean { n, correct: state.clean_correct.iter().filter(|&&c| c).count() });
    let save = |st: &CascadeState, flags: &[Flag]| -> Result<(), AttackError> {
        if let Some(p) = &opts.state_path {
            EvalState {
                fingerprint: fp.clone(),
                stages: stages.clone(),
                flags: flags.to_vec(),
                cascade: st.clone(),
                context: opts.context.clone(),
            }
            .save(p)?;
        }
        Ok(())
    };
    save(&state, &flags)?;
    let flags_now = flags.clone();
    let checkpoint = |st: &CascadeState| save(st, &flags_now);
    let copts = CascadeOptions {
        batch_size: opts.batch_size,
        seed: opts.seed,
        progress: opts.progress,
        on_checkpoint: Some(&checkpoint),
    };
    // x_adv is this run's adversarial input for the points it breaks and the clean input elsewhere;
    // its sanity values and bounds are accumulated batch by batch instead of kept.
    let mut bounds = checks::BoundsAccumulator::new(opts.threat);
    let mut broken_now = vec![false; n];
    let (mut min_value, mut max_value) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut on_broken = |rows: &[usize], x: &Tensor, x_adv: &Tensor| {
        bounds.add(x, x_adv);
        min_value = nan_min(min_value, x_adv.min().double_value(&[]));
        max_value = nan_max(max_value, x_adv.max().double_value(&[]));
        for &i in rows {
            broken_now[i] = true;
        }
        Ok(())
    };
    cascade::run_examples(&counting, data, opts.threat, &stages, &mut state, &copts, &mut on_broken)?;
    let (mut unchanged, mut nan, mut out_of_box) = (0usize, 0usize, 0usize);
    for i in (0..n).filter(|&i| !broken_now[i]) {
        unchanged += 1;
        nan += summary.row_nan[i] as usize;
        out_of_box += summary.row_out_of_box[i] as usize;
        min_value = nan_min(min_value, summary.row_min[i] as f64);
        max_value = nan_max(max_value, summary.row_max[i] as f64);
    }
    bounds.add_unchanged(unchanged, nan, out_of_box);

    // Post checks: bounds of this run's x_adv, and Square vs the white-box stages.
    let max_pert = state.perturbation_norm.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let sanity = Sanity { max_perturbation: max_pert, nan: bounds.nan(), min_value, max_value };
    if opts.run_checks {
        flags.extend(bounds.flag());
        if max_pert > opts.threat.eps() * (1.0 + checks::NORM_SLACK) + 1e-7
            && !flags.iter().any(|f| matches!(f, Flag::PerturbationOutOfBounds { .. }))
        {
            flags.push(Flag::PerturbationOutOfBounds { over_eps: 1, max_norm: max_pert, out_of_box: 0, nan: 0 });
        }
        let accs: Vec<(StageId, f64)> = state.stages.iter().map(|s| (s.id, s.robust_accuracy)).collect();
        flags.extend(checks::square_vs_white_box(&accs));
    }
    // With the pre-check flags only: a run resumed from this state runs the post checks again.
    save(&state, &flags_now)?;

    let clean_accuracy = state.clean_correct.iter().filter(|&&c| c).count() as f64 / n as f64;
    let robust_accuracy = state.robust.iter().filter(|&&c| c).count() as f64 / n as f64;
    let examples = (0..n)
        .map(|i| ExampleRecord {
            index: indices[i],
            label: summary.labels[i],
            clean_correct: state.clean_correct[i],
            robust: state.robust[i],
            broken_by: state.broken_by[i],
            adv_label: state.adv_pred[i],
            perturbation_norm: state.perturbation_norm[i],
            attacks: state.attacks[i].clone(),
        })
        .collect();
    Ok(EvalReport {
        attack: spec.to_string(),
        norm: opts.threat.norm(),
        eps: opts.threat.eps(),
        seed: opts.seed,
        batch_size: opts.batch_size,
        n,
        clean_accuracy,
        robust_accuracy,
        stages: state.stages,
        examples,
        sanity,
        flags,
        passes: counting.counts(),
        seconds: t0.elapsed().as_secs_f64(),
        resumed_stages,
    })
}

/// Checks run before attacking, on the first batch (and the first `batch_size` clean-correct points).
fn pre_checks(
    model: &Counting<'_>,
    data: &dyn Examples,
    summary: &DataSummary,
    spec: &AttackSpec,
    stages: &[Stage],
    state: &CascadeState,
    opts: &EvalOptions<'_>,
) -> Result<Vec<Flag>, AttackError> {
    let mut flags = Vec::new();
    let (xb, yb) = summary.first.as_ref().expect("the clean pass read a first batch");
    if !matches!(spec, AttackSpec::AutoAttack(AaVersion::Rand)) {
        flags.extend(checks::randomized(model, xb, yb, 5));
    }
    flags.extend(checks::softmax_output(&tch::no_grad(|| model.logits(xb))));
    // Zero gradients at clean, correctly classified points (those the attacks will work on).
    let correct: Vec<usize> =
        (0..state.clean_correct.len()).filter(|&i| state.clean_correct[i]).take(opts.batch_size).collect();
    if !stages.is_empty() && !correct.is_empty() && stages.iter().any(|s| s.id().is_white_box()) {
        let (xc, yc) = crate::source::fetch(data, &correct, Some(&summary.shape))?;
        flags.extend(checks::zero_gradients(model, &xc, &yc)?);
    }
    let k = n_classes(model, xb) as usize;
    for s in stages {
        match *s {
            Stage::ApgdT { targets, .. } | Stage::FabT { targets, .. } => {
                flags.extend(checks::too_many_targets(s.id(), targets, k))
            }
            _ => {}
        }
    }
    Ok(flags)
}

/// A robustness curve: one report per eps, plus the curve-level flags (monotonicity in eps, and the
/// eps = 0 check when 0 is in the list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// One report per eps, in the given order.
    pub reports: Vec<EvalReport>,
    /// Flags about the curve as a whole.
    pub flags: Vec<Flag>,
}

/// Runs [`evaluate`] for each eps in `eps_list` (same norm, seed and batch size as `opts`) on the
/// in-memory split `(x, y)`; see [`sweep_examples`].
pub fn sweep(
    model: &dyn Model,
    x: &Tensor,
    y: &Tensor,
    spec: &AttackSpec,
    eps_list: &[f64],
    opts: &EvalOptions<'_>,
) -> Result<Sweep, AttackError> {
    crate::attack::check_inputs(x, y)?;
    sweep_examples(model, &TensorExamples::new(x, y), spec, eps_list, opts)
}

/// Runs [`evaluate_examples`] for each eps in `eps_list` (same norm, seed and batch size as `opts`),
/// reading `data` anew for each. With `opts.state_path`, each radius keeps its own state
/// ([`sweep_state_path`]), so an interrupted sweep resumes where it stopped; they are removed once
/// the whole sweep is done.
pub fn sweep_examples(
    model: &dyn Model,
    data: &dyn Examples,
    spec: &AttackSpec,
    eps_list: &[f64],
    opts: &EvalOptions<'_>,
) -> Result<Sweep, AttackError> {
    let mut reports = Vec::with_capacity(eps_list.len());
    for &eps in eps_list {
        let o = EvalOptions {
            threat: ThreatModel::new(opts.threat.norm(), eps),
            seed: opts.seed,
            batch_size: opts.batch_size,
            indices: opts.indices,
            run_checks: opts.run_checks,
            state_path: opts.state_path.as_deref().map(|p| sweep_state_path(p, eps)),
            progress: opts.progress,
            context: opts.context.clone(),
        };
        reports.push(evaluate_examples(model, data, spec, &o)?);
    }
    if let Some(p) = &opts.state_path {
        for &eps in eps_list {
            let _ = std::fs::remove_file(sweep_state_path(p, eps));
        }
    }
    let curve: Vec<(f64, f64)> = reports.iter().map(|r| (r.eps, r.robust_accuracy)).collect();
    let mut flags: Vec<Flag> = checks::monotone_in_eps(&curve).into_iter().collect();
    if let Some(r0) = reports.iter().find(|r| r.eps == 0.0) {
        flags.extend(checks::eps_zero(r0.clean_accuracy, r0.robust_accuracy));
    }
    Ok(Sweep { reports, flags })
}

/// The state file of one radius of a sweep: `state.json` → `state.eps-0.1.json`.
pub fn sweep_state_path(state_path: &Path, eps: f64) -> PathBuf {
    let stem = state_path.file_stem().and_then(|s| s.to_str()).unwrap_or("state");
    state_path.with_file_name(format!("{stem}.eps-{eps}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgd::StepSize;

    #[test]
    fn spec_stages_resolve_presets() {
        let aa: AttackSpec = "aa-standard".parse().unwrap();
        assert_eq!(aa.stages(Norm::Linf).unwrap(), crate::presets::AA_STANDARD.to_vec());
        assert!(aa.stages(Norm::L1).is_err());
        let p = AttackSpec::with_pgd(40, Some(0.01), 2);
        match p.stages(Norm::Linf).unwrap()[0] {
            Stage::Pgd(c) => assert_eq!((c.steps, c.step_size, c.restarts), (40, StepSize::Absolute(0.01), 2)),
            other => panic!("{other:?}"),
        }
        assert!(AttackSpec::None.stages(Norm::L2).unwrap().is_empty());
    }
}
