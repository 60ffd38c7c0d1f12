//! Threat models: the norm ball, its random init, steepest-ascent step and projection.
//!
//! Every `match` on the norm for PGD-style attacks lives here, so an attack never re-implements a
//! projection. All projections also clamp to the valid image range [0, 1]; clamping only shrinks
//! each coordinate of the perturbation, so the result stays inside the ball.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::{Kind, Tensor};

/// An Lp norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// L∞ (max absolute pixel change).
    Linf,
    /// L2 (Euclidean).
    L2,
    /// L1 (sum of absolute changes).
    L1,
}

impl Norm {
    /// The spelling AutoAttack uses (`Linf`, `L2`, `L1`).
    pub fn autoattack_name(self) -> &'static str {
        match self {
            Norm::Linf => "Linf",
            Norm::L2 => "L2",
            Norm::L1 => "L1",
        }
    }

    /// Per-example norm of a batch `[N, ...]`, shape `[N]`.
    pub fn per_example(self, delta: &Tensor) -> Tensor {
        let n = delta.size()[0];
        let flat = delta.reshape([n, -1]);
        match self {
            Norm::Linf => flat.abs().amax([1i64], false),
            Norm::L2 => flat.pow_tensor_scalar(2).sum_dim_intlist(&[1i64][..], false, Kind::Float).sqrt(),
            Norm::L1 => flat.abs().sum_dim_intlist(&[1i64][..], false, Kind::Float),
        }
    }

    /// Divides each example by its norm (+1e-12), as AutoAttack's `normalize`.
    pub fn normalize(self, t: &Tensor) -> Tensor {
        let shape = bcast_shape(t);
        t / (self.per_example(t).view(shape.as_slice()) + 1e-12)
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
            Norm::L1 => "l1",
        })
    }
}

impl FromStr for Norm {
    type Err = crate::AttackError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l_inf" => Ok(Norm::Linf),
            "l2" => Ok(Norm::L2),
            "l1" => Ok(Norm::L1),
            _ => Err(crate::AttackError::BadConfig(format!("unknown norm `{s}`; expected linf, l2 or l1"))),
        }
    }
}

/// `[N, 1, 1, ...]` so a per-example vector broadcasts over a batch like `t`.
pub(crate) fn bcast_shape(t: &Tensor) -> Vec<i64> {
    let mut s = vec![1i64; t.dim()];
    s[0] = -1;
    s
}

/// A norm ball of radius `eps` around the clean input, intersected with the image box [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "norm", rename_all = "lowercase")]
pub enum ThreatModel {
    /// ‖δ‖∞ ≤ eps.
    Linf {
        /// Radius.
        eps: f64,
    },
    /// ‖δ‖₂ ≤ eps.
    L2 {
        /// Radius.
        eps: f64,
    },
    /// ‖δ‖₁ ≤ eps.
    L1 {
        /// Radius.
        eps: f64,
    },
}

impl ThreatModel {
    /// The ball of radius `eps` in `norm`.
    pub fn new(norm: Norm, eps: f64) -> Self {
        match norm {
            Norm::Linf => ThreatModel::Linf { eps },
            Norm::L2 => ThreatModel::L2 { eps },
            Norm::L1 => ThreatModel::L1 { eps },
        }
    }

    /// The same norm with another radius (e.g. an eps warm-up in training).
    pub fn with_eps(&self, eps: f64) -> Self {
        ThreatModel::new(self.norm(), eps)
    }

    /// The norm.
    pub fn norm(&self) -> Norm {
        match self {
            ThreatModel::Linf { .. } => Norm::Linf,
            ThreatModel::L2 { .. } => Norm::L2,
            ThreatModel::L1 { .. } => Norm::L1,
        }
    }

    /// The radius.
    pub fn eps(&self) -> f64 {
        match *self {
            ThreatModel::Linf { eps } | ThreatModel::L2 { eps } | ThreatModel::L1 { eps } => eps,
        }
    }

