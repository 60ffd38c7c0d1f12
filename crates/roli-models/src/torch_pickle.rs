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
use std::collections::HashMap;
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

struct Zip<'a> {
    data: &'a [u8],
    entries: HashMap<String, Entry>,
}

/// Where a zip entry's bytes lie and how they are stored.
#[derive(Clone, Copy)]
struct Entry {
    start: usize,
    end: usize,
    /// Compression method (0 = stored).
    method: u16,
}

fn u16le(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32le(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn u64le(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}

impl<'a> Zip<'a> {
    /// Parses the central directory; only stored (uncompressed) entries are readable.
    fn parse(data: &'a [u8]) -> Result<Self, String> {
        let (n, cd) = central_directory(data)?;
        let mut entries = HashMap::new();
        let mut o = cd as usize;
        for _ in 0..n {
            let (name, entry, next) = directory_entry(data, o)?;
            entries.insert(name, entry);
            o = next;
        }
        Ok(Zip { data, entries })
    }

    /// The bytes of a stored entry; None if absent, Err if compressed (torch.save never
    /// compresses, so that means another kind of zip).
    fn get(&self, name: &str) -> Result<Option<&'a [u8]>, String> {
        match self.entries.get(name) {
            None => Ok(None),
            Some(&Entry { start, end, method: 0 }) => Ok(Some(&self.data[start..end])),
            Some(&Entry { method: m, .. }) => {
                Err(format!("entry {name} is compressed (method {m}); torch.save writes stored entries"))
            }
        }
    }
}

/// Finds the central directory: `(entry count, byte offset)`, from the end-of-central-directory
/// record or, when that holds placeholders, the zip64 end record.
fn central_directory(data: &[u8]) -> Result<(u64, u64), String> {
    let min = data.len().saturating_sub(22 + 65_535);
    let eocd = (min..=data.len().saturating_sub(22))
        .rev()
        .find(|&i| u32le(data, i) == Some(0x0605_4b50))
        .ok_or("zip end-of-central-directory record not found (file truncated?)")?;
    let n = u16le(data, eocd + 10).ok_or("short EOCD")? as u64;
    let cd = u32le(data, eocd + 16).ok_or("short EOCD")? as u64;
    if n != 0xFFFF && cd != 0xFFFF_FFFF {
        return Ok((n, cd));
    }
    let loc = eocd.checked_sub(20).filter(|&l| u32le(data, l) == Some(0x0706_4b50)).ok_or("zip64 locator missing")?;
    let z = u64le(data, loc + 8).ok_or("short zip64 locator")? as usize;
    if u32le(data, z) != Some(0x0606_4b50) {
        return Err("zip64 end record missing".into());
    }
    Ok((u64le(data, z + 32).ok_or("short zip64 record")?, u64le(data, z + 48).ok_or("short zip64 record")?))
}

/// Parses the central-directory entry at byte `o`: its name, where its data lies, and the
/// offset of the next entry.
fn directory_entry(data: &[u8], o: usize) -> Result<(String, Entry, usize), String> {
    if u32le(data, o) != Some(0x0201_4b50) {
        return Err(format!("bad central directory entry at byte {o}"));
    }
    let method = u16le(data, o + 10).ok_or("short entry")?;
    let mut csize = u32le(data, o + 20).ok_or("short entry")? as u64;
    let mut usize_ = u32le(data, o + 24).ok_or("short entry")? as u64;
    let nlen = u16le(data, o + 28).ok_or("short entry")? as usize;
    let elen = u16le(data, o + 30).ok_or("short entry")? as usize;
    let clen = u16le(data, o + 32).ok_or("short entry")? as usize;
    let mut local = u32le(data, o + 42).ok_or("short entry")? as u64;
    let name = String::from_utf8_lossy(data.get(o + 46..o + 46 + nlen).ok_or("short entry name")?).into_owned();
    let extra = data.get(o + 46 + nlen..o + 46 + nlen + elen).ok_or("short extra field")?;
    apply_zip64_extra(extra, [&mut usize_, &mut csize, &mut local])?;
    let start = local_data_start(data, local as usize, &name)?;
    let end = start + csize as usize;
    if end > data.len() {
        return Err(format!("entry {name} extends past the end of the file (truncated?)"));
    }
    Ok((name, Entry { start, end, method }, o + 46 + nlen + elen + clen))
}

/// zip64 extra field: present values replace the 0xFFFFFFFF placeholders of
/// `[uncompressed size, compressed size, local header offset]`, in that order.
fn apply_zip64_extra(extra: &[u8], mut slots: [&mut u64; 3]) -> Result<(), String> {
    let mut e = 0;
    while e + 4 <= extra.len() {
        let id = u16le(extra, e).unwrap_or(0);
        let sz = u16le(extra, e + 2).unwrap_or(0) as usize;
        if id == 1 {
            let mut f = e + 4;
            for slot in slots.iter_mut() {
                if **slot == 0xFFFF_FFFF {
                    **slot = u64le(extra, f).ok_or("short zip64 extra")?;
                    f += 8;
                }
            }
        }
        e += 4 + sz;
    }
    Ok(())
}

/// Byte offset where the data of the entry whose local header is at `l` starts.
fn local_data_start(data: &[u8], l: usize, name: &str) -> Result<usize, String> {
    if u32le(data, l) != Some(0x0403_4b50) {
        return Err(format!("bad local header for {name}"));
    }
    Ok(l + 30
        + u16le(data, l + 26).ok_or("short local header")? as usize
        + u16le(data, l + 28).ok_or("short local header")? as usize)
}

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
    Unpickler::new(file, &zip, prefix, pkl).run().map_err(corrupt)
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

/// A cursor over a pickle stream.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("pickle stream ends early")?;
        let s = self.data.get(self.pos..end).ok_or("pickle stream ends early")?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "bad length")?))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = self.data.get(self.pos..).ok_or("pickle stream ends early")?;
        let n = rest.iter().position(|&b| b == b'\n').ok_or("unterminated GLOBAL line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
}

