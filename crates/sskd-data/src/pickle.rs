//! A small pickle reader for data files (protocols 0–4): dicts, lists, tuples, numbers,
//! strings and numpy arrays (`_reconstruct` + `BUILD`), enough for the CIFAR python pickles
//! written by Python 2 or 3. Nothing in the file is executed.

use std::path::Path;
use std::rc::Rc;

use crate::DataError;

/// A value of a pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum PickleValue {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string (Python 2 `str`, Python 3 `bytes`).
    Bytes(Rc<[u8]>),
    /// A list.
    List(Vec<PickleValue>),
    /// A tuple.
    Tuple(Vec<PickleValue>),
    /// A dict, in file order.
    Dict(Vec<(PickleValue, PickleValue)>),
    /// A class or function reference `module.name`.
    Global(String, String),
    /// A numpy dtype (`'|u1'`, `'<f4'`, …).
    Dtype(String),
    /// A numpy array: shape, dtype and raw bytes (C order).
    NdArray {
        /// The shape.
        shape: Vec<usize>,
        /// The dtype string.
        dtype: String,
        /// The raw data.
        bytes: Rc<[u8]>,
    },
    /// Any other object: the callable and its arguments.
    Object(Box<PickleValue>, Box<PickleValue>),
}

impl PickleValue {
    /// The entries of a dict.
    pub fn as_dict(&self) -> Option<&[(PickleValue, PickleValue)]> {
        match self {
            PickleValue::Dict(entries) => Some(entries),
            _ => None,
        }
    }

    /// The items of a list or tuple.
    pub fn as_list(&self) -> Option<&[PickleValue]> {
        match self {
            PickleValue::List(items) | PickleValue::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// An integer (or bool) value.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            PickleValue::Int(value) => Some(*value),
            PickleValue::Bool(value) => Some(*value as i64),
            _ => None,
        }
    }

    /// A text or (latin-1) byte string.
    pub fn as_text(&self) -> Option<String> {
        match self {
            PickleValue::Str(text) => Some(text.clone()),
            PickleValue::Bytes(bytes) => Some(bytes.iter().map(|&b| b as char).collect()),
            _ => None,
        }
    }

    /// A short name of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            PickleValue::None => "None",
            PickleValue::Bool(_) => "a bool",
            PickleValue::Int(_) => "an int",
            PickleValue::Float(_) => "a float",
            PickleValue::Str(_) => "a string",
            PickleValue::Bytes(_) => "bytes",
            PickleValue::List(_) => "a list",
            PickleValue::Tuple(_) => "a tuple",
            PickleValue::Dict(_) => "a dict",
            PickleValue::Global(..) => "a global",
            PickleValue::Dtype(_) => "a dtype",
            PickleValue::NdArray { .. } => "a numpy array",
            PickleValue::Object(..) => "an object",
        }
    }
}

/// The value under text key `key` of a dict's entries (text or byte-string keys).
pub fn entry<'a>(entries: &'a [(PickleValue, PickleValue)], key: &str) -> Option<&'a PickleValue> {
    entries
        .iter()
        .find(|(k, _)| k.as_text().as_deref() == Some(key))
        .map(|(_, v)| v)
}

struct Reader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, message: impl Into<String>) -> DataError {
        DataError::Format {
            path: self.path.to_path_buf(),
            format: "pickle",
            reason: format!("at byte {}: {}", self.position, message.into()),
        }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DataError> {
        let end = self
            .position
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.error("truncated"))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DataError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], DataError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn line(&mut self) -> Result<String, DataError> {
        let rest = &self.bytes[self.position..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.error("unterminated line"))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.position += end + 1;
        Ok(text)
    }
}

fn latin1(bytes: &[u8]) -> Rc<[u8]> {
    Rc::from(bytes)
}

/// Applies `callable(*args)` for the numpy and codecs constructors the data files use.
fn reduce(callable: PickleValue, args: PickleValue) -> PickleValue {
    let items = args
        .as_list()
        .map(<[PickleValue]>::to_vec)
        .unwrap_or_default();
    match &callable {
        PickleValue::Global(module, name)
            if module.ends_with("multiarray") && name == "_reconstruct" =>
        {
            PickleValue::NdArray {
                shape: Vec::new(),
                dtype: String::new(),
                bytes: Rc::from(Vec::new()),
            }
        }
        PickleValue::Global(module, name) if module == "numpy" && name == "dtype" => {
            PickleValue::Dtype(
                items
                    .first()
                    .and_then(PickleValue::as_text)
                    .unwrap_or_default(),
            )
        }
        PickleValue::Global(module, name) if module == "_codecs" && name == "encode" => {
            match items.first() {
                // bytes pickled by Python 3 at protocol 2: encode(str, 'latin1')
                Some(PickleValue::Str(text)) => PickleValue::Bytes(
                    text.chars()
                        .map(|c| c as u32 as u8)
                        .collect::<Vec<_>>()
                        .into(),
                ),
                _ => PickleValue::Object(Box::new(callable), Box::new(args)),
            }
        }
        _ => PickleValue::Object(Box::new(callable), Box::new(args)),
    }
}

