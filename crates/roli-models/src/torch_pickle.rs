//! A reader for PyTorch's `torch.save` zip format (PyTorch ≥ 1.6): a stored (uncompressed) zip
//! archive with `<prefix>/data.pkl` (pickle protocol 2) and one `<prefix>/data/<key>` file per
//! storage. libtorch's `_load_parameters` (tch's `loadz_multi`) reads only flat
//! `{name: tensor}` files; this reader also handles `{"model": sd}`, `{"state_dict": sd}`, extra
//! non-tensor entries (epochs, argparse namespaces) and `nn.Parameter`s. Classes other than
//! tensors, dicts and lists become opaque objects; no code is ever executed.

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
    /// name → (data start, data end, compression method)
    entries: HashMap<String, (usize, usize, u16)>,
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
        let min = data.len().saturating_sub(22 + 65_535);
        let eocd = (min..=data.len().saturating_sub(22))
            .rev()
            .find(|&i| u32le(data, i) == Some(0x0605_4b50))
            .ok_or("zip end-of-central-directory record not found (file truncated?)")?;
        let mut n = u16le(data, eocd + 10).ok_or("short EOCD")? as u64;
        let mut cd = u32le(data, eocd + 16).ok_or("short EOCD")? as u64;
        if n == 0xFFFF || cd == 0xFFFF_FFFF {
            let loc =
                eocd.checked_sub(20).filter(|&l| u32le(data, l) == Some(0x0706_4b50)).ok_or("zip64 locator missing")?;
            let z = u64le(data, loc + 8).ok_or("short zip64 locator")? as usize;
            if u32le(data, z) != Some(0x0606_4b50) {
                return Err("zip64 end record missing".into());
            }
            n = u64le(data, z + 32).ok_or("short zip64 record")?;
            cd = u64le(data, z + 48).ok_or("short zip64 record")?;
        }
        let mut entries = HashMap::new();
        let mut o = cd as usize;
        for _ in 0..n {
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
            // zip64 extra field: present values replace the 0xFFFFFFFF placeholders in order
            let extra = data.get(o + 46 + nlen..o + 46 + nlen + elen).ok_or("short extra field")?;
            let mut e = 0;
            while e + 4 <= extra.len() {
                let id = u16le(extra, e).unwrap_or(0);
                let sz = u16le(extra, e + 2).unwrap_or(0) as usize;
                if id == 1 {
                    let mut f = e + 4;
                    for slot in [&mut usize_, &mut csize, &mut local] {
                        if *slot == 0xFFFF_FFFF {
                            *slot = u64le(extra, f).ok_or("short zip64 extra")?;
                            f += 8;
                        }
                    }
                }
                e += 4 + sz;
            }
            let l = local as usize;
            if u32le(data, l) != Some(0x0403_4b50) {
                return Err(format!("bad local header for {name}"));
            }
            let start = l
                + 30
                + u16le(data, l + 26).ok_or("short local header")? as usize
                + u16le(data, l + 28).ok_or("short local header")? as usize;
            let end = start + csize as usize;
            if end > data.len() {
                return Err(format!("entry {name} extends past the end of the file (truncated?)"));
            }
            entries.insert(name, (start, end, method));
            o += 46 + nlen + elen + clen;
        }
        Ok(Zip { data, entries })
    }

    /// The bytes of a stored entry; None if absent, Err if compressed (torch.save never
    /// compresses, so that means another kind of zip).
    fn get(&self, name: &str) -> Result<Option<&'a [u8]>, String> {
        match self.entries.get(name) {
            None => Ok(None),
            Some(&(s, e, 0)) => Ok(Some(&self.data[s..e])),
            Some(&(_, _, m)) => {
                Err(format!("entry {name} is compressed (method {m}); torch.save writes stored entries"))
            }
        }
    }
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
    let pkl_name = zip
        .entries
        .keys()
        .filter(|k| k.ends_with("data.pkl") && k.matches('/').count() == 1)
        .min()
        .cloned()
        .ok_or_else(|| CheckpointError::NotACheckpoint {
            file: file.to_path_buf(),
            reason: "zip archive without a `<name>/data.pkl` entry (not written by torch.save)".into(),
        })?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    if is_torchscript(&zip, &prefix) {
        return Err(CheckpointError::Unsupported {
            file: file.to_path_buf(),
            reason: "this is a TorchScript module, not a state dict; use it through roli_models::script (bring-your-own model)".into(),
        });
    }
    if let Some(order) = zip.get(&format!("{prefix}byteorder")).map_err(corrupt)? {
        if order != b"little" {
            return Err(CheckpointError::Unsupported {
                file: file.to_path_buf(),
                reason: "big-endian checkpoint".into(),
            });
        }
    }
    let pkl = zip.get(&pkl_name).map_err(corrupt)?.unwrap_or_default();
    let mut u = Unpickler {
        file,
        zip: &zip,
        prefix,
        data: pkl,
        pos: 0,
        stack: vec![],
        marks: vec![],
        memo: HashMap::new(),
        storages: HashMap::new(),
    };
    u.run().map_err(corrupt)
}

