//! The few libtorch 2.11 calls that tch 0.24 does not bind, from one small C++ file
//! (`cpp/ext.cpp`, compiled by `build.rs` against the headers of the libtorch torch-sys found):
//!
//! * [`autocast`]: autocast with a chosen dtype (tch's `autocast` is CUDA-only fp16, no dtype setter);
//! * [`set_float32_matmul_precision`], [`set_cudnn_allow_tf32`]: the TF32 switches (tch has none);
//! * [`set_deterministic`]: deterministic algorithms (tch has none);
//! * [`set_cudnn_benchmark`] with a getter (tch has only the setter);
//! * [`cuda_versions`]: CUDA runtime and cuDNN versions (tch has neither);
//! * [`memory`]: device memory statistics (tch has none);
//! * [`kernels`]: PyTorch's fused optimiser kernels and multi-tensor (`_foreach_`) arithmetic;
//! * [`dist`]: a process group on libtorch's c10d over Gloo (`cpp/dist.cpp`), torchrun-compatible.
//!
//! Every call returns `Result<_, ExtError>`: the C++ side catches every exception and hands back its
//! message. Only CPU-side libtorch headers are used; linking `libtorch_cuda` (so that CUDA is seen at
//! all) is the application's job (`-Wl,--no-as-needed,-ltorch_cuda`). Without it, or without a GPU,
//! the CUDA queries answer `None`.
//!
//! Process-wide switches (matmul precision, TF32, determinism, cuDNN benchmark) are global to
//! libtorch; autocast state is per thread, like PyTorch's.
use std::ffi::{c_char, c_int, CStr};
use tch::{Device, Kind};

mod ffi;

/// A libtorch call failed; `message` is the first line of the C++ exception's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call}: {message}")]
pub struct ExtError {
    /// The extension function that failed (e.g. `fused_sgd_`).
    pub call: &'static str,
    pub message: String,
}

impl ExtError {
    fn new(call: &'static str, message: impl Into<String>) -> Self {
        ExtError { call, message: message.into() }
    }
}

