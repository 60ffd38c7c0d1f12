//! Reading checkpoints and loading them strictly into a [`Classifier`]'s `VarStore`.
//!
//! Containers (decided by the file's magic bytes, not its extension): safetensors, and the
//! `torch.save` zip format (`.pth/.pt/.bin/.ckpt`, read by [`crate::torch_pickle`]). A
//! `{"state_dict": sd}` / `{"model": sd}` / `{"model_state_dict": sd}` wrapper is unwrapped and a
//! `module.` prefix on every key is stripped; both are recorded in the [`LoadReport`]. Key
//! *layouts* are never guessed: the caller picks a [`SourceLayout`], and the backbone's
//! [`Backbone::map_checkpoint_key`] (its remap table) decides each key's fate.
//!
//! Strict by default: every backbone variable must be loaded with its exact shape, and every
//! checkpoint key must be used, dropped on purpose (head under [`HeadPolicy::Drop`], BatchNorm
//! counters) or be a derived buffer equal to the model's own copy; otherwise the error lists all
//! missing, unexpected and mis-shaped names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{nn, Device, Kind, Tensor};

use crate::backbone::{KeyFate, SourceLayout};
use crate::classifier::Classifier;
use crate::error::CheckpointError;
use crate::torch_pickle::{self, Value};

/// Wrapper keys tried, in order, when the top level is not itself a name→tensor dict.
pub const WRAPPER_KEYS: &[&str] = &["state_dict", "model", "model_state_dict"];
/// Prefix left by `nn.DataParallel` / DDP, stripped when every key carries it.
pub const DATA_PARALLEL_PREFIX: &str = "module.";
/// How many names each list of a mismatch error shows before summarising.
const MAX_LISTED: usize = 25;

/// One-line Python conversion to safetensors, given in errors about unreadable files.
pub const CONVERT_HINT: &str = "convert it with: python -c \"import torch,safetensors.torch as s; c=torch.load('IN',map_location='cpu',weights_only=False); c=c.get('state_dict',c.get('model',c)); s.save_file({k:v.contiguous() for k,v in c.items() if torch.is_tensor(v)},'OUT.safetensors')\"";

/// File container format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// safetensors.
    Safetensors,
    /// `torch.save` zip archive.
    TorchZip,
}

/// A flat list of named tensors read from a file.
#[derive(Debug)]
pub struct StateDict {
    /// Tensors in file order.
    pub tensors: Vec<(String, Tensor)>,
    /// Container format.
    pub container: Container,
    /// Wrapper key the state dict was found under, if any.
    pub wrapper: Option<String>,
}

/// What to do with classifier tensors in the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadPolicy {
    /// Drop them (transfer learning: the head is new). Recorded in `dropped`.
    Drop,
    /// Load them into the classifier's head; they must exist with the right shape.
    Load,
}

/// Options of [`load_backbone`].
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Key layout of the file.
    pub layout: SourceLayout,
    /// Classifier tensors.
    pub head: HeadPolicy,
    /// Backbone variables whose name contains one of these substrings may be absent from the
    /// file (PEFT tensors such as `lora` or `adapter`, which keep their fresh init).
    pub allow_missing_containing: Vec<String>,
    /// When false, problems are reported in the [`LoadReport`] instead of failing, and every
    /// matching tensor is loaded.
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            layout: SourceLayout::Native,
            head: HeadPolicy::Drop,
            allow_missing_containing: vec![],
            strict: true,
        }
    }
}

/// A checkpoint tensor whose shape differs from the model's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeMismatch {
    /// Model variable name.
    pub name: String,
    /// Shape in the checkpoint.
    pub checkpoint: Vec<i64>,
    /// Shape in the model.
    pub model: Vec<i64>,
}

