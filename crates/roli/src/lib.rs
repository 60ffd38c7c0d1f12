//! roli: adversarially robust transfer learning (RoLI, CVPR 2024) in Rust on libtorch.
//!
//! The library crates do the work — `roli_data` (datasets), `roli_models` (backbones,
//! checkpoints), `roli_attacks` (PGD, AutoAttack, integrity checks) — and this crate ties them
//! into the RoLI study: a TOML [`config`] resolved once into a typed [`plan`], the [`pipeline`]
//! of stages (probe, then [`peft`] methods) trained by [`train`], their [`results`] and
//! [`report`], the [`study`] modules built on top (tuning, the demo, pretraining), and the
//! commands in [`cli`]. See `docs/ARCHITECTURE.md`.
pub mod artifacts;
pub mod cli;
pub mod config;
pub mod device;
pub mod dry_run;
pub mod examples;
pub mod export;
pub mod head;
pub mod integrity;
pub mod lock;
pub mod manifest;
pub mod peft;
pub mod pipeline;
pub mod plan;
pub mod precision;
pub mod progress;
pub mod report;
pub mod results;
pub mod seed;
pub mod seeds;
pub mod stage;
pub mod study;
pub mod train;
pub mod validate;
pub mod verify;
pub mod zoo;

pub use roli_attacks as attacks;
pub use roli_data as data;
pub use roli_models as models;
