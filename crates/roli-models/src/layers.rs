//! Small building blocks shared by the transformer families: timm-initialised linear and
//! layer-norm layers, the two-layer MLP, dropout and stochastic depth (drop-path).

use tch::nn::{self, Module};
use tch::Tensor;

/// timm initialises transformer linear weights with trunc-normal(std 0.02) and zero biases; we
/// use a plain normal with the same std (the ±2σ truncation changes <5% of draws and nothing
/// that loads pretrained weights).
pub(crate) const TRANSFORMER_LINEAR_STD: f64 = 0.02;

/// Linear layer with timm's transformer initialisation, parameters `weight` and `bias`.
pub(crate) fn linear(p: nn::Path, in_dim: i64, out_dim: i64, bias: bool) -> nn::Linear {
    nn::linear(
        p,
        in_dim,
        out_dim,
        nn::LinearConfig {
            ws_init: nn::Init::Randn { mean: 0.0, stdev: TRANSFORMER_LINEAR_STD },
            bs_init: Some(nn::Init::Const(0.0)),
            bias,
        },
    )
}

/// Layer norm over the last dimension with the given epsilon (`weight`, `bias`).
pub(crate) fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

/// PyTorch's default `nn.Linear`/`nn.Conv2d` initialisation (kaiming-uniform with a=√5, i.e.
/// bound 1/√fan_in, for weights and biases). tch's own default differs (see toolchain.md).
pub(crate) fn torch_default_uniform(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

/// Dropout that is active only when `train` is true.
pub(crate) fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if train && p > 0.0 {
        x.dropout(p, true)
    } else {
        x.shallow_clone()
    }
}

/// Stochastic depth: drops the whole residual branch per sample with probability `rate` and
/// rescales survivors by 1/(1-rate). Identity unless `train` is true (as in timm's `DropPath`).
pub fn drop_path(x: &Tensor, rate: f64, train: bool) -> Tensor {
    if !train || rate <= 0.0 {
        return x.shallow_clone();
    }
    let keep = 1.0 - rate;
    let mut shape = vec![1i64; x.dim()];
    shape[0] = x.size()[0];
    let mut mask = Tensor::empty(shape.as_slice(), (x.kind(), x.device()));
    let _ = mask.bernoulli_float_(keep);
    x * (mask / keep)
}

/// Two-layer MLP `fc1 → GELU(erf) → drop → fc2 → drop` (timm `Mlp`).
#[derive(Debug)]
pub(crate) struct Mlp {
    pub fc1: nn::Linear,
    pub fc2: nn::Linear,
    pub drop: f64,
}

impl Mlp {
    pub(crate) fn new(p: &nn::Path, dim: i64, hidden: i64, drop: f64) -> Self {
        Mlp { fc1: linear(p / "fc1", dim, hidden, true), fc2: linear(p / "fc2", hidden, dim, true), drop }
    }

    pub(crate) fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.fc1.forward(x).gelu("none");
        let h = dropout(&h, self.drop, train);
        dropout(&self.fc2.forward(&h), self.drop, train)
    }
}

/// Linearly spaced per-block drop-path rates from 0 to `max` over `n` blocks
/// (`torch.linspace(0, max, n)`, the reference's and timm's schedule).
pub(crate) fn drop_path_schedule(max: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![0.0],
        _ => (0..n).map(|i| max * i as f64 / (n - 1) as f64).collect(),
    }
}

/// Softmax over the last dimension in the tensor's own precision.
pub(crate) fn softmax_last(x: &Tensor) -> Tensor {
    x.softmax(-1, x.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn drop_path_is_identity_in_eval_and_rescales_in_train() {
        let x = Tensor::ones([1000, 4], (Kind::Float, tch::Device::Cpu));
        let y = drop_path(&x, 0.5, false);
        assert_eq!(f64::try_from((&y - &x).abs().max()).unwrap(), 0.0);
        tch::manual_seed(0);
        let y = drop_path(&x, 0.5, true);
        // every row is either all 0 or all 2, and roughly half survive
        let row_max = y.amax([1].as_slice(), false);
        let row_min = y.amin([1].as_slice(), false);
        assert_eq!(f64::try_from((&row_max - &row_min).abs().max()).unwrap(), 0.0);
        let kept = f64::try_from(row_max.eq(2.0).to_kind(Kind::Float).mean(Kind::Float)).unwrap();
        assert!((0.4..0.6).contains(&kept), "kept fraction {kept}");
    }

    #[test]
    fn schedule_matches_linspace() {
        assert_eq!(drop_path_schedule(0.5, 3), vec![0.0, 0.25, 0.5]);
        assert_eq!(drop_path_schedule(0.5, 1), vec![0.0]);
        let s = drop_path_schedule(0.5, 24);
        assert!((s[23] - 0.5).abs() < 1e-12 && (s[1] - 0.5 / 23.0).abs() < 1e-12);
    }
}
