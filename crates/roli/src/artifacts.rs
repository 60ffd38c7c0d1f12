//! One home for the files a run writes: their names, the one atomic write, tensor files and JSON.
use anyhow::Context;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

pub use crate::train::adversarial::{load_into, save_tensors};
pub use roli_data::cache::write_atomic;

/// The resolved config of a run folder.
pub const RESOLVED_CONFIG: &str = "config.resolved.toml";
/// A run's `summary.json`.
pub const SUMMARY: &str = "summary.json";
/// A stage's `result.json`.
pub const RESULT: &str = "result.json";
/// A stage's best weights.
pub const BEST: &str = "best.safetensors";
/// A stage's per-example test records.
pub const TEST_EXAMPLES: &str = "test_examples.json";

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())?;
    Ok(())
}

/// Writes `value` as compact JSON (large per-example records), atomically.
pub fn write_json_compact<T: Serialize + ?Sized>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, serde_json::to_string(value)?.as_bytes())?;
    Ok(())
}

/// Reads a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))
}
