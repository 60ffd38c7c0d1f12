//! The crate's error type.

use crate::stage_id::StageId;
use crate::threat::Norm;

/// Everything an attack or an evaluation can refuse to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttackError {
    /// An attack was asked for a norm it does not implement (FAB and Square with L1).
    #[error("attack `{attack}` does not support the {norm} threat model (L1 is available for pgd and apgd-*); use linf or l2")]
    UnsupportedNorm {
        /// Stage id of the attack.
        attack: StageId,
        /// The norm that was asked for.
        norm: Norm,
    },
    /// Inputs and labels disagree in shape or type.
    #[error("bad input for `{what}`: {detail}")]
    BadInput {
        /// Which argument was wrong (`x`, `y`, `indices`, ...).
        what: &'static str,
        /// What was wrong and how to fix it.
        detail: String,
    },
    /// A configuration value is out of range.
    #[error("invalid attack configuration: {0}")]
    BadConfig(String),
    /// The attack name on the command line is unknown; `known` lists the valid names (filled from
    /// the attack table by `spec`, so this bottom-layer module keeps no copy of the list).
    #[error("unknown attack `{name}`; expected one of: {known}")]
    UnknownAttack {
        /// The name given.
        name: String,
        /// The valid names, comma-separated.
        known: String,
    },
    /// The model's logits do not depend on the input through autograd (a `no_grad` forward,
    /// detached output or a TorchScript module loaded without gradient support).
    #[error("no input gradient: {0}. Call the model outside tch::no_grad and keep its output attached to the input")]
    NoGradient(String),
    /// A libtorch call failed.
    #[error("libtorch error in {context}: {source}")]
    Torch {
        /// What the crate was doing.
        context: &'static str,
        /// The underlying tch error.
        #[source]
        source: tch::TchError,
    },
    /// A resumable evaluation state could not be read or written, or belongs to another configuration.
    #[error("evaluation state {path}: {detail}")]
    State {
        /// The state file.
        path: std::path::PathBuf,
        /// What went wrong and how to fix it.
        detail: String,
    },
}
