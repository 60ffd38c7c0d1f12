//! The `extern "C"` side of `cpp/ext.cpp`. Every function returns 0 on success and 1 on error, with
//! the message written into `(err, err_len)`. Tensors are `at::Tensor*` (tch's `C_tensor`).
use std::ffi::{c_char, c_int};
use torch_sys::C_tensor;

type Err = *mut c_char;

extern "C" {
    pub fn roli_ext_autocast_state(dev: c_int, enabled: *mut bool, dtype: *mut c_int, err: Err, len: usize) -> c_int;
    pub fn roli_ext_autocast_enter(
        dev: c_int,
        dtype: c_int,
        prev_enabled: *mut bool,
        prev_dtype: *mut c_int,
        err: Err,
        len: usize,
    ) -> c_int;
    pub fn roli_ext_autocast_exit(dev: c_int, prev_enabled: bool, prev_dtype: c_int, err: Err, len: usize) -> c_int;

    pub fn roli_ext_set_matmul_precision(p: c_int, err: Err, len: usize) -> c_int;
    pub fn roli_ext_matmul_precision(p: *mut c_int, err: Err, len: usize) -> c_int;
    pub fn roli_ext_set_cudnn_tf32(on: bool, err: Err, len: usize) -> c_int;
    pub fn roli_ext_cudnn_tf32(on: *mut bool, err: Err, len: usize) -> c_int;
    pub fn roli_ext_set_deterministic(on: bool, warn_only: bool, err: Err, len: usize) -> c_int;
    pub fn roli_ext_deterministic(on: *mut bool, warn_only: *mut bool, err: Err, len: usize) -> c_int;
    pub fn roli_ext_set_cudnn_benchmark(on: bool, err: Err, len: usize) -> c_int;
    pub fn roli_ext_cudnn_benchmark(on: *mut bool, err: Err, len: usize) -> c_int;

    pub fn roli_ext_cuda_versions(
        has_cuda: *mut bool,
        runtime: *mut i64,
        has_cudnn: *mut bool,
        cudnn: *mut i64,
        gpus: *mut c_int,
        err: Err,
        len: usize,
    ) -> c_int;

    pub fn roli_ext_cuda_device_name(
        index: c_int,
        found: *mut bool,
        name: *mut c_char,
        cap: usize,
        err: Err,
        len: usize,
    ) -> c_int;

    pub fn roli_ext_memory_stats(index: c_int, available: *mut bool, out: *mut i64, err: Err, len: usize) -> c_int;
    pub fn roli_ext_memory_reset_peak(index: c_int, available: *mut bool, err: Err, len: usize) -> c_int;
    pub fn roli_ext_memory_info(
        index: c_int,
        available: *mut bool,
        free: *mut u64,
        total: *mut u64,
        err: Err,
        len: usize,
    ) -> c_int;

    pub fn roli_ext_fused_sgd_(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        bufs: *const *const C_tensor,
        n: usize,
        n_bufs: usize,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        dampening: f64,
        nesterov: bool,
        maximize: bool,
        is_first_step: bool,
        err: Err,
        len: usize,
    ) -> c_int;
    pub fn roli_ext_fused_adamw_(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        steps: *const *const C_tensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: Err,
        len: usize,
    ) -> c_int;
    pub fn roli_ext_foreach_scalar(
        op: c_int,
        this: *const *const C_tensor,
        n: usize,
        scalar: f64,
        out: *mut *mut C_tensor,
        err: Err,
        len: usize,
    ) -> c_int;
    pub fn roli_ext_foreach_list(
        op: c_int,
        this: *const *const C_tensor,
        other: *const *const C_tensor,
        n: usize,
        out: *mut *mut C_tensor,
        err: Err,
        len: usize,
    ) -> c_int;
    pub fn roli_ext_foreach_sqrt(
        this: *const *const C_tensor,
        n: usize,
        out: *mut *mut C_tensor,
        err: Err,
        len: usize,
    ) -> c_int;
}
