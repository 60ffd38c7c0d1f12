//! A minimal, safe pickle reader: enough of the pickle VM (protocols 0–4, binary opcodes) to read
//! the CIFAR "python version" batches, which are Python-2 `cPickle` dicts holding a numpy array.
//! Nothing is executed: `GLOBAL`/`REDUCE`/`BUILD` only build inert [`Value`] nodes.
//! `roli_models::torch_pickle` is a second pickle machine of the same shape; its module note
//! says why the two are not shared.
use std::collections::HashMap;

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// `module.name` of a GLOBAL.
    Global(String),
    /// `callable(*args)`, not evaluated.
    Reduce(Box<Value>, Box<Value>),
    /// `obj.__setstate__(state)`, not evaluated.
    Build(Box<Value>, Box<Value>),
}

impl Value {
    /// Dict lookup by string or bytes key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| match k {
                    Value::Str(s) => s == key,
                    other => other.as_bytes().is_some_and(|b| b == key.as_bytes()),
                })
                .map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_int_list(&self) -> Option<Vec<i64>> {
        match self {
            Value::List(v) | Value::Tuple(v) => {
                v.iter().map(|x| if let Value::Int(i) = x { Some(*i) } else { None }).collect()
            }
            _ => None,
        }
    }
    /// Bytes in any of the encodings pickles use: BINSTRING (Python 2 `str`), BINBYTES, or the
    /// protocol-2 Python-3 form `_codecs.encode(latin1_text, "latin1")`.
    pub fn as_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Value::Bytes(b) => Some(b.clone()),
            Value::Reduce(f, args) if matches!(f.as_ref(), Value::Global(g) if g == "_codecs.encode") => {
                match args.as_ref() {
                    Value::Tuple(a) => match a.first() {
                        Some(Value::Str(s)) => Some(s.chars().map(|c| c as u32 as u8).collect()),
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        }
    }
    /// A numpy array pickled as `_reconstruct(...)` + `BUILD((ver, shape, dtype, fortran, raw))`:
    /// returns (shape, raw bytes).
    pub fn as_numpy_bytes(&self) -> Option<(Vec<i64>, Vec<u8>)> {
        let Value::Build(_, state) = self else { return None };
        let Value::Tuple(st) = state.as_ref() else { return None };
        let shape = st.get(1)?.as_int_list()?;
        let raw = st.iter().rev().find_map(|v| v.as_bytes())?;
        Some((shape, raw))
    }
}

/// A cursor over a pickle stream.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.pos + n > self.b.len() {
            return Err(format!("truncated pickle: need {n} bytes at offset {}", self.pos));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]) as usize)
    }
    fn u32(&mut self) -> Result<usize, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }
    fn line(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
            self.pos += 1;
        }
        if self.pos >= self.b.len() {
            return Err("truncated pickle: a text line has no end".into());
        }
        let s = String::from_utf8_lossy(&self.b[start..self.pos]).into_owned();
        self.pos += 1;
        Ok(s)
    }
}

/// Deepest nesting accepted (CIFAR batches nest 4 deep). Bounded because `Value` is an owned
/// tree whose drop, clone and comparison recurse: 200,000 nested TUPLE1 opcodes (200 KB)
/// overflowed the stack.
pub const MAX_DEPTH: u32 = 512;

/// Parses a pickle byte stream into a [`Value`].
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    // Memo copies may add up to the input's size again plus 1 Mi nodes: a real batch memoises
    // its data array once, while `h0 h0 TUPLE2 q0` repeated doubles a value per 7 bytes.
    let copy_budget = 2 * bytes.len() as u64 + (1 << 20);
    Machine { r: Reader { b: bytes, pos: 0 }, stack: vec![], marks: vec![], memo: HashMap::new(), copy_budget }.run()
}

/// Appends `k1, v1, k2, v2, …` to a dict (a trailing lone key is dropped).
fn set_items(target: &mut Value, kv: Vec<Value>) -> Result<(), String> {
    let Value::Dict(d) = target else { return Err("SETITEMS on a non-dict".into()) };
    let mut it = kv.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        d.push((k, v));
    }
    Ok(())
}

/// A stack or memo entry: a value with its nesting depth and its size (nodes plus payload
/// bytes), carried up as containers are built so neither needs a walk of the tree.
#[derive(Clone)]
struct Node {
    v: Value,
    depth: u32,
    weight: u64,
}