/// What a load did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// The file.
    pub file: PathBuf,
    /// Container, if the file was read.
    pub container: Option<Container>,
    /// Wrapper key unwrapped (`model`, `state_dict`, …).
    pub wrapper: Option<String>,
    /// Prefix stripped from every key (`module.`).
    pub stripped_prefix: Option<String>,
    /// Model variables loaded (backbone and, under [`HeadPolicy::Load`], head).
    pub loaded: Vec<String>,
    /// `(checkpoint key, model name)` for keys renamed by the layout's remap table.
    pub remapped: Vec<(String, String)>,
    /// `(checkpoint key, reason)` for keys dropped on purpose.
    pub dropped: Vec<(String, String)>,
    /// Model variables absent from the file (empty after a strict load).
    pub missing: Vec<String>,
    /// Allowed-missing variables absent from the file (PEFT tensors).
    pub allowed_missing: Vec<String>,
    /// Checkpoint keys with no model variable (empty after a strict load).
    pub unexpected: Vec<String>,
    /// Shape mismatches (empty after a strict load).
    pub mismatched: Vec<ShapeMismatch>,
    /// Variables whose checkpoint dtype differed and was converted.
    pub converted: Vec<String>,
    /// Whether the head was loaded.
    pub head_loaded: bool,
    /// [`fingerprint`] of the backbone variables after loading.
    pub backbone_fingerprint: String,
}

impl LoadReport {
    /// True when nothing is missing, unexpected or mis-shaped.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

/// Hex SHA-256 over `name, dtype, shape, raw little-endian bytes` of each tensor, in sorted
/// name order: identical weights give identical fingerprints whatever the file format.
pub fn fingerprint(named: &[(String, Tensor)]) -> String {
    let mut sorted: Vec<&(String, Tensor)> = named.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    for (name, t) in sorted {
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(format!("{:?}", t.kind()).as_bytes());
        for d in t.size() {
            h.update(d.to_le_bytes());
        }
        let c = t.detach().to_device(Device::Cpu).contiguous();
        let n = c.numel();
        let mut buf = vec![0u8; n * c.kind().elt_size_in_bytes()];
        if n > 0 {
            c.copy_data_u8(&mut buf, n);
        }
        h.update(&buf);
    }
    hex::encode(h.finalize())
}

fn io_err(file: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { file: file.to_path_buf(), source }
}

/// Reads a checkpoint file into a flat name→tensor list (CPU), unwrapping known wrappers.
pub fn read_state_dict(path: impl AsRef<Path>) -> Result<StateDict, CheckpointError> {
    let file = path.as_ref();
    let bytes = std::fs::read(file).map_err(io_err(file))?;
    parse_state_dict(file, &bytes)
}

/// [`read_state_dict`] on the file's bytes (`file` only names it in errors): the in-memory entry
/// point the fuzz tests call.
pub fn parse_state_dict(file: &Path, bytes: &[u8]) -> Result<StateDict, CheckpointError> {
    if bytes.starts_with(b"PK\x03\x04") {
        let v = torch_pickle::load(file, bytes)?;
        return unwrap_state_dict(file, v);
    }
    if bytes.len() >= 9 && bytes[8] == b'{' {
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        if header.saturating_add(8) > bytes.len() as u64 {
            return Err(CheckpointError::Corrupt {
                file: file.to_path_buf(),
                reason: format!(
                    "safetensors header declares {header} bytes but the file has only {} (truncated?)",
                    bytes.len()
                ),
            });
        }
        let tensors = safetensors_tensors(bytes)
            .map_err(|reason| CheckpointError::Corrupt { file: file.to_path_buf(), reason })?;
        return Ok(StateDict { tensors, container: Container::Safetensors, wrapper: None });
    }
    if bytes.first() == Some(&0x80) {
        return Err(CheckpointError::Unsupported {
            file: file.to_path_buf(),
            reason: format!("legacy (pre-1.6, non-zip) torch.save format; {CONVERT_HINT}"),
        });
    }
    let reason = if bytes.is_empty() {
        "the file is empty".to_string()
    } else {
        format!("neither safetensors nor a torch.save zip archive (first bytes {:02x?}); expected a .safetensors or .pt/.pth file", &bytes[..bytes.len().min(8)])
    };
    Err(CheckpointError::NotACheckpoint { file: file.to_path_buf(), reason })
}

/// The tensors of a safetensors file, in file order (what `Tensor::read_safetensors` reads, from
/// memory). The `safetensors` crate checks every tensor's shape × dtype against its byte range
/// (overflow-checked) before any tensor is made, so a header cannot make libtorch allocate.
fn safetensors_tensors(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    use safetensors::Dtype;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("safetensors: {e}"))?;
    let mut views = st.tensors();
    views.sort_by(|(a, x), (b, y)| (x.data().as_ptr() as usize, a).cmp(&(y.data().as_ptr() as usize, b)));
    views
        .into_iter()
        .map(|(name, view)| {
            let kind = match view.dtype() {
                Dtype::BOOL => Kind::Bool,
                Dtype::U8 => Kind::Uint8,
                Dtype::I8 => Kind::Int8,
                Dtype::I16 => Kind::Int16,
                Dtype::I32 => Kind::Int,
                Dtype::I64 => Kind::Int64,
                Dtype::BF16 => Kind::BFloat16,
                Dtype::F16 => Kind::Half,
                Dtype::F32 => Kind::Float,
                Dtype::F64 => Kind::Double,
                d => return Err(format!("tensor {name}: unsupported dtype {d:?}")),
            };
            let shape = view
                .shape()
                .iter()
                .map(|&d| i64::try_from(d).map_err(|_| format!("tensor {name}: dimension {d} is too large")))
                .collect::<Result<Vec<i64>, String>>()?;
            let t = Tensor::f_from_data_size(view.data(), &shape, kind).map_err(|e| format!("tensor {name}: {e}"))?;
            Ok((name, t))
        })
        .collect()
}

