//! Square Attack (Andriushchenko et al., ECCV 2020): score-based black-box random search.
//!
//! Each query changes one random square window (side from the p schedule of [`p_selection`]) and
//! keeps the change if the margin loss drops. Because it never uses gradients it is the gradient-masking
//! control of AutoAttack. Written from the paper and the behaviour of the official `square.py`
//! (same random draws in the same order, `resc_schedule=False` as AutoAttack sets it). L∞ and L2.

use crate::attack::{check_inputs, nonzero1, put, Attack};
use crate::loss;
use crate::model::{predict, Model};
use crate::restarts::{restart_loop, Round};
use crate::rng::seed_all;
use crate::stage_id::StageId;
use crate::threat::{Norm, ThreatModel};
use crate::AttackError;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Square settings; `Default` is AutoAttack's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquareConfig {
    /// Query budget per restart (5000).
    pub n_queries: usize,
    /// Initial fraction of pixels changed per query (0.8).
    pub p_init: f64,
    /// Restarts (1).
    pub restarts: usize,
    /// Rescale the p schedule to the query budget (false in AutoAttack, whose schedule assumes 10000).
    pub rescale_schedule: bool,
}

impl SquareConfig {
    /// AutoAttack's Square.
    pub const OFFICIAL: SquareConfig =
        SquareConfig { n_queries: 5000, p_init: 0.8, restarts: 1, rescale_schedule: false };
}

impl Default for SquareConfig {
    fn default() -> Self {
        Self::OFFICIAL
    }
}

/// The fraction of pixels changed at iteration `it` (piecewise constant, halving at
/// 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 iterations of a 10000 budget).
pub fn p_selection(p_init: f64, it: usize, n_queries: usize, rescale: bool) -> f64 {
    let it = if rescale { (it as f64 / n_queries as f64 * 10000.0) as usize } else { it };
    const STEPS: [(usize, f64); 9] = [
        (10, 1.0),
        (50, 2.0),
        (200, 4.0),
        (500, 8.0),
        (1000, 16.0),
        (2000, 32.0),
        (4000, 64.0),
        (6000, 128.0),
        (8000, 256.0),
    ];
    let mut div = 512.0;
    for &(upto, d) in STEPS.iter() {
        if it <= upto {
            div = d;
            break;
        }
    }
    p_init / div
}

/// Side of the square window for fraction `p` (Python's round-half-even, as in the reference).
fn side(p: f64, n_features: i64, c: i64, min: i64) -> i64 {
    ((p * n_features as f64 / c as f64).sqrt().round_ties_even() as i64).max(min)
}

/// Square in one threat model.
#[derive(Clone, Debug)]
pub struct Square {
    /// The ball.
    pub threat: ThreatModel,
    /// The settings.
    pub config: SquareConfig,
}

fn rand_choice(shape: &[i64], dev: Device) -> Tensor {
    (crate::rng::rand_like_ref(shape, dev) * 2.0 - 1.0).sign()
}

/// Uniform integer in [low, high) drawn like the reference (`low + (high-low)·U`, truncated).
fn rand_int(low: i64, high: i64) -> i64 {
    (Tensor::rand([1], (Kind::Float, Device::Cpu)) * (high - low) as f64 + low as f64)
        .to_kind(Kind::Int64)
        .int64_value(&[0])
}

fn margin_and_loss(model: &dyn Model, x: &Tensor, y: &Tensor) -> Tensor {
    tch::no_grad(|| loss::margin(&model.logits(x), y))
}

