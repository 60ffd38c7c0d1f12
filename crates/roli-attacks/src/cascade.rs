//! The AutoAttack protocol: a cascade of attacks over the points that are still robust.
//!
//! A clean pass marks the correctly classified points; each stage then attacks only the points no
//! earlier stage has broken, always starting from the clean input, in batches. A point's result is
//! the worst case over stages: it is robust only if every stage failed on it. The bookkeeping is
//! per example ([`CascadeState`]), serialisable, so an interrupted evaluation can resume after the
//! last finished stage.

use crate::attack::nonzero1;
use crate::model::{predict, Counting, PassCounts};
use crate::presets::Stage;
use crate::stage_id::StageId;
use crate::threat::ThreatModel;
use crate::AttackError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Kind, Tensor};

/// What happened in one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    /// Attack id.
    pub id: StageId,
    /// The stage and its budget.
    pub stage: Stage,
    /// Robust accuracy over all n points after this stage.
    pub robust_accuracy: f64,
    /// Points this stage attacked (those still robust before it).
    pub n_attacked: usize,
    /// Points this stage broke.
    pub n_broken: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Model passes spent by this stage (including the re-classification of its outputs).
    pub passes: PassCounts,
}

/// Per-example bookkeeping of a cascade; also the resumable part of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CascadeState {
    /// Clean prediction is correct.
    pub clean_correct: Vec<bool>,
    /// Clean predicted label.
    pub clean_pred: Vec<i64>,
    /// Still robust after the stages done so far.
    pub robust: Vec<bool>,
    /// The first stage that broke the point.
    pub broken_by: Vec<Option<StageId>>,
    /// Predicted label of the returned point (clean prediction unless broken).
    pub adv_pred: Vec<i64>,
    /// Norm of the adversarial perturbation of broken points.
    pub perturbation_norm: Vec<Option<f64>>,
    /// Per example, the outcome of every stage that attacked it (true = survived).
    pub attacks: Vec<BTreeMap<StageId, bool>>,
    /// Finished stages, in order.
    pub stages: Vec<StageResult>,
    /// Clean-pass model calls.
    pub clean_passes: PassCounts,
}

/// Progress notifications (for a progress bar in the CLI).
#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    /// The clean pass finished.
    Clean {
        /// Examples.
        n: usize,
        /// Correctly classified.
        correct: usize,
    },
    /// A stage starts on `n_robust` points.
    StageStart {
        /// The stage.
        id: StageId,
        /// Points it will attack.
        n_robust: usize,
    },
    /// A batch of a stage finished.
    Batch {
        /// The stage.
        id: StageId,
        /// Points attacked so far in this stage.
        done: usize,
        /// Points this stage attacks.
        total: usize,
    },
    /// A stage finished.
    StageEnd(StageResult),
    /// A stage was skipped because a resumed state had already run it.
    StageResumed(StageId),
}

/// Callback receiving the state after each finished stage (e.g. to save it).
pub type CheckpointFn<'a> = &'a dyn Fn(&CascadeState) -> Result<(), AttackError>;

/// How a cascade runs.
pub struct CascadeOptions<'a> {
    /// Batch size for attacks and the clean pass.
    pub batch_size: usize,
    /// Seed passed to every attack call (AutoAttack also reuses one seed for all).
    pub seed: u64,
    /// Optional progress callback.
    pub progress: Option<&'a dyn Fn(&ProgressEvent)>,
    /// Called after every finished stage with the state (for resumable saving).
    pub on_checkpoint: Option<CheckpointFn<'a>>,
}

fn to_vec_i64(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.to_kind(Kind::Int64).to_device(tch::Device::Cpu).view([-1]))
        .expect("a CPU int64 tensor converts to Vec<i64>")
}

/// Clean predictions in batches.
pub fn clean_pass(model: &Counting<'_>, x: &Tensor, y: &Tensor, batch_size: usize) -> CascadeState {
    let n = x.size()[0];
    let before = model.counts();
    let mut preds = Vec::with_capacity(n as usize);
    let mut start = 0;
    while start < n {
        let len = (batch_size as i64).min(n - start);
        preds.extend(to_vec_i64(&predict(model, &x.narrow(0, start, len))));
        start += len;
    }
    let labels = to_vec_i64(y);
    let clean_correct: Vec<bool> = preds.iter().zip(&labels).map(|(p, l)| p == l).collect();
    CascadeState {
        robust: clean_correct.clone(),
        clean_correct,
        adv_pred: preds.clone(),
        clean_pred: preds,
        broken_by: vec![None; n as usize],
        perturbation_norm: vec![None; n as usize],
        attacks: vec![BTreeMap::new(); n as usize],
        stages: Vec::new(),
        clean_passes: model.counts().since(&before),
    }
}