fn tensor_dict(v: &Value) -> Option<Vec<(String, Tensor)>> {
    let Value::Dict(d) = v else { return None };
    let d = d.borrow();
    if d.is_empty() {
        return None;
    }
    d.iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Some((k.clone(), t.shallow_clone())),
            _ => None,
        })
        .collect()
}

fn unwrap_state_dict(file: &Path, v: Value) -> Result<StateDict, CheckpointError> {
    if let Some(t) = tensor_dict(&v) {
        return Ok(StateDict { tensors: t, container: Container::TorchZip, wrapper: None });
    }
    let Value::Dict(d) = &v else {
        return Err(CheckpointError::Unsupported {
            file: file.to_path_buf(),
            reason: format!("top-level object is a {}, not a dict of tensors; {CONVERT_HINT}", v.type_name()),
        });
    };
    let entries = d.borrow();
    for w in WRAPPER_KEYS {
        if let Some((_, inner)) = entries.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == w)) {
            if let Some(t) = tensor_dict(inner) {
                return Ok(StateDict { tensors: t, container: Container::TorchZip, wrapper: Some((*w).to_string()) });
            }
        }
    }
    let listing: Vec<String> = entries
        .iter()
        .take(MAX_LISTED)
        .map(|(k, v)| {
            let k = if let Value::Str(s) = k { s.clone() } else { k.type_name() };
            format!("{k}: {}", v.type_name())
        })
        .collect();
    Err(CheckpointError::Unsupported {
        file: file.to_path_buf(),
        reason: format!(
            "no name→tensor dict at the top level or under {WRAPPER_KEYS:?}; top-level entries: {{{}}}; {CONVERT_HINT}",
            listing.join(", ")
        ),
    })
}

fn listing<T>(title: &str, items: &[T], show: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut s = format!("\n  {title} ({}):", items.len());
    for it in items.iter().take(MAX_LISTED) {
        s.push_str("\n    ");
        s.push_str(&show(it));
    }
    if items.len() > MAX_LISTED {
        s.push_str(&format!("\n    … and {} more", items.len() - MAX_LISTED));
    }
    s
}

/// Loads the backbone (and, with [`HeadPolicy::Load`], the head) of `model` from `path`.
/// `vs` must be the `VarStore` the classifier was built in.
///
/// Steps: read the file (unwrapping a wrapper dict), strip a `module.` prefix, map every key
/// through the layout's remap table, match names and shapes strictly, copy, report.
pub fn load_backbone(
    vs: &nn::VarStore,
    model: &Classifier,
    path: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<LoadReport, CheckpointError> {
    let file = path.as_ref();
    let sd = read_state_dict(file)?;
    let mut report = LoadReport {
        file: file.to_path_buf(),
        container: Some(sd.container),
        wrapper: sd.wrapper.clone(),
        ..Default::default()
    };
    let tensors = strip_data_parallel_prefix(sd.tensors, &mut report);
    let mut m = Matcher::new(file, vs, model, opts, report);
    for (key, t) in tensors {
        if let Some(target) = m.target(&key, &t)? {
            m.place(key, target, t);
        }
    }
    m.note_missing();
    m.report.unexpected.sort();
    if opts.strict && !m.report.is_clean() {
        return Err(m.mismatch(strict_details(&m.report)));
    }
    m.copy_into_model()?;
    Ok(m.finish())
}

/// Strips [`DATA_PARALLEL_PREFIX`] when every key carries it, recording it in the report.
fn strip_data_parallel_prefix(mut tensors: Vec<(String, Tensor)>, report: &mut LoadReport) -> Vec<(String, Tensor)> {
    if !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with(DATA_PARALLEL_PREFIX)) {
        for (k, _) in tensors.iter_mut() {
            *k = k[DATA_PARALLEL_PREFIX.len()..].to_string();
        }
        report.stripped_prefix = Some(DATA_PARALLEL_PREFIX.to_string());
    }
    tensors
}

