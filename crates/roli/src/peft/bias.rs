//! Bias tuning (BitFit): every tensor whose name contains `bias` trains — the reference's
//! substring match, so Swin's `relative_position_bias_table`s train too.
use super::PeftMethod;

pub struct Bias;

impl PeftMethod for Bias {
    fn name(&self) -> &'static str {
        "bias"
    }
    fn stream(&self) -> u64 {
        2
    }
    fn describe(&self) -> &'static str {
        "tensors named *bias* train (incl. Swin relative-position bias tables)"
    }
    fn trains(&self, name: &str) -> bool {
        name.contains("bias")
    }
}
