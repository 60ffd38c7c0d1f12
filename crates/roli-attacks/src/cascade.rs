//! The AutoAttack protocol: a cascade of attacks over the points that are still robust.
//!
//! A clean pass marks the correctly classified points; each stage then attacks only the points no
//! earlier stage has broken, always starting from the clean input, in batches. A point's result is
//! the worst case over stages: it is robust only if every stage failed on it. The bookkeeping is
//! per example ([`CascadeState`]), serialisable, so an interrupted evaluation can resume after the
//! last finished stage. The examples come from an [`Examples`] source, a batch at a time: nothing
//! here holds the whole split ([`run`] and [`clean_pass`] are the in-memory conveniences).

use crate::model::{predict, Counting, PassCounts};
use crate::presets::Stage;
use crate::source::{fetch, for_each_batch, rows_tensor, Examples, TensorExamples};
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

/// Progress notifications, enough for one progress bar per phase in the CLI: the clean pass batch by
/// batch, then for each stage a start, one event per attacked batch (with the robust count so far)
/// and an end.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    /// A batch of the clean pass finished.
    CleanBatch {
        /// Examples classified so far.
        done: usize,
        /// Examples in all.
        n: usize,
    },
    /// A resumed evaluation read a batch of the data to check that the state file belongs to it
    /// (its fingerprint); no model passes. Sent instead of [`ProgressEvent::CleanBatch`].
    ResumeCheckBatch {
        /// Examples read so far.
        done: usize,
        /// Examples in all.
        n: usize,
    },
    /// The clean pass finished (or was restored from a state file).
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
        /// Points of all `n` still robust after this batch (clean-correct and not broken by any
        /// stage so far; points this stage has yet to attack count as robust). `robust_so_far / n`
        /// is the robust accuracy so far, an upper bound on the final one.
        robust_so_far: usize,
        /// Examples in all.
        n: usize,
    },
    /// A stage finished.
    StageEnd(StageResult),
    /// A stage was skipped because a resumed state had already run it.
    StageResumed(StageId),
}

/// Callback receiving the state after each finished stage (e.g. to save it).
pub type CheckpointFn<'a> = &'a dyn Fn(&CascadeState) -> Result<(), AttackError>;

/// Callback receiving, per attacked batch, the points that batch broke: their rows (positions in the
/// evaluated set), their clean inputs and their adversarial inputs (`[rows.len(), ...]`, on the
/// model's device). Not called for a batch that broke nothing.
pub type BrokenFn<'a> = &'a mut dyn FnMut(&[usize], &Tensor, &Tensor) -> Result<(), AttackError>;

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

/// Clean predictions of an in-memory split `(x, y)` in batches (see [`clean_pass_examples`]).
/// Panics if `batch_size` is 0 or `x`, `y` are not an f32 batch with int64 labels.
pub fn clean_pass(model: &Counting<'_>, x: &Tensor, y: &Tensor, batch_size: usize) -> CascadeState {
    clean_pass_examples(model, &TensorExamples::new(x, y), batch_size, None, &mut |_, _, _| Ok(()))
        .unwrap_or_else(|e| panic!("clean pass: {e}"))
}

/// Clean predictions of `data`, read in order `batch_size` rows at a time; `inspect(start, x, y)`
/// sees each batch (rows `start..start + len`) after it was classified, e.g. to summarise the data
/// without reading it twice. Sends [`ProgressEvent::CleanBatch`] after each batch.
pub fn clean_pass_examples(
    model: &Counting<'_>,
    data: &dyn Examples,
    batch_size: usize,
    progress: Option<&dyn Fn(&ProgressEvent)>,
    inspect: &mut dyn FnMut(usize, &Tensor, &Tensor) -> Result<(), AttackError>,
) -> Result<CascadeState, AttackError> {
    let n = data.len();
    let before = model.counts();
    let mut preds = Vec::with_capacity(n);
    let mut clean_correct = Vec::with_capacity(n);
    for_each_batch(data, batch_size, |start, x, y| {
        let p = to_vec_i64(&predict(model, x));
        clean_correct.extend(p.iter().zip(to_vec_i64(y)).map(|(&p, l)| p == l));
        preds.extend(p);
        inspect(start, x, y)?;
        if let Some(cb) = progress {
            cb(&ProgressEvent::CleanBatch { done: preds.len(), n });
        }
        Ok(())
    })?;
    Ok(CascadeState {
        robust: clean_correct.clone(),
        clean_correct,
        adv_pred: preds.clone(),
        clean_pred: preds,
        broken_by: vec![None; n],
        perturbation_norm: vec![None; n],
        attacks: vec![BTreeMap::new(); n],
        stages: Vec::new(),
        clean_passes: model.counts().since(&before),
    })
}