/// Runs one extension function with an error buffer; non-zero status → its message.
fn call(name: &'static str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), ExtError> {
    let mut buf = [0 as c_char; 1024];
    if f(buf.as_mut_ptr(), buf.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the C++ side always NUL-terminates within the buffer (and it starts zeroed).
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("unknown libtorch error");
    Err(ExtError::new(name, line))
}

/// The extension's own device-type codes (see `device_type` in `cpp/ext.cpp`).
fn device_code(call: &'static str, device: Device) -> Result<c_int, ExtError> {
    match device {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        Device::Mps => Ok(2),
        Device::Vulkan => Err(ExtError::new(call, "Vulkan is not supported")),
    }
}

/// c10's `ScalarType` codes of the floating kinds this crate deals with.
fn kind_code(call: &'static str, kind: Kind) -> Result<c_int, ExtError> {
    match kind {
        Kind::Half => Ok(5),
        Kind::Float => Ok(6),
        Kind::Double => Ok(7),
        Kind::BFloat16 => Ok(15),
        other => Err(ExtError::new(call, format!("unsupported dtype {other:?}"))),
    }
}

fn kind_from_code(call: &'static str, code: c_int) -> Result<Kind, ExtError> {
    match code {
        5 => Ok(Kind::Half),
        6 => Ok(Kind::Float),
        7 => Ok(Kind::Double),
        15 => Ok(Kind::BFloat16),
        other => Err(ExtError::new(call, format!("unexpected dtype code {other}"))),
    }
}

/// Autocast with an explicit dtype. tch 0.24's `tch::autocast` only toggles CUDA autocast and leaves
/// its dtype at fp16; bf16 (fp32's exponent range, no loss scaler) needs `set_autocast_dtype`.
pub mod autocast {
    use super::*;
    use std::marker::PhantomData;

    /// Whether autocast is enabled for `device`'s type on this thread, and its dtype.
    pub fn state(device: Device) -> Result<(bool, Kind), ExtError> {
        const CALL: &str = "autocast_state";
        let dev = device_code(CALL, device)?;
        let (mut enabled, mut dtype) = (false, 0);
        call(CALL, |e, n| unsafe { ffi::roli_ext_autocast_state(dev, &mut enabled, &mut dtype, e, n) })?;
        Ok((enabled, kind_from_code(CALL, dtype)?))
    }

    /// An open autocast scope (see [`enter`]); dropping it closes the scope. Not `Send`: autocast
    /// state belongs to the thread that opened it.
    #[must_use = "autocast is switched off again when the guard is dropped"]
    pub struct Guard {
        dev: c_int,
        prev_enabled: bool,
        prev_dtype: c_int,
        _thread_bound: PhantomData<*const ()>,
    }

    /// Enables autocast for `device`'s type (CPU, CUDA or MPS; every index of that type) with
    /// `dtype` (`Kind::BFloat16` or `Kind::Half`) until the guard drops, as `torch.autocast` does:
    /// the nesting level is incremented, and on exit the previous enabled flag and dtype come back
    /// and the cast cache is cleared when the outermost scope closes.
    pub fn enter(device: Device, dtype: Kind) -> Result<Guard, ExtError> {
        const CALL: &str = "autocast_enter";
        let dev = device_code(CALL, device)?;
        let code = kind_code(CALL, dtype)?;
        let (mut prev_enabled, mut prev_dtype) = (false, 0);
        call(CALL, |e, n| unsafe {
            ffi::roli_ext_autocast_enter(dev, code, &mut prev_enabled, &mut prev_dtype, e, n)
        })?;
        Ok(Guard { dev, prev_enabled, prev_dtype, _thread_bound: PhantomData })
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            // Cannot fail for a device type and dtype that `enter` accepted; nothing to report to.
            let _ = call("autocast_exit", |e, n| unsafe {
                ffi::roli_ext_autocast_exit(self.dev, self.prev_enabled, self.prev_dtype, e, n)
            });
        }
    }

    /// Runs `f` inside an autocast scope (see [`enter`]); the previous state is restored on return
    /// and on panic. The error is only ever about entering (an unsupported device or dtype).
    pub fn scope<T>(device: Device, dtype: Kind, f: impl FnOnce() -> T) -> Result<T, ExtError> {
        let _guard = enter(device, dtype)?;
        Ok(f())
    }
}

/// `torch.set_float32_matmul_precision`: whether fp32 matmuls may use TF32 (`High`) or bf16
/// (`Medium`) internally. tch 0.24 has no TF32 switch at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulPrecision {
    /// Full fp32 (libtorch's default).
    Highest,
    /// TF32 tensor cores on CUDA (10-bit mantissa inputs, fp32 accumulation).
    High,
    /// As `High` on CUDA, and bf16 for oneDNN matmuls on CPU.
    Medium,
}

/// Sets libtorch's global fp32 matmul precision (`at::globalContext().setFloat32MatmulPrecision`).
pub fn set_float32_matmul_precision(p: MatmulPrecision) -> Result<(), ExtError> {
    let code = match p {
        MatmulPrecision::Highest => 0,
        MatmulPrecision::High => 1,
        MatmulPrecision::Medium => 2,
    };
    call("set_float32_matmul_precision", |e, n| unsafe { ffi::roli_ext_set_matmul_precision(code, e, n) })
}

/// The global fp32 matmul precision.
pub fn float32_matmul_precision() -> Result<MatmulPrecision, ExtError> {
    let mut code = -1;
    call("float32_matmul_precision", |e, n| unsafe { ffi::roli_ext_matmul_precision(&mut code, e, n) })?;
    match code {
        0 => Ok(MatmulPrecision::Highest),
        1 => Ok(MatmulPrecision::High),
        2 => Ok(MatmulPrecision::Medium),
        other => Err(ExtError::new("float32_matmul_precision", format!("unexpected code {other}"))),
    }
}

