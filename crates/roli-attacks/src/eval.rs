//! Robust evaluation behind `roli eval`: the runner, the report and eps sweeps (attack names: [`crate::spec`]).
//!
//! `evaluate` runs the clean pass, the integrity checks and the cascade of the chosen attack, and
//! returns an [`EvalReport`] that serialises to the `results.json` contract (n, clean_accuracy,
//! robust_accuracy, eps, norm, attack, examples[...]). Nothing is skipped silently: the report
//! carries the example count, every stage with its cost in model passes, and all flags.

use crate::cascade::{self, CascadeOptions, CascadeState, ProgressEvent, StageResult};
use crate::checks::{self, Flag};
use crate::model::{Counting, Model, PassCounts};
use crate::presets::{AaVersion, Stage};
use crate::stage_id::StageId;
use crate::threat::{Norm, ThreatModel};
use crate::AttackError;

/// Moved to [`crate::spec`] (the attack-name table); re-exported so `eval::AttackSpec` keeps working.
pub use crate::spec::{AttackSpec, ATTACK_NAMES};
use serde::{Deserialize, Serialize};
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
}

impl<'a> EvalOptions<'a> {
    /// Defaults: seed 0, batch 250, checks on, no state, no progress.
    pub fn new(threat: ThreatModel) -> Self {
        Self { threat, seed: 0, batch_size: 250, indices: None, run_checks: true, state_path: None, progress: None }
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
    pub fingerprint: String,
    /// Stage plan.
    pub stages: Vec<Stage>,
    /// Flags from the checks of the first run.
    pub flags: Vec<Flag>,
    /// Per-example state.
    pub cascade: CascadeState,
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

/// FNV-1a, enough to detect a changed configuration (not a security hash).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn fingerprint(
    spec: &AttackSpec,
    stages: &[Stage],
    opts: &EvalOptions<'_>,
    indices: &[usize],
    labels: &[i64],
    x: &Tensor,
) -> String {
    let xsum = x.sum(Kind::Double).double_value(&[]);
    let key = serde_json::json!({
        "attack": spec.to_string(), "stages": stages, "threat": opts.threat, "seed": opts.seed,
        "batch_size": opts.batch_size, "indices": indices, "labels": labels, "x_sum": xsum,
        "x_shape": x.size(), "crate": env!("CARGO_PKG_VERSION"),
    });
    format!("{:016x}", fnv1a(key.to_string().as_bytes()))
}

fn n_classes(model: &dyn Model, x: &Tensor) -> i64 {
    tch::no_grad(|| model.logits(&x.narrow(0, 0, 1))).size()[1]
}

/// Evaluates `model` on `(x, y)` under `spec`. `x`: `[N, C, H, W]` f32 in [0, 1]; `y`: `[N]` int64.
pub fn evaluate(
    model: &dyn Model,
    x: &Tensor,
    y: &Tensor,
    spec: &AttackSpec,
    opts: &EvalOptions<'_>,
) -> Result<EvalReport, AttackError> {
    crate::attack::check_inputs(x, y)?;
    let t0 = Instant::now();
    let n = x.size()[0] as usize;
    if n == 0 {
        return Err(AttackError::BadInput { what: "x", detail: "no examples to evaluate".into() });
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
    let x = x.detach();
    let labels: Vec<i64> = Vec::try_from(&y.to_device(tch::Device::Cpu).view([-1]))
        .map_err(|source| AttackError::Torch { context: "reading labels", source })?;
    let stages = spec.stages(opts.threat.norm())?;
    for s in &stages {
        s.build(opts.threat)?; // refuse unsupported norms before any work
    }
    let counting = Counting::new(model);
    let fp = fingerprint(spec, &stages, opts, &indices, &labels, &x);

    // Resume or start.
    let mut resumed = None;
    if let Some(p) = &opts.state_path {
        if p.exists() {
            let st = EvalState::load(p)?;
            if st.fingerprint != fp {
                return Err(AttackError::State {
                    path: p.clone(),
                    detail: format!("was written for another configuration (fingerprint {} != {fp}); use another --out or delete it", st.fingerprint),
                });
            }
            resumed = Some(st);
        }
    }
    let (mut state, mut flags) = match resumed {
        Some(st) => (st.cascade, st.flags),
        None => {
            let state = cascade::clean_pass(&counting, &x, y, opts.batch_size);
            let flags =
                if opts.run_checks { pre_checks(&counting, &x, y, spec, &stages, &state, opts)? } else { Vec::new() };
            (state, flags)
        }
    };
    let resumed_stages = state.stages.len();
    if let Some(p) = opts.progress {
        p(&ProgressEvent::Clean { n, correct: state.clean_correct.iter().filter(|&&c| c).count() });
    }
    let save = |st: &CascadeState, flags: &[Flag]| -> Result<(), AttackError> {
        if let Some(p) = &opts.state_path {
            EvalState { fingerprint: fp.clone(), stages: stages.clone(), flags: flags.to_vec(), cascade: st.clone() }
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
    let x_adv = cascade::run(&counting, &x, y, opts.threat, &stages, &mut state, &copts)?;

    // Post checks: bounds of this run's x_adv, and Square vs the white-box stages.
    let nan = x_adv.isnan().sum(Kind::Int64).int64_value(&[]) as usize;
    let max_pert = state.perturbation_norm.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let sanity = Sanity {
        max_perturbation: max_pert,
        nan,
        min_value: x_adv.min().double_value(&[]),
        max_value: x_adv.max().double_value(&[]),
    };
    if opts.run_checks {
        flags.extend(checks::perturbation_bounds(&x, &x_adv, &opts.threat));
        if max_pert > opts.threat.eps() * (1.0 + checks::NORM_SLACK) + 1e-7
            && !flags.iter().any(|f| matches!(f, Flag::PerturbationOutOfBounds { .. }))
        {
            flags.push(Flag::PerturbationOutOfBounds { over_eps: 1, max_norm: max_pert, out_of_box: 0, nan: 0 });
        }
        let accs: Vec<(StageId, f64)> = state.stages.iter().map(|s| (s.id, s.robust_accuracy)).collect();
        flags.extend(checks::square_vs_white_box(&accs));
    }
    save(&state, &flags)?;

    let clean_accuracy = state.clean_correct.iter().filter(|&&c| c).count() as f64 / n as f64;
    let robust_accuracy = state.robust.iter().filter(|&&c| c).count() as f64 / n as f64;
    let examples = (0..n)
        .map(|i| ExampleRecord {
            index: indices[i],
            label: labels[i],
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

/// Checks run before attacking, on the first batch.
fn pre_checks(
    model: &Counting<'_>,
    x: &Tensor,
    y: &Tensor,
    spec: &AttackSpec,
    stages: &[Stage],
    state: &CascadeState,
    opts: &EvalOptions<'_>,
) -> Result<Vec<Flag>, AttackError> {
    let mut flags = Vec::new();
    let n = x.size()[0];
    let b = (opts.batch_size as i64).min(n);
    let xb = x.narrow(0, 0, b);
    let yb = y.narrow(0, 0, b);
    if !matches!(spec, AttackSpec::AutoAttack(AaVersion::Rand)) {
        flags.extend(checks::randomized(model, &xb, &yb, 5));
    }
    flags.extend(checks::softmax_output(&tch::no_grad(|| model.logits(&xb))));
    // Zero gradients at clean, correctly classified points (those the attacks will work on).
    let correct: Vec<i64> =
        (0..n as usize).filter(|&i| state.clean_correct[i]).take(opts.batch_size).map(|i| i as i64).collect();
    if !stages.is_empty() && !correct.is_empty() && stages.iter().any(|s| s.id().is_white_box()) {
        let idx = Tensor::from_slice(&correct).to_device(x.device());
        flags.extend(checks::zero_gradients(model, &x.index_select(0, &idx), &y.index_select(0, &idx))?);
    }
    let k = n_classes(model, x) as usize;
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

/// Runs [`evaluate`] for each eps in `eps_list` (same norm, seed and batch size as `opts`).
pub fn sweep(
    model: &dyn Model,
    x: &Tensor,
    y: &Tensor,
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
            state_path: None,
            progress: opts.progress,
        };
        reports.push(evaluate(model, x, y, spec, &o)?);
    }
    let curve: Vec<(f64, f64)> = reports.iter().map(|r| (r.eps, r.robust_accuracy)).collect();
    let mut flags: Vec<Flag> = checks::monotone_in_eps(&curve).into_iter().collect();
    if let Some(r0) = reports.iter().find(|r| r.eps == 0.0) {
        flags.extend(checks::eps_zero(r0.clean_accuracy, r0.robust_accuracy));
    }
    Ok(Sweep { reports, flags })
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
