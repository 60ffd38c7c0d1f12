//! The stage loop: freeze all but the declared set, resume or start, then per epoch train on
//! every batch, audit trainability once, validate, and checkpoint; finally restore the best.
//! With `train.checkpoint_every_steps`, an epoch also checkpoints every N optimiser steps and a
//! resumed stage continues inside the epoch where the checkpoint was taken.
use super::audit::GradientAudit;
use super::checkpoint::{Checkpoint, Progress, Resumed};
use super::meter::{read_every, EpochMeter};
use super::metrics_log::{MetricsLog, Record};
use super::optim::Optimizer;
use super::plan::{EpochLog, MidEpoch, ProgressFn, StageOutcome, StagePlan, StageState};
use super::step::{BatchAt, Trainer};
use super::validate::Validator;
use crate::artifacts::write_state;
use anyhow::{bail, Context};
use rand_chacha::ChaCha8Rng;
use roli_attacks::pgd::Pgd;
use roli_data::loader::{epoch_rng, BatchPlan};
use roli_data::Dataset;
use roli_models::Classifier;
use std::path::Path;
use tch::{nn, Tensor};

/// Trains one stage in `dir` (resuming if `dir` holds an unfinished run of the same plan).
pub fn train_stage(
    model: &Classifier,
    vs: &nn::VarStore,
    train: &dyn Dataset,
    val: &dyn Dataset,
    plan: &StagePlan,
    dir: &Path,
    progress: ProgressFn<'_>,
) -> anyhow::Result<StageOutcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _precision = plan.precision.enter(plan.device)?;
    let params = unfreeze_only(vs, &plan.trainable)?;
    let mut opt = optimizer_for(plan, &params);
    let files = Checkpoint::new(dir);
    let Resumed { state: mut st, mut audit, meter: mut interrupted } = files.resume_or_start(vs, plan, &mut opt)?;
    let mut log = MetricsLog::open(dir, st.optimizer_steps)?;
    let trainer = Trainer {
        model,
        vs,
        plan,
        files: &files,
        params,
        attack: Pgd::new(plan.threat, plan.train_pgd),
        batches_per_epoch: BatchPlan::shuffled(train.len(), plan.batch_size, plan.seed).num_batches(),
    };
    let validator = Validator::new(plan);
    for epoch in st.epochs_done..plan.epochs {
        let t0 = std::time::Instant::now();
        let lr = plan.lr_at(epoch);
        opt.lr = lr;
        let start = EpochStart::new(plan, epoch, lr, st.mid_epoch.take(), interrupted.take())?;
        let audit_now = st.trainability.is_none().then_some(&mut audit);
        let (train_loss, train_adv_accuracy) =
            train_epoch(&trainer, &mut opt, audit_now, &mut log, train, &st, start, progress)?;
        conclude_audit(&trainer, &mut audit, &mut st, lr)?;
        let (val_clean, val_robust) = validator.run(model, val, plan, epoch)?;
        let seconds = t0.elapsed().as_secs_f64();
        let epoch_log = EpochLog { epoch, lr, train_loss, train_adv_accuracy, val_clean, val_robust, seconds };
        let open_audit = st.trainability.is_none().then_some(&audit);
        end_epoch(&trainer, &opt, open_audit, &mut st, &mut log, epoch_log)?;
    }
    files.finish(vs, &mut st)?;
    for t in vs.variables().values() {
        let _ = t.shallow_clone().set_requires_grad(false);
    }
    Ok(StageOutcome { plan: plan.clone(), state: st, best_weights: files.best })
}

/// Where an epoch starts: at its first batch, or where a mid-epoch checkpoint left it.
struct EpochStart {
    epoch: u32,
    lr: f64,
    batches_done: usize,
    meter: EpochMeter,
    /// The augmentation stream of (seed, epoch), at its position after `batches_done` batches.
    augment: ChaCha8Rng,
}

impl EpochStart {
    fn new(
        plan: &StagePlan,
        epoch: u32,
        lr: f64,
        mid: Option<MidEpoch>,
        meter: Option<EpochMeter>,
    ) -> anyhow::Result<Self> {
        let mut augment = epoch_rng(plan.seed, epoch as u64, 1);
        let (batches_done, meter) = match (mid, meter) {
            (None, _) => (0, EpochMeter::new(plan.device)),
            (Some(m), Some(meter)) => {
                augment.set_word_pos(m.augment_word_pos);
                (m.batches_done, meter)
            }
            (Some(_), None) => bail!("{}: an interrupted epoch {epoch} without its running sums", plan.label),
        };
        Ok(EpochStart { epoch, lr, batches_done, meter, augment })
    }
}

/// The plan's optimiser over the trainable tensors.
fn optimizer_for(plan: &StagePlan, params: &[(String, Tensor)]) -> Optimizer {
    Optimizer::new(
        plan.optimizer,
        params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
        plan.weight_decay,
        plan.lr,
        &plan.head_bias,
    )
    .with_impl(plan.optim_impl)
}

