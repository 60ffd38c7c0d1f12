//! The seeding scheme of a run (placeholder; replaced by the train branch's module).
pub use crate::train::adversarial::derive_seed;

/// Word of random initialisations (head, PEFT tensors, a backbone without weights).
pub const INIT: u64 = 7;
/// Word of the test attacks' random starts.
pub const TEST: u64 = 99;
/// Word of the eps curve's attacks.
pub const EPS_CURVE: u64 = 98;
