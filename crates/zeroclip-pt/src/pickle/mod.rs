//! A pickle virtual machine that builds data and never runs code.
//!
//! It understands the opcodes of protocols 0–5 that PyTorch's picklers emit (and their text
//! forms, for robustness). Every `GLOBAL`/`STACK_GLOBAL`/`INST` name is checked against the
//! allowlist in [`crate::globals`] the moment it appears; calls (`REDUCE`, `NEWOBJ`, `BUILD`,
//! `BINPERSID`) are interpreted by that module as data constructors. Malformed input of any kind
//! ends in a [`Fault`], never a panic.

use crate::error::{format_fault, Fault};
use crate::globals;
use crate::value::{Arena, Node, Value};
use input::Input;
use std::collections::HashMap;
use std::rc::Rc;

mod input;

/// Values the graph may hold per byte of pickle (see [`Arena::cells`]), plus a floor for tiny
/// pickles, and at most [`MAX_CELLS`] in all. PyTorch's pickles store about one value per byte;
/// a pickle that makes an allowlisted constructor copy one shared sequence many times is refused
/// once it passes this, before its copies take more than a few hundred megabytes.
const CELLS_PER_BYTE: usize = 16;
const MIN_CELLS: usize = 1 << 16;
/// The absolute bound on [`Arena::cells`]: 16 Mi values (a legacy file's pickle runs over the
/// whole mapped file, so the relative bound alone would grow with the tensor data).
pub(crate) const MAX_CELLS: usize = 1 << 24;

/// The result of one pickle: its object graph and the root object.
pub(crate) struct Unpickled {
    pub arena: Arena,
    pub root: Value,
}

