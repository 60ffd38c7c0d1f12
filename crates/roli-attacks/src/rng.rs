//! The random draws shared by the threat models and the attacks.
//!
//! A leaf module (tch only), so that `threat` can draw its random starts without importing
//! `attack`. All draws go through libtorch's global CPU generator, as the reference code does.
//!
//! Device: noise is drawn on the CPU and then moved to the device of the attacked batch, on purpose:
//! a seed then gives the same numbers, and so the same per-example results, on CPU and CUDA (the
//! CUDA generator draws a different stream). These are the only tensors roli-attacks creates off
//! the batch's device; everything else is created on `x.device()`. Square's window positions and
//! coin flips are also drawn on the CPU, but read on the host (they are offsets and shapes).

use tch::{Device, Kind, Tensor};

/// Seeds libtorch's global CPU (and CUDA) generator, as `torch.manual_seed` does.
pub(crate) fn seed_all(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// U[0, 1) noise drawn from the CPU generator and moved to `dev`, as the reference does
/// (`torch.rand(shape).to(device)`), so CPU and GPU runs draw the same numbers.
pub(crate) fn rand_like_ref(shape: &[i64], dev: Device) -> Tensor {
    Tensor::rand(shape, (Kind::Float, Device::Cpu)).to_device(dev)
}

/// N(0, 1) noise drawn like [`rand_like_ref`].
pub(crate) fn randn_like_ref(shape: &[i64], dev: Device) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu)).to_device(dev)
}