    /// Uniform random start for PGD, clamped to [0, 1]: L∞ draws δ ~ U(−eps, eps) per pixel (the
    /// Madry/ARES start); L2 and L1 draw a random direction scaled to norm eps.
    /// Uses the global libtorch generator (seed it with `tch::manual_seed`).
    pub fn random_init(&self, x: &Tensor) -> Tensor {
        let eps = self.eps();
        let delta = match self {
            ThreatModel::Linf { .. } => (crate::rng::rand_like_ref(&x.size(), x.device()) * 2.0 - 1.0) * eps,
            ThreatModel::L2 { .. } => Norm::L2.normalize(&crate::rng::randn_like_ref(&x.size(), x.device())) * eps,
            ThreatModel::L1 { .. } => {
                let t = crate::rng::randn_like_ref(&x.size(), x.device());
                Norm::L1.normalize(&t) * eps
            }
        };
        (x + delta).clamp(0.0, 1.0)
    }

    /// AutoAttack's APGD start: L∞ `eps · t / ‖t‖∞` with t ~ U(−1, 1) (so the largest pixel change is
    /// exactly eps), L2 `eps · t / ‖t‖₂` with t ~ N(0, 1); clamped to [0, 1]. L1 falls back to
    /// [`ThreatModel::random_init`].
    pub fn random_init_normalized(&self, x: &Tensor) -> Tensor {
        let eps = self.eps();
        match self {
            ThreatModel::Linf { .. } => {
                let t = crate::rng::rand_like_ref(&x.size(), x.device()) * 2.0 - 1.0;
                (x + Norm::Linf.normalize(&t) * eps).clamp(0.0, 1.0)
            }
            ThreatModel::L2 { .. } => {
                let t = crate::rng::randn_like_ref(&x.size(), x.device());
                (x + Norm::L2.normalize(&t) * eps).clamp(0.0, 1.0)
            }
            ThreatModel::L1 { .. } => self.random_init(x),
        }
    }

    /// One steepest-ascent step of length `step_size` in the norm's geometry: sign of the gradient
    /// (L∞), normalised gradient (L2), or a sparse step on the top 1% coordinates of |g|, normalised
    /// to L1 length `step_size` (L1, the "sparse L1 descent" of Tramèr & Boneh).
    pub fn step(&self, x_adv: &Tensor, grad: &Tensor, step_size: f64) -> Tensor {
        match self {
            ThreatModel::Linf { .. } => x_adv + grad.sign() * step_size,
            ThreatModel::L2 { .. } => x_adv + Norm::L2.normalize(grad) * step_size,
            ThreatModel::L1 { .. } => {
                let n = grad.size()[0];
                let flat = grad.abs().reshape([n, -1]);
                let d = flat.size()[1];
                let k = ((0.99 * d as f64).floor() as i64).clamp(1, d);
                let (thr, _) = flat.kthvalue(k, 1, true);
                let mask = flat.ge_tensor(&thr).to_kind(Kind::Float).view(grad.size().as_slice());
                let sparse = grad.sign() * mask;
                x_adv + Norm::L1.normalize(&sparse) * step_size
            }
        }
    }

    /// Projects `x_adv` onto the ball around `x` and then clamps to [0, 1].
    pub fn project(&self, x_adv: &Tensor, x: &Tensor) -> Tensor {
        let eps = self.eps();
        let delta = x_adv - x;
        let delta = match self {
            ThreatModel::Linf { .. } => delta.clamp(-eps, eps),
            ThreatModel::L2 { .. } => {
                let norms = Norm::L2.per_example(&delta);
                let factor = (Tensor::ones_like(&norms) * eps / (norms + 1e-12)).clamp_max(1.0);
                &delta * factor.view(bcast_shape(&delta).as_slice())
            }
            ThreatModel::L1 { .. } => project_l1_ball(&delta, eps),
        };
        (x + delta).clamp(0.0, 1.0)
    }
}