/// The error details of a failed strict load: every missing, unexpected and mis-shaped name.
fn strict_details(report: &LoadReport) -> String {
    let mut details = listing("missing from the checkpoint", &report.missing, |s| s.clone());
    details += &listing("unexpected in the checkpoint", &report.unexpected, |s| s.clone());
    details += &listing("shape mismatch", &report.mismatched, |m| {
        format!("{}: checkpoint {:?} vs model {:?}", m.name, m.checkpoint, m.model)
    });
    details += "\n  hint: check the preset/configuration and the key layout (SourceLayout::SwinLegacy for official/timm<0.9 Swin files); pass HeadPolicy::Drop to ignore a classifier of another size";
    details
}

/// One [`load_backbone`] call: the model's variables, the tensors chosen for them, and the
/// report of what happened to every checkpoint key.
struct Matcher<'a> {
    file: &'a Path,
    model: &'a Classifier,
    opts: &'a LoadOptions,
    vars: BTreeMap<String, Tensor>,
    derived: HashMap<String, Tensor>,
    /// Model variables a checkpoint tensor was found for.
    seen: HashSet<String>,
    /// `(model variable, checkpoint tensor)` to copy.
    assign: Vec<(String, Tensor)>,
    report: LoadReport,
}

impl<'a> Matcher<'a> {
    fn new(
        file: &'a Path,
        vs: &nn::VarStore,
        model: &'a Classifier,
        opts: &'a LoadOptions,
        report: LoadReport,
    ) -> Self {
        Matcher {
            file,
            model,
            opts,
            vars: vs.variables().into_iter().collect(),
            derived: model.backbone().derived_buffers().into_iter().collect(),
            seen: HashSet::new(),
            assign: Vec::new(),
            report,
        }
    }

    fn mismatch(&self, details: String) -> CheckpointError {
        CheckpointError::Mismatch {
            file: self.file.to_path_buf(),
            model: self.model.backbone().descriptor().name.clone(),
            layout: self.opts.layout.to_string(),
            details,
        }
    }

    /// The model variable checkpoint key `key` goes to, by the layout's remap table; `None` when
    /// the key is dropped on purpose or has no place in the model (both recorded in the report).
    fn target(&mut self, key: &str, t: &Tensor) -> Result<Option<String>, CheckpointError> {
        let bb = self.model.backbone();
        let name = match bb.map_checkpoint_key(self.opts.layout, key) {
            KeyFate::WrongLayout => {
                return Err(self.mismatch(format!(
                    "\n  layout {} does not apply to the {:?} family; use SourceLayout::Native",
                    self.opts.layout,
                    bb.descriptor().layout
                )))
            }
            KeyFate::Ignore(reason) => return Ok(self.drop_key(key, reason.to_string())),
            KeyFate::Derived(name) => {
                self.check_derived(name, t)?;
                return Ok(self.drop_key(key, "derived buffer, equal to the computed value".into()));
            }
            KeyFate::Head(_) if self.opts.head == HeadPolicy::Drop => {
                return Ok(self.drop_key(key, "classifier head (HeadPolicy::Drop)".into()))
            }
            KeyFate::Head(name) if self.model.is_head_var(&name) => name,
            KeyFate::Param(name) if !self.model.is_head_var(&name) => name,
            KeyFate::Head(_) | KeyFate::Param(_) => {
                self.report.unexpected.push(key.to_string());
                return Ok(None);
            }
        };
        Ok(Some(name))
    }

    fn drop_key(&mut self, key: &str, reason: String) -> Option<String> {
        self.report.dropped.push((key.to_string(), reason));
        None
    }