/// L2 window profile: nested rectangles with weights 1/(k+1)^2, normalised.
fn eta_rectangles(x: i64, y: i64, dev: Device) -> Tensor {
    let delta = Tensor::zeros([x, y], (Kind::Float, dev));
    let (x_c, y_c) = (x / 2 + 1, y / 2 + 1);
    let (mut c0, mut c1) = (x_c - 1, y_c - 1);
    for counter in 0..x_c.max(y_c) {
        let (r0, r1) = (c0.max(0), (c0 + 2 * counter + 1).min(x));
        let (s0, s1) = (c1.max(0), (c1 + 2 * counter + 1).min(y));
        if r1 > r0 && s1 > s0 {
            let mut win = delta.narrow(0, r0, r1 - r0).narrow(1, s0, s1 - s0);
            win += 1.0 / ((counter + 1) as f64).powi(2);
        }
        c0 -= 1;
        c1 -= 1;
    }
    let n = delta.pow_tensor_scalar(2).sum(Kind::Float).sqrt();
    delta / n
}

/// L2 square perturbation of side s: two opposite-signed halves, randomly transposed.
fn eta(s: i64, dev: Device) -> Tensor {
    let top = eta_rectangles(s / 2, s, dev);
    let bottom = -eta_rectangles(s - s / 2, s, dev);
    let delta = Tensor::cat(&[top, bottom], 0);
    let delta = &delta / delta.pow_tensor_scalar(2).sum(Kind::Float).sqrt();
    if Tensor::rand([1], (Kind::Float, Device::Cpu)).double_value(&[0]) > 0.5 {
        delta.permute([1, 0])
    } else {
        delta
    }
}

impl Square {
    /// Square in `threat` with `config`.
    pub fn new(threat: ThreatModel, config: SquareConfig) -> Self {
        Self { threat, config }
    }

    fn p(&self, it: usize) -> f64 {
        p_selection(self.config.p_init, it, self.config.n_queries, self.config.rescale_schedule)
    }

    /// Keeps improvements: the loss is the margin, so "improved" means a smaller margin or misclassified.
    fn accept(&self, idx: &Tensor, x_new: &Tensor, margin: &Tensor, margin_min: &mut Tensor, x_best: &mut Tensor) {
        let margin_min_curr = margin_min.index_select(0, idx);
        let x_best_curr = x_best.index_select(0, idx);
        let improved = margin.lt_tensor(&margin_min_curr).to_kind(Kind::Float);
        // loss == margin for the untargeted margin loss, so loss_min and margin_min coincide.
        let miscl = margin.le(0.0).to_kind(Kind::Float);
        let improved = improved.maximum(&miscl);
        put(margin_min, idx, &(&improved * margin + (1.0 - &improved) * &margin_min_curr));
        let imp = improved.view([-1, 1, 1, 1]);
        put(x_best, idx, &(&imp * x_new + (1.0 - &imp) * &x_best_curr));
    }

    fn single_run_linf(&self, model: &dyn Model, x: &Tensor, y: &Tensor) -> Tensor {
        let eps = self.threat.eps();
        let dev = x.device();
        let sz = x.size();
        let (n, c, h, w) = (sz[0], sz[1], sz[2], sz[3]);
        let n_features = c * h * w;
        let mut x_best = (x + rand_choice(&[n, c, 1, w], dev) * eps).clamp(0.0, 1.0);
        let mut margin_min = margin_and_loss(model, &x_best, y);
        if margin_min.lt(0.0).all().int64_value(&[]) == 1 {
            return x_best;
        }
        for i_iter in 0..self.config.n_queries {
            let idx = nonzero1(&margin_min.gt(0.0));
            let x_curr = x.index_select(0, &idx);
            let x_best_curr = x_best.index_select(0, &idx);
            let y_curr = y.index_select(0, &idx);
            let p = self.p(i_iter);
            let s = side(p, n_features, c, 1).min(h.min(w));
            let vh = rand_int(0, h - s);
            let vw = rand_int(0, w - s);
            let new_deltas = Tensor::zeros([c, h, w], (Kind::Float, dev));
            let signs = rand_choice(&[c, 1, 1], dev) * (2.0 * eps);
            new_deltas.narrow(1, vh, s).narrow(2, vw, s).copy_(&signs.expand([c, s, s], false));
            let x_new =
                (&x_best_curr + &new_deltas).maximum(&(&x_curr - eps)).minimum(&(&x_curr + eps)).clamp(0.0, 1.0);
            let margin = margin_and_loss(model, &x_new, &y_curr);
            self.accept(&idx, &x_new, &margin, &mut margin_min, &mut x_best);
            if margin_min.le(0.0).all().int64_value(&[]) == 1 {
                break;
            }
        }
        x_best
    }

