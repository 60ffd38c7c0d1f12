//! The stage loop: freeze all but the declared set, resume or start, then per epoch train on
//! every batch, audit trainability once, validate, and checkpoint; finally restore the best.
use super::audit::GradientAudit;
use super::checkpoint::Checkpoint;
use super::meter::{read_every, EpochMeter};
use super::metrics_log::{MetricsLog, Record};
use super::optim::Optimizer;
use super::plan::{EpochLog, ProgressFn, StageOutcome, StagePlan, StageState};
use super::step::{BatchAt, Trainer};
use super::validate::Validator;
use crate::artifacts::write_state;
use anyhow::{bail, Context};
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
    let mut st = files.resume_or_start(vs, plan, &mut opt)?;
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
    let mut audit = GradientAudit::default();
    for epoch in st.epochs_done..plan.epochs {
        let t0 = std::time::Instant::now();
        let lr = plan.lr_at(epoch);
        opt.lr = lr;
        let audit_now = st.trainability.is_none().then_some(&mut audit);
        let (train_loss, train_adv_accuracy) =
            train_epoch(&trainer, &mut opt, audit_now, &mut log, train, epoch, lr, progress)?;
        conclude_audit(&trainer, &mut audit, &mut st, lr)?;
        let (val_clean, val_robust) = validator.run(model, val, plan, epoch)?;
        let seconds = t0.elapsed().as_secs_f64();
        let epoch_log = EpochLog { epoch, lr, train_loss, train_adv_accuracy, val_clean, val_robust, seconds };
        end_epoch(&trainer, &opt, &mut st, &mut log, epoch_log)?;
    }
    files.finish(vs, &mut st)?;
    for t in vs.variables().values() {
        let _ = t.shallow_clone().set_requires_grad(false);
    }
    Ok(StageOutcome { plan: plan.clone(), state: st, best_weights: files.best })
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

/// One pass over the shuffled training set, batches streamed to the plan's device; returns (mean
/// loss, adversarial accuracy). The sums stay on the device and are read every
/// [`read_every`] batches (the progress bar, `metrics.jsonl`, the non-finite-loss stop) and at
/// the end.
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    trainer: &Trainer<'_>,
    opt: &mut Optimizer,
    mut audit: Option<&mut GradientAudit>,
    log: &mut MetricsLog,
    train: &dyn Dataset,
    epoch: u32,
    lr: f64,
    progress: ProgressFn<'_>,
) -> anyhow::Result<(f64, f64)> {
    let plan = trainer.plan;
    let mut meter = EpochMeter::new(plan.device);
    let mut aug = epoch_rng(plan.seed, epoch as u64, 1);
    let batches = BatchPlan::shuffled(train.len(), plan.batch_size, plan.seed).batches(epoch as u64);
    let every = read_every(plan.device);
    for (bi, idx) in batches.iter().enumerate() {
        let (x, y) = train.batch(idx, Some(&mut aug))?;
        let (x, y) = (x.to_device(plan.device), y.to_device(plan.device));
        let at = BatchAt { epoch, batch: bi, lr };
        let read = (bi + 1) % every == 0 || bi + 1 == batches.len();
        let reading = trainer.train_batch(opt, audit.as_deref_mut(), &mut meter, read, &x, &y, at)?;
        if let Some(r) = &reading {
            log.write(&Record::Step { epoch, batch: bi, step: opt.steps, lr, loss: r.last_loss })?;
        }
        progress(epoch, bi, trainer.batches_per_epoch, reading.map(|r| r.last_loss));
    }
    let r = meter.read();
    Ok((r.mean_loss, r.accuracy))
}

/// Logs the epoch (tracing and `metrics.jsonl`), keeps the best weights, and checkpoints.
fn end_epoch(
    trainer: &Trainer<'_>,
    opt: &Optimizer,
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
    trainer.files.save_epoch(vs, opt, st)
}
