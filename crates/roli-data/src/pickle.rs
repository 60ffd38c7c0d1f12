//! A minimal, safe pickle reader: enough of the pickle VM (protocols 0–4, binary opcodes) to read
//! the CIFAR "python version" batches, which are Python-2 `cPickle` dicts holding a numpy array.
//! Nothing is executed: `GLOBAL`/`REDUCE`/`BUILD` only build inert [`Value`] nodes.
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
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as usize)
    }
    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()) as usize)
    }
    fn line(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
            self.pos += 1;
        }
        let s = String::from_utf8_lossy(&self.b[start..self.pos]).into_owned();
        self.pos += 1;
        Ok(s)
    }
}

/// Parses a pickle byte stream into a [`Value`].
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader { b: bytes, pos: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<usize, Value> = HashMap::new();
    fn pop(stack: &mut Vec<Value>) -> Result<Value, String> {
        stack.pop().ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn pop_mark(stack: &mut Vec<Value>, marks: &mut Vec<usize>) -> Result<Vec<Value>, String> {
        let m = marks.pop().ok_or("pickle MARK missing")?;
        if m > stack.len() {
            return Err("pickle MARK beyond stack".into());
        }
        Ok(stack.split_off(m))
    }
    fn set_items(target: &mut Value, kv: Vec<Value>) -> Result<(), String> {
        let Value::Dict(d) = target else { return Err("SETITEMS on a non-dict".into()) };
        let mut it = kv.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?;
            } // PROTO
            0x95 => {
                r.take(8)?;
            } // FRAME
            b'.' => return pop(&mut stack),
            b'(' => marks.push(stack.len()),
            b'}' => stack.push(Value::Dict(vec![])),
            b']' => stack.push(Value::List(vec![])),
            b')' => stack.push(Value::Tuple(vec![])),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(r.take(4)?.try_into().unwrap());
                stack.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = r.u8()?;
                stack.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = r.u16()?;
                stack.push(Value::Int(v as i64));
            }
            0x8a => {
                let n = r.u8()? as usize;
                let b = r.take(n)?;
                if n > 8 {
                    return Err("LONG1 wider than 64 bits".into());
                }
                let mut buf = if b.last().is_some_and(|x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                buf[..n].copy_from_slice(b);
                stack.push(Value::Int(i64::from_le_bytes(buf)));
            }
            b'G' => {
                let v = f64::from_be_bytes(r.take(8)?.try_into().unwrap());
                stack.push(Value::Float(v));
            }
            b'U' => {
                let n = r.u8()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'T' => {
                let n = r.u32()?;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'C' => {
                let n = r.u8()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'B' => {
                let n = r.u32()?;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'X' => {
                let n = r.u32()?;
                stack.push(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned()));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned()));
            }
            b'q' => {
                let i = r.u8()? as usize;
                memo.insert(i, stack.last().cloned().ok_or("BINPUT on empty stack")?);
            }
            b'r' => {
                let i = r.u32()?;
                memo.insert(i, stack.last().cloned().ok_or("LONG_BINPUT on empty stack")?);
            }
            0x94 => {
                let i = memo.len();
                memo.insert(i, stack.last().cloned().ok_or("MEMOIZE on empty stack")?);
            }
            b'h' => {
                let i = r.u8()? as usize;
                stack.push(memo.get(&i).cloned().ok_or("BINGET of unknown memo")?);
            }
            b'j' => {
                let i = r.u32()?;
                stack.push(memo.get(&i).cloned().ok_or("LONG_BINGET of unknown memo")?);
            }
            b'c' => {
                let m = r.line()?;
                let n = r.line()?;
                stack.push(Value::Global(format!("{m}.{n}")));
            }
            0x93 => {
                let n = pop(&mut stack)?;
                let m = pop(&mut stack)?;
                match (m, n) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(format!("{m}.{n}"))),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b't' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::Tuple(items));
            }
            0x85 => {
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a]));
            }
            0x86 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b]));
            }
            0x87 => {
                let c = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b, c]));
            }
            b'l' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::List(items));
            }
            b'd' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                let mut d = Value::Dict(vec![]);
                set_items(&mut d, items)?;
                stack.push(d);
            }
            b'a' => {
                let v = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => return Err("APPEND on a non-list".into()),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return Err("APPENDS on a non-list".into()),
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                set_items(stack.last_mut().ok_or("SETITEM on empty stack")?, vec![k, v])?;
            }
            b'u' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                set_items(stack.last_mut().ok_or("SETITEMS on empty stack")?, items)?;
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let f = pop(&mut stack)?;
                stack.push(Value::Reduce(Box::new(f), Box::new(args)));
            }
            b'b' => {
                let st = pop(&mut stack)?;
                let obj = pop(&mut stack)?;
                stack.push(Value::Build(Box::new(obj), Box::new(st)));
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at offset {}", r.pos - 1)),
        }
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
    fn truncated_and_unknown_opcode_are_errors() {
        assert!(parse(&[0x80, 2, b'}', b'U', 9, b'a']).unwrap_err().contains("truncated"));
        assert!(parse(&[0x80, 2, 0xff]).unwrap_err().contains("opcode"));
    }
}