/// `torch.backends.cudnn.allow_tf32`: TF32 in cuDNN convolutions (libtorch's default: allowed).
/// tch has no switch for it.
pub fn set_cudnn_allow_tf32(allow: bool) -> Result<(), ExtError> {
    call("set_cudnn_allow_tf32", |e, n| unsafe { ffi::roli_ext_set_cudnn_tf32(allow, e, n) })
}

/// Whether cuDNN convolutions may use TF32.
pub fn cudnn_allow_tf32() -> Result<bool, ExtError> {
    let mut on = false;
    call("cudnn_allow_tf32", |e, n| unsafe { ffi::roli_ext_cudnn_tf32(&mut on, e, n) })?;
    Ok(on)
}

/// `torch.use_deterministic_algorithms(on)`: ops with only nondeterministic implementations raise,
/// others pick deterministic kernels (cuDNN included). tch has no such switch. On CUDA, cuBLAS also
/// needs `CUBLAS_WORKSPACE_CONFIG=:4096:8` in the environment before the first matmul, or
/// deterministic mode makes matmuls raise (libtorch's error says so).
pub fn set_deterministic(on: bool) -> Result<(), ExtError> {
    call("set_deterministic", |e, n| unsafe { ffi::roli_ext_set_deterministic(on, false, e, n) })
}

/// Whether deterministic algorithms are on.
pub fn deterministic() -> Result<bool, ExtError> {
    let (mut on, mut warn_only) = (false, false);
    call("deterministic", |e, n| unsafe { ffi::roli_ext_deterministic(&mut on, &mut warn_only, e, n) })?;
    Ok(on)
}

/// `torch.backends.cudnn.benchmark`: let cuDNN time candidate algorithms per input shape (faster
/// convolutions for fixed shapes, not reproducible). tch has the setter only; this pairs it with
/// [`cudnn_benchmark`].
pub fn set_cudnn_benchmark(on: bool) -> Result<(), ExtError> {
    call("set_cudnn_benchmark", |e, n| unsafe { ffi::roli_ext_set_cudnn_benchmark(on, e, n) })
}

/// Whether cuDNN benchmarking is on.
pub fn cudnn_benchmark() -> Result<bool, ExtError> {
    let mut on = false;
    call("cudnn_benchmark", |e, n| unsafe { ffi::roli_ext_cudnn_benchmark(&mut on, e, n) })?;
    Ok(on)
}

/// The CUDA runtime and cuDNN libtorch runs with, as libtorch encodes them (CUDA 13.0 = 13000,
/// cuDNN 9.13.0 = 91300). tch exposes neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaVersions {
    pub runtime: i64,
    pub cudnn: Option<i64>,
    /// Visible GPUs.
    pub gpus: usize,
}

impl std::fmt::Display for CudaVersions {
    /// `CUDA 13.0, cuDNN 9.13.0, 1 GPU(s)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CUDA {}.{}", self.runtime / 1000, (self.runtime % 1000) / 10)?;
        if let Some(v) = self.cudnn {
            // cuDNN ≥ 9: major·10000 + minor·100 + patch; older: major·1000 + minor·100 + patch.
            let (major, rest) = if v >= 10000 { (v / 10000, v % 10000) } else { (v / 1000, v % 1000) };
            write!(f, ", cuDNN {major}.{}.{}", rest / 100, rest % 100)?;
        }
        write!(f, ", {} GPU(s)", self.gpus)
    }
}

/// CUDA runtime/cuDNN versions, or `None` when libtorch sees no CUDA device (no GPU, or
/// `libtorch_cuda` not linked into the process).
pub fn cuda_versions() -> Result<Option<CudaVersions>, ExtError> {
    let (mut has_cuda, mut runtime, mut has_cudnn, mut cudnn, mut gpus) = (false, 0i64, false, 0i64, 0 as c_int);
    call("cuda_versions", |e, n| unsafe {
        ffi::roli_ext_cuda_versions(&mut has_cuda, &mut runtime, &mut has_cudnn, &mut cudnn, &mut gpus, e, n)
    })?;
    Ok(has_cuda.then(|| CudaVersions { runtime, cudnn: has_cudnn.then_some(cudnn), gpus: gpus.max(0) as usize }))
}