/// Applies `BUILD` (`__setstate__`) for numpy arrays and dtypes; other objects keep their state
/// unapplied.
fn build(target: PickleValue, state: PickleValue) -> PickleValue {
    match target {
        PickleValue::Dtype(kind) => {
            let order = state
                .as_list()
                .and_then(|s| s.get(1))
                .and_then(PickleValue::as_text)
                .unwrap_or_default();
            PickleValue::Dtype(format!("{order}{kind}"))
        }
        PickleValue::NdArray { .. } => {
            let parts = state
                .as_list()
                .map(<[PickleValue]>::to_vec)
                .unwrap_or_default();
            let shape = parts
                .get(1)
                .and_then(PickleValue::as_list)
                .map(|dims| {
                    dims.iter()
                        .filter_map(PickleValue::as_int)
                        .map(|d| d as usize)
                        .collect()
                })
                .unwrap_or_default();
            let dtype = match parts.get(2) {
                Some(PickleValue::Dtype(dtype)) => dtype.clone(),
                _ => String::new(),
            };
            let bytes = match parts.get(4) {
                Some(PickleValue::Bytes(bytes)) => bytes.clone(),
                Some(PickleValue::Str(text)) => text
                    .chars()
                    .map(|c| c as u32 as u8)
                    .collect::<Vec<_>>()
                    .into(),
                _ => Rc::from(Vec::new()),
            };
            PickleValue::NdArray {
                shape,
                dtype,
                bytes,
            }
        }
        other => other,
    }
}