impl Node {
    fn leaf(v: Value) -> Node {
        let payload = match &v {
            Value::Bytes(b) => b.len(),
            Value::Str(s) | Value::Global(s) => s.len(),
            _ => 0,
        };
        Node { v, depth: 0, weight: 1 + payload as u64 }
    }
    /// Depth and weight that `children` add to a container holding them.
    fn summary(children: &[Node]) -> (u32, u64) {
        let depth = children.iter().map(|c| c.depth + 1).max().unwrap_or(0);
        (depth, children.iter().map(|c| c.weight).sum())
    }
    /// A container made by `make` from `children`.
    fn wrap(children: Vec<Node>, make: impl FnOnce(Vec<Value>) -> Value) -> Node {
        let (depth, weight) = Self::summary(&children);
        Node { v: make(children.into_iter().map(|c| c.v).collect()), depth, weight: 1 + weight }
    }
}

/// The pickle machine: one method per opcode group, each returning whether it knew the opcode.
/// Same shape as `roli_models::torch_pickle`'s; see the note there on why the two stay apart.
struct Machine<'a> {
    r: Reader<'a>,
    stack: Vec<Node>,
    marks: Vec<usize>,
    memo: HashMap<usize, Node>,
    /// Weight that memo copies (BINPUT/BINGET) may still make.
    copy_budget: u64,
}

