//! Optimiser kernels tch 0.24 does not bind: PyTorch's fused SGD/AdamW (one kernel launch per
//! tensor group instead of a handful per parameter) and multi-tensor `_foreach_` arithmetic, from
//! which an optimiser with other semantics (roli's HuggingFace AdamW) is built in few launches.
//!
//! Lists are slices of anything that borrows a [`Tensor`]. Functions ending in `_` modify the
//! tensors of their first list in place (tensors are handles: the storage changes, as with tch's
//! own in-place ops). Fused kernels want every tensor of one call on one device with one dtype.
use super::{call, ExtError};
use std::borrow::Borrow;
use tch::Tensor;
use torch_sys::C_tensor;

fn ptrs<T: Borrow<Tensor>>(ts: &[T]) -> Vec<*const C_tensor> {
    ts.iter().map(|t| t.borrow().as_ptr()).collect()
}

fn check_len(call: &'static str, what: &str, expected: usize, got: usize) -> Result<(), ExtError> {
    if expected == got {
        Ok(())
    } else {
        Err(ExtError::new(call, format!("{what}: {got} tensors for {expected} parameters")))
    }
}

/// `at::_fused_sgd_`: PyTorch's SGD without dampening or Nesterov, on every tensor of the lists:
/// `d = g + weight_decay·p`; with `momentum ≠ 0`: `buf = d` when `first_step` (the buffers'
/// contents are then ignored and overwritten), else `buf = momentum·buf + d`, and `d = buf`;
/// finally `p −= lr·d`. With `momentum == 0`, `momentum_buffers` must be empty.
///
/// Agrees with the same update written as separate ops to rounding, not bit for bit: the CPU kernel's
/// multiply-adds may be compiled into fused multiply-adds, the CUDA kernel multiplies by the
/// double-precision constants in double. The CPU kernel walks raw memory and checks nothing, so
/// this wrapper refuses parameters that are not dense and gradients/buffers whose dtype, device,
/// shape or strides differ from their parameter's.
pub fn fused_sgd_<P: Borrow<Tensor>, G: Borrow<Tensor>, B: Borrow<Tensor>>(
    params: &[P],
    grads: &[G],
    momentum_buffers: &[B],
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    first_step: bool,
) -> Result<(), ExtError> {
    const CALL: &str = "fused_sgd_";
    let n = params.len();
    check_len(CALL, "grads", n, grads.len())?;
    if momentum != 0.0 {
        check_len(CALL, "momentum buffers", n, momentum_buffers.len())?;
    } else if !momentum_buffers.is_empty() {
        return Err(ExtError::new(CALL, "momentum 0 takes no momentum buffers"));
    }
    if n == 0 {
        return Ok(());
    }
    let (p, g, b) = (ptrs(params), ptrs(grads), ptrs(momentum_buffers));
    call(CALL, |e, len| unsafe {
        super::ffi::roli_ext_fused_sgd_(
            p.as_ptr(),
            g.as_ptr(),
            b.as_ptr(),
            n,
            b.len(),
            weight_decay,
            momentum,
            lr,
            0.0,
            false,
            false,
            first_step,
            e,
            len,
        )
    })
}

/// `at::_fused_adamw_` with PyTorch's AdamW semantics (not roli's HuggingFace AdamW): `p *= 1 −
/// lr·wd` first, then `m`, `v` updated, `p −= lr/bc1 · m / (√v/√bc2 + eps)` with `bc_i = 1 − β_iᵗ`.
/// `steps` are one-element float tensors (on the parameters' device) holding `t` for this update —
/// already incremented, as `torch.optim.AdamW` does before calling the kernel. Layout checks as
/// for [`fused_sgd_`].
#[allow(clippy::too_many_arguments)]
pub fn fused_adamw_<P: Borrow<Tensor>, G: Borrow<Tensor>, S: Borrow<Tensor>, T: Borrow<Tensor>>(
    params: &[P],
    grads: &[G],
    exp_avgs: &[S],
    exp_avg_sqs: &[S],
    steps: &[T],
    lr: f64,
    (beta1, beta2): (f64, f64),
    eps: f64,
    weight_decay: f64,
) -> Result<(), ExtError> {
    const CALL: &str = "fused_adamw_";
    let n = params.len();
    check_len(CALL, "grads", n, grads.len())?;
    check_len(CALL, "exp_avgs", n, exp_avgs.len())?;
    check_len(CALL, "exp_avg_sqs", n, exp_avg_sqs.len())?;
    check_len(CALL, "steps", n, steps.len())?;
    if n == 0 {
        return Ok(());
    }
    let (p, g, m, v, s) = (ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs), ptrs(steps));
    call(CALL, |e, len| unsafe {
        super::ffi::roli_ext_fused_adamw_(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n,
            lr,
            beta1,
            beta2,
            weight_decay,
            eps,
            e,
            len,
        )
    })
}

