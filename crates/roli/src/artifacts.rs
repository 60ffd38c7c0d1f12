//! One home for the files a run writes: their names, the atomic writes, tensor files, JSON and a
//! stage's `state.json`.
//!
//! A run folder holds `config.resolved.toml` and `summary.json`; each stage folder holds
//! `state.json` (after every epoch, and every `train.checkpoint_every_steps`), `last.safetensors`
//! (model, optimiser state and a copy of the state, for resuming; see `train::checkpoint`),
//! `best.safetensors`, `result.json`, `test_examples.json`, `nan_state.safetensors` when the loss
//! diverged, and the linear probe's `head.json` + `head.safetensors` (see `crate::head`).
use crate::train::plan::{StagePlan, StageState};
use anyhow::{bail, Context};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use tch::{nn, Tensor};

pub use roli_data::cache::write_atomic;

/// The resolved config of a run folder.
pub const RESOLVED_CONFIG: &str = "config.resolved.toml";
/// A run's summary of every stage.
pub const SUMMARY: &str = "summary.json";
/// A stage's test results.
pub const RESULT: &str = "result.json";
/// A stage's per-example test records.
pub const TEST_EXAMPLES: &str = "test_examples.json";
/// A stage's progress, written after every epoch ([`StageState`]).
pub const STATE: &str = "state.json";
/// A stage's weights and optimiser state after its last completed epoch.
pub const LAST: &str = "last.safetensors";
/// A stage's best weights (by validation robust accuracy).
pub const BEST: &str = "best.safetensors";
/// The weights at the moment the training loss became NaN/inf.
pub const NAN_STATE: &str = "nan_state.safetensors";
/// The linear probe's head: metadata.
pub const HEAD_JSON: &str = "head.json";
/// The linear probe's head: tensors.
pub const HEAD_TENSORS: &str = "head.safetensors";
/// Names starting with this are roli's bookkeeping in [`LAST`] (optimiser state, the stage's
/// state, an interrupted epoch's sums), never model tensors.
pub const BOOKKEEPING_PREFIX: &str = "__";
/// Name prefix of the optimiser state tensors stored next to the model's in [`LAST`].
pub const OPTIM_PREFIX: &str = "__optim__/";

/// Writes tensors to a safetensors file atomically (the project's one atomic write, `roli_io`),
/// from CPU copies: a file written on any device loads onto any other.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    let contiguous: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    let writing = || format!("writing {}", path.display());
    roli_io::write_atomic_with(
        path,
        |tmp| {
            Tensor::write_safetensors(&contiguous, tmp).map_err(|e| match os_error_in(&e.to_string()) {
                Some(os) => anyhow::Error::new(os).context(writing()),
                None => anyhow::Error::new(e).context(writing()),
            })
        },
        |e| anyhow::Error::new(e).context(writing()),
    )
}

/// The OS error inside libtorch's safetensors writer's message (`IoError(Os { code: 28, … })`),
/// so a full disk reads "No space left on device (os error 28)" here as in every other write.
fn os_error_in(text: &str) -> Option<std::io::Error> {
    let code = text.split("Os { code: ").nth(1)?.split(',').next()?.trim().parse().ok()?;
    Some(std::io::Error::from_raw_os_error(code))
}

/// Copies tensors (by name) into the VarStore; every saved model tensor must exist there.
/// Bookkeeping tensors ([`BOOKKEEPING_PREFIX`]) are skipped.
pub fn load_into(vs: &nn::VarStore, tensors: &[(String, Tensor)], origin: &Path) -> anyhow::Result<()> {
    let vars = vs.variables();
    tch::no_grad(|| -> anyhow::Result<()> {
        for (n, t) in tensors.iter().filter(|(n, _)| !n.starts_with(BOOKKEEPING_PREFIX)) {
            let mut v = vars
                .get(n)
                .with_context(|| {
                    format!(
                        "{}: tensor '{n}' does not exist in this model (checkpoint of another model or method)",
                        origin.display()
                    )
                })?
                .shallow_clone();
            if v.size() != t.size() {
                bail!("{}: tensor '{n}' has shape {:?}, the model expects {:?}", origin.display(), t.size(), v.size());
            }
            v.copy_(t);
        }
        Ok(())
    })
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_bytes(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// Writes `value` as compact JSON (large per-example records), atomically.
pub fn write_json_compact<T: Serialize + ?Sized>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_bytes(path, serde_json::to_string(value)?.as_bytes())
}

/// The atomic write with the error said once: "writing PATH: No space left on device (os error 28)".
fn write_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    roli_io::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Reads a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))
}