/// Reads the pickle in `bytes` (from `path`, named in errors).
pub fn load(path: &Path, bytes: &[u8]) -> Result<PickleValue, DataError> {
    let mut reader = Reader {
        path,
        bytes,
        position: 0,
    };
    let mut stack: Vec<PickleValue> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: std::collections::HashMap<usize, PickleValue> = std::collections::HashMap::new();
    macro_rules! pop {
        () => {
            stack.pop().ok_or_else(|| reader.error("stack underflow"))?
        };
    }
    macro_rules! pop_mark {
        () => {{
            let mark = marks.pop().ok_or_else(|| reader.error("no mark"))?;
            if mark > stack.len() {
                return Err(reader.error("mark past the stack"));
            }
            stack.split_off(mark)
        }};
    }
    loop {
        let opcode = reader.u8()?;
        match opcode {
            0x80 => {
                reader.u8()?;
            }
            0x95 => {
                reader.take(8)?;
            }
            b'.' => {
                return stack
                    .pop()
                    .ok_or_else(|| reader.error("empty stack at STOP"))
            }
            b'(' => marks.push(stack.len()),
            b'}' => stack.push(PickleValue::Dict(Vec::new())),
            b']' => stack.push(PickleValue::List(Vec::new())),
            b')' => stack.push(PickleValue::Tuple(Vec::new())),
            b't' => {
                let items = pop_mark!();
                stack.push(PickleValue::Tuple(items));
            }
            b'l' => {
                let items = pop_mark!();
                stack.push(PickleValue::List(items));
            }
            b'd' => {
                let items = pop_mark!();
                let pairs = items
                    .chunks(2)
                    .filter(|p| p.len() == 2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                stack.push(PickleValue::Dict(pairs));
            }
            0x85..=0x87 => {
                let count = (opcode - 0x84) as usize;
                if stack.len() < count {
                    return Err(reader.error("stack underflow"));
                }
                let items = stack.split_off(stack.len() - count);
                stack.push(PickleValue::Tuple(items));
            }
            b'a' => {
                let item = pop!();
                match stack.last_mut() {
                    Some(PickleValue::List(items)) => items.push(item),
                    _ => return Err(reader.error("APPEND to a non-list")),
                }
            }
            b'e' => {
                let items = pop_mark!();
                match stack.last_mut() {
                    Some(PickleValue::List(list)) => list.extend(items),
                    _ => return Err(reader.error("APPENDS to a non-list")),
                }
            }
            b's' | b'u' => {
                let items = if opcode == b's' {
                    let value = pop!();
                    let key = pop!();
                    vec![key, value]
                } else {
                    pop_mark!()
                };
                match stack.last_mut() {
                    Some(PickleValue::Dict(entries)) => entries.extend(
                        items
                            .chunks(2)
                            .filter(|p| p.len() == 2)
                            .map(|p| (p[0].clone(), p[1].clone())),
                    ),
                    _ => return Err(reader.error("SETITEM on a non-dict")),
                }
            }
            b'J' => stack.push(PickleValue::Int(i32::from_le_bytes(reader.le()?) as i64)),
            b'K' => stack.push(PickleValue::Int(reader.u8()? as i64)),
            b'M' => stack.push(PickleValue::Int(u16::from_le_bytes(reader.le()?) as i64)),
            0x8a => {
                let count = reader.u8()? as usize;
                let digits = reader.take(count)?;
                if count > 8 {
                    return Err(reader.error("integer wider than 64 bits"));
                }
                let mut buffer = [if digits.last().is_some_and(|&b| b & 0x80 != 0) {
                    0xff
                } else {
                    0
                }; 8];
                buffer[..count].copy_from_slice(digits);
                stack.push(PickleValue::Int(i64::from_le_bytes(buffer)));
            }
            b'I' | b'L' => {
                let text = reader.line()?;
                let text = text.trim_end_matches('L');
                stack.push(match text {
                    "01" => PickleValue::Bool(true),
                    "00" => PickleValue::Bool(false),
                    _ => PickleValue::Int(
                        text.parse()
                            .map_err(|_| reader.error(format!("bad integer `{text}`")))?,
                    ),
                });
            }
            b'G' => stack.push(PickleValue::Float(f64::from_be_bytes(reader.le()?))),
            b'N' => stack.push(PickleValue::None),
            0x88 => stack.push(PickleValue::Bool(true)),
            0x89 => stack.push(PickleValue::Bool(false)),
            b'U' | b'C' => {
                let count = reader.u8()? as usize;
                stack.push(PickleValue::Bytes(latin1(reader.take(count)?)));
            }
            b'T' | b'B' => {
                let count = u32::from_le_bytes(reader.le()?) as usize;
                stack.push(PickleValue::Bytes(latin1(reader.take(count)?)));
            }
            0x8e => {
                let count = u64::from_le_bytes(reader.le()?) as usize;
                stack.push(PickleValue::Bytes(latin1(reader.take(count)?)));
            }
            b'X' | 0x8c | 0x8d => {
                let count = match opcode {
                    b'X' => u32::from_le_bytes(reader.le()?) as usize,
                    0x8c => reader.u8()? as usize,
                    _ => u64::from_le_bytes(reader.le()?) as usize,
                };
                let text = std::str::from_utf8(reader.take(count)?)
                    .map_err(|_| reader.error("invalid UTF-8"))?;
                stack.push(PickleValue::Str(text.to_string()));
            }
            b'c' => {
                let module = reader.line()?;
                let name = reader.line()?;
                stack.push(PickleValue::Global(module, name));
            }
            0x93 => {
                let name = pop!().as_text().unwrap_or_default();
                let module = pop!().as_text().unwrap_or_default();
                stack.push(PickleValue::Global(module, name));
            }
            b'R' | 0x81 => {
                let args = pop!();
                let callable = pop!();
                stack.push(reduce(callable, args));
            }
            b'b' => {
                let state = pop!();
                let target = pop!();
                stack.push(build(target, state));
            }
            b'p' | b'q' | b'r' | 0x94 => {
                let index = match opcode {
                    b'p' => reader
                        .line()?
                        .parse()
                        .map_err(|_| reader.error("bad PUT index"))?,
                    b'q' => reader.u8()? as usize,
                    b'r' => u32::from_le_bytes(reader.le()?) as usize,
                    _ => memo.len(),
                };
                let top = stack
                    .last()
                    .cloned()
                    .ok_or_else(|| reader.error("PUT on an empty stack"))?;
                memo.insert(index, top);
            }
            b'g' | b'h' | b'j' => {
                let index = match opcode {
                    b'g' => reader
                        .line()?
                        .parse()
                        .map_err(|_| reader.error("bad GET index"))?,
                    b'h' => reader.u8()? as usize,
                    _ => u32::from_le_bytes(reader.le()?) as usize,
                };
                stack.push(
                    memo.get(&index)
                        .cloned()
                        .ok_or_else(|| reader.error(format!("memo {index} unset")))?,
                );
            }
            other => return Err(reader.error(format!("unsupported opcode 0x{other:02x}"))),
        }
    }
}