/// Decodes a LONG1/LONG4 little-endian two's-complement integer (truncated to 64 bits).
fn decode_long(s: &[u8]) -> i64 {
    let n = s.len();
    let mut v: i128 = 0;
    for (i, b) in s.iter().enumerate().take(16) {
        v |= (*b as i128) << (8 * i);
    }
    if n > 0 && n < 16 && s[n - 1] & 0x80 != 0 {
        v -= 1i128 << (8 * n);
    }
    v as i64
}

fn new_dict(pairs: Vec<(Value, Value)>) -> Value {
    Value::Dict(Rc::new(RefCell::new(pairs)))
}
fn new_list(items: Vec<Value>) -> Value {
    Value::List(Rc::new(RefCell::new(items)))
}

/// Pairs up `k1, v1, k2, v2, …` (a trailing lone key is dropped).
fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

/// The pickle machine: one method per opcode group, each returning whether it knew the opcode.
struct Unpickler<'a> {
    file: &'a Path,
    zip: &'a Zip<'a>,
    prefix: String,
    r: Reader<'a>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: HashMap<String, Rc<Tensor>>,
}

impl<'a> Unpickler<'a> {
    fn new(file: &'a Path, zip: &'a Zip<'a>, prefix: String, data: &'a [u8]) -> Self {
        Unpickler {
            file,
            zip,
            prefix,
            r: Reader { data, pos: 0 },
            stack: vec![],
            marks: vec![],
            memo: HashMap::new(),
            storages: HashMap::new(),
        }
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self.marks.pop().ok_or("pickle MARK missing")?;
        if m > self.stack.len() {
            return Err("pickle MARK beyond stack".into());
        }
        Ok(self.stack.split_off(m))
    }
    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| "pickle stack underflow".to_string())
    }
    /// Pushes `v` and reports the opcode as known (the tail of most opcode groups).
    fn push_known(&mut self, v: Value) -> Result<bool, String> {
        self.stack.push(v);
        Ok(true)
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let op = self.r.u8()?;
            if op == b'.' {
                return self.pop(); // STOP
            }
            let known = self.control(op)?
                || self.scalar(op)?
                || self.text(op)?
                || self.collection(op)?
                || self.fill(op)?
                || self.memo_op(op)?
                || self.object(op)?;
            if !known {
                return Err(format!("unsupported pickle opcode 0x{op:02x} at byte {}", self.r.pos - 1));
            }
        }
    }

    /// PROTO, FRAME, MARK, POP, POP_MARK, DUP.
    fn control(&mut self, op: u8) -> Result<bool, String> {
        match op {
            0x80 => {
                self.r.u8()?;
            }
            0x95 => {
                self.r.take(8)?;
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// NONE, NEWTRUE/NEWFALSE, BININT1/BININT2/BININT, LONG1/LONG4, BINFLOAT.
    fn scalar(&mut self, op: u8) -> Result<bool, String> {
        let v = match op {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'K' => Value::Int(self.r.u8()? as i64),
            b'M' => Value::Int(self.r.u16()? as i64),
            b'J' => Value::Int(self.r.u32()? as i32 as i64),
            0x8a | 0x8b => {
                let n = if op == 0x8a { self.r.u8()? as usize } else { self.r.u32()? as usize };
                Value::Int(decode_long(self.r.take(n)?))
            }
            b'G' => Value::Float(f64::from_be_bytes(self.r.take(8)?.try_into().map_err(|_| "bad float")?)),
            _ => return Ok(false),
        };
        self.push_known(v)
    }

    /// BINUNICODE/SHORT_BINUNICODE/BINUNICODE8, SHORT_BINSTRING/BINSTRING (read as str),
    /// SHORT_BINBYTES/BINBYTES.
    fn text(&mut self, op: u8) -> Result<bool, String> {
        let n = match op {
            b'X' | b'T' | b'B' => self.r.u32()? as usize,
            0x8c | b'U' | b'C' => self.r.u8()? as usize,
            0x8d => self.r.u64()? as usize,
            _ => return Ok(false),
        };
        let s = self.r.take(n)?;
        let v = if matches!(op, b'C' | b'B') {
            Value::Bytes(s.to_vec())
        } else {
            Value::Str(String::from_utf8_lossy(s).into_owned())
        };
        self.push_known(v)
    }

    /// Opcodes that build a tuple, list, set or dict.
    fn collection(&mut self, op: u8) -> Result<bool, String> {
        let v = match op {
            b'}' => new_dict(vec![]),
            b']' | 0x8f => new_list(vec![]),
            b')' => Value::Tuple(Rc::new(vec![])),
            b't' => Value::Tuple(Rc::new(self.pop_mark()?)),
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if self.stack.len() < n {
                    return Err("pickle stack underflow".into());
                }
                Value::Tuple(Rc::new(self.stack.split_off(self.stack.len() - n)))
            }
            b'l' | 0x91 => new_list(self.pop_mark()?),
            b'd' => new_dict(pairs(self.pop_mark()?)),
            _ => return Ok(false),
        };
        self.push_known(v)
    }

    /// SETITEM(S), APPEND(S), ADDITEMS: fill the collection on top of the stack. An opaque
    /// object's state is not needed and is skipped.
    fn fill(&mut self, op: u8) -> Result<bool, String> {
        let (items, name) = match op {
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                (vec![k, v], "SETITEM")
            }
            b'u' => (self.pop_mark()?, "SETITEMS"),
            b'a' => (vec![self.pop()?], "APPEND"),
            b'e' | 0x90 => (self.pop_mark()?, "APPENDS"),
            _ => return Ok(false),
        };
        match self.top()? {
            Value::Dict(d) if matches!(op, b's' | b'u') => d.borrow_mut().extend(pairs(items)),
            Value::List(l) if !matches!(op, b's' | b'u') => l.borrow_mut().extend(items),
            Value::Object(_) => {}
            other => return Err(format!("{name} on {}", other.type_name())),
        }
        Ok(true)
    }

    /// BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET.
    fn memo_op(&mut self, op: u8) -> Result<bool, String> {
        match op {
            b'q' | b'r' | 0x94 => {
                let i = match op {
                    b'q' => self.r.u8()? as u32,
                    b'r' => self.r.u32()?,
                    _ => self.memo.len() as u32,
                };
                let v = self.top()?.clone();
                self.memo.insert(i, v);
                Ok(true)
            }
            b'h' | b'j' => {
                let i = if op == b'h' { self.r.u8()? as u32 } else { self.r.u32()? };
                let v = self.memo.get(&i).cloned().ok_or_else(|| format!("pickle memo {i} missing"))?;
                self.push_known(v)
            }
            _ => Ok(false),
        }
    }

    /// GLOBAL, STACK_GLOBAL, BINPERSID, REDUCE, NEWOBJ, BUILD.
    fn object(&mut self, op: u8) -> Result<bool, String> {
        let v = match op {
            b'c' => {
                let m = self.r.line()?;
                Value::Global(m, self.r.line()?)
            }
            0x93 => {
                let n = self.pop()?;
                let m = self.pop()?;
                match (m, n) {
                    (Value::Str(m), Value::Str(n)) => Value::Global(m, n),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                self.persistent_load(pid)?
            }
            b'R' => {
                let args = self.pop()?;
                let f = self.pop()?;
                reduce(f, args)?
            }
            0x81 => {
                let _args = self.pop()?;
                Value::Object(self.pop()?.type_name())
            }
            b'b' => {
                // BUILD: object state (OrderedDict._metadata, Namespace fields): not needed
                self.pop()?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        self.push_known(v)
    }

    /// Resolves a `("storage", type, key, location, numel)` persistent id to the storage's
    /// 1-D tensor, read once per key from `<prefix>data/<key>`.
    fn persistent_load(&mut self, pid: Value) -> Result<Value, String> {
        let Value::Tuple(t) = pid else {
            return Err("persistent id is not a tuple".into());
        };
        let [Value::Str(tag), Value::Global(_, ty), Value::Str(key), _loc, Value::Int(numel)] = t.as_slice() else {
            return Err(format!("unsupported persistent id in {}", self.file.display()));
        };
        if tag != "storage" {
            return Err(format!("unsupported persistent id in {}", self.file.display()));
        }
        let kind = storage_kind(ty).ok_or_else(|| format!("unsupported storage type {ty}"))?;
        if let Some(s) = self.storages.get(key) {
            return Ok(Value::Storage(kind, s.clone()));
        }
        let name = format!("{}data/{key}", self.prefix);
        let bytes = self.zip.get(&name)?.ok_or_else(|| format!("storage file {name} missing from the archive"))?;
        let need = *numel as usize * kind.elt_size_in_bytes();
        if bytes.len() < need {
            return Err(format!("storage {name} has {} bytes, expected {need} (truncated?)", bytes.len()));
        }
        let t =
            Tensor::f_from_data_size(&bytes[..need], &[*numel], kind).map_err(|e| format!("storage {name}: {e}"))?;
        let t = Rc::new(t);
        self.storages.insert(key.clone(), t.clone());
        Ok(Value::Storage(kind, t))
    }
}

/// REDUCE: evaluates the few callables a state dict needs (tensor and parameter rebuilders,
/// OrderedDict, set); any other call becomes an opaque [`Value::Object`].
fn reduce(f: Value, args: Value) -> Result<Value, String> {
    let Value::Global(m, n) = &f else {
        return Ok(Value::Object(f.type_name()));
    };
    let args = match args {
        Value::Tuple(t) => t,
        other => Rc::new(vec![other]),
    };
    match (m.as_str(), n.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => rebuild_tensor(&args),
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.first().cloned().ok_or_else(|| "empty _rebuild_parameter".into())
        }
        ("collections", "OrderedDict") => Ok(new_dict(vec![])),
        ("builtins", "set") | ("builtins", "frozenset") | ("__builtin__", "set") => Ok(new_list(vec![])),
        _ => Ok(Value::Object(format!("{m}.{n}"))),
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, …)`: a contiguous copy of the view.
fn rebuild_tensor(args: &[Value]) -> Result<Value, String> {
    let (Some(Value::Storage(_, st)), Some(Value::Int(off)), Some(Value::Tuple(size)), Some(Value::Tuple(stride))) =
        (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        return Err("malformed _rebuild_tensor_v2 arguments".into());
    };
    let ints = |v: &Rc<Vec<Value>>| -> Result<Vec<i64>, String> {
        v.iter().map(|x| if let Value::Int(i) = x { Ok(*i) } else { Err("non-int size/stride".to_string()) }).collect()
    };
    let (size, stride) = (ints(size)?, ints(stride)?);
    let numel = st.numel() as i64;
    let span: i64 = size.iter().zip(&stride).map(|(s, d)| if *s == 0 { 0 } else { (s - 1) * d }).sum();
    if size.contains(&0) {
        let t = Tensor::f_empty(size.as_slice(), (st.kind(), tch::Device::Cpu)).map_err(|e| e.to_string())?;
        return Ok(Value::Tensor(Rc::new(t)));
    }
    if *off < 0 || off + span >= numel {
        return Err(format!(
            "tensor view (offset {off}, size {size:?}, stride {stride:?}) exceeds its storage of {numel} elements"
        ));
    }
    let t = st
        .f_as_strided(size.as_slice(), stride.as_slice(), *off)
        .and_then(|v| v.f_contiguous())
        .map_err(|e| e.to_string())?;
    Ok(Value::Tensor(Rc::new(t)))
}
