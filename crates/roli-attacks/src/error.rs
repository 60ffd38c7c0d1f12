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
    /// The attack name on the command line is unknown. The list is a literal so that this bottom-layer
    /// module needs no import from `spec`; `spec`'s tests check it equals [`crate::ATTACK_NAMES`].
    #[error("unknown attack `{0}`; expected one of: none, pgd, apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square, aa-standard, aa-plus, aa-rand")]
    UnknownAttack(String),
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
