//! Numeric precision of a phase: `train.precision` (the training forward/backward and the
//! training attack, validation included) and `eval.precision` (the test attacks). The field's
//! norm is to train in mixed precision and evaluate AutoAttack in fp32, which are the defaults
//! here too (`fp32` everywhere unless a config says otherwise).
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::{Device, Tensor};

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
    pub fn forward(self, device: Device, f: impl FnOnce() -> Tensor) -> Tensor {
        let _ = device; // PLACEHOLDER until the extension lands
        f()
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
}
