//! Projected gradient descent (Madry et al. 2018) with random start, restarts and best-iterate choice.
//!
//! The update follows roli-spec §4 (the ARES/RoLI loop): the loss of each iterate is recorded before
//! stepping and once more after the last step, and the returned point is chosen by [`BestIterate`].

use crate::attack::{check_inputs, nonzero1, put, Attack};
use crate::loss::LossKind;
use crate::model::{loss_and_grad, predict, Model};
use crate::restarts::{restart_loop, Round};
use crate::rng::seed_all;
use crate::stage_id::StageId;
use crate::threat::ThreatModel;
use crate::AttackError;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which iterate PGD returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BestIterate {
    /// The final iterate.
    Last,
    /// Per example, the iterate with the highest loss (strictly greater replaces), as ARES intends.
    PerExample,
    /// The iterate with the highest *batch-mean* loss, for the whole batch at once: what the RoLI
    /// reference actually does because its loss is reduced to a scalar (roli-spec §4, "use_best" bug).
    /// Only for faithful reproduction.
    FaithfulBatch,
}

/// Step size of PGD.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepSize {
    /// A fixed step (e.g. 2/255).
    Absolute(f64),
    /// A fraction of eps (e.g. 0.25 gives 2/255 at eps 8/255).
    RelativeToEps(f64),
}

impl StepSize {
    /// The step for radius `eps`.
    pub fn resolve(self, eps: f64) -> f64 {
        match self {
            StepSize::Absolute(s) => s,
            StepSize::RelativeToEps(r) => r * eps,
        }
    }
}

/// PGD settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgdConfig {
    /// Gradient steps per restart (default 10: the RoLI evaluation's PGD-10).
    pub steps: usize,
    /// Step size (default eps/4, i.e. 2/255 at 8/255 as in RoLI).
    pub step_size: StepSize,
    /// Random restarts; later restarts only attack points not yet fooled (default 1).
    pub restarts: usize,
    /// Start from a uniform random point in the ball (default true).
    pub random_start: bool,
    /// Loss to maximise (default cross-entropy).
    pub loss: LossKind,
    /// Which iterate to return (default per example).
    pub best: BestIterate,
}

impl PgdConfig {
    /// RoLI's evaluation PGD: 10 steps of eps/4, random start, per-example best iterate.
    pub const ROLI_EVAL: PgdConfig = PgdConfig {
        steps: 10,
        step_size: StepSize::RelativeToEps(0.25),
        restarts: 1,
        random_start: true,
        loss: LossKind::Ce,
        best: BestIterate::PerExample,
    };
}

impl Default for PgdConfig {
    fn default() -> Self {
        Self::ROLI_EVAL
    }
}

/// PGD for one threat model.
#[derive(Clone, Debug)]
pub struct Pgd {
    /// The ball.
    pub threat: ThreatModel,
    /// The settings.
    pub config: PgdConfig,
}

