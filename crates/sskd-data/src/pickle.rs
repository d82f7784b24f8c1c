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

/// The opcodes of pickle protocols 0–4 this reader takes, by the names of CPython's
/// `pickletools` (protocol 5's out-of-band buffers and the persistent-id and extension-registry
/// opcodes are refused as unsupported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opcode {
    /// `\x80 n`: the protocol version.
    Proto,
    /// `\x95 n8`: a frame of `n` bytes follows (protocol 4).
    Frame,
    /// `.`: the value on top of the stack is the pickle's.
    Stop,
    /// `(`: marks the stack's height.
    Mark,
    /// `}`.
    EmptyDict,
    /// `]`.
    EmptyList,
    /// `)`.
    EmptyTuple,
    /// `t`: a tuple of the items above the mark.
    Tuple,
    /// `\x85`, `\x86`, `\x87`: a tuple of the top 1, 2 or 3 items.
    TupleOf(usize),
    /// `l`: a list of the items above the mark.
    List,
    /// `d`: a dict of the key/value pairs above the mark.
    Dict,
    /// `a`: appends the top item to the list below it.
    Append,
    /// `e`: appends the items above the mark to the list below it.
    Appends,
    /// `s`: sets one key/value pair in the dict below them.
    SetItem,
    /// `u`: sets the pairs above the mark in the dict below it.
    SetItems,
    /// `J`: a signed 4-byte integer.
    BinInt,
    /// `K`: a 1-byte unsigned integer.
    BinInt1,
    /// `M`: a 2-byte unsigned integer.
    BinInt2,
    /// `\x8a n`: an `n`-byte two's-complement integer.
    Long1,
    /// `I`, `L`: an integer (or `01` / `00`, a bool) written as a text line.
    IntLine,
    /// `G`: a big-endian 8-byte float.
    BinFloat,
    /// `N`.
    None,
    /// `\x88`.
    True,
    /// `\x89`.
    False,
    /// `U`, `C`: a byte string of 1-byte length.
    ShortBytes,
    /// `T`, `B`: a byte string of 4-byte length.
    Bytes4,
    /// `\x8e`: a byte string of 8-byte length.
    Bytes8,
    /// `X`, `\x8c`, `\x8d`: a UTF-8 string of 4-, 1- or 8-byte length.
    Unicode(LengthWidth),
    /// `c`: a global `module\nname\n`.
    Global,
    /// `\x93`: a global from the module and name on the stack.
    StackGlobal,
    /// `R`, `\x81`: calls the callable below the top with the top as arguments.
    Reduce,
    /// `b`: sets the state (the top) of the object below it.
    Build,
    /// `p`, `q`, `r`, `\x94`: stores the top in the memo (index a text line, 1 byte, 4 bytes,
    /// or the memo's size).
    Put(IndexWidth),
    /// `g`, `h`, `j`: pushes a memo entry (index a text line, 1 byte, 4 bytes).
    Get(IndexWidth),
}

/// How a string's length is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LengthWidth {
    One,
    Four,
    Eight,
}

/// How a memo index is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexWidth {
    Line,
    One,
    Four,
    /// Not written: the memo's size (`MEMOIZE`).
    Next,
}

impl Opcode {
    /// The opcode of byte `byte`, if this reader takes it.
    fn of(byte: u8) -> Option<Self> {
        use Opcode::*;
        Some(match byte {
            0x80 => Proto,
            0x95 => Frame,
            b'.' => Stop,
            b'(' => Mark,
            b'}' => EmptyDict,
            b']' => EmptyList,
            b')' => EmptyTuple,
            b't' => Tuple,
            0x85..=0x87 => TupleOf((byte - 0x84) as usize),
            b'l' => List,
            b'd' => Dict,
            b'a' => Append,
            b'e' => Appends,
            b's' => SetItem,
            b'u' => SetItems,
            b'J' => BinInt,
            b'K' => BinInt1,
            b'M' => BinInt2,
            0x8a => Long1,
            b'I' | b'L' => IntLine,
            b'G' => BinFloat,
            b'N' => None,
            0x88 => True,
            0x89 => False,
            b'U' | b'C' => ShortBytes,
            b'T' | b'B' => Bytes4,
            0x8e => Bytes8,
            b'X' => Unicode(LengthWidth::Four),
            0x8c => Unicode(LengthWidth::One),
            0x8d => Unicode(LengthWidth::Eight),
            b'c' => Global,
            0x93 => StackGlobal,
            b'R' | 0x81 => Reduce,
            b'b' => Build,
            b'p' => Put(IndexWidth::Line),
            b'q' => Put(IndexWidth::One),
            b'r' => Put(IndexWidth::Four),
            0x94 => Put(IndexWidth::Next),
            b'g' => Get(IndexWidth::Line),
            b'h' => Get(IndexWidth::One),
            b'j' => Get(IndexWidth::Four),
            _ => return Option::None,
        })
    }
}

