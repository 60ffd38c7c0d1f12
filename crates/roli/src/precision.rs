//! Numeric precision of a phase: `train.precision` (the training forward/backward and the
//! training attack, validation included) and `eval.precision` (the test attacks). The field's
//! norm is to train in mixed precision and evaluate AutoAttack in fp32, which are the defaults
//! here too (`fp32` everywhere unless a config says otherwise).
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::{Device, Kind, Tensor};

/// How float32 work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Strict IEEE fp32 everywhere (the reference's setting).
    #[default]
    Fp32,
    /// fp32 tensors, TF32 tensor-core matmuls and convolutions (CUDA; the CPU ignores it).
    Tf32,
    /// bf16 autocast: matmuls, convolutions and attention in bfloat16, reductions and the loss
    /// in fp32; weights, optimiser state and attack inputs stay fp32. No loss scaler is needed
    /// (bf16 has fp32's exponent range).
    Bf16,
}

impl Precision {
    pub const NAMES: [&'static str; 3] = ["fp32", "tf32", "bf16"];

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    /// Runs a model forward `f` at this precision on `device`; the output is fp32 either way.
    /// Under `Bf16` the forward runs in a bf16 autocast scope and the backward (taken outside,
    /// as PyTorch recommends) follows the recorded casts. Call inside [`Precision::enter`].
    pub fn forward(self, device: Device, f: impl FnOnce() -> Tensor) -> Tensor {
        match self {
            Precision::Bf16 => roli_torch_ext::autocast::scope(device, Kind::BFloat16, f)
                .unwrap_or_else(|e| panic!("bf16 autocast on {device:?} failed after `enter` accepted it: {e}"))
                .to_kind(Kind::Float),
            Precision::Fp32 | Precision::Tf32 => f(),
        }
    }

    /// Enters a phase (a training stage, a test evaluation) at this precision: libtorch's global
    /// fp32 matmul precision and cuDNN's TF32 flag are set (strict fp32 for `Fp32` and `Bf16`'s
    /// fp32 leftovers, TF32 for `Tf32`) until the guard drops, and `Bf16`'s autocast is checked
    /// to work on `device` type once, so no forward can fail later.
    pub fn enter(self, device: Device) -> anyhow::Result<PhaseGuard> {
        use roli_torch_ext::MatmulPrecision as M;
        let previous = (roli_torch_ext::float32_matmul_precision()?, roli_torch_ext::cudnn_allow_tf32()?);
        let tf32 = self == Precision::Tf32;
        roli_torch_ext::set_float32_matmul_precision(if tf32 { M::High } else { M::Highest })?;
        roli_torch_ext::set_cudnn_allow_tf32(tf32)?;
        if self == Precision::Bf16 {
            roli_torch_ext::autocast::scope(device, Kind::BFloat16, || ()).map_err(|e| {
                anyhow::anyhow!("precision bf16 is not available on {device:?} ({e}); use fp32 or tf32")
            })?;
        }
        Ok(PhaseGuard { previous })
    }
}

/// Restores the global matmul/cuDNN precision flags a phase changed (see [`Precision::enter`]).
#[must_use = "the phase's precision ends when the guard drops"]
pub struct PhaseGuard {
    previous: (roli_torch_ext::MatmulPrecision, bool),
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        // Restoring values libtorch reported a moment ago cannot fail.
        let _ = roli_torch_ext::set_float32_matmul_precision(self.previous.0);
        let _ = roli_torch_ext::set_cudnn_allow_tf32(self.previous.1);
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision '{other}'; use one of {}", Precision::NAMES.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_named() {
        for n in Precision::NAMES {
            assert_eq!(n.parse::<Precision>().unwrap().to_string(), n);
        }
        let e = "fp16".parse::<Precision>().unwrap_err();
        assert!(e.contains("'fp16'") && e.contains("bf16"), "{e}");
    }

    #[test]
    fn a_phase_sets_and_restores_the_global_flags_and_bf16_autocasts() {
        use roli_torch_ext::MatmulPrecision as M;
        let before = roli_torch_ext::float32_matmul_precision().unwrap();
        {
            let _tf32 = Precision::Tf32.enter(Device::Cpu).unwrap();
            assert_eq!(roli_torch_ext::float32_matmul_precision().unwrap(), M::High);
            assert!(roli_torch_ext::cudnn_allow_tf32().unwrap());
        }
        assert_eq!(roli_torch_ext::float32_matmul_precision().unwrap(), before);
        let _bf16 = Precision::Bf16.enter(Device::Cpu).unwrap();
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let inner = std::cell::Cell::new(Kind::Float);
        let out = Precision::Bf16.forward(Device::Cpu, || {
            let y = a.matmul(&a);
            inner.set(y.kind());
            y
        });
        assert_eq!((inner.get(), out.kind()), (Kind::BFloat16, Kind::Float));
        assert_eq!(Precision::Fp32.forward(Device::Cpu, || a.matmul(&a)).kind(), Kind::Float);
    }
}