/// Runs the pickle at the start of `data`; returns its value and the number of bytes it used.
/// `what` names the pickle in errors (e.g. `data.pkl`).
pub(crate) fn unpickle(data: &[u8], what: &str) -> Result<(Unpickled, usize), Fault> {
    let mut vm = Vm {
        input: Input { data, pos: 0, what },
        arena: Arena::default(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = vm.run()?;
    let used = vm.input.pos;
    Ok((
        Unpickled {
            arena: vm.arena,
            root,
        },
        used,
    ))
}

struct Vm<'a> {
    input: Input<'a>,
    arena: Arena,
    stack: Vec<Value>,
    /// Stacks saved by MARK; the current `stack` holds what was pushed since the last mark.
    marks: Vec<Vec<Value>>,
    memo: HashMap<u64, Value>,
}

impl Vm<'_> {
    fn fault(&self, what: &str) -> Fault {
        format_fault!("{}: {what} at byte {}", self.input.what, self.input.pos)
    }

    fn pop(&mut self) -> Result<Value, Fault> {
        self.stack
            .pop()
            .ok_or_else(|| self.fault("stack underflow"))
    }

    fn top(&self) -> Result<Value, Fault> {
        self.stack
            .last()
            .cloned()
            .ok_or_else(|| self.fault("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, Fault> {
        let below = self.marks.pop().ok_or_else(|| self.fault("no MARK"))?;
        Ok(std::mem::replace(&mut self.stack, below))
    }

    fn push_node(&mut self, node: Node) {
        let v = self.arena.push(node);
        self.stack.push(v);
    }

    fn memo_get(&mut self, key: u64) -> Result<(), Fault> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.fault(&format!("memo key {key} unset")))?;
        self.stack.push(v);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), Fault> {
        let v = self.top()?;
        self.memo.insert(key, v);
        Ok(())
    }

    fn append(&mut self, list: &Value, items: Vec<Value>) -> Result<(), Fault> {
        match self.arena.get_mut(list) {
            Some(Node::List(v)) => {
                v.extend(items);
                Ok(())
            }
            _ => Err(self.fault("APPEND to a non-list")),
        }
    }

    fn set_items(&mut self, dict: &Value, items: Vec<Value>) -> Result<(), Fault> {
        if items.len() & 1 == 1 {
            return Err(self.fault("SETITEMS with an odd number of items"));
        }
        let Some(Node::Dict(entries)) = self.arena.get_mut(dict) else {
            return Err(self.fault("SETITEM on a non-dict"));
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), Fault> {
        let g = globals::resolve(module, name)?;
        self.push_node(Node::Global(g));
        Ok(())
    }

    fn int_line(&mut self) -> Result<Value, Fault> {
        let line = self.input.line()?;
        let digits = line.trim_end_matches('L');
        match digits {
            "00" => Ok(Value::Bool(false)),
            "01" => Ok(Value::Bool(true)),
            _ => digits
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| self.fault("bad integer text")),
        }
    }

    fn run(&mut self) -> Result<Value, Fault> {
        let max_cells = self
            .input
            .data
            .len()
            .saturating_mul(CELLS_PER_BYTE)
            .saturating_add(MIN_CELLS)
            .min(MAX_CELLS);
        loop {
            if self.arena.cells() > max_cells {
                return Err(self.fault(&format!(
                    "object graph too large for a pickle of {} bytes (over {max_cells} values)",
                    self.input.data.len()
                )));
            }
            let op = self.input.u8()?;
            match op {
                b'.' => return self.pop(),
                0x80 => {
                    let proto = self.input.u8()?;
                    if proto > 5 {
                        return Err(self.fault(&format!("pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.input.take(8)?;
                }
                b'(' => self.marks.push(std::mem::take(&mut self.stack)),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?;
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.input.u8()?;
                    self.stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.input.array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.input.array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                0x8a | 0x8b => {
                    let n = self.input.len(if op == 0x8a { 1 } else { 4 })?;
                    let bytes = self.input.take(n)?;
                    self.stack.push(long_value(bytes));
                }
                b'I' | b'L' => {
                    let v = self.int_line()?;
                    self.stack.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.input.array()?);
                    self.stack.push(Value::Float(v));
                }
                b'F' => {
                    let line = self.input.line()?;
                    let v = line.parse().map_err(|_| self.fault("bad float text"))?;
                    self.stack.push(Value::Float(v));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = self.input.len(match op {
                        0x8c => 1,
                        b'X' => 4,
                        _ => 8,
                    })?;
                    let s = self.input.text(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'V' => {
                    let s = self.input.line()?;
                    self.stack.push(Value::Str(Rc::from(s)));
                }
                b'S' => {
                    let s = self.input.line()?;
                    let unquoted = s
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                        .ok_or_else(|| self.fault("unquoted STRING"))?;
                    self.stack.push(Value::Str(Rc::from(unquoted)));
                }
                b'U' | b'T' | b'C' | b'B' | 0x8e | 0x96 => {
                    let n = self.input.len(match op {
                        b'U' | b'C' => 1,
                        b'T' | b'B' => 4,
                        _ => 8,
                    })?;
                    let bytes = self.input.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(bytes)));
                }
                b')' => self.push_node(Node::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(self.fault("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_node(Node::Tuple(items));
                }
                b']' => self.push_node(Node::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::List(items));
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.append(&list, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.append(&list, items)?;
                }
                b'}' => self.push_node(Node::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = self.arena.push(Node::Dict(Vec::new()));
                    self.set_items(&dict, items)?;
                    self.stack.push(dict);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let dict = self.top()?;
                    self.set_items(&dict, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.set_items(&dict, items)?;
                }
                // Sets carry no tensors torch needs; they are kept as lists.
                0x8f => self.push_node(Node::List(Vec::new())),
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?;
                    self.append(&set, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::List(items));
                }
                b'h' => {
                    let k = self.input.u8()?;
                    self.memo_get(k.into())?;
                }
                b'j' => {
                    let k = self.input.u32()?;
                    self.memo_get(k.into())?;
                }
                b'g' => {
                    let k = self
                        .input
                        .line()?
                        .parse()
                        .map_err(|_| self.fault("bad GET"))?;
                    self.memo_get(k)?;
                }
                b'q' => {
                    let k = self.input.u8()?;
                    self.memo_put(k.into())?;
                }
                b'r' => {
                    let k = self.input.u32()?;
                    self.memo_put(k.into())?;
                }
                b'p' => {
                    let k = self
                        .input
                        .line()?
                        .parse()
                        .map_err(|_| self.fault("bad PUT"))?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'c' => {
                    let module = self.input.line()?;
                    let name = self.input.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                        return Err(self.fault("STACK_GLOBAL of non-strings"));
                    };
                    let (module, name) = (module.to_owned(), name.to_owned());
                    self.global(&module, &name)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = globals::reduce(&mut self.arena, &func, &args)?;
                    self.stack.push(v);
                }
                0x81 | 0x92 => {
                    if op == 0x92 {
                        self.pop()?; // kwargs
                    }
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = globals::new_obj(&mut self.arena, &class, &args)?;
                    self.stack.push(v);
                }
                b'i' => {
                    let module = self.input.line()?;
                    let name = self.input.line()?;
                    let class = self
                        .arena
                        .push(Node::Global(globals::resolve(module, name)?));
                    let args = self.pop_mark()?;
                    let args = self.arena.push(Node::Tuple(args));
                    let v = globals::new_obj(&mut self.arena, &class, &args)?;
                    self.stack.push(v);
                }
                b'o' => {
                    let mut items = self.pop_mark()?.into_iter();
                    let class = items
                        .next()
                        .ok_or_else(|| self.fault("OBJ without class"))?;
                    let args = self.arena.push(Node::Tuple(items.collect()));
                    let v = globals::new_obj(&mut self.arena, &class, &args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    globals::build(&mut self.arena, &obj, state)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = globals::persistent_load(&mut self.arena, &pid)?;
                    self.stack.push(v);
                }
                other => {
                    return Err(self.fault(&format!("unsupported pickle opcode 0x{other:02x}")));
                }
            }
        }
    }
}

/// Decodes a LONG1/LONG4 payload (little-endian two's complement).
fn long_value(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(Rc::from(bytes));
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut buf = if negative { [0xff; 8] } else { [0; 8] };
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

#[cfg(test)]
mod tests;
