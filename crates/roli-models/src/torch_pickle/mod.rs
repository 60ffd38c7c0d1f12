//! A reader for PyTorch's `torch.save` zip format (PyTorch ≥ 1.6): a stored (uncompressed) zip
//! archive with `<prefix>/data.pkl` (pickle protocol 2) and one `<prefix>/data/<key>` file per
//! storage. libtorch's `_load_parameters` (tch's `loadz_multi`) reads only flat
//! `{name: tensor}` files; this reader also handles `{"model": sd}`, `{"state_dict": sd}`, extra
//! non-tensor entries (epochs, argparse namespaces) and `nn.Parameter`s. Classes other than
//! tensors, dicts and lists become opaque objects; no code is ever executed.
//!
//! Why this pickle machine is not shared with `roli_data::pickle` (the CIFAR reader): the two
//! crates do not depend on each other, and what the machines have in common is only the byte
//! cursor and the stack/mark/memo helpers (a few dozen lines). They read different opcode
//! subsets (persistent ids, sets, POP/DUP, LONG4 and BINUNICODE8 only here) and build different
//! object models: here containers are shared `Rc<RefCell<…>>` values (a dict memoised before it
//! is filled is seen filled through the memo), REDUCE evaluates a whitelist (tensor and
//! parameter rebuilders) against the zip's storages, and Python-2 strings are `str`; there,
//! everything is an inert owned tree (`Reduce`/`Build` nodes) that numpy arrays are read from,
//! and Python-2 strings are bytes. Both machines have the same shape — a `Reader` cursor and a
//! machine with one method per opcode group — so a later shared crate can take the common part.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use tch::{Kind, Tensor};

use crate::error::CheckpointError;

/// A decoded pickle value.
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Rc<Vec<Value>>),
    /// A list (or set).
    List(Rc<RefCell<Vec<Value>>>),
    /// A dict / OrderedDict, in insertion order.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A tensor (contiguous copy of its storage view).
    Tensor(Rc<Tensor>),
    /// A class or function reference `module.name`.
    Global(String, String),
    /// An instance of a class we do not interpret.
    Object(String),
    /// A storage: element kind and its 1-D tensor.
    Storage(Kind, Rc<Tensor>),
}

impl Value {
    /// Short type name for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::Tensor(_) => "tensor".into(),
            Value::Global(m, n) => format!("{m}.{n}"),
            Value::Object(c) => c.clone(),
            Value::Storage(..) => "storage".into(),
        }
    }
}

mod unpickler;
mod zip;

use unpickler::Unpickler;
use zip::Zip;

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

/// Whether the zip archive is a TorchScript module (has compiled code) rather than `torch.save`.
fn is_torchscript(zip: &Zip, prefix: &str) -> bool {
    zip.entries.contains_key(&format!("{prefix}constants.pkl"))
        || zip.entries.keys().any(|k| k.starts_with(&format!("{prefix}code/")))
}

/// Reads a `torch.save` zip file into a [`Value`].
pub fn load(file: &Path, bytes: &[u8]) -> Result<Value, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt { file: file.to_path_buf(), reason };
    let zip = Zip::parse(bytes).map_err(corrupt)?;
    let pkl_name = pickle_entry(&zip).ok_or_else(|| CheckpointError::NotACheckpoint {
        file: file.to_path_buf(),
        reason: "zip archive without a `<name>/data.pkl` entry (not written by torch.save)".into(),
    })?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    check_state_archive(file, &zip, &prefix)?;
    let pkl = zip.get(&pkl_name).map_err(corrupt)?.unwrap_or_default();
    let v = Unpickler::new(file, &zip, prefix, pkl).run().map_err(corrupt)?;
    if nests_deeper_than(&v, MAX_DEPTH) {
        dispose(vec![v]);
        return Err(corrupt(format!("the pickle nests deeper than {MAX_DEPTH} levels")));
    }
    Ok(v)
}

/// Deepest nesting a loaded value may have (state dicts nest 3–4 deep). Dropping a value
/// recurses, so 200,000 nested tuples (a 200 KB file) overflowed the stack.
pub const MAX_DEPTH: usize = 512;

/// Whether any container in `v` is first reached more than `max` levels down (breadth-first,
/// each shared container visited once, so a memo-shared DAG is not walked exponentially).
fn nests_deeper_than(v: &Value, max: usize) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut queue = std::collections::VecDeque::from([(v.clone(), 0usize)]);
    while let Some((v, depth)) = queue.pop_front() {
        let children: Vec<Value> = match &v {
            Value::Tuple(t) if seen.insert(Rc::as_ptr(t) as usize) => t.iter().cloned().collect(),
            Value::List(l) if seen.insert(Rc::as_ptr(l) as usize) => l.borrow().iter().cloned().collect(),
            Value::Dict(d) if seen.insert(Rc::as_ptr(d) as usize) => {
                d.borrow().iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()
            }
            _ => continue,
        };
        if depth >= max && !children.is_empty() {
            return true;
        }
        queue.extend(children.into_iter().map(|c| (c, depth + 1)));
    }
    false
}

/// Drops values without recursion: containers owned only here are emptied into a work list
/// first (the unpickler's leftover stack and memo, and refused values, may nest arbitrarily).
pub(crate) fn dispose(mut work: Vec<Value>) {
    while let Some(v) = work.pop() {
        match v {
            Value::Tuple(t) => {
                if let Ok(items) = Rc::try_unwrap(t) {
                    work.extend(items);
                }
            }
            Value::List(l) => {
                if let Ok(items) = Rc::try_unwrap(l) {
                    work.extend(items.into_inner());
                }
            }
            Value::Dict(d) => {
                if let Ok(pairs) = Rc::try_unwrap(d) {
                    work.extend(pairs.into_inner().into_iter().flat_map(|(k, v)| [k, v]));
                }
            }
            _ => {}
        }
    }
}

/// The archive's `<prefix>/data.pkl` entry (the first by name if there are several).
fn pickle_entry(zip: &Zip) -> Option<String> {
    zip.entries.keys().filter(|k| k.ends_with("data.pkl") && k.matches('/').count() == 1).min().cloned()
}

/// Rejects archives this reader must not interpret: TorchScript modules and big-endian files.
fn check_state_archive(file: &Path, zip: &Zip, prefix: &str) -> Result<(), CheckpointError> {
    if is_torchscript(zip, prefix) {
        return Err(CheckpointError::Unsupported {
            file: file.to_path_buf(),
            reason: "this is a TorchScript module, not a state dict; use it through roli_models::script (bring-your-own model)".into(),
        });
    }
    let order = zip
        .get(&format!("{prefix}byteorder"))
        .map_err(|reason| CheckpointError::Corrupt { file: file.to_path_buf(), reason })?;
    if order.is_some_and(|o| o != b"little") {
        return Err(CheckpointError::Unsupported { file: file.to_path_buf(), reason: "big-endian checkpoint".into() });
    }
    Ok(())
}