impl Machine<'_> {
    fn pop(&mut self) -> Result<Node, String> {
        self.stack.pop().ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> Result<Vec<Node>, String> {
        let m = self.marks.pop().ok_or("pickle MARK missing")?;
        if m > self.stack.len() {
            return Err("pickle MARK beyond stack".into());
        }
        Ok(self.stack.split_off(m))
    }
    /// Pushes `n` and reports the opcode as known (the tail of most opcode groups).
    fn push_known(&mut self, n: Node) -> Result<bool, String> {
        if n.depth > MAX_DEPTH {
            return Err(format!("pickle nests deeper than {MAX_DEPTH} levels"));
        }
        self.stack.push(n);
        Ok(true)
    }
    /// Charges a memo copy of `weight` to the budget, before the copy is made.
    fn charge(&mut self, weight: u64) -> Result<(), String> {
        self.copy_budget = self.copy_budget.checked_sub(weight).ok_or_else(|| {
            "pickle memo references expand far beyond the file's size (a 'billion laughs' input)".to_string()
        })?;
        Ok(())
    }
    /// Adds `items` to the list or dict on top of the stack (APPEND(S), SETITEM(S)).
    fn extend_top(&mut self, items: Vec<Node>, name: &str) -> Result<(), String> {
        let (depth, weight) = Node::summary(&items);
        let top = self.stack.last_mut().ok_or_else(|| format!("{name} on empty stack"))?;
        let values = items.into_iter().map(|n| n.v).collect::<Vec<_>>();
        match (&mut top.v, name.starts_with("APPEND")) {
            (Value::List(l), true) => l.extend(values),
            (d @ Value::Dict(_), false) => set_items(d, values)?,
            _ => return Err(format!("{name} on a non-{}", if name.starts_with("APPEND") { "list" } else { "dict" })),
        }
        top.depth = top.depth.max(depth);
        top.weight += weight;
        if top.depth > MAX_DEPTH {
            return Err(format!("pickle nests deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let op = self.r.u8()?;
            if op == b'.' {
                return Ok(self.pop()?.v); // STOP
            }
            let known = self.control(op)?
                || self.scalar(op)?
                || self.text(op)?
                || self.collection(op)?
                || self.fill(op)?
                || self.memo_op(op)?
                || self.object(op)?;
            if !known {
                return Err(format!("unsupported pickle opcode 0x{op:02x} at offset {}", self.r.pos - 1));
            }
        }
    }

    /// PROTO, FRAME, MARK.
    fn control(&mut self, op: u8) -> Result<bool, String> {
        match op {
            0x80 => {
                self.r.u8()?;
            }
            0x95 => {
                self.r.take(8)?;
            }
            b'(' => self.marks.push(self.stack.len()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// NONE, NEWTRUE/NEWFALSE, BININT/BININT1/BININT2, LONG1 (≤ 64 bits), BINFLOAT.
    fn scalar(&mut self, op: u8) -> Result<bool, String> {
        let v = match op {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(i32::from_le_bytes(self.r.take(4)?.try_into().unwrap()) as i64),
            b'K' => Value::Int(self.r.u8()? as i64),
            b'M' => Value::Int(self.r.u16()? as i64),
            0x8a => {
                let n = self.r.u8()? as usize;
                let b = self.r.take(n)?;
                if n > 8 {
                    return Err("LONG1 wider than 64 bits".into());
                }
                let mut buf = if b.last().is_some_and(|x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                buf[..n].copy_from_slice(b);
                Value::Int(i64::from_le_bytes(buf))
            }
            b'G' => Value::Float(f64::from_be_bytes(self.r.take(8)?.try_into().unwrap())),
            _ => return Ok(false),
        };
        self.push_known(Node::leaf(v))
    }

    /// SHORT_BINSTRING/BINSTRING (Python 2 `str`, read as bytes), SHORT_BINBYTES/BINBYTES,
    /// BINUNICODE/SHORT_BINUNICODE.
    fn text(&mut self, op: u8) -> Result<bool, String> {
        let n = match op {
            b'U' | b'C' | 0x8c => self.r.u8()? as usize,
            b'T' | b'B' | b'X' => self.r.u32()?,
            _ => return Ok(false),
        };
        let s = self.r.take(n)?;
        let v = if matches!(op, b'X' | 0x8c) {
            Value::Str(String::from_utf8_lossy(s).into_owned())
        } else {
            Value::Bytes(s.to_vec())
        };
        self.push_known(Node::leaf(v))
    }

    /// Opcodes that build a tuple, list or dict.
    fn collection(&mut self, op: u8) -> Result<bool, String> {
        let n = match op {
            b'}' => Node::leaf(Value::Dict(vec![])),
            b']' => Node::leaf(Value::List(vec![])),
            b')' => Node::leaf(Value::Tuple(vec![])),
            b't' => Node::wrap(self.pop_mark()?, Value::Tuple),
            0x85..=0x87 => {
                let mut items = Vec::new();
                for _ in 0x84..op {
                    items.push(self.pop()?);
                }
                items.reverse();
                Node::wrap(items, Value::Tuple)
            }
            b'l' => Node::wrap(self.pop_mark()?, Value::List),
            b'd' => Node::wrap(self.pop_mark()?, |kv| {
                let mut d = Value::Dict(vec![]);
                let _fresh_dict_cannot_fail = set_items(&mut d, kv);
                d
            }),
            _ => return Ok(false),
        };
        self.push_known(n)
    }

    /// APPEND(S), SETITEM(S): fill the list or dict on top of the stack.
    fn fill(&mut self, op: u8) -> Result<bool, String> {
        match op {
            b'a' => {
                let item = self.pop()?;
                self.extend_top(vec![item], "APPEND")?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_top(items, "APPENDS")?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.extend_top(vec![k, v], "SETITEM")?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.extend_top(items, "SETITEMS")?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET. Copies are charged to the budget.
    fn memo_op(&mut self, op: u8) -> Result<bool, String> {
        match op {
            b'q' | b'r' | 0x94 => {
                let (i, name) = match op {
                    b'q' => (self.r.u8()? as usize, "BINPUT"),
                    b'r' => (self.r.u32()?, "LONG_BINPUT"),
                    _ => (self.memo.len(), "MEMOIZE"),
                };
                let weight = self.stack.last().map(|n| n.weight).ok_or_else(|| format!("{name} on empty stack"))?;
                self.charge(weight)?;
                if let Some(top) = self.stack.last() {
                    self.memo.insert(i, top.clone());
                }
                Ok(true)
            }
            b'h' | b'j' => {
                let (i, name) =
                    if op == b'h' { (self.r.u8()? as usize, "BINGET") } else { (self.r.u32()?, "LONG_BINGET") };
                let weight = self.memo.get(&i).map(|n| n.weight).ok_or_else(|| format!("{name} of unknown memo"))?;
                self.charge(weight)?;
                let n = self.memo.get(&i).cloned().ok_or_else(|| format!("{name} of unknown memo"))?;
                self.push_known(n)
            }
            _ => Ok(false),
        }
    }

    /// GLOBAL, STACK_GLOBAL, REDUCE/NEWOBJ, BUILD: inert nodes, nothing is called.
    fn object(&mut self, op: u8) -> Result<bool, String> {
        let n = match op {
            b'c' => {
                let m = self.r.line()?;
                let n = self.r.line()?;
                Node::leaf(Value::Global(format!("{m}.{n}")))
            }
            0x93 => {
                let n = self.pop()?;
                let m = self.pop()?;
                match (m.v, n.v) {
                    (Value::Str(m), Value::Str(n)) => Node::leaf(Value::Global(format!("{m}.{n}"))),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'R' | 0x81 | b'b' => {
                let second = self.pop()?;
                let first = self.pop()?;
                let pair = |mut v: Vec<Value>| {
                    let (b, a) = (v.pop().unwrap_or(Value::None), v.pop().unwrap_or(Value::None));
                    if op == b'b' {
                        Value::Build(Box::new(a), Box::new(b))
                    } else {
                        Value::Reduce(Box::new(a), Box::new(b))
                    }
                };
                Node::wrap(vec![first, second], pair)
            }
            _ => return Ok(false),
        };
        self.push_known(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python2_style_cifar_dict() {
        // Hand-assembled protocol-2 pickle: {'labels': [1, 300], 'data': <numpy 1x2 uint8 "\x05\x06">}
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'U', 6];
        p.extend(b"labels");
        p.extend([b']', b'(', b'K', 1, b'M', 0x2c, 0x01, b'e']);
        p.extend([b'U', 4]);
        p.extend(b"data");
        p.extend(b"cnumpy.core.multiarray\n_reconstruct\n");
        p.extend([b')', b'R']);
        p.extend([b'(', b'K', 1, b'K', 1, b'K', 2, 0x86, b'N', 0x89, b'U', 2, 5, 6, b't', b'b']);
        p.extend([b'u', b'.']);
        let v = parse(&p).unwrap();
        assert_eq!(v.get("labels").unwrap().as_int_list().unwrap(), vec![1, 300]);
        let (shape, raw) = v.get("data").unwrap().as_numpy_bytes().unwrap();
        assert_eq!(shape, vec![1, 2]);
        assert_eq!(raw, vec![5, 6]);
    }

    #[test]
    fn lengths_claiming_more_than_the_input_are_errors_before_any_allocation() {
        // BINBYTES / BINSTRING / BINUNICODE claiming 4 GiB, LONG_BINPUT at index 2^32-1.
        for op in [b'B', b'T', b'X'] {
            assert!(parse(&[0x80, 2, op, 0xff, 0xff, 0xff, 0xff, b'.']).unwrap_err().contains("truncated"));
        }
        assert!(parse(&[b'N', b'r', 0xff, 0xff, 0xff, 0xff, b'.']).is_ok());
    }

    #[test]
    fn memo_doubling_is_refused_quickly() {
        // Regression (billion laughs): `]q0` then 40 × `h0 h0 TUPLE2 q0` (285 bytes) doubled a
        // memoised value 40 times: 2⁴⁰ nodes, a hang until memory ran out.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..40 {
            p.extend([b'h', 0, b'h', 0, 0x86, b'q', 0]);
        }
        p.push(b'.');
        let t = std::time::Instant::now();
        assert!(parse(&p).unwrap_err().contains("billion laughs"));
        assert!(t.elapsed().as_secs() < 2);
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // Regression: 200,000 nested TUPLE1 opcodes parsed, then dropping the value overflowed
        // the stack (an abort, not a panic).
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat_n(0x85, 200_000));
        p.push(b'.');
        assert!(parse(&p).unwrap_err().contains("deeper than 512"));
        let mut ok = vec![0x80, 2, b'N'];
        ok.extend(std::iter::repeat_n(0x85, MAX_DEPTH as usize));
        ok.push(b'.');
        assert!(parse(&ok).is_ok());
        // The same through lists filled by APPEND.
        let mut l = vec![0x80, 2, b']'];
        for _ in 0..1000 {
            l.extend([b']', b'(']);
        }
        l.push(b'N');
        l.extend(std::iter::repeat_n(b'e', 1000));
        l.push(b'.');
        assert!(parse(&l).unwrap_err().contains("deeper"));
    }

    #[test]
    fn truncated_and_unknown_opcode_are_errors() {
        assert!(parse(&[0x80, 2, b'}', b'U', 9, b'a']).unwrap_err().contains("truncated"));
        assert!(parse(&[0x80, 2, 0xff]).unwrap_err().contains("opcode"));
        // A GLOBAL whose name line never ends (a cut file) is an error, not a panic.
        for cut in [&b"c__main__"[..], b"c__main__\nFoo", b"\x80\x02cnumpy\ndtyp"] {
            assert!(parse(cut).unwrap_err().contains("truncated"), "{cut:?}");
        }
    }
}