    fn single_run_l2(&self, model: &dyn Model, x: &Tensor, y: &Tensor) -> Tensor {
        let eps = self.threat.eps();
        let dev = x.device();
        let sz = x.size();
        let (n, c, h, w) = (sz[0], sz[1], sz[2], sz[3]);
        let n_features = c * h * w;
        let l2 = |t: &Tensor| Norm::L2.per_example(t).view([-1, 1, 1, 1]);
        // Initial perturbation: a grid of 5x5 windows of side h/5, each with a random sign per channel.
        let delta_init = x.zeros_like();
        let s = h / 5;
        let sp_init = (h - s * 5) / 2;
        let mut vh = sp_init;
        for _ in 0..h / s {
            let mut vw = sp_init;
            for _ in 0..w / s {
                if vh + s > h || vw + s > w {
                    // The reference's grid overruns small images (e.g. 12x12) and crashes there;
                    // windows that do not fit are skipped instead.
                    vw += s;
                    continue;
                }
                let e = eta(s, dev).view([1, 1, s, s]) * rand_choice(&[n, c, 1, 1], dev);
                let mut win = delta_init.narrow(2, vh, s).narrow(3, vw, s);
                win += e;
                vw += s;
            }
            vh += s;
        }
        let mut x_best = (x + Norm::L2.normalize(&delta_init) * eps).clamp(0.0, 1.0);
        let mut margin_min = margin_and_loss(model, &x_best, y);
        if margin_min.lt(0.0).all().int64_value(&[]) == 1 {
            return x_best;
        }
        for i_iter in 0..self.config.n_queries {
            let idx = nonzero1(&margin_min.gt(0.0));
            let x_curr = x.index_select(0, &idx);
            let x_best_curr = x_best.index_select(0, &idx);
            let y_curr = y.index_select(0, &idx);
            let m = x_curr.size()[0];
            let delta_curr = &x_best_curr - &x_curr;
            let p = self.p(i_iter);
            let mut s = side(p, n_features, c, 3);
            if s % 2 == 0 {
                s += 1;
            }
            let s = s.min(h.min(w));
            let vh = rand_int(0, h - s);
            let vw = rand_int(0, w - s);
            let mask1 = x_curr.zeros_like();
            let _ = mask1.narrow(2, vh, s).narrow(3, vw, s).fill_(1.0);
            let win1 = delta_curr.narrow(2, vh, s).narrow(3, vw, s);
            let norms_window_1 = win1.pow_tensor_scalar(2).sum_dim_intlist(&[-2i64, -1][..], true, Kind::Float).sqrt();
            let vh2 = rand_int(0, h - s);
            let vw2 = rand_int(0, w - s);
            let mask2 = x_curr.zeros_like();
            let _ = mask2.narrow(2, vh2, s).narrow(3, vw2, s).fill_(1.0);
            let norms_image = l2(&(&x_best_curr - &x_curr));
            let mask_image = mask1.maximum(&mask2);
            let norms_windows = (&delta_curr * &mask_image)
                .pow_tensor_scalar(2)
                .sum_dim_intlist(&[-2i64, -1][..], true, Kind::Float)
                .sqrt();
            let mut new_deltas = Tensor::ones([m, c, s, s], (Kind::Float, dev));
            new_deltas *= eta(s, dev).view([1, 1, s, s]) * rand_choice(&[m, c, 1, 1], dev);
            let old_deltas = &win1 / (&norms_window_1 + 1e-12);
            new_deltas += old_deltas;
            let budget = ((new_deltas.ones_like() * eps).pow_tensor_scalar(2) - norms_image.pow_tensor_scalar(2))
                .maximum(&new_deltas.zeros_like())
                / c as f64
                + norms_windows.pow_tensor_scalar(2);
            let new_deltas = &new_deltas
                / (new_deltas.pow_tensor_scalar(2).sum_dim_intlist(&[-2i64, -1][..], true, Kind::Float).sqrt() + 1e-12)
                * budget.sqrt();
            let _ = delta_curr.narrow(2, vh2, s).narrow(3, vw2, s).fill_(0.0);
            delta_curr.narrow(2, vh, s).narrow(3, vw, s).copy_(&new_deltas);
            let x_new = (&x_curr + Norm::L2.normalize(&delta_curr) * eps).clamp(0.0, 1.0);
            let margin = margin_and_loss(model, &x_new, &y_curr);
            self.accept(&idx, &x_new, &margin, &mut margin_min, &mut x_best);
            if margin_min.le(0.0).all().int64_value(&[]) == 1 {
                break;
            }
        }
        x_best
    }
}

