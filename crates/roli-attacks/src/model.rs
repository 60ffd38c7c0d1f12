//! The model interface every attack uses, and a counting wrapper.
//!
//! A [`Model`] maps a batch of images in [0, 1] (NCHW, f32) to logits. Normalisation, resizing and
//! eval mode are the caller's business: attacks never switch modes. Any closure
//! `Fn(&Tensor) -> Tensor` is a model, which is also how TorchScript models are used (`forward`
//! panics if the module fails; the module must not run under `no_grad` for white-box attacks):
//!
//! ```no_run
//! use tch::{nn::Module, CModule, Tensor};
//! let mut m = CModule::load("model.pt").unwrap();
//! m.set_eval();
//! let model = move |x: &Tensor| m.forward(x);
//! # let _ = &model as &dyn roli_attacks::Model;
//! ```

use std::cell::Cell;
use tch::Tensor;

/// A classifier taking [0, 1] NCHW inputs and returning logits `[N, K]`.
pub trait Model {
    /// Logits for a batch. Must be differentiable with respect to `x` for white-box attacks.
    fn logits(&self, x: &Tensor) -> Tensor;

    /// Called by attacks after each backward pass through `logits` (for cost accounting);
    /// only [`Counting`] does something with it.
    fn record_backward(&self, _batch: i64) {}
}

impl<F: Fn(&Tensor) -> Tensor> Model for F {
    fn logits(&self, x: &Tensor) -> Tensor {
        self(x)
    }
}

/// Pass counts of a [`Counting`] wrapper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PassCounts {
    /// Calls of `logits`.
    pub forward_calls: u64,
    /// Examples pushed through `logits` (sum of batch sizes).
    pub forward_examples: u64,
    /// Backward passes through the model.
    pub backward_calls: u64,
    /// Examples in those backward passes.
    pub backward_examples: u64,
}

impl PassCounts {
    /// Element-wise difference `self - earlier`, for per-stage costs.
    pub fn since(&self, earlier: &PassCounts) -> PassCounts {
        PassCounts {
            forward_calls: self.forward_calls - earlier.forward_calls,
            forward_examples: self.forward_examples - earlier.forward_examples,
            backward_calls: self.backward_calls - earlier.backward_calls,
            backward_examples: self.backward_examples - earlier.backward_examples,
        }
    }
}

/// Wraps a model and counts forward and backward passes, so evaluation cost is reported, not guessed.
pub struct Counting<'a> {
    inner: &'a dyn Model,
    counts: Cell<PassCounts>,
}

impl<'a> Counting<'a> {
    /// Wraps `inner` with all counters at zero.
    pub fn new(inner: &'a dyn Model) -> Self {
        Self { inner, counts: Cell::new(PassCounts::default()) }
    }

    /// Counts so far.
    pub fn counts(&self) -> PassCounts {
        self.counts.get()
    }
}

impl Model for Counting<'_> {
    fn logits(&self, x: &Tensor) -> Tensor {
        let mut c = self.counts.get();
        c.forward_calls += 1;
        c.forward_examples += x.size().first().copied().unwrap_or(0) as u64;
        self.counts.set(c);
        self.inner.logits(x)
    }

    fn record_backward(&self, batch: i64) {
        let mut c = self.counts.get();
        c.backward_calls += 1;
        c.backward_examples += batch as u64;
        self.counts.set(c);
        self.inner.record_backward(batch);
    }
}

/// Predicted labels without building a graph.
pub(crate) fn predict(model: &dyn Model, x: &Tensor) -> Tensor {
    tch::no_grad(|| model.logits(x).argmax(1, false))
}

/// Per-example loss and its gradient with respect to the input, summed over `eot` passes and divided
/// by `eot` (Expectation over Transformation, as AutoAttack's `eot_iter`). `loss` maps logits to a
/// per-example loss `[N]`; the gradient is of its sum. Returns `(logits, loss, grad)` of the last pass.
pub(crate) fn loss_and_grad(
    model: &dyn Model,
    x: &Tensor,
    eot: usize,
    loss: &dyn Fn(&Tensor) -> Tensor,
) -> Result<(Tensor, Tensor, Tensor), crate::AttackError> {
    let n = x.size()[0];
    let mut grad = x.zeros_like();
    let mut last = None;
    for _ in 0..eot.max(1) {
        let xa = x.detach().set_requires_grad(true);
        let logits = model.logits(&xa);
        let l = loss(&logits);
        if !l.requires_grad() {
            return Err(crate::AttackError::NoGradient(
                "the loss does not require grad (model output detached from its input)".into(),
            ));
        }
        let g = Tensor::f_run_backward(&[l.sum(tch::Kind::Float)], &[&xa], false, false)
            .map_err(|source| crate::AttackError::Torch { context: "input gradient", source })?;
        model.record_backward(n);
        grad += &g[0];
        last = Some((logits.detach(), l.detach()));
    }
    if eot > 1 {
        grad /= eot as f64;
    }
    let (logits, l) = last.expect("eot >= 1");
    Ok((logits, l, grad))
}