    /// A checkpoint copy of a derived buffer must equal the model's own (computed) value.
    fn check_derived(&self, name: String, t: &Tensor) -> Result<(), CheckpointError> {
        let same = self.derived.get(&name).is_some_and(|d| {
            d.size() == t.size() && d.to_kind(t.kind()).to_device(Device::Cpu).f_equal(t).unwrap_or(false)
        });
        if same {
            return Ok(());
        }
        Err(CheckpointError::BufferMismatch {
            file: self.file.to_path_buf(),
            model_shape: self.derived.get(&name).map(|d| d.size()).unwrap_or_default(),
            name,
            ckpt_shape: t.size(),
        })
    }

    /// Schedules `t` (checkpoint key `key`) for model variable `target`, or records why not.
    fn place(&mut self, key: String, target: String, t: Tensor) {
        let report = &mut self.report;
        let Some(v) = self.vars.get(&target) else {
            report.unexpected.push(key);
            return;
        };
        if !self.seen.insert(target.clone()) {
            report.unexpected.push(format!("{key} (second tensor for {target})"));
            return;
        }
        if v.size() != t.size() {
            report.mismatched.push(ShapeMismatch { name: target, checkpoint: t.size(), model: v.size() });
            return;
        }
        if target != key {
            report.remapped.push((key, target.clone()));
        }
        if v.kind() != t.kind() {
            report.converted.push(target.clone());
        }
        self.assign.push((target, t));
    }

    /// Records the model variables no checkpoint tensor was found for: head variables count
    /// only under [`HeadPolicy::Load`], PEFT variables go to `allowed_missing`.
    fn note_missing(&mut self) {
        let allowed = |n: &str| self.opts.allow_missing_containing.iter().any(|s| n.contains(s.as_str()));
        for name in self.vars.keys().filter(|n| !self.seen.contains(*n)) {
            if self.model.is_head_var(name) {
                if self.opts.head == HeadPolicy::Load {
                    self.report.missing.push(name.clone());
                }
            } else if allowed(name) {
                self.report.allowed_missing.push(name.clone());
            } else {
                self.report.missing.push(name.clone());
            }
        }
    }

    fn copy_into_model(&self) -> Result<(), CheckpointError> {
        tch::no_grad(|| {
            for (name, t) in &self.assign {
                let mut v = self.vars[name].shallow_clone();
                v.f_copy_(t).map_err(|source| CheckpointError::Torch { file: self.file.to_path_buf(), source })?;
            }
            Ok(())
        })
    }

    /// The final report: loaded names, whether the head was loaded, the backbone fingerprint.
    fn finish(self) -> LoadReport {
        let Matcher { model, opts, vars, seen, assign, mut report, .. } = self;
        report.head_loaded = opts.head == HeadPolicy::Load && model.head_var_names().iter().all(|h| seen.contains(h));
        report.loaded = assign.into_iter().map(|(n, _)| n).collect();
        report.loaded.sort();
        let backbone: Vec<(String, Tensor)> = vars
            .iter()
            .filter(|(n, _)| !model.is_head_var(n) && !report.allowed_missing.contains(n))
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        report.backbone_fingerprint = fingerprint(&backbone);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn fingerprint_depends_on_values_names_and_shapes_not_order() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]);
        let b = Tensor::from_slice(&[5i64]);
        let f1 = fingerprint(&[("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())]);
        let f2 = fingerprint(&[("b".into(), b.shallow_clone()), ("a".into(), a.shallow_clone())]);
        assert_eq!(f1, f2);
        assert_eq!(f1.len(), 64);
        let f3 = fingerprint(&[("a".into(), a.view([2, 2])), ("b".into(), b.shallow_clone())]);
        assert_ne!(f1, f3);
        let f4 = fingerprint(&[("a2".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())]);
        assert_ne!(f1, f4);
        let f5 = fingerprint(&[("a".into(), a.to_kind(Kind::Double)), ("b".into(), b.shallow_clone())]);
        assert_ne!(f1, f5);
        let f6 = fingerprint(&[("a".into(), &a + 1e-3), ("b".into(), b)]);
        assert_ne!(f1, f6);
    }

    #[test]
    fn non_checkpoints_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.pth");
        std::fs::write(&p, "hello, this is text").unwrap();
        let e = read_state_dict(&p).unwrap_err().to_string();
        assert!(e.contains("notes.pth") && e.contains("not a checkpoint"), "{e}");
        let p = dir.path().join("empty.safetensors");
        std::fs::write(&p, "").unwrap();
        let e = read_state_dict(&p).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