impl Attack for Square {
    fn id(&self) -> StageId {
        StageId::Square
    }

    fn perturb(&self, model: &dyn Model, x: &Tensor, y: &Tensor, seed: u64) -> Result<Tensor, AttackError> {
        check_inputs(x, y)?;
        let norm = self.threat.norm();
        if norm == Norm::L1 {
            return Err(AttackError::UnsupportedNorm { attack: self.id(), norm });
        }
        if x.dim() != 4 {
            return Err(AttackError::BadInput {
                what: "x",
                detail: format!("Square needs NCHW images, got shape {:?}", x.size()),
            });
        }
        if self.config.restarts == 0 {
            return Err(AttackError::BadConfig("Square needs restarts >= 1".into()));
        }
        let _guard = tch::no_grad_guard();
        let x = x.detach();
        let acc = predict(model, &x).eq_tensor(y);
        seed_all(seed);
        restart_loop(&x, y, acc, 0..self.config.restarts, |_, b| {
            let adv_curr = match norm {
                Norm::Linf => self.single_run_linf(model, &b.x, &b.y),
                _ => self.single_run_l2(model, &b.x, &b.y),
            };
            let fooled = predict(model, &adv_curr).ne_tensor(&b.y);
            Ok(Round { x_adv: adv_curr, fooled, keep: None })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_schedule_matches_official_breakpoints() {
        let p = |it| p_selection(0.8, it, 5000, false);
        assert_eq!(p(0), 0.8);
        assert_eq!(p(10), 0.8);
        assert_eq!(p(11), 0.4);
        assert_eq!(p(50), 0.4);
        assert_eq!(p(51), 0.2);
        assert_eq!(p(201), 0.1);
        assert_eq!(p(501), 0.05);
        assert_eq!(p(1001), 0.025);
        assert_eq!(p(2001), 0.0125);
        assert_eq!(p(4001), 0.8 / 128.0);
        assert_eq!(p(6001), 0.8 / 256.0);
        assert_eq!(p(8001), 0.8 / 512.0);
        // Rescaled: iteration 2500 of 5000 behaves like 5000 of 10000.
        assert_eq!(p_selection(0.8, 2500, 5000, true), 0.8 / 128.0);
    }

    #[test]
    fn window_side_uses_round_half_even() {
        // MNIST: 784 features, 1 channel, p = 0.8 -> sqrt(627.2) = 25.04 -> 25
        assert_eq!(side(0.8, 784, 1, 1), 25);
        // sqrt(6.25) = 2.5 rounds to 2 in Python 3.
        assert_eq!(side(6.25, 1, 1, 1), 2);
        assert_eq!(side(0.0, 784, 1, 1), 1);
    }

    #[test]
    fn official_defaults() {
        let c = SquareConfig::default();
        assert_eq!((c.n_queries, c.p_init, c.restarts, c.rescale_schedule), (5000, 0.8, 1, false));
    }
}