/// Runs `stages` in order on the points of `state` still robust, updating `state` per example.
/// Returns the adversarial inputs of the points broken in this call (clean x elsewhere).
pub fn run(
    model: &Counting<'_>,
    x: &Tensor,
    y: &Tensor,
    threat: ThreatModel,
    stages: &[Stage],
    state: &mut CascadeState,
    opts: &CascadeOptions<'_>,
) -> Result<Tensor, AttackError> {
    if opts.batch_size == 0 {
        return Err(AttackError::BadConfig("batch size must be >= 1".into()));
    }
    let n = x.size()[0] as usize;
    let notify = |e: ProgressEvent| {
        if let Some(p) = opts.progress {
            p(&e)
        }
    };
    let labels = to_vec_i64(y);
    let mut x_adv = x.copy();
    for (k, stage) in stages.iter().enumerate() {
        if k < state.stages.len() {
            if state.stages[k].stage != *stage {
                return Err(AttackError::BadConfig(format!(
                    "resumed state ran {:?} as stage {k}, but the plan has {:?}",
                    state.stages[k].stage, stage
                )));
            }
            notify(ProgressEvent::StageResumed(stage.id()));
            continue;
        }
        let id = stage.id();
        let attack = stage.build(threat)?;
        let todo: Vec<i64> = (0..n).filter(|&i| state.robust[i]).map(|i| i as i64).collect();
        notify(ProgressEvent::StageStart { id, n_robust: todo.len() });
        let t0 = Instant::now();
        let before = model.counts();
        let mut n_broken = 0;
        for (b, chunk) in todo.chunks(opts.batch_size).enumerate() {
            let idx = Tensor::from_slice(chunk).to_device(x.device());
            let xs = x.index_select(0, &idx);
            let ys = y.index_select(0, &idx);
            let adv = attack.perturb(model, &xs, &ys, opts.seed)?;
            let pred = predict(model, &adv);
            let fooled = pred.ne_tensor(&ys);
            let norms = threat.norm().per_example(&(&adv - &xs));
            let pred_v = to_vec_i64(&pred);
            let fooled_v: Vec<bool> = to_vec_i64(&fooled).into_iter().map(|v| v != 0).collect();
            let norms_v = Vec::<f64>::try_from(&norms.to_kind(Kind::Double).to_device(tch::Device::Cpu))
                .expect("a CPU f64 tensor converts to Vec<f64>");
            for (j, &i) in chunk.iter().enumerate() {
                let i = i as usize;
                state.attacks[i].insert(id, !fooled_v[j]);
                if fooled_v[j] && labels[i] != pred_v[j] {
                    state.robust[i] = false;
                    state.broken_by[i] = Some(id);
                    state.adv_pred[i] = pred_v[j];
                    state.perturbation_norm[i] = norms_v.get(j).copied();
                    n_broken += 1;
                }
            }
            let fi = nonzero1(&fooled);
            if fi.numel() > 0 {
                let _ = x_adv.index_copy_(0, &idx.index_select(0, &fi), &adv.index_select(0, &fi));
            }
            notify(ProgressEvent::Batch { id, done: ((b + 1) * opts.batch_size).min(todo.len()), total: todo.len() });
        }
        let result = StageResult {
            id,
            stage: *stage,
            robust_accuracy: state.robust.iter().filter(|&&r| r).count() as f64 / n.max(1) as f64,
            n_attacked: todo.len(),
            n_broken,
            seconds: t0.elapsed().as_secs_f64(),
            passes: model.counts().since(&before),
        };
        state.stages.push(result.clone());
        notify(ProgressEvent::StageEnd(result));
        if let Some(cb) = opts.on_checkpoint {
            cb(state)?;
        }
    }
    Ok(x_adv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::Attack;
    use tch::Device;

    /// Logit_1 = 10·(x̄ − 0.5): class 1 iff the mean pixel exceeds 0.5.
    fn mean_model(x: &Tensor) -> Tensor {
        let m = x.reshape([x.size()[0], -1]).mean_dim(&[1i64][..], true, Kind::Float);
        let z = (m - 0.5) * 10.0;
        Tensor::cat(&[z.zeros_like(), z], 1)
    }

    #[test]
    fn cascade_attacks_only_still_robust_points_and_records_first_breaker() {
        // Means 0.1 .. 0.45 with label 0: PGD eps 0.1 breaks exactly those with mean > 0.4.
        let means = [0.1f32, 0.2, 0.3, 0.42, 0.45, 0.6];
        let x = Tensor::from_slice(&means).view([6, 1, 1, 1]).expand([6, 1, 2, 2], false).contiguous();
        let y = Tensor::from_slice(&[0i64, 0, 0, 0, 0, 0]);
        let inner = mean_model;
        let model = Counting::new(&inner);
        let mut st = clean_pass(&model, &x, &y, 4);
        assert_eq!(st.clean_correct, vec![true, true, true, true, true, false]);
        let pgd = |eps_steps: usize| {
            Stage::Pgd(crate::pgd::PgdConfig {
                steps: eps_steps,
                step_size: crate::pgd::StepSize::Absolute(0.05),
                random_start: false,
                ..Default::default()
            })
        };
        // Stage 1: 2 steps of 0.05 (reach +0.1), stage 2: the same again (cannot break more).
        let stages = [pgd(2), pgd(3)];
        let opts = CascadeOptions { batch_size: 2, seed: 0, progress: None, on_checkpoint: None };
        let x_adv = run(&model, &x, &y, ThreatModel::Linf { eps: 0.1 }, &stages, &mut st, &opts).unwrap();
        assert_eq!(st.robust, vec![true, true, true, false, false, false]);
        assert_eq!(st.broken_by, vec![None, None, None, Some(StageId::Pgd), Some(StageId::Pgd), None]);
        assert_eq!(st.stages[0].n_attacked, 5);
        assert_eq!(st.stages[0].n_broken, 2);
        // Stage 2 attacked only the 3 survivors.
        assert_eq!(st.stages[1].n_attacked, 3);
        assert_eq!(st.stages[1].n_broken, 0);
        assert!((st.stages[1].robust_accuracy - 0.5).abs() < 1e-12);
        // Points not attacked by stage 2 have no entry for it; attacked ones do.
        assert_eq!(st.attacks[3].len(), 1);
        assert_eq!(st.attacks[0].len(), 1, "same id for both PGD stages, last write wins");
        // Broken points carry their adversarial input and norm; unbroken keep the clean x.
        let d: Vec<f32> = Vec::try_from(&(&x_adv - &x).abs().amax([1i64, 2, 3], false)).unwrap();
        assert!(d[3] > 0.09 && d[3] <= 0.1 + 1e-6 && d[0] == 0.0 && d[5] == 0.0, "{d:?}");
        assert!(st.perturbation_norm[3].unwrap() <= 0.1 + 1e-6);
        // Pass counting saw every forward and backward.
        let c = model.counts();
        assert!(c.backward_calls >= 3 && c.forward_calls > c.backward_calls);
    }

    #[test]
    fn resume_skips_done_stages_and_refuses_a_different_plan() {
        let x = Tensor::full([3, 1, 2, 2], 0.45, (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        let inner = mean_model;
        let model = Counting::new(&inner);
        let mut st = clean_pass(&model, &x, &y, 8);
        let s1 = Stage::Pgd(crate::pgd::PgdConfig { steps: 1, random_start: false, ..Default::default() });
        let opts = CascadeOptions { batch_size: 8, seed: 0, progress: None, on_checkpoint: None };
        let _ = run(&model, &x, &y, ThreatModel::Linf { eps: 0.1 }, &[s1], &mut st, &opts).unwrap();
        let before = model.counts();
        let _ = run(&model, &x, &y, ThreatModel::Linf { eps: 0.1 }, &[s1], &mut st, &opts).unwrap();
        assert_eq!(model.counts(), before, "a finished stage must not run again");
        let other = Stage::Square { queries: 10, p_init: 0.8 };
        assert!(run(&model, &x, &y, ThreatModel::Linf { eps: 0.1 }, &[other], &mut st, &opts).is_err());
        let _ = crate::pgd::Pgd::new(ThreatModel::Linf { eps: 0.1 }, Default::default()).id();
    }
}
