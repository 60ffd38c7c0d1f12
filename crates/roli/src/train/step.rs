//! One adversarial training batch: PGD on the batch (model in eval mode, eps ramped up during the
//! warm-up) → forward in the plan's train/eval modes → mean cross-entropy → stop on a non-finite
//! loss → backward → optimiser step.
use super::audit::GradientAudit;
use super::checkpoint::Checkpoint;
use super::meter::{correct_count, EpochMeter, Reading};
use super::optim::Optimizer;
use super::plan::StagePlan;
use crate::seed::{derive_seed, BATCH_ATTACK, BATCH_FORWARD};
use roli_attacks::pgd::{Pgd, StepSize};
use roli_models::Classifier;
use tch::{nn, Tensor};

/// The fraction of the training radius used at (epoch, batch): linear from 1/total to 1 over
/// `warmup_epochs`, then 1.
pub fn eps_ramp(warmup_epochs: u32, epoch: u32, batch: usize, batches_per_epoch: usize) -> f64 {
    if warmup_epochs == 0 {
        return 1.0;
    }
    let total = warmup_epochs as f64 * batches_per_epoch.max(1) as f64;
    let done = epoch as f64 * batches_per_epoch.max(1) as f64 + batch as f64 + 1.0;
    (done / total).min(1.0)
}

/// The training attack at a fraction `ramp` < 1 of the radius: an absolute step size shrinks with
/// the radius, so the step count keeps its meaning.
pub fn ramped_attack(plan: &StagePlan, ramp: f64) -> Pgd {
    let mut cfg = plan.train_pgd;
    if let StepSize::Absolute(s) = cfg.step_size {
        cfg.step_size = StepSize::Absolute(s * ramp);
    }
    Pgd::new(plan.threat.with_eps(plan.threat.eps() * ramp), cfg)
}

/// What stays fixed across a stage's batches.
pub struct Trainer<'a> {
    pub model: &'a Classifier,
    pub vs: &'a nn::VarStore,
    pub plan: &'a StagePlan,
    pub files: &'a Checkpoint,
    /// The trainable tensors, in the plan's order.
    pub params: Vec<(String, Tensor)>,
    /// The training attack at the full radius.
    pub attack: Pgd,
    pub batches_per_epoch: usize,
}

/// Where a batch is in the stage, and the epoch's LR (for the NaN message).
#[derive(Clone, Copy)]
pub struct BatchAt {
    pub epoch: u32,
    pub batch: usize,
    pub lr: f64,
}

impl Trainer<'_> {
    /// The batch the model is trained on: every point attacked (misclassified ones too), the
    /// attack's random start seeded here; the clean batch when the plan does not attack.
    fn adversarial_batch(&self, x: &Tensor, y: &Tensor, at: BatchAt) -> anyhow::Result<Tensor> {
        let plan = self.plan;
        if !plan.attacks_training() {
            return Ok(x.shallow_clone());
        }
        tch::manual_seed(derive_seed(&[plan.seed, at.epoch as u64, at.batch as u64, BATCH_ATTACK]) as i64);
        let eval_model = |x: &Tensor| plan.precision.forward(plan.device, || self.model.forward_with(x, false));
        let ramp = eps_ramp(plan.eps_warmup_epochs, at.epoch, at.batch, self.batches_per_epoch);
        let xa = if ramp < 1.0 {
            ramped_attack(plan, ramp).perturb_all(&eval_model, x, y, None)?
        } else {
            self.attack.perturb_all(&eval_model, x, y, None)?
        };
        Ok(xa)
    }

    /// Trains on one batch (already on the device) and adds its loss and adversarial accuracy
    /// (before the update) to `meter`. With `read`, the meter is read before the update (a host
    /// synchronisation; every batch on the CPU, every few on a GPU) and a non-finite loss so far
    /// stops the stage. With `audit`, the gradients' non-zero pattern is recorded before the step.
    #[allow(clippy::too_many_arguments)]
    pub fn train_batch(
        &self,
        opt: &mut Optimizer,
        audit: Option<&mut GradientAudit>,
        meter: &mut EpochMeter,
        read: bool,
        x: &Tensor,
        y: &Tensor,
        at: BatchAt,
    ) -> anyhow::Result<Option<Reading>> {
        let plan = self.plan;
        let xa = self.adversarial_batch(x, y, at)?;
        tch::manual_seed(derive_seed(&[plan.seed, at.epoch as u64, at.batch as u64, BATCH_FORWARD]) as i64);
        let logits =
            plan.precision.forward(plan.device, || self.model.forward_peft(&xa, plan.backbone_train, plan.peft_train));
        let loss = logits.cross_entropy_for_logits(y);
        meter.add(at.batch, &loss, &correct_count(&logits, y), y.size()[0] as usize);
        let reading = read.then(|| meter.read());
        if let Some(bad) = reading.and_then(|r| r.first_nonfinite) {
            return Err(self.nan_stop(BatchAt { batch: bad, ..at }));
        }
        opt.zero_grad();
        loss.backward();
        if let Some(audit) = audit {
            audit.record(&self.params);
        }
        opt.try_step()?;
        Ok(reading)
    }

    /// Saves the diverged weights and explains what happened.
    fn nan_stop(&self, at: BatchAt) -> anyhow::Error {
        let nan_path = match self.files.save_nan_state(self.vs) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let BatchAt { epoch, batch: bi, lr } = at;
        anyhow::anyhow!(
            "{}: the training loss became NaN or infinite at epoch {epoch}, batch {bi} (lr {lr:.3e}); the run stopped and its state is in {} (last good epoch: {}). Lower the learning rate (base_lr) or check the data",
            self.plan.label,
            nan_path.display(),
            self.files.last.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{eps_ramp, ramped_attack};
    use crate::train::plan::test_plan;
    use roli_attacks::pgd::StepSize;

    #[test]
    fn eps_ramp_is_linear_then_full() {
        assert_eq!(eps_ramp(0, 0, 0, 10), 1.0);
        assert!((eps_ramp(2, 0, 0, 10) - 0.05).abs() < 1e-12);
        assert!((eps_ramp(2, 0, 9, 10) - 0.5).abs() < 1e-12);
        assert!((eps_ramp(2, 1, 9, 10) - 1.0).abs() < 1e-12);
        assert_eq!(eps_ramp(2, 5, 3, 10), 1.0);
        let r: Vec<f64> = (0..20).map(|b| eps_ramp(2, b / 10, (b % 10) as usize, 10)).collect();
        assert!(r.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn eps_ramp_tolerates_empty_epochs() {
        assert_eq!(eps_ramp(3, 0, 0, 0), 1.0 / 3.0);
        assert_eq!(eps_ramp(1, 0, 0, 0), 1.0);
    }

    #[test]
    fn ramped_attack_scales_radius_and_absolute_step_only() {
        let plan = test_plan();
        let a = ramped_attack(&plan, 0.5);
        assert!((a.threat.eps() - 0.05).abs() < 1e-15);
        assert_eq!(a.config.step_size, StepSize::Absolute(0.025 * 0.5));
        assert_eq!(a.config.steps, plan.train_pgd.steps);
        let rel = crate::train::plan::StagePlan {
            train_pgd: roli_attacks::pgd::PgdConfig { step_size: StepSize::RelativeToEps(0.25), ..plan.train_pgd },
            ..plan
        };
        assert_eq!(ramped_attack(&rel, 0.5).config.step_size, StepSize::RelativeToEps(0.25));
    }
}