enum Goal<'a> {
    Untargeted(&'a Tensor),
    /// Minimise CE to these targets.
    Targeted(&'a Tensor),
}

impl Pgd {
    /// PGD in `threat` with `config`.
    pub fn new(threat: ThreatModel, config: PgdConfig) -> Self {
        Self { threat, config }
    }

    /// Targeted PGD: pushes each example towards `y_target` by minimising CE to it
    /// (the configured loss is ignored). Returns the chosen iterates.
    pub fn perturb_targeted(
        &self,
        model: &dyn Model,
        x: &Tensor,
        y_target: &Tensor,
        seed: u64,
    ) -> Result<Tensor, AttackError> {
        check_inputs(x, y_target)?;
        self.validate()?;
        seed_all(seed);
        let mut adv = x.copy();
        let mut best_loss = Tensor::full([x.size()[0]], f64::NEG_INFINITY, (Kind::Float, x.device()));
        for _ in 0..self.config.restarts {
            let (cand, loss) = self.single_run(model, x, &Goal::Targeted(y_target))?;
            let better = loss.gt_tensor(&best_loss);
            adv = cand.where_self(&better.view(crate::threat::bcast_shape(x).as_slice()), &adv);
            best_loss = loss.where_self(&better, &best_loss);
        }
        Ok(adv)
    }

    /// For adversarial training: attacks every example (misclassified ones too, as the RoLI/ARES
    /// loop does) and returns, per example, the chosen iterate with the highest loss over restarts
    /// (with [`BestIterate::FaithfulBatch`] each restart picks its iterate batch-wise, as the reference).
    /// `seed: None` keeps libtorch's global generator as it is, so the training loop owns the random
    /// stream; `Some(s)` reseeds it first.
    pub fn perturb_all(
        &self,
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        seed: Option<u64>,
    ) -> Result<Tensor, AttackError> {
        check_inputs(x, y)?;
        self.validate()?;
        if let Some(s) = seed {
            seed_all(s);
        }
        let x = x.detach();
        let (mut adv, mut best_loss) = self.single_run(model, &x, &Goal::Untargeted(y))?;
        for _ in 1..self.config.restarts {
            let (cand, loss) = self.single_run(model, &x, &Goal::Untargeted(y))?;
            let better = loss.gt_tensor(&best_loss);
            adv = cand.where_self(&better.view(crate::threat::bcast_shape(&x).as_slice()), &adv);
            best_loss = loss.where_self(&better, &best_loss);
        }
        Ok(adv.detach())
    }

    fn validate(&self) -> Result<(), AttackError> {
        if self.config.steps == 0 || self.config.restarts == 0 {
            return Err(AttackError::BadConfig("PGD needs steps >= 1 and restarts >= 1".into()));
        }
        Ok(())
    }

    fn goal_loss(&self, goal: &Goal<'_>, logits: &Tensor) -> Tensor {
        match goal {
            Goal::Untargeted(y) => self.config.loss.eval(logits, y),
            Goal::Targeted(t) => -crate::loss::ce(logits, t),
        }
    }

    /// One restart on the whole batch; returns the chosen iterate and its loss.
    fn single_run(&self, model: &dyn Model, x: &Tensor, goal: &Goal<'_>) -> Result<(Tensor, Tensor), AttackError> {
        let alpha = self.config.step_size.resolve(self.threat.eps());
        let mut x_adv = if self.config.random_start { self.threat.random_init(x) } else { x.copy() };
        let n = x.size()[0];
        let bshape = crate::threat::bcast_shape(x);
        let mut best_x = x_adv.copy();
        let mut best_loss = Tensor::full([n], f64::NEG_INFINITY, (Kind::Float, x.device()));
        let mut best_mean = f64::NEG_INFINITY;
        let mut update =
            |x_cur: &Tensor, loss: &Tensor, best_x: &mut Tensor, best_loss: &mut Tensor| match self.config.best {
                BestIterate::Last => {
                    *best_x = x_cur.copy();
                    *best_loss = loss.copy();
                }
                BestIterate::PerExample => {
                    let better = loss.gt_tensor(best_loss);
                    *best_x = x_cur.where_self(&better.view(bshape.as_slice()), best_x);
                    *best_loss = loss.where_self(&better, best_loss);
                }
                BestIterate::FaithfulBatch => {
                    let m = loss.mean(Kind::Float).double_value(&[]);
                    if m > best_mean {
                        best_mean = m;
                        *best_x = x_cur.copy();
                        *best_loss = loss.copy();
                    }
                }
            };
        for _ in 0..self.config.steps {
            let (_, loss, grad) = loss_and_grad(model, &x_adv, 1, &|z| self.goal_loss(goal, z))?;
            update(&x_adv, &loss, &mut best_x, &mut best_loss);
            x_adv = tch::no_grad(|| self.threat.project(&self.threat.step(&x_adv, &grad, alpha), x));
        }
        let loss = tch::no_grad(|| self.goal_loss(goal, &model.logits(&x_adv)));
        update(&x_adv, &loss, &mut best_x, &mut best_loss);
        Ok((best_x, best_loss))
    }
}

impl Attack for Pgd {
    fn id(&self) -> StageId {
        StageId::Pgd
    }

    /// Untargeted PGD. Restart r > 0 attacks only points that every earlier restart left correctly
    /// classified; a fooled point keeps the first iterate that fooled it, others keep their
    /// highest-loss iterate over all restarts (per-example worst case, not a per-batch average).
    fn perturb(&self, model: &dyn Model, x: &Tensor, y: &Tensor, seed: u64) -> Result<Tensor, AttackError> {
        check_inputs(x, y)?;
        self.validate()?;
        let n = x.size()[0];
        seed_all(seed);
        let mut best_loss = Tensor::full([n], f64::NEG_INFINITY, (Kind::Float, x.device()));
        let robust = predict(model, x).eq_tensor(y);
        restart_loop(x, y, robust, 0..self.config.restarts, |_, b| {
            let (cand, loss) = self.single_run(model, &b.x, &Goal::Untargeted(&b.y))?;
            let fooled = predict(model, &cand).ne_tensor(&b.y);
            // Unlike the other attacks, PGD also keeps a not-yet-fooled point's highest-loss iterate.
            let better = loss.gt_tensor(&best_loss.index_select(0, &b.idx)).logical_or(&fooled);
            let take = nonzero1(&better);
            put(&mut best_loss, &b.idx.index_select(0, &take), &loss.index_select(0, &take));
            Ok(Round { x_adv: cand, fooled, keep: Some(better) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// A fixed linear model on flattened 2-pixel inputs: logit_0 = 0, logit_1 = w·x − 1.
    fn linear(x: &Tensor) -> Tensor {
        let w = Tensor::from_slice(&[1.0f32, 1.0]).view([2, 1]);
        let z1 = x.view([x.size()[0], 2]).matmul(&w) - 1.0;
        Tensor::cat(&[z1.zeros_like(), z1], 1)
    }

    #[test]
    fn pgd_moves_towards_the_boundary_and_stays_in_ball() {
        let x = Tensor::full([4, 1, 1, 2], 0.3, (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        let cfg = PgdConfig { steps: 20, step_size: StepSize::Absolute(0.05), ..PgdConfig::default() };
        let pgd = Pgd::new(ThreatModel::Linf { eps: 0.25 }, cfg);
        let adv = pgd.perturb(&linear, &x, &y, 0).unwrap();
        // 0.55 + 0.55 - 1 > 0: every example flips to class 1.
        let pred = predict(&linear, &adv);
        assert_eq!(pred.sum(Kind::Int64).int64_value(&[]), 4);
        let d = (&adv - &x).abs().max().double_value(&[]);
        assert!(d <= 0.25 + 1e-6, "{d}");
    }

    /// logit_1 = -10·|x − 0.43| on a single pixel, logit_0 = 0; with true class 0 the CE loss peaks at
    /// x = 0.43 and sign steps of 0.1 oscillate around it.
    fn peaked(x: &Tensor) -> Tensor {
        let v = x.view([x.size()[0], 1]);
        let z = -((&v - 0.43).abs() * 10.0);
        Tensor::cat(&[z.zeros_like(), z], 1)
    }

    fn run(best: BestIterate) -> (Vec<f32>, Vec<f32>) {
        // Example 0 oscillates 0.3, 0.4, 0.5, 0.4, 0.5 (best 0.4); example 1 walks down
        // 0.9, 0.8, 0.7, 0.6, 0.55 (best 0.55, the last). The batch-mean loss peaks at step 3.
        let x = Tensor::from_slice(&[0.3f32, 0.9]).view([2, 1, 1, 1]);
        let y = Tensor::from_slice(&[0i64, 0]);
        let cfg = PgdConfig {
            steps: 4,
            step_size: StepSize::Absolute(0.1),
            random_start: false,
            best,
            ..PgdConfig::default()
        };
        let pgd = Pgd::new(ThreatModel::Linf { eps: 0.35 }, cfg);
        let (bx, bl) = pgd.single_run(&peaked, &x, &Goal::Untargeted(&y)).unwrap();
        (Vec::try_from(&bx.view([-1])).unwrap(), Vec::try_from(&bl).unwrap())
    }

    #[test]
    fn perturb_all_attacks_misclassified_points_too() {
        // Example 1 is misclassified at the start; perturb() leaves it alone, perturb_all() moves it.
        let x = Tensor::from_slice(&[0.3f32, 0.6]).view([2, 1, 1, 1]);
        let y = Tensor::from_slice(&[0i64, 0]);
        let model = |x: &Tensor| {
            let z = (x.view([-1, 1]) - 0.5) * 10.0;
            Tensor::cat(&[z.zeros_like(), z], 1)
        };
        let cfg =
            PgdConfig { steps: 2, step_size: StepSize::Absolute(0.05), random_start: false, ..PgdConfig::default() };
        let pgd = Pgd::new(ThreatModel::Linf { eps: 0.1 }, cfg);
        let a: Vec<f32> = Vec::try_from(&pgd.perturb(&model, &x, &y, 0).unwrap().view([-1])).unwrap();
        let b: Vec<f32> = Vec::try_from(&pgd.perturb_all(&model, &x, &y, None).unwrap().view([-1])).unwrap();
        assert_eq!(a[1], 0.6);
        assert!((b[1] - 0.7).abs() < 1e-6 && (b[0] - 0.4).abs() < 1e-6, "{b:?}");
    }

    #[test]
    fn per_example_best_keeps_each_examples_own_peak() {
        let (per, per_loss) = run(BestIterate::PerExample);
        assert!((per[0] - 0.4).abs() < 1e-5 && (per[1] - 0.55).abs() < 1e-5, "per-example {per:?}");
        let (last, _) = run(BestIterate::Last);
        assert!((last[0] - 0.5).abs() < 1e-5, "last iterate {last:?}");
        // The faithful batch-level choice takes step 3 for both examples: example 1 is worse off.
        let (batch, batch_loss) = run(BestIterate::FaithfulBatch);
        assert!((batch[0] - 0.4).abs() < 1e-5 && (batch[1] - 0.6).abs() < 1e-5, "batch {batch:?}");
        assert!(per_loss[1] > batch_loss[1] && per_loss[0] >= batch_loss[0]);
    }
}