impl<'a> Reader<'a> {
    /// A length written in `width` bytes.
    fn length(&mut self, width: LengthWidth) -> Result<usize, DataError> {
        Ok(match width {
            LengthWidth::One => self.u8()? as usize,
            LengthWidth::Four => u32::from_le_bytes(self.le()?) as usize,
            LengthWidth::Eight => u64::from_le_bytes(self.le()?) as usize,
        })
    }

    /// A memo index written as `width` says (`next` for [`IndexWidth::Next`]); `what` names
    /// the opcode in errors.
    fn memo_index(
        &mut self,
        width: IndexWidth,
        next: usize,
        what: &str,
    ) -> Result<usize, DataError> {
        Ok(match width {
            IndexWidth::Line => self
                .line()?
                .parse()
                .map_err(|_| self.error(format!("bad {what} index")))?,
            IndexWidth::One => self.u8()? as usize,
            IndexWidth::Four => u32::from_le_bytes(self.le()?) as usize,
            IndexWidth::Next => next,
        })
    }

    /// An `n`-byte two's-complement integer (`LONG1`).
    fn long(&mut self) -> Result<i64, DataError> {
        let count = self.u8()? as usize;
        let digits = self.take(count)?;
        if count > 8 {
            return Err(self.error("integer wider than 64 bits"));
        }
        let negative = digits.last().is_some_and(|&b| b & 0x80 != 0);
        let mut buffer = [if negative { 0xff } else { 0 }; 8];
        buffer[..count].copy_from_slice(digits);
        Ok(i64::from_le_bytes(buffer))
    }

    /// An integer or bool written as a text line (`INT`, `LONG`).
    fn int_line(&mut self) -> Result<PickleValue, DataError> {
        let text = self.line()?;
        let text = text.trim_end_matches('L');
        Ok(match text {
            "01" => PickleValue::Bool(true),
            "00" => PickleValue::Bool(false),
            _ => PickleValue::Int(
                text.parse()
                    .map_err(|_| self.error(format!("bad integer `{text}`")))?,
            ),
        })
    }
}

/// The pickle machine: its stack, marks and memo.
#[derive(Default)]
struct Machine {
    stack: Vec<PickleValue>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<usize, PickleValue>,
}

impl Machine {
    fn push(&mut self, value: PickleValue) {
        self.stack.push(value);
    }

    fn pop(&mut self, reader: &Reader) -> Result<PickleValue, DataError> {
        self.stack
            .pop()
            .ok_or_else(|| reader.error("stack underflow"))
    }