/// Trainability check after the first epoch that could move anything (epoch 0 may run at LR 0);
/// dead tensors stop the stage (with `state.json` as it was) unless the plan allows them.
fn conclude_audit(
    trainer: &Trainer<'_>,
    audit: &mut GradientAudit,
    st: &mut StageState,
    lr: f64,
) -> anyhow::Result<()> {
    if st.trainability.is_none() && lr > 0.0 {
        let tr = audit.conclude(&trainer.params);
        if let Err(e) = tr.check(&trainer.plan.label, trainer.plan.allow_dead) {
            write_state(&trainer.files.dir, st)?;
            return Err(e);
        }
        st.trainability = Some(tr);
    }
    Ok(())
}

/// Freezes every tensor of `vs` but the `trainable` ones (which must exist); returns those, in order.
fn unfreeze_only(vs: &nn::VarStore, trainable: &[String]) -> anyhow::Result<Vec<(String, Tensor)>> {
    let vars = vs.variables();
    for n in trainable {
        if !vars.contains_key(n) {
            bail!("trainable tensor '{n}' does not exist in the model");
        }
    }
    for (n, t) in &vars {
        let _ = t.shallow_clone().set_requires_grad(trainable.contains(n));
    }
    Ok(trainable.iter().map(|n| (n.clone(), vars[n].shallow_clone())).collect())
}

/// One pass over the shuffled training set (from `start`), batches streamed to the plan's device;
/// returns (mean loss, adversarial accuracy). The sums stay on the device and are read every
/// [`read_every`] batches (the progress bar, `metrics.jsonl`, the non-finite-loss stop) and at
/// the end. Every `plan.checkpoint_every_steps` optimiser steps (but the epoch's last, which
/// [`end_epoch`] saves) the stage is checkpointed with `st` and where the epoch stands.
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    trainer: &Trainer<'_>,
    opt: &mut Optimizer,
    mut audit: Option<&mut GradientAudit>,
    log: &mut MetricsLog,
    train: &dyn Dataset,
    st: &StageState,
    start: EpochStart,
    progress: ProgressFn<'_>,
) -> anyhow::Result<(f64, f64)> {
    let plan = trainer.plan;
    let EpochStart { epoch, lr, batches_done, mut meter, augment: mut aug } = start;
    let batches = BatchPlan::shuffled(train.len(), plan.batch_size, plan.seed).batches(epoch as u64);
    let every = read_every(plan.device);
    for (bi, idx) in batches.iter().enumerate().skip(batches_done) {
        let (x, y) = train.batch(idx, Some(&mut aug))?;
        let (x, y) = (x.to_device(plan.device), y.to_device(plan.device));
        let at = BatchAt { epoch, batch: bi, lr };
        let read = (bi + 1) % every == 0 || bi + 1 == batches.len();
        let reading = trainer.train_batch(opt, audit.as_deref_mut(), &mut meter, read, &x, &y, at)?;
        if let Some(r) = &reading {
            log.write(&Record::Step { epoch, batch: bi, step: opt.steps, lr, loss: r.last_loss })?;
        }
        if plan.checkpoint_due(opt.steps) && bi + 1 < batches.len() {
            let mid = MidEpoch { batches_done: bi + 1, augment_word_pos: aug.get_word_pos() };
            let state = StageState { optimizer_steps: opt.steps, mid_epoch: Some(mid), ..st.clone() };
            let p = Progress { state: &state, audit: audit.as_deref(), meter: Some(&meter) };
            trainer.files.save(trainer.vs, opt, p)?;
        }
        roli_io::failpoint::kill_point("batch", "");
        progress(epoch, bi, trainer.batches_per_epoch, reading.map(|r| r.last_loss));
    }
    let r = meter.read();
    Ok((r.mean_loss, r.accuracy))
}

/// Logs the epoch (tracing and `metrics.jsonl`), keeps the best weights, and checkpoints (with
/// the audit's masks while its window is open).
fn end_epoch(
    trainer: &Trainer<'_>,
    opt: &Optimizer,
    audit: Option<&GradientAudit>,
    st: &mut StageState,
    metrics: &mut MetricsLog,
    log: EpochLog,
) -> anyhow::Result<()> {
    let (plan, vs) = (trainer.plan, trainer.vs);
    let (epoch, lr) = (log.epoch, log.lr);
    tracing::info!(
        "{} epoch {epoch}: lr {lr:.2e} loss {:.4} val clean {:.4} robust {:.4}",
        plan.label,
        log.train_loss,
        log.val_clean,
        log.val_robust
    );
    let is_best = st.record_validation(epoch, log.val_robust);
    metrics.write(&Record::Epoch {
        epoch,
        step: opt.steps,
        lr,
        train_loss: log.train_loss,
        train_adv_accuracy: log.train_adv_accuracy,
        val_clean: log.val_clean,
        val_robust: log.val_robust,
        seconds: log.seconds,
        best: is_best,
    })?;
    st.history.push(log);
    if is_best {
        trainer.files.save_best(vs)?;
    }
    st.epochs_done = epoch + 1;
    st.optimizer_steps = opt.steps;
    trainer.files.save(vs, opt, Progress { state: st, audit, meter: None })
}