/// Runs `stages` in order on the points of `state` still robust in the in-memory split `(x, y)`
/// (see [`run_examples`]). Returns the adversarial inputs of the points broken in this call (clean
/// x elsewhere): a copy of the whole split.
pub fn run(
    model: &Counting<'_>,
    x: &Tensor,
    y: &Tensor,
    threat: ThreatModel,
    stages: &[Stage],
    state: &mut CascadeState,
    opts: &CascadeOptions<'_>,
) -> Result<Tensor, AttackError> {
    let mut x_adv = x.copy();
    let dev = x.device();
    let mut write = |rows: &[usize], _x: &Tensor, adv: &Tensor| {
        let _ = x_adv.index_copy_(0, &rows_tensor(rows, dev), adv);
        Ok(())
    };
    run_examples(model, &TensorExamples::new(x, y), threat, stages, state, opts, &mut write)?;
    Ok(x_adv)
}

/// Runs `stages` in order on the points of `state` still robust, updating `state` per example.
/// Each stage fetches its still-robust rows from `data` in chunks of `opts.batch_size` (in row
/// order) and attacks each chunk from the clean input; `on_broken` sees the points each chunk broke.
/// Stages already in `state` (a resumed run) are checked against the plan and skipped.
pub fn run_examples(
    model: &Counting<'_>,
    data: &dyn Examples,
    threat: ThreatModel,
    stages: &[Stage],
    state: &mut CascadeState,
    opts: &CascadeOptions<'_>,
    on_broken: BrokenFn<'_>,
) -> Result<(), AttackError> {
    if opts.batch_size == 0 {
        return Err(AttackError::BadConfig("batch size must be >= 1".into()));
    }
    let n = data.len();
    if state.robust.len() != n {
        return Err(AttackError::BadInput {
            what: "x",
            detail: format!("{n} examples but the cascade state has {}", state.robust.len()),
        });
    }
    let notify = |e: ProgressEvent| {
        if let Some(p) = opts.progress {
            p(&e)
        }
    };
    let mut like: Option<Vec<i64>> = None;
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
        let todo: Vec<usize> = (0..n).filter(|&i| state.robust[i]).collect();
        notify(ProgressEvent::StageStart { id, n_robust: todo.len() });
        let t0 = Instant::now();
        let before = model.counts();
        let mut n_broken = 0;
        for (b, chunk) in todo.chunks(opts.batch_size).enumerate() {
            let (xs, ys) = fetch(data, chunk, like.as_deref())?;
            if like.is_none() {
                like = Some(xs.size());
            }
            let adv = attack.perturb(model, &xs, &ys, opts.seed)?;
            let pred = predict(model, &adv);
            let fooled = pred.ne_tensor(&ys);
            let norms = threat.norm().per_example(&(&adv - &xs));
            let pred_v = to_vec_i64(&pred);
            let fooled_v: Vec<bool> = to_vec_i64(&fooled).into_iter().map(|v| v != 0).collect();
            let norms_v = Vec::<f64>::try_from(&norms.to_kind(Kind::Double).to_device(tch::Device::Cpu))
                .expect("a CPU f64 tensor converts to Vec<f64>");
            let mut broken_j = Vec::new();
            for (j, &i) in chunk.iter().enumerate() {
                state.attacks[i].insert(id, !fooled_v[j]);
                // `fooled` compares with the batch's labels, which are row i's label.
                if fooled_v[j] {
                    state.robust[i] = false;
                    state.broken_by[i] = Some(id);
                    state.adv_pred[i] = pred_v[j];
                    state.perturbation_norm[i] = norms_v.get(j).copied();
                    n_broken += 1;
                    broken_j.push(j as i64);
                }
            }
            if !broken_j.is_empty() {
                let rows: Vec<usize> = broken_j.iter().map(|&j| chunk[j as usize]).collect();
                let fi = Tensor::from_slice(&broken_j).to_device(xs.device());
                on_broken(&rows, &xs.index_select(0, &fi), &adv.index_select(0, &fi))?;
            }
            notify(ProgressEvent::Batch {
                id,
                done: ((b + 1) * opts.batch_size).min(todo.len()),
                total: todo.len(),
                robust_so_far: todo.len() - n_broken,
                n,
            });
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
        // The kill tests' "between stages" moment (`ROLI_KILL_AT=aa-stage:N`).
        roli_io::failpoint::kill_point("aa-stage", id.as_str());
    }
    Ok(())
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