    /// The items above the last mark, removed with it.
    fn pop_mark(&mut self, reader: &Reader) -> Result<Vec<PickleValue>, DataError> {
        let mark = self.marks.pop().ok_or_else(|| reader.error("no mark"))?;
        if mark > self.stack.len() {
            return Err(reader.error("mark past the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    /// Runs one opcode; the pickle's value once it is [`Opcode::Stop`].
    fn run(
        &mut self,
        opcode: Opcode,
        reader: &mut Reader,
    ) -> Result<Option<PickleValue>, DataError> {
        match opcode {
            Opcode::Proto => drop(reader.u8()?),
            Opcode::Frame => drop(reader.take(8)?),
            Opcode::Stop => {
                let value = self.stack.pop();
                return value
                    .map(Some)
                    .ok_or_else(|| reader.error("empty stack at STOP"));
            }
            Opcode::Mark => self.marks.push(self.stack.len()),
            Opcode::EmptyDict => self.push(PickleValue::Dict(Vec::new())),
            Opcode::EmptyList => self.push(PickleValue::List(Vec::new())),
            Opcode::EmptyTuple => self.push(PickleValue::Tuple(Vec::new())),
            Opcode::Tuple => {
                let items = self.pop_mark(reader)?;
                self.push(PickleValue::Tuple(items));
            }
            Opcode::TupleOf(count) => {
                if self.stack.len() < count {
                    return Err(reader.error("stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - count);
                self.push(PickleValue::Tuple(items));
            }
            Opcode::List => {
                let items = self.pop_mark(reader)?;
                self.push(PickleValue::List(items));
            }
            Opcode::Dict => {
                let items = self.pop_mark(reader)?;
                self.push(PickleValue::Dict(pairs(&items).collect()));
            }
            Opcode::Append => {
                let item = self.pop(reader)?;
                self.extend_list(vec![item], reader, "APPEND")?;
            }
            Opcode::Appends => {
                let items = self.pop_mark(reader)?;
                self.extend_list(items, reader, "APPENDS")?;
            }
            Opcode::SetItem => {
                let value = self.pop(reader)?;
                let key = self.pop(reader)?;
                self.extend_dict(vec![key, value], reader)?;
            }
            Opcode::SetItems => {
                let items = self.pop_mark(reader)?;
                self.extend_dict(items, reader)?;
            }
            Opcode::BinInt => self.push(PickleValue::Int(i32::from_le_bytes(reader.le()?) as i64)),
            Opcode::BinInt1 => self.push(PickleValue::Int(reader.u8()? as i64)),
            Opcode::BinInt2 => self.push(PickleValue::Int(u16::from_le_bytes(reader.le()?) as i64)),
            Opcode::Long1 => self.push(PickleValue::Int(reader.long()?)),
            Opcode::IntLine => self.push(reader.int_line()?),
            Opcode::BinFloat => self.push(PickleValue::Float(f64::from_be_bytes(reader.le()?))),
            Opcode::None => self.push(PickleValue::None),
            Opcode::True => self.push(PickleValue::Bool(true)),
            Opcode::False => self.push(PickleValue::Bool(false)),
            Opcode::ShortBytes => self.push_bytes(LengthWidth::One, reader)?,
            Opcode::Bytes4 => self.push_bytes(LengthWidth::Four, reader)?,
            Opcode::Bytes8 => self.push_bytes(LengthWidth::Eight, reader)?,
            Opcode::Unicode(width) => {
                let count = reader.length(width)?;
                let text = std::str::from_utf8(reader.take(count)?)
                    .map_err(|_| reader.error("invalid UTF-8"))?;
                self.push(PickleValue::Str(text.to_string()));
            }
            Opcode::Global => {
                let module = reader.line()?;
                let name = reader.line()?;
                self.push(PickleValue::Global(module, name));
            }
            Opcode::StackGlobal => {
                let name = self.pop(reader)?.as_text().unwrap_or_default();
                let module = self.pop(reader)?.as_text().unwrap_or_default();
                self.push(PickleValue::Global(module, name));
            }
            Opcode::Reduce => {
                let args = self.pop(reader)?;
                let callable = self.pop(reader)?;
                self.push(reduce(callable, args));
            }
            Opcode::Build => {
                let state = self.pop(reader)?;
                let target = self.pop(reader)?;
                self.push(build(target, state));
            }
            Opcode::Put(width) => {
                let index = reader.memo_index(width, self.memo.len(), "PUT")?;
                let top = self
                    .stack
                    .last()
                    .cloned()
                    .ok_or_else(|| reader.error("PUT on an empty stack"))?;
                self.memo.insert(index, top);
            }
            Opcode::Get(width) => {
                let index = reader.memo_index(width, self.memo.len(), "GET")?;
                let value = self.memo.get(&index).cloned();
                self.push(value.ok_or_else(|| reader.error(format!("memo {index} unset")))?);
            }
        }
        Ok(Option::None)
    }

    fn push_bytes(&mut self, width: LengthWidth, reader: &mut Reader) -> Result<(), DataError> {
        let count = reader.length(width)?;
        self.push(PickleValue::Bytes(latin1(reader.take(count)?)));
        Ok(())
    }

    /// Appends `items` to the list on top (`what` names the opcode in errors).
    fn extend_list(
        &mut self,
        items: Vec<PickleValue>,
        reader: &Reader,
        what: &str,
    ) -> Result<(), DataError> {
        match self.stack.last_mut() {
            Some(PickleValue::List(list)) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(reader.error(format!("{what} to a non-list"))),
        }
    }

    /// Adds the key/value pairs `items` to the dict on top.
    fn extend_dict(&mut self, items: Vec<PickleValue>, reader: &Reader) -> Result<(), DataError> {
        match self.stack.last_mut() {
            Some(PickleValue::Dict(entries)) => {
                entries.extend(pairs(&items));
                Ok(())
            }
            _ => Err(reader.error("SETITEM on a non-dict")),
        }
    }
}

/// `items` as key/value pairs (an odd last item is dropped).
fn pairs(items: &[PickleValue]) -> impl Iterator<Item = (PickleValue, PickleValue)> + '_ {
    items
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].clone(), p[1].clone()))
}

/// Reads the pickle in `bytes` (from `path`, named in errors).
pub fn load(path: &Path, bytes: &[u8]) -> Result<PickleValue, DataError> {
    let mut reader = Reader {
        path,
        bytes,
        position: 0,
    };
    let mut machine = Machine::default();
    loop {
        let byte = reader.u8()?;
        let opcode = Opcode::of(byte)
            .ok_or_else(|| reader.error(format!("unsupported opcode 0x{byte:02x}")))?;
        if let Some(value) = machine.run(opcode, &mut reader)? {
            return Ok(value);
        }
    }
}