struct Unpickler<'a> {
    file: &'a Path,
    zip: &'a Zip<'a>,
    prefix: String,
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: HashMap<String, Rc<Tensor>>,
}

impl Unpickler<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let s = self.data.get(self.pos..self.pos + n).ok_or("pickle stream ends early")?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = self.data.get(self.pos..).ok_or("pickle stream ends early")?;
        let n = rest.iter().position(|&b| b == b'\n').ok_or("unterminated GLOBAL line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
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
    fn str_of(&mut self, n: usize) -> Result<Value, String> {
        let s = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(s).into_owned()))
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Value::Dict(Rc::new(RefCell::new(vec![])))),
                b']' => self.stack.push(Value::List(Rc::new(RefCell::new(vec![])))),
                b')' => self.stack.push(Value::Tuple(Rc::new(vec![]))),
                0x8f => self.stack.push(Value::List(Rc::new(RefCell::new(vec![])))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs =
                        items.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect();
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.borrow_mut().push((k, v)),
                        Value::Object(_) => {}
                        other => return Err(format!("SETITEM on {}", other.type_name())),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::Dict(d) => {
                            let mut d = d.borrow_mut();
                            for c in items.chunks(2).filter(|c| c.len() == 2) {
                                d.push((c[0].clone(), c[1].clone()));
                            }
                        }
                        Value::Object(_) => {}
                        other => return Err(format!("SETITEMS on {}", other.type_name())),
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        Value::Object(_) => {}
                        other => return Err(format!("APPEND on {}", other.type_name())),
                    }
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        Value::Object(_) => {}
                        other => return Err(format!("APPENDS on {}", other.type_name())),
                    }
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let s = self.take(2)?;
                    let v = u16::from_le_bytes([s[0], s[1]]) as i64;
                    self.stack.push(Value::Int(v));
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.stack.push(Value::Int(v));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as usize } else { self.u32()? as usize };
                    let s = self.take(n)?;
                    let mut v: i128 = 0;
                    for (i, b) in s.iter().enumerate().take(16) {
                        v |= (*b as i128) << (8 * i);
                    }
                    if n > 0 && n < 16 && s[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.stack.push(Value::Int(v as i64));
                }
                b'G' => {
                    let s = self.take(8)?;
                    let v = f64::from_be_bytes(s.try_into().map_err(|_| "bad float")?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v);
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v);
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let s = self.take(8)?;
                    let n = u64::from_le_bytes(s.try_into().map_err(|_| "bad length")?) as usize;
                    let v = self.str_of(n)?;
                    self.stack.push(v);
                }
                b'C' | b'B' => {
                    let n = if op == b'C' { self.u8()? as usize } else { self.u32()? as usize };
                    let v = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(v));
                }
                b'c' => {
                    let m = self.line()?;
                    let n = self.line()?;
                    self.stack.push(Value::Global(m, n));
                }
                0x93 => {
                    let n = self.pop()?;
                    let m = self.pop()?;
                    match (m, n) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' { self.u8()? as u32 } else { self.u32()? };
                    let v = self.memo.get(&i).cloned().ok_or_else(|| format!("pickle memo {i} missing"))?;
                    self.stack.push(v);
                }
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
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(f, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Object(cls.type_name()));
                }
                b'b' => {
                    // BUILD: object state (OrderedDict._metadata, Namespace fields): not needed
                    self.pop()?;
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", self.pos - 1)),
            }
        }
    }

    fn persistent_load(&mut self, pid: Value) -> Result<Value, String> {
        let Value::Tuple(t) = pid else {
            return Err("persistent id is not a tuple".into());
        };
        match t.as_slice() {
            [Value::Str(tag), Value::Global(_, ty), Value::Str(key), _loc, Value::Int(numel)] if tag == "storage" => {
                let kind = storage_kind(ty).ok_or_else(|| format!("unsupported storage type {ty}"))?;
                if let Some(s) = self.storages.get(key) {
                    return Ok(Value::Storage(kind, s.clone()));
                }
                let name = format!("{}data/{key}", self.prefix);
                let bytes =
                    self.zip.get(&name)?.ok_or_else(|| format!("storage file {name} missing from the archive"))?;
                let need = *numel as usize * kind.elt_size_in_bytes();
                if bytes.len() < need {
                    return Err(format!("storage {name} has {} bytes, expected {need} (truncated?)", bytes.len()));
                }
                let t = Tensor::f_from_data_size(&bytes[..need], &[*numel], kind)
                    .map_err(|e| format!("storage {name}: {e}"))?;
                let t = Rc::new(t);
                self.storages.insert(key.clone(), t.clone());
                Ok(Value::Storage(kind, t))
            }
            _ => Err(format!("unsupported persistent id in {}", self.file.display())),
        }
    }

    fn reduce(&mut self, f: Value, args: Value) -> Result<Value, String> {
        let Value::Global(m, n) = &f else {
            return Ok(Value::Object(f.type_name()));
        };
        let args = match args {
            Value::Tuple(t) => t,
            other => Rc::new(vec![other]),
        };
        match (m.as_str(), n.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                let (
                    Some(Value::Storage(_, st)),
                    Some(Value::Int(off)),
                    Some(Value::Tuple(size)),
                    Some(Value::Tuple(stride)),
                ) = (args.first(), args.get(1), args.get(2), args.get(3))
                else {
                    return Err("malformed _rebuild_tensor_v2 arguments".into());
                };
                let ints = |v: &Rc<Vec<Value>>| -> Result<Vec<i64>, String> {
                    v.iter()
                        .map(|x| if let Value::Int(i) = x { Ok(*i) } else { Err("non-int size/stride".to_string()) })
                        .collect()
                };
                let (size, stride) = (ints(size)?, ints(stride)?);
                let numel = st.numel() as i64;
                let span: i64 = size.iter().zip(&stride).map(|(s, d)| if *s == 0 { 0 } else { (s - 1) * d }).sum();
                if size.contains(&0) {
                    let t =
                        Tensor::f_empty(size.as_slice(), (st.kind(), tch::Device::Cpu)).map_err(|e| e.to_string())?;
                    return Ok(Value::Tensor(Rc::new(t)));
                }
                if *off < 0 || off + span >= numel {
                    return Err(format!("tensor view (offset {off}, size {size:?}, stride {stride:?}) exceeds its storage of {numel} elements"));
                }
                let t = st
                    .f_as_strided(size.as_slice(), stride.as_slice(), *off)
                    .and_then(|v| v.f_contiguous())
                    .map_err(|e| e.to_string())?;
                Ok(Value::Tensor(Rc::new(t)))
            }
            ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
                args.first().cloned().ok_or_else(|| "empty _rebuild_parameter".into())
            }
            ("collections", "OrderedDict") => Ok(Value::Dict(Rc::new(RefCell::new(vec![])))),
            ("builtins", "set") | ("builtins", "frozenset") | ("__builtin__", "set") => {
                Ok(Value::List(Rc::new(RefCell::new(vec![]))))
            }
            _ => Ok(Value::Object(format!("{m}.{n}"))),
        }
    }
}
