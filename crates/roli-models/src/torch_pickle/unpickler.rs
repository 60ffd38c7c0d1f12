//! The pickle machine: a byte cursor and one method per opcode group; REDUCE evaluates only the
//! tensor and parameter rebuilders against the zip's storages.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use tch::Tensor;

use super::zip::Zip;
use super::{storage_kind, Value};

/// A cursor over a pickle stream.
pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("pickle stream ends early")?;
        let s = self.data.get(self.pos..end).ok_or("pickle stream ends early")?;
        self.pos = end;
        Ok(s)
    }
    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    pub(super) fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "bad length")?))
    }
    pub(super) fn line(&mut self) -> Result<String, String> {
        let rest = self.data.get(self.pos..).ok_or("pickle stream ends early")?;
        let n = rest.iter().position(|&b| b == b'\n').ok_or("unterminated GLOBAL line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
}

/// Bytes a clone of `v` copies (containers, tensors and storages are shared `Rc`s: 1).
fn copy_cost(v: &Value) -> u64 {
    1 + match v {
        Value::Str(s) | Value::Object(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Global(m, n) => m.len() + n.len(),
        _ => 0,
    } as u64
}

/// Decodes a LONG1/LONG4 little-endian two's-complement integer (truncated to 64 bits).
pub(super) fn decode_long(s: &[u8]) -> i64 {
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

pub(super) fn new_dict(pairs: Vec<(Value, Value)>) -> Value {
    Value::Dict(Rc::new(RefCell::new(pairs)))
}
pub(super) fn new_list(items: Vec<Value>) -> Value {
    Value::List(Rc::new(RefCell::new(items)))
}

/// Pairs up `k1, v1, k2, v2, …` (a trailing lone key is dropped).
pub(super) fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

/// The pickle machine: one method per opcode group, each returning whether it knew the opcode.
pub(super) struct Unpickler<'a> {
    file: &'a Path,
    zip: &'a Zip<'a>,
    prefix: String,
    r: Reader<'a>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: HashMap<String, Rc<Tensor>>,
    /// Bytes that DUP and memo copies may still make: strings are copied, not shared, so
    /// `h0` repeated after one long string multiplied it (a 64 KB file held 512 MB).
    copy_budget: u64,
    /// Values dropped while running (POP, BUILD state, call arguments, overwritten memo
    /// entries), kept to be disposed of without recursion when the machine is dropped.
    trash: Vec<Value>,
}

impl Drop for Unpickler<'_> {
    /// The leftover stack and memo may nest arbitrarily deep: dropped without recursion.
    fn drop(&mut self) {
        let mut rest = std::mem::take(&mut self.stack);
        rest.extend(std::mem::take(&mut self.memo).into_values());
        rest.append(&mut self.trash);
        super::dispose(rest);
    }
}

impl<'a> Unpickler<'a> {
    pub(super) fn new(file: &'a Path, zip: &'a Zip<'a>, prefix: String, data: &'a [u8]) -> Self {
        Unpickler {
            file,
            zip,
            prefix,
            r: Reader { data, pos: 0 },
            stack: vec![],
            marks: vec![],
            memo: HashMap::new(),
            storages: HashMap::new(),
            trash: vec![],
            copy_budget: 2 * data.len() as u64 + (1 << 20),
        }
    }

    pub(super) fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| "pickle stack underflow".to_string())
    }
    /// The two top values (below, top), checked before either is popped so an underflow
    /// drops nothing (a dropped value may nest deep).
    pub(super) fn pop2(&mut self) -> Result<(Value, Value), String> {
        if self.stack.len() < 2 {
            return Err("pickle stack underflow".into());
        }
        let top = self.pop()?;
        Ok((self.pop()?, top))
    }
    /// `items` with a trailing lone key (which `pairs` would drop) moved to the trash.
    fn even(&mut self, mut items: Vec<Value>) -> Vec<Value> {
        if items.len() % 2 == 1 {
            self.trash.extend(items.pop());
        }
        items
    }
    pub(super) fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self.marks.pop().ok_or("pickle MARK missing")?;
        if m > self.stack.len() {
            return Err("pickle MARK beyond stack".into());
        }
        Ok(self.stack.split_off(m))
    }
    /// Charges a copy of `cost` bytes to the budget, before it is made.
    fn charge(&mut self, cost: u64) -> Result<(), String> {
        self.copy_budget = self
            .copy_budget
            .checked_sub(cost)
            .ok_or("pickle DUP/memo copies expand far beyond the file's size (a 'billion laughs' input)")?;
        Ok(())
    }
    /// A charged copy of the top of the stack.
    fn copy_top(&mut self) -> Result<Value, String> {
        let cost = copy_cost(self.top()?);
        self.charge(cost)?;
        Ok(self.top()?.clone())
    }
    pub(super) fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| "pickle stack underflow".to_string())
    }
    /// Pushes `v` and reports the opcode as known (the tail of most opcode groups).
    pub(super) fn push_known(&mut self, v: Value) -> Result<bool, String> {
        self.stack.push(v);
        Ok(true)
    }

    pub(super) fn run(&mut self) -> Result<Value, String> {
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
    pub(super) fn control(&mut self, op: u8) -> Result<bool, String> {
        match op {
            0x80 => {
                self.r.u8()?;
            }
            0x95 => {
                self.r.take(8)?;
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                let v = self.pop()?;
                self.trash.push(v);
            }
            b'1' => {
                let items = self.pop_mark()?;
                self.trash.extend(items);
            }
            b'2' => {
                let v = self.copy_top()?;
                self.stack.push(v);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// NONE, NEWTRUE/NEWFALSE, BININT1/BININT2/BININT, LONG1/LONG4, BINFLOAT.
    pub(super) fn scalar(&mut self, op: u8) -> Result<bool, String> {
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
    pub(super) fn text(&mut self, op: u8) -> Result<bool, String> {
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
    pub(super) fn collection(&mut self, op: u8) -> Result<bool, String> {
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
            b'd' => {
                let items = self.pop_mark()?;
                new_dict(pairs(self.even(items)))
            }
            _ => return Ok(false),
        };
        self.push_known(v)
    }

    /// SETITEM(S), APPEND(S), ADDITEMS: fill the collection on top of the stack. An opaque
    /// object's state is not needed and is skipped.
    pub(super) fn fill(&mut self, op: u8) -> Result<bool, String> {
        let (items, name) = match op {
            b's' => {
                let (k, v) = self.pop2()?;
                (vec![k, v], "SETITEM")
            }
            b'u' => {
                let items = self.pop_mark()?;
                (self.even(items), "SETITEMS")
            }
            b'a' => (vec![self.pop()?], "APPEND"),
            b'e' | 0x90 => (self.pop_mark()?, "APPENDS"),
            _ => return Ok(false),
        };
        let refused = match self.top() {
            Ok(Value::Dict(d)) if matches!(op, b's' | b'u') => {
                d.borrow_mut().extend(pairs(items));
                return Ok(true);
            }
            Ok(Value::List(l)) if !matches!(op, b's' | b'u') => {
                l.borrow_mut().extend(items);
                return Ok(true);
            }
            Ok(Value::Object(_)) => None,
            Ok(other) => Some(format!("{name} on {}", other.type_name())),
            Err(e) => Some(e),
        };
        self.trash.extend(items);
        if let Some(e) = refused {
            return Err(e);
        }
        Ok(true)
    }

    /// BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET.
    pub(super) fn memo_op(&mut self, op: u8) -> Result<bool, String> {
        match op {
            b'q' | b'r' | 0x94 => {
                let i = match op {
                    b'q' => self.r.u8()? as u32,
                    b'r' => self.r.u32()?,
                    _ => self.memo.len() as u32,
                };
                let v = self.copy_top()?;
                if let Some(old) = self.memo.insert(i, v) {
                    self.trash.push(old);
                }
                Ok(true)
            }
            b'h' | b'j' => {
                let i = if op == b'h' { self.r.u8()? as u32 } else { self.r.u32()? };
                let cost = self.memo.get(&i).map(copy_cost).ok_or_else(|| format!("pickle memo {i} missing"))?;
                self.charge(cost)?;
                let v = self.memo.get(&i).cloned().ok_or_else(|| format!("pickle memo {i} missing"))?;
                self.push_known(v)
            }
            _ => Ok(false),
        }
    }

    /// GLOBAL, STACK_GLOBAL, BINPERSID, REDUCE, NEWOBJ, BUILD.
    pub(super) fn object(&mut self, op: u8) -> Result<bool, String> {
        let v = match op {
            b'c' => {
                let m = self.r.line()?;
                Value::Global(m, self.r.line()?)
            }
            0x93 => {
                let (m, n) = self.pop2()?;
                let global = match (&m, &n) {
                    (Value::Str(m), Value::Str(n)) => Some(Value::Global(m.clone(), n.clone())),
                    _ => None,
                };
                self.trash.extend([m, n]);
                global.ok_or("STACK_GLOBAL needs two strings")?
            }
            b'Q' => {
                let pid = self.pop()?;
                let r = self.persistent_load(pid.clone());
                self.trash.push(pid);
                r?
            }
            b'R' => {
                let (f, args) = self.pop2()?;
                let r = reduce(f.clone(), args.clone());
                self.trash.extend([f, args]);
                r?
            }
            0x81 => {
                let (cls, args) = self.pop2()?;
                let v = Value::Object(cls.type_name());
                self.trash.extend([args, cls]);
                v
            }
            b'b' => {
                // BUILD: object state (OrderedDict._metadata, Namespace fields): not needed
                let state = self.pop()?;
                self.trash.push(state);
                return Ok(true);
            }
            _ => return Ok(false),
        };
        self.push_known(v)
    }

    /// Resolves a `("storage", type, key, location, numel)` persistent id to the storage's
    /// 1-D tensor, read once per key from `<prefix>data/<key>`.
    pub(super) fn persistent_load(&mut self, pid: Value) -> Result<Value, String> {
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
        // Checked: a negative or huge `numel` wrapped to a small `need`, and libtorch then
        // copied `numel` elements out of a shorter buffer.
        let need = usize::try_from(*numel)
            .ok()
            .and_then(|n| n.checked_mul(kind.elt_size_in_bytes()))
            .ok_or_else(|| format!("storage {name} claims {numel} elements"))?;
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
pub(super) fn reduce(f: Value, args: Value) -> Result<Value, String> {
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

/// Largest view (elements) that may exceed its storage (an expanded, stride-0 tensor).
const MAX_EXPANDED_NUMEL: i64 = 1 << 24;

/// `_rebuild_tensor_v2(storage, offset, size, stride, …)`: a contiguous copy of the view.
pub(super) fn rebuild_tensor(args: &[Value]) -> Result<Value, String> {
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
    let bad = || {
        format!("tensor view (offset {off}, size {size:?}, stride {stride:?}) is invalid for its storage of {numel} elements")
    };
    if size.len() != stride.len() || size.iter().chain(&stride).any(|&x| x < 0) {
        return Err(bad());
    }
    if size.contains(&0) {
        let t = Tensor::f_empty(size.as_slice(), (st.kind(), tch::Device::Cpu)).map_err(|e| e.to_string())?;
        return Ok(Value::Tensor(Rc::new(t)));
    }
    // Checked arithmetic: sizes and strides are untrusted. The contiguous copy below allocates
    // the view's element count, so it may exceed the storage only for small expanded views
    // (stride 0), never by a header claiming 10¹² elements.
    let span = size.iter().zip(&stride).try_fold(0i64, |acc, (s, d)| (s - 1).checked_mul(*d)?.checked_add(acc));
    let view_numel = size.iter().try_fold(1i64, |acc, s| acc.checked_mul(*s));
    match (span, view_numel) {
        (Some(_), Some(n)) if n <= numel.max(MAX_EXPANDED_NUMEL) => {}
        _ => return Err(bad()),
    }
    let span = span.unwrap_or(i64::MAX);
    if *off < 0 || off.checked_add(span).is_none_or(|end| end >= numel) {
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