/// Writes a stage's `state.json` in `dir`.
pub fn write_state(dir: &Path, st: &StageState) -> anyhow::Result<()> {
    write_json(&dir.join(STATE), st)
}

/// Reads `state.json` if `dir` holds a run of this plan; errors if it holds another one.
pub fn read_state(dir: &Path, plan: &StagePlan) -> anyhow::Result<Option<StageState>> {
    let p = dir.join(STATE);
    if !p.exists() {
        return Ok(None);
    }
    parse_state(&std::fs::read(&p)?, &p, plan).map(Some)
}

/// A [`StageState`] from JSON bytes read from `origin` (`state.json`, or the copy inside
/// [`LAST`]), checked against `plan`.
pub fn parse_state(bytes: &[u8], origin: &Path, plan: &StagePlan) -> anyhow::Result<StageState> {
    let dir = origin.parent().unwrap_or(Path::new("."));
    let st: StageState = serde_json::from_slice(bytes)
        .with_context(|| format!("{} is corrupt; delete {} to restart this stage", origin.display(), dir.display()))?;
    if st.plan_fingerprint != plan.fingerprint() {
        bail!("{} holds a run of a different plan (settings changed); use another --out folder or delete {} to start over", dir.display(), dir.display());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("x.json");
        write_json(&p, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), serde_json::to_string_pretty(&vec![1, 2, 3]).unwrap());
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), vec![1, 2, 3]);
        write_json_compact(&p, &vec![4u32]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "[4]");
        let e = read_json::<String>(&p).unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("not valid"), "{e}");
        let e = read_json::<u32>(&dir.path().join("none.json")).unwrap_err().to_string();
        assert!(e.contains("reading") && e.contains("none.json"), "{e}");
    }

    #[test]
    fn os_errors_of_the_tensor_writer_read_as_the_os_says() {
        let libtorch = r#"safetensors error /o/.last.safetensors.7.tmp: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })"#;
        assert_eq!(os_error_in(libtorch).unwrap().raw_os_error(), Some(28));
        assert!(os_error_in("shape mismatch").is_none());
    }

    #[test]
    fn tensors_round_trip_and_skip_optimiser_state() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LAST);
        let src = nn::VarStore::new(tch::Device::Cpu);
        let _ = src.root().var("w", &[2, 3], nn::Init::Uniform { lo: -1.0, up: 1.0 });
        let mut saved: Vec<(String, Tensor)> = src.variables().into_iter().collect();
        saved.push((format!("{OPTIM_PREFIX}w/0"), Tensor::ones([2, 3], (tch::Kind::Float, tch::Device::Cpu))));
        save_tensors(&p, &saved).unwrap();
        let dst = nn::VarStore::new(tch::Device::Cpu);
        let _ = dst.root().var("w", &[2, 3], nn::Init::Const(0.0));
        load_into(&dst, &Tensor::read_safetensors(&p).unwrap(), &p).unwrap();
        assert!(dst.variables()["w"].equal(&src.variables()["w"]));
        let wrong = nn::VarStore::new(tch::Device::Cpu);
        let _ = wrong.root().var("w", &[3, 2], nn::Init::Const(0.0));
        let e = load_into(&wrong, &Tensor::read_safetensors(&p).unwrap(), &p).unwrap_err().to_string();
        assert!(e.contains("shape"), "{e}");
    }
}
