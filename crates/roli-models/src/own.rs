//! The project's own classifier checkpoints: `model.safetensors` (every `VarStore` variable:
//! backbone under timm names, head, BatchNorm statistics) plus a `model.json` sidecar with the
//! descriptor, class count, fingerprints and free-form training / threat-model information.
//! Both files are written to a temporary name and renamed (`roli_io`, the project's one atomic write),
//! so a crash never leaves a half-written checkpoint under the final name. Loading rebuilds the
//! model from the sidecar, requires an exact name/shape match and verifies the fingerprint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use crate::checkpoint::{fingerprint, ShapeMismatch};
use crate::classifier::{Classifier, ClassifierOptions, HeadInit};
use crate::descriptor::{ArchConfig, BackboneDescriptor};
use crate::error::{CheckpointError, ModelError};
use crate::peft::{NoPeft, PeftSpec};

/// Weights file name inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Sidecar file name inside a checkpoint directory.
pub const SIDECAR_FILE: &str = "model.json";
/// `format` field of the sidecar.
pub const SIDECAR_FORMAT: &str = "roli-classifier";
/// Current sidecar version.
pub const SIDECAR_VERSION: u32 = 1;

/// The JSON sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// Always [`SIDECAR_FORMAT`].
    pub format: String,
    /// [`SIDECAR_VERSION`] at write time.
    pub version: u32,
    /// Backbone description (rebuilds the architecture).
    pub descriptor: BackboneDescriptor,
    /// Head width.
    pub num_classes: i64,
    /// Whether the classifier resizes inputs.
    pub resize: bool,
    /// [`fingerprint`] of all tensors in the weights file.
    pub fingerprint: String,
    /// [`fingerprint`] of the backbone tensors only (compare with a [`crate::LoadReport`]).
    pub backbone_fingerprint: String,
    /// Free-form: transfer mode, threat model (norm, eps), data set, epoch, metrics, …
    pub info: serde_json::Value,
}

/// A classifier loaded from an own checkpoint, with the `VarStore` that owns its tensors.
#[derive(Debug)]
pub struct LoadedClassifier {
    /// Holds every variable of `model`.
    pub vs: nn::VarStore,
    /// The model.
    pub model: Classifier,
    /// The sidecar it was built from.
    pub sidecar: Sidecar,
}

fn paths(p: &Path) -> (PathBuf, PathBuf) {
    let dir = if p.extension().is_some_and(|e| e == "json" || e == "safetensors") {
        p.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        p.to_path_buf()
    };
    (dir.join(WEIGHTS_FILE), dir.join(SIDECAR_FILE))
}

fn sorted_vars(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let m: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    m.into_iter().map(|(n, t)| (n, t.detach().to_device(Device::Cpu).contiguous())).collect()
}

/// Writes `model.safetensors` + `model.json` into directory `dir` (created if needed; a path
/// ending in `.json`/`.safetensors` means its parent directory). Returns the sidecar written.
pub fn save_classifier(
    dir: impl AsRef<Path>,
    vs: &nn::VarStore,
    model: &Classifier,
    info: serde_json::Value,
) -> Result<Sidecar, CheckpointError> {
    let (weights, sidecar_path) = paths(dir.as_ref());
    if let ArchConfig::TorchScript(c) = &model.descriptor().arch {
        return Err(CheckpointError::Unsupported {
            file: c.file.clone(),
            reason:
                "TorchScript backbones keep buffers inside the module; save the module itself with torch.jit instead"
                    .into(),
        });
    }
    if let Some(parent) = weights.parent() {
        std::fs::create_dir_all(parent).map_err(|source| CheckpointError::Io { file: parent.to_path_buf(), source })?;
    }
    let tensors = sorted_vars(vs);
    let backbone: Vec<(String, Tensor)> =
        tensors.iter().filter(|(n, _)| !model.is_head_var(n)).map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let sidecar = Sidecar {
        format: SIDECAR_FORMAT.into(),
        version: SIDECAR_VERSION,
        descriptor: model.descriptor().clone(),
        num_classes: model.num_classes(),
        resize: model.resizes(),
        fingerprint: fingerprint(&tensors),
        backbone_fingerprint: fingerprint(&backbone),
        info,
    };
    let json = serde_json::to_vec_pretty(&sidecar)
        .map_err(|e| CheckpointError::Sidecar { file: sidecar_path.clone(), reason: e.to_string() })?;
    // Weights first, the sidecar last: a sidecar means a complete checkpoint.
    let io = |file: &Path| {
        let file = file.to_path_buf();
        move |source| CheckpointError::Io { file: file.clone(), source }
    };
    roli_io::write_atomic_with(
        &weights,
        |tmp| {
            Tensor::write_safetensors(&tensors, tmp)
                .map_err(|source| CheckpointError::Torch { file: tmp.into(), source })
        },
        io(&weights),
    )?;
    roli_io::write_atomic(&sidecar_path, &json).map_err(io(&sidecar_path))?;
    Ok(sidecar)
}