/// Euclidean projection of each example of `delta` onto the L1 ball of radius `eps`
/// (Duchi et al. 2008, sort-based); examples already inside are unchanged.
pub fn project_l1_ball(delta: &Tensor, eps: f64) -> Tensor {
    let shape = delta.size();
    let n = shape[0];
    let v = delta.reshape([n, -1]);
    let d = v.size()[1];
    let a = v.abs();
    let (u, _) = a.sort(1, true);
    let css = u.cumsum(1, Kind::Float);
    let ar = Tensor::arange_start(1, d + 1, (Kind::Float, v.device())).unsqueeze(0);
    // rho = number of j with u_j > (css_j - eps) / j (the condition is monotone in j).
    let cond = u.gt_tensor(&((&css - eps) / &ar));
    let rho = cond.sum_dim_intlist(&[1i64][..], true, Kind::Int64).clamp_min(1);
    let css_rho = css.gather(1, &(&rho - 1), false);
    let theta = ((css_rho - eps) / rho.to_kind(Kind::Float)).clamp_min(0.0);
    let proj = v.sign() * (&a - &theta).clamp_min(0.0);
    let inside = a.sum_dim_intlist(&[1i64][..], true, Kind::Float).le(eps);
    v.where_self(&inside, &proj).reshape(shape.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Tensor {
        tch::manual_seed(3);
        Tensor::rand([6, 1, 5, 5], (Kind::Float, tch::Device::Cpu))
    }

    fn max(t: &Tensor) -> f64 {
        t.max().double_value(&[])
    }

    #[test]
    fn projection_keeps_ball_and_box_for_every_norm() {
        let x = batch();
        for tm in [ThreatModel::Linf { eps: 0.1 }, ThreatModel::L2 { eps: 0.5 }, ThreatModel::L1 { eps: 2.0 }] {
            let far = &x + Tensor::randn(x.size(), (Kind::Float, tch::Device::Cpu)) * 3.0;
            let p = tm.project(&far, &x);
            let norms = tm.norm().per_example(&(&p - &x));
            assert!(max(&norms) <= tm.eps() * (1.0 + 1e-5), "{tm:?}: norm {} > eps", max(&norms));
            assert!(p.min().double_value(&[]) >= 0.0 && max(&p) <= 1.0, "{tm:?} left [0,1]");
            // Projection is idempotent.
            let pp = tm.project(&p, &x);
            assert!(max(&(&pp - &p).abs()) < 1e-5, "{tm:?} projection not idempotent");
        }
    }

    #[test]
    fn projection_leaves_interior_points_alone() {
        let x = batch() * 0.5 + 0.25;
        for tm in [ThreatModel::Linf { eps: 0.2 }, ThreatModel::L2 { eps: 5.0 }, ThreatModel::L1 { eps: 50.0 }] {
            let inside = &x + Tensor::full(x.size(), 0.01, (Kind::Float, tch::Device::Cpu));
            let p = tm.project(&inside, &x);
            assert!(max(&(&p - &inside).abs()) < 1e-6, "{tm:?} moved an interior point");
        }
    }

    #[test]
    fn l1_projection_matches_norm_exactly_when_outside() {
        let d = Tensor::from_slice(&[3.0f32, -1.0, 0.5, 0.0]).view([1, 4]);
        let p = project_l1_ball(&d, 2.0);
        let v: Vec<f32> = Vec::try_from(&p.view([-1])).unwrap();
        // theta = 1: [2, 0, 0, 0]
        assert_eq!(v, vec![2.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn random_inits_stay_inside() {
        let x = batch();
        tch::manual_seed(0);
        for tm in [ThreatModel::Linf { eps: 0.3 }, ThreatModel::L2 { eps: 1.0 }, ThreatModel::L1 { eps: 3.0 }] {
            for x0 in [tm.random_init(&x), tm.random_init_normalized(&x)] {
                let norms = tm.norm().per_example(&(&x0 - &x));
                assert!(max(&norms) <= tm.eps() * (1.0 + 1e-5));
                assert!(x0.min().double_value(&[]) >= 0.0 && max(&x0) <= 1.0);
                assert!(max(&norms) > 0.0, "{tm:?}: random init did not move");
            }
        }
    }

    #[test]
    fn linf_step_is_sign_step() {
        let x = Tensor::zeros([1, 3], (Kind::Float, tch::Device::Cpu));
        let g = Tensor::from_slice(&[0.5f32, -2.0, 0.0]).view([1, 3]);
        let s = ThreatModel::Linf { eps: 1.0 }.step(&x, &g, 0.1);
        let v: Vec<f32> = Vec::try_from(&s.view([-1])).unwrap();
        assert_eq!(v, vec![0.1, -0.1, 0.0]);
    }

    #[test]
    fn norm_parses_cli_spellings() {
        assert_eq!("linf".parse::<Norm>().unwrap(), Norm::Linf);
        assert_eq!("Linf".parse::<Norm>().unwrap(), Norm::Linf);
        assert_eq!("l2".parse::<Norm>().unwrap(), Norm::L2);
        assert!("l3".parse::<Norm>().is_err());
    }
}
