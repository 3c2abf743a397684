//! Bounds-checked reading of opcode arguments: every read past the end is a truncation fault.

use crate::error::{format_fault, Fault};
use std::rc::Rc;

pub(super) struct Input<'a> {
    pub data: &'a [u8],
    pub pos: usize,
    pub what: &'a str,
}

impl<'a> Input<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], Fault> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let out = &self.data[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(Fault::Truncated(format!(
                "{} ends inside an opcode at byte {}",
                self.what, self.pos
            ))),
        }
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, Fault> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, Fault> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(super) fn len(&mut self, bytes: usize) -> Result<usize, Fault> {
        let n = match bytes {
            1 => u64::from(self.u8()?),
            4 => u64::from(self.u32()?),
            _ => u64::from_le_bytes(self.array()?),
        };
        usize::try_from(n).map_err(|_| format_fault!("{}: length {n} too large", self.what))
    }

    /// A text argument of the protocol-0 opcodes, without its newline.
    pub(super) fn line(&mut self) -> Result<&'a str, Fault> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(Fault::Truncated(format!(
                "{} ends inside a text opcode",
                self.what
            )));
        };
        let line = self.take(n + 1)?;
        std::str::from_utf8(&line[..n])
            .map_err(|_| format_fault!("{}: text opcode argument is not UTF-8", self.what))
    }

    pub(super) fn text(&mut self, n: usize) -> Result<Rc<str>, Fault> {
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(Rc::from)
            .map_err(|_| format_fault!("{}: string at byte {} is not UTF-8", self.what, self.pos))
    }
}