/// The name of CUDA device `index` as the driver reports it ("NVIDIA H200"), for manifests;
/// `None` without CUDA or for an index with no device.
pub fn cuda_device_name(index: usize) -> Result<Option<String>, ExtError> {
    let Ok(i) = c_int::try_from(index) else { return Ok(None) };
    let (mut found, mut buf) = (false, [0 as c_char; 256]);
    call("cuda_device_name", |e, n| unsafe {
        ffi::roli_ext_cuda_device_name(i, &mut found, buf.as_mut_ptr(), buf.len(), e, n)
    })?;
    // SAFETY: the C++ side NUL-terminates within the buffer (and it starts zeroed).
    Ok(found.then(|| unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()))
}

/// Device memory statistics of the accelerator's caching allocator (`torch.cuda.max_memory_allocated`
/// and friends; tch has none). Every function answers `None` (or `false`) when the process has no
/// accelerator device with that index — always so on CPU-only machines.
pub mod memory {
    use super::*;

    /// Bytes of the caching allocator (all pools together).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct MemoryStats {
        /// Held by tensors now (`memory_allocated`).
        pub allocated: u64,
        /// Most ever held by tensors since the last [`reset_peak`] (`max_memory_allocated`).
        pub peak_allocated: u64,
        /// Reserved from the device by the allocator now (`memory_reserved`).
        pub reserved: u64,
        /// Most ever reserved since the last [`reset_peak`] (`max_memory_reserved`).
        pub peak_reserved: u64,
    }

    fn index(call: &'static str, device_index: usize) -> Result<c_int, ExtError> {
        c_int::try_from(device_index).map_err(|_| ExtError::new(call, format!("device index {device_index}")))
    }

    /// The allocator's statistics for accelerator `device_index`.
    pub fn stats(device_index: usize) -> Result<Option<MemoryStats>, ExtError> {
        const CALL: &str = "memory_stats";
        let idx = index(CALL, device_index)?;
        let (mut available, mut out) = (false, [0i64; 4]);
        call(CALL, |e, n| unsafe { ffi::roli_ext_memory_stats(idx, &mut available, out.as_mut_ptr(), e, n) })?;
        let b = |v: i64| v.max(0) as u64;
        Ok(available.then(|| MemoryStats {
            allocated: b(out[0]),
            peak_allocated: b(out[1]),
            reserved: b(out[2]),
            peak_reserved: b(out[3]),
        }))
    }

    /// Peak bytes held by tensors on accelerator `device_index` since the last [`reset_peak`].
    pub fn peak_allocated(device_index: usize) -> Result<Option<u64>, ExtError> {
        Ok(stats(device_index)?.map(|s| s.peak_allocated))
    }

    /// Resets the peaks to the current values; `false` when there is no such device.
    pub fn reset_peak(device_index: usize) -> Result<bool, ExtError> {
        const CALL: &str = "memory_reset_peak";
        let idx = index(CALL, device_index)?;
        let mut available = false;
        call(CALL, |e, n| unsafe { ffi::roli_ext_memory_reset_peak(idx, &mut available, e, n) })?;
        Ok(available)
    }

    /// `(free, total)` device memory in bytes, as the driver reports it.
    pub fn info(device_index: usize) -> Result<Option<(u64, u64)>, ExtError> {
        const CALL: &str = "memory_info";
        let idx = index(CALL, device_index)?;
        let (mut available, mut free, mut total) = (false, 0u64, 0u64);
        call(CALL, |e, n| unsafe { ffi::roli_ext_memory_info(idx, &mut available, &mut free, &mut total, e, n) })?;
        Ok(available.then_some((free, total)))
    }
}

pub mod dist;
pub mod kernels;
