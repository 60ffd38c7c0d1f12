//! Validation: clean and PGD accuracy on a dataset, model in eval mode.
use super::meter::correct_count;
use super::plan::StagePlan;
use crate::precision::Precision;
use crate::seed::{derive_seed, EPOCH_VALIDATION};
use anyhow::bail;
use roli_attacks::pgd::Pgd;
use roli_attacks::Attack;
use roli_data::loader::BatchPlan;
use roli_data::Dataset;
use roli_models::Classifier;
use tch::{Device, Kind, Tensor};

/// Clean and PGD accuracy of `model` (eval mode) on `ds`, in batches streamed to `device`, the
/// forward passes at `precision`; the counts stay on the device until the end. `pgd = None`:
/// clean only. Batch `b` of the attack is seeded with `[seed, b]`.
pub fn accuracy(
    model: &Classifier,
    ds: &dyn Dataset,
    batch_size: usize,
    pgd: Option<&Pgd>,
    seed: u64,
    (device, precision): (Device, Precision),
) -> anyhow::Result<(f64, Option<f64>)> {
    let n = ds.len();
    if n == 0 {
        bail!("cannot evaluate on an empty dataset '{}'", ds.name());
    }
    let eval = |x: &Tensor| precision.forward(device, || model.forward_with(x, false));
    let (mut clean, mut robust) = (Tensor::zeros([], (Kind::Int64, device)), Tensor::zeros([], (Kind::Int64, device)));
    for (bi, idx) in BatchPlan::sequential(n, batch_size).batches(0).iter().enumerate() {
        let (x, y) = ds.batch(idx, None)?;
        let (x, y) = (x.to_device(device), y.to_device(device));
        let logits = tch::no_grad(|| eval(&x));
        clean += correct_count(&logits, &y);
        if let Some(p) = pgd {
            let xa = p.perturb(&eval, &x, &y, derive_seed(&[seed, bi as u64]))?;
            let la = tch::no_grad(|| eval(&xa));
            robust += correct_count(&la, &y);
        }
    }
    let count = |t: &Tensor| t.to_device(Device::Cpu).int64_value(&[]) as f64;
    Ok((count(&clean) / n as f64, pgd.map(|_| count(&robust) / n as f64)))
}

/// A stage's validation attack: the plan's evaluation PGD, or none without steps or radius.
pub struct Validator {
    pgd: Pgd,
    attacked: bool,
}

impl Validator {
    pub fn new(plan: &StagePlan) -> Self {
        Validator {
            pgd: Pgd::new(plan.threat, plan.eval_pgd),
            attacked: plan.eval_pgd.steps > 0 && plan.threat.eps() > 0.0,
        }
    }

    /// (clean, robust) validation accuracy after `epoch`. Without an attack (standard training)
    /// robust is the clean accuracy, so the best epoch is chosen by it.
    pub fn run(
        &self,
        model: &Classifier,
        val: &dyn Dataset,
        plan: &StagePlan,
        epoch: u32,
    ) -> anyhow::Result<(f64, f64)> {
        let attack = self.attacked.then_some(&self.pgd);
        let seed = derive_seed(&[plan.seed, epoch as u64, EPOCH_VALIDATION]);
        let (vc, vr) = accuracy(model, val, plan.batch_size, attack, seed, (plan.device, plan.precision))?;
        Ok((vc, vr.unwrap_or(vc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::plan::test_plan;
    use roli_attacks::threat::ThreatModel;

    #[test]
    fn validation_attacks_only_with_steps_and_radius() {
        let plan = test_plan();
        assert!(Validator::new(&plan).attacked);
        let mut no_steps = plan.clone();
        no_steps.eval_pgd.steps = 0;
        assert!(!Validator::new(&no_steps).attacked);
        assert!(!Validator::new(&StagePlan { threat: ThreatModel::Linf { eps: 0.0 }, ..plan }).attacked);
    }
}