/// Multi-tensor (`at::_foreach_*`) elementwise arithmetic: one call per list, few kernel launches on
/// CUDA (tensors are chunked into multi-tensor kernels), a loop over the ordinary ops on CPU. Each
/// element computes exactly what the single-tensor op computes (same opmath, same rounding), so a
/// sequence of these reproduces the same sequence of tch ops.
pub mod foreach {
    use super::*;

    /// The binary operation: `this ∘ other` / `this ∘ scalar`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Op {
        Add,
        Sub,
        Mul,
        Div,
    }

    impl Op {
        fn code(self) -> i32 {
            match self {
                Op::Add => 0,
                Op::Sub => 1,
                Op::Mul => 2,
                Op::Div => 3,
            }
        }
    }

    /// Takes over the `at::Tensor*`s the C++ side allocated.
    fn adopt(out: Vec<*mut C_tensor>) -> Vec<Tensor> {
        // SAFETY: each pointer is a fresh `new at::Tensor`, owned by nobody else.
        out.into_iter().map(|t| unsafe { Tensor::from_ptr(t) }).collect()
    }

    /// Runs a `_foreach_` call over `n` tensors: in place (no outputs) or into `n` fresh tensors
    /// whose pointers the C side writes through the `*mut *mut C_tensor` it is given.
    fn with_outputs(
        n: usize,
        inplace: bool,
        call_c: impl FnOnce(*mut *mut C_tensor) -> Result<(), ExtError>,
    ) -> Result<Vec<Tensor>, ExtError> {
        let mut out = vec![std::ptr::null_mut(); if inplace { 0 } else { n }];
        let out_ptr = if inplace { std::ptr::null_mut() } else { out.as_mut_ptr() };
        call_c(out_ptr)?;
        Ok(adopt(out))
    }

    fn scalar_impl<T: Borrow<Tensor>>(op: Op, this: &[T], s: f64, inplace: bool) -> Result<Vec<Tensor>, ExtError> {
        let n = this.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let a = ptrs(this);
        with_outputs(n, inplace, |out_ptr| {
            call("foreach_scalar", |e, len| unsafe {
                super::super::ffi::roli_ext_foreach_scalar(op.code(), a.as_ptr(), n, s, out_ptr, e, len)
            })
        })
    }

    fn list_impl<A: Borrow<Tensor>, B: Borrow<Tensor>>(
        op: Op,
        this: &[A],
        other: &[B],
        inplace: bool,
    ) -> Result<Vec<Tensor>, ExtError> {
        const CALL: &str = "foreach_list";
        let n = this.len();
        check_len(CALL, "other", n, other.len())?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let (a, b) = (ptrs(this), ptrs(other));
        with_outputs(n, inplace, |out_ptr| {
            call(CALL, |e, len| unsafe {
                super::super::ffi::roli_ext_foreach_list(op.code(), a.as_ptr(), b.as_ptr(), n, out_ptr, e, len)
            })
        })
    }

    /// `this[i] ∘= s` for every i.
    pub fn scalar_<T: Borrow<Tensor>>(op: Op, this: &[T], s: f64) -> Result<(), ExtError> {
        scalar_impl(op, this, s, true).map(drop)
    }

    /// `[this[i] ∘ s]`.
    pub fn scalar<T: Borrow<Tensor>>(op: Op, this: &[T], s: f64) -> Result<Vec<Tensor>, ExtError> {
        scalar_impl(op, this, s, false)
    }

    /// `this[i] ∘= other[i]` for every i.
    pub fn list_<A: Borrow<Tensor>, B: Borrow<Tensor>>(op: Op, this: &[A], other: &[B]) -> Result<(), ExtError> {
        list_impl(op, this, other, true).map(drop)
    }

    /// `[this[i] ∘ other[i]]`.
    pub fn list<A: Borrow<Tensor>, B: Borrow<Tensor>>(
        op: Op,
        this: &[A],
        other: &[B],
    ) -> Result<Vec<Tensor>, ExtError> {
        list_impl(op, this, other, false)
    }

    fn sqrt_impl<T: Borrow<Tensor>>(this: &[T], inplace: bool) -> Result<Vec<Tensor>, ExtError> {
        let n = this.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let a = ptrs(this);
        with_outputs(n, inplace, |out_ptr| {
            call("foreach_sqrt", |e, len| unsafe {
                super::super::ffi::roli_ext_foreach_sqrt(a.as_ptr(), n, out_ptr, e, len)
            })
        })
    }

    /// `this[i] = √this[i]`.
    pub fn sqrt_<T: Borrow<Tensor>>(this: &[T]) -> Result<(), ExtError> {
        sqrt_impl(this, true).map(drop)
    }

    /// `[√this[i]]`.
    pub fn sqrt<T: Borrow<Tensor>>(this: &[T]) -> Result<Vec<Tensor>, ExtError> {
        sqrt_impl(this, false)
    }
}