/// Reads only the sidecar of a checkpoint directory.
pub fn read_sidecar(dir: impl AsRef<Path>) -> Result<Sidecar, CheckpointError> {
    let (_, sidecar_path) = paths(dir.as_ref());
    let text = std::fs::read_to_string(&sidecar_path)
        .map_err(|source| CheckpointError::Io { file: sidecar_path.clone(), source })?;
    parse_sidecar(sidecar_path, &text)
}

/// [`read_sidecar`] on the text of a `model.json` (`sidecar_path` only names it in errors): the
/// in-memory entry point the fuzz tests call.
pub fn parse_sidecar(sidecar_path: PathBuf, text: &str) -> Result<Sidecar, CheckpointError> {
    let s: Sidecar = serde_json::from_str(text)
        .map_err(|e| CheckpointError::Sidecar { file: sidecar_path.clone(), reason: e.to_string() })?;
    if s.format != SIDECAR_FORMAT || s.version > SIDECAR_VERSION {
        return Err(CheckpointError::Sidecar {
            file: sidecar_path,
            reason: format!(
                "format {:?} version {} is not {SIDECAR_FORMAT:?} ≤ {SIDECAR_VERSION}",
                s.format, s.version
            ),
        });
    }
    Ok(s)
}

/// Rebuilds a classifier from a checkpoint directory on `device`, loading every tensor strictly
/// and verifying the sidecar's fingerprint.
pub fn load_classifier(dir: impl AsRef<Path>, device: Device) -> Result<LoadedClassifier, ModelError> {
    load_classifier_with_peft(dir, device, &NoPeft)
}

/// [`load_classifier`] for a model built with PEFT extensions: pass the spec it was trained
/// with (e.g. [`crate::Vpt`]), since the sidecar records only the backbone. With the wrong
/// spec the strict match fails and lists the PEFT tensors as missing or unexpected.
pub fn load_classifier_with_peft(
    dir: impl AsRef<Path>,
    device: Device,
    peft: &dyn PeftSpec,
) -> Result<LoadedClassifier, ModelError> {
    let (weights, _) = paths(dir.as_ref());
    let sidecar = read_sidecar(dir.as_ref())?;
    let vs = nn::VarStore::new(device);
    let opts = ClassifierOptions {
        num_classes: sidecar.num_classes,
        head_init: HeadInit::TorchDefault,
        resize: sidecar.resize,
    };
    let model = Classifier::with_peft(&vs.root(), &sidecar.descriptor, &opts, peft)?;
    let file_tensors = crate::checkpoint::read_state_dict(&weights)?.tensors;
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut missing: Vec<String> = Vec::new();
    let mut mismatched = Vec::new();
    let file_map: BTreeMap<String, Tensor> = file_tensors.into_iter().collect();
    let unexpected: Vec<String> = file_map.keys().filter(|k| !vars.contains_key(*k)).cloned().collect();
    for (name, v) in &vars {
        match file_map.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.size() != v.size() => {
                mismatched.push(ShapeMismatch { name: name.clone(), checkpoint: t.size(), model: v.size() })
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() || !unexpected.is_empty() || !mismatched.is_empty() {
        return Err(CheckpointError::Mismatch {
            file: weights,
            model: sidecar.descriptor.name.clone(),
            layout: "own".into(),
            details: format!(
                "\n  missing: {missing:?}\n  unexpected: {unexpected:?}\n  shape mismatch: {mismatched:?}"
            ),
        }
        .into());
    }
    tch::no_grad(|| -> Result<(), CheckpointError> {
        for (name, v) in &vars {
            let mut v = v.shallow_clone();
            v.f_copy_(&file_map[name]).map_err(|source| CheckpointError::Torch { file: weights.clone(), source })?;
        }
        Ok(())
    })?;
    let actual = fingerprint(&sorted_vars(&vs));
    if actual != sidecar.fingerprint {
        return Err(
            CheckpointError::Fingerprint { file: weights, expected: sidecar.fingerprint.clone(), actual }.into()
        );
    }
    Ok(LoadedClassifier { vs, model, sidecar })
}
