//! roli: adversarially robust transfer learning (RoLI, CVPR 2024) in Rust on libtorch.
//!
//! The library crates do the work — `roli_data` (datasets), `roli_models` (backbones,
//! checkpoints), `roli_attacks` (PGD, AutoAttack, integrity checks) — and this crate ties them
//! into commands: `roli data …`, `roli eval …`.
pub mod artifacts;
pub mod cli;
pub mod config;
pub mod head;
pub mod peft;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod seed;
pub mod train;
pub mod zoo;

pub use roli_attacks as attacks;
pub use roli_data as data;
pub use roli_models as models;
