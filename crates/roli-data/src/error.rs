//! Errors of the data layer. Every message names the file or dataset and says what to do.
use std::path::PathBuf;

/// Everything that can go wrong while fetching, verifying or reading data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A built-in dataset is not in the cache yet.
    #[error("dataset '{name}' is not in the cache ({dir}); run `roli data fetch {name}` (or `make data`), or set ROLI_CACHE to the cache you fetched into")]
    NotCached { name: String, dir: PathBuf },
    /// A file does not have the layout its format requires (truncated, wrong magic, wrong length).
    #[error("{path}: {what}; {fix}")]
    Corrupt { path: PathBuf, what: String, fix: String },
    /// A downloaded archive or extracted file does not have the pinned SHA-256.
    #[error("{path}: SHA-256 {actual} does not match the pinned {expected}; the registry served a different file. Delete it and re-run `roli data fetch`; if it persists the pinned version changed upstream")]
    HashMismatch { path: PathBuf, expected: String, actual: String },
    /// An external command (apt-get, npm, pip, python) failed or is missing.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    /// A name or path given as `--data` is neither a built-in dataset nor a recognised folder layout.
    #[error("unknown dataset '{0}': neither a built-in dataset ({1}) nor a folder; give one of those names or a folder in IDX, CIFAR-10/100, ImageFolder (train/<class>/*.png, test/<class>/…) or JSON-splits layout")]
    UnknownDataset(String, String),
    /// A split is not available for a dataset.
    #[error("dataset '{name}' has no '{split}' split; available: {available}")]
    NoSplit { name: String, split: String, available: String },
    /// An image could not be decoded.
    #[error("{path}: cannot decode image ({detail}); replace or remove the file")]
    Image { path: PathBuf, detail: String },
    /// A JSON split file is malformed.
    #[error("{path}: {detail}")]
    Split { path: PathBuf, detail: String },
    /// An invalid argument (batch size 0, empty dataset, …).
    #[error("{0}")]
    Invalid(String),
    /// A folder matches no dataset layout, several (ambiguous), or not the one asked for.
    #[error("{path} {detail}")]
    Layout { path: PathBuf, detail: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
    pub(crate) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>, fix: impl Into<String>) -> Self {
        DataError::Corrupt { path: path.into(), what: what.into(), fix: fix.into() }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;
