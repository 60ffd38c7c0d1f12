//! Error types of the crate: one enum for building/running models, one for checkpoints.
//! Messages name the file, tensor or key involved and say how to fix the problem.

use std::path::PathBuf;

/// Errors raised while configuring, building or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The preset name is not in the registry.
    #[error("unknown backbone preset `{name}`; known presets: {known}")]
    UnknownPreset {
        /// Requested name.
        name: String,
        /// Comma-separated list of registry names.
        known: String,
    },
    /// The attention implementation name is not one of [`crate::AttentionImpl::ALL`].
    #[error("unknown attention implementation `{name}`; choose one of: {known}")]
    UnknownAttention {
        /// Requested name.
        name: String,
        /// Comma-separated list of the valid names.
        known: String,
    },
    /// A configuration value is inconsistent (e.g. a resolution not divisible by the window).
    #[error("invalid configuration for `{model}`: {reason}")]
    InvalidConfig {
        /// Preset or model name.
        model: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The input tensor does not have the shape the model expects.
    #[error("bad input for `{model}`: expected {expected}, got shape {got:?}")]
    BadInput {
        /// Model name.
        model: String,
        /// Human description of the expected shape.
        expected: String,
        /// Actual shape.
        got: Vec<i64>,
    },
    /// A TorchScript module could not be loaded or returned something unexpected.
    #[error("TorchScript module {file}: {reason}")]
    Script {
        /// The `.pt` file.
        file: PathBuf,
        /// What went wrong and how to fix it.
        reason: String,
    },
    /// A libtorch call failed.
    #[error("libtorch error in {context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: tch::TchError,
    },
    /// A checkpoint problem while building a model from a file.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Errors raised while reading, mapping or writing checkpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("cannot access checkpoint {file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither safetensors nor a PyTorch zip archive.
    #[error("{file} is not a checkpoint: {reason}")]
    NotACheckpoint {
        /// The file.
        file: PathBuf,
        /// What was found instead and how to convert it.
        reason: String,
    },
    /// The file has a known container format but its content is damaged (e.g. truncated).
    #[error("checkpoint {file} is corrupt or truncated: {reason}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What could not be decoded.
        reason: String,
    },
    /// The file holds something other than a flat name→tensor mapping we can find.
    #[error("checkpoint {file}: {reason}")]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// What was found and how to convert it.
        reason: String,
    },
    /// Strict loading failed: the checkpoint does not cover the model exactly.
    #[error("checkpoint {file} does not match backbone `{model}` (layout {layout}):{details}")]
    Mismatch {
        /// The file.
        file: PathBuf,
        /// Backbone name.
        model: String,
        /// Key layout the caller asked for.
        layout: String,
        /// Multi-line listing of missing, unexpected and mis-shaped tensors.
        details: String,
    },
    /// A checkpoint copy of a derived buffer (e.g. `relative_position_index`) differs from the one
    /// the model computes, which means the checkpoint was made for another window/image size.
    #[error("checkpoint {file}: buffer `{name}` differs from the value computed for this configuration (checkpoint shape {ckpt_shape:?}, model shape {model_shape:?}); the checkpoint was made for another window or image size")]
    BufferMismatch {
        /// The file.
        file: PathBuf,
        /// Buffer name.
        name: String,
        /// Shape in the checkpoint.
        ckpt_shape: Vec<i64>,
        /// Shape computed by the model.
        model_shape: Vec<i64>,
    },
    /// The sidecar JSON of an own checkpoint is missing or invalid.
    #[error("sidecar {file}: {reason}")]
    Sidecar {
        /// The JSON file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The tensors of an own checkpoint do not hash to the fingerprint its sidecar records.
    #[error("fingerprint mismatch for {file}: sidecar says {expected}, tensors hash to {actual}; the weights were modified or belong to another sidecar")]
    Fingerprint {
        /// The safetensors file.
        file: PathBuf,
        /// Fingerprint in the sidecar.
        expected: String,
        /// Fingerprint of the loaded tensors.
        actual: String,
    },
    /// A libtorch call failed while handling the file.
    #[error("libtorch error on {file}: {source}")]
    Torch {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: tch::TchError,
    },
}
