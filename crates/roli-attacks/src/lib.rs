//! Adversarial attacks and robust evaluation for roli.
//!
//! - [`threat`]: threat models (L∞, L2, L1) owning random init, step and projection.
//! - [`pgd`], [`apgd`], [`fab`], [`square`]: the attacks, configs as values with official defaults.
//! - [`stage_id`]: the attack ids ([`StageId`]), a leaf module the attacks and the error type share.
//! - `restarts`: the restart loop over still-robust points shared by the four attacks.
//! - [`presets`]: AutoAttack `standard` / `plus` / `rand` as `const` tables; builds the attacks.
//! - [`spec`]: the table of attack names ([`ATTACKS`]) behind `--attack` parsing, help and [`ATTACK_NAMES`].
//! - [`source`]: where an evaluation's examples come from ([`Examples`]), batch by batch.
//! - [`cascade`]: the AutoAttack protocol with per-example bookkeeping.
//! - [`checks`]: evaluation-integrity checks returning typed [`Flag`]s (see `FLAGS.md`).
//! - [`eval`]: the runner behind `roli eval` and its `results.json` report.
//!
//! Models are anything implementing [`Model`] (closures included), taking [0, 1] NCHW inputs.
//! Attacks seed libtorch's global generator with the seed they are given (as the official AutoAttack
//! does), so a seed gives reproducible results on CPU; do not run attacks concurrently in one process.

pub mod apgd;
pub mod attack;
pub mod cascade;
pub mod checks;
mod error;
pub mod eval;
pub mod fab;
pub mod loss;
pub mod model;
pub mod pgd;
pub mod presets;
mod restarts;
mod rng;
pub mod source;
pub mod spec;
pub mod square;
pub mod stage_id;
pub mod threat;

pub use apgd::{Apgd, ApgdConfig, ApgdLoss};
pub use attack::Attack;
pub use cascade::{CascadeState, ProgressEvent, StageResult};
pub use checks::{BoundsAccumulator, Flag};
pub use error::AttackError;
pub use eval::{
    evaluate, evaluate_examples, sweep, sweep_examples, sweep_state_path, EvalOptions, EvalReport, EvalState,
    ExampleRecord, Sweep,
};
pub use fab::{Fab, FabConfig};
pub use loss::LossKind;
pub use model::{Counting, Model, PassCounts};
pub use pgd::{BestIterate, Pgd, PgdConfig, StepSize};
pub use presets::{AaVersion, Stage};
pub use source::{Examples, FnExamples, TensorExamples};
pub use spec::{attack_help, AttackSpec, NamedAttack, ATTACKS, ATTACK_NAMES};
pub use square::{Square, SquareConfig};
pub use stage_id::StageId;
pub use threat::{Norm, ThreatModel};
