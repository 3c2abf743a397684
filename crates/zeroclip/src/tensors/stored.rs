//! A checkpoint tensor as the reader left it: a candle tensor, or — for float weights of a file
//! loaded onto the CPU — its dtype, shape and little-endian bytes still in the memory-mapped file.
//!
//! The reference's `load_state_dict` copies every tensor once; a layer that repacks its weight
//! (the CPU GEMM's panels) then reads the file's bytes itself, so no full-size intermediate of
//! that weight is ever built. Everything else becomes a tensor when a layer takes it.

use candle_core::{Device, Tensor};
use memmap2::Mmap;
use std::borrow::Cow;
use std::sync::Arc;
use zeroclip_pt::{DType, TensorRecord};

/// A tensor from a checkpoint: a [`Tensor`], or the bytes of a mapped file not yet read.
pub struct StoredTensor(Inner);

enum Inner {
    Tensor(Tensor),
    /// Blocks of whole rows (along the first dimension), in order: one for a tensor of the
    /// file, several for one concatenated from the file's tensors (transformers' q, k, v).
    Mapped {
        dtype: DType,
        shape: Vec<usize>,
        parts: Vec<Bytes>,
    },
}

/// Where a mapped tensor's row-major little-endian bytes are.
enum Bytes {
    /// A PyTorch tensor view (contiguous ones borrow the map; others are gathered when read).
    Record(Box<TensorRecord>),
    /// A range of a mapped file (safetensors).
    Map {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
    /// Bytes in memory, for the tests' unaligned and misdeclared inputs.
    #[cfg(test)]
    Owned(Vec<u8>),
}

impl std::fmt::Debug for StoredTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Tensor(t) => write!(f, "StoredTensor({t:?})"),
            Inner::Mapped { dtype, shape, .. } => write!(f, "StoredTensor({dtype:?}{shape:?})"),
        }
    }
}

impl From<Tensor> for StoredTensor {
    fn from(t: Tensor) -> Self {
        StoredTensor(Inner::Tensor(t))
    }
}

/// Whether a layer may read `dtype` from the file as it packs: the float types the packing
/// widens exactly.
fn mappable(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

impl StoredTensor {
    /// A PyTorch checkpoint's tensor: left in the file on the CPU when it is a float weight,
    /// read into a tensor on `device` otherwise.
    pub(crate) fn from_record(record: TensorRecord, device: &Device) -> candle_core::Result<Self> {
        if device.is_cpu() && mappable(record.dtype) {
            let (dtype, shape) = (record.dtype, record.shape.clone());
            return Self::mapped(dtype, shape, vec![Bytes::Record(Box::new(record))]);
        }
        let bytes = record.contiguous_bytes();
        Ok(super::load_tensor(record.dtype, &record.shape, &bytes, device)?.into())
    }

    /// `len` bytes at `start` of `map` (a safetensors tensor): left in the file on the CPU when
    /// it is a float weight, read into a tensor on `device` otherwise.
    pub(crate) fn from_map(
        dtype: DType,
        shape: &[usize],
        map: &Arc<Mmap>,
        (start, len): (usize, usize),
        device: &Device,
    ) -> candle_core::Result<Self> {
        let Some(bytes) = start.checked_add(len).and_then(|end| map.get(start..end)) else {
            candle_core::bail!("bytes {start}+{len} lie past the end of the file");
        };
        if device.is_cpu() && mappable(dtype) {
            let map = Arc::clone(map);
            return Self::mapped(dtype, shape.to_vec(), vec![Bytes::Map { map, start, len }]);
        }
        Ok(super::load_tensor(dtype, shape, bytes, device)?.into())
    }

    /// Checks that the bytes hold exactly the declared elements, each part whole rows, so that
    /// no later read of them can go out of bounds or misread.
    fn mapped(dtype: DType, shape: Vec<usize>, parts: Vec<Bytes>) -> candle_core::Result<Self> {
        let t = StoredTensor(Inner::Mapped {
            dtype,
            shape,
            parts,
        });
        if let Inner::Mapped { shape, parts, .. } = &t.0 {
            let size = dtype.size_in_bytes();
            let row = shape
                .iter()
                .skip(1)
                .try_fold(size, |n, &d| n.checked_mul(d));
            let want = row.and_then(|r| r.checked_mul(shape.first().copied().unwrap_or(1)));
            let have: usize = parts.iter().map(Bytes::len).sum();
            if want != Some(have) {
                candle_core::bail!(
                    "{have} bytes do not hold {dtype:?} elements of shape {shape:?}"
                );
            }
            // `want` is some, so `row` is.
            let row = row.unwrap_or(1).max(1);
            if parts.iter().any(|p| p.len() % row != 0) {
                candle_core::bail!("the blocks of a {shape:?} tensor are not whole rows");
            }
        }
        Ok(t)
    }

    /// `parts` stacked along their first dimension (`torch.cat(parts, 0)`): kept in the file when
    /// they all are, with one dtype and the same other dimensions; read into one tensor otherwise.
    pub fn cat_rows(parts: Vec<StoredTensor>) -> candle_core::Result<Self> {
        let key = |p: &StoredTensor| match &p.0 {
            Inner::Mapped { dtype, shape, .. } if !shape.is_empty() => {
                Some((*dtype, shape[1..].to_vec()))
            }
            _ => None,
        };
        let first = parts.first().and_then(key);
        let Some((dtype, rest)) =
            first.filter(|f| parts.iter().all(|p| key(p).as_ref() == Some(f)))
        else {
            let tensors = parts
                .into_iter()
                .map(StoredTensor::into_tensor)
                .collect::<candle_core::Result<Vec<_>>>()?;
            return Ok(Tensor::cat(&tensors, 0)?.into());
        };
        let rows = parts.iter().map(|p| p.dims()[0]).sum();
        let blocks = parts.into_iter().flat_map(|p| match p.0 {
            Inner::Mapped { parts, .. } => parts,
            Inner::Tensor(_) => Vec::new(),
        });
        Self::mapped(dtype, [vec![rows], rest].concat(), blocks.collect())
    }

    /// A mapped tensor over bytes in memory (tests of unaligned and misdeclared inputs).
    #[cfg(test)]
    pub(crate) fn from_bytes(
        dtype: DType,
        shape: &[usize],
        bytes: Vec<u8>,
    ) -> candle_core::Result<Self> {
        Self::mapped(dtype, shape.to_vec(), vec![Bytes::Owned(bytes)])
    }

    /// Whether it is on the CPU (a tensor still in a mapped file always is).
    pub fn is_cpu(&self) -> bool {
        match &self.0 {
            Inner::Tensor(t) => t.device().is_cpu(),
            Inner::Mapped { .. } => true,
        }
    }

    /// The shape.
    pub fn dims(&self) -> &[usize] {
        match &self.0 {
            Inner::Tensor(t) => t.dims(),
            Inner::Mapped { shape, .. } => shape,
        }
    }

    /// The same elements under `shape` (the same number of them, row-major).
    pub fn reshape(self, shape: &[usize]) -> candle_core::Result<Self> {
        match self.0 {
            Inner::Tensor(t) => Ok(t.reshape(shape)?.into()),
            Inner::Mapped {
                dtype,
                shape: old,
                parts,
            } => {
                if shape.iter().product::<usize>() != old.iter().product::<usize>() {
                    candle_core::bail!("cannot reshape {old:?} to {shape:?}");
                }
                Self::mapped(dtype, shape.to_vec(), parts)
            }
        }
    }

    /// The rows of a tensor still in the file, as `[dims[0], product of the other dims]`;
    /// `None` for a tensor.
    pub(crate) fn le_rows(&self) -> Option<candle_core::Result<LeRows<'_>>> {
        let Inner::Mapped {
            dtype,
            shape,
            parts,
        } = &self.0
        else {
            return None;
        };
        let n = shape.first().copied().unwrap_or(1);
        let k = shape.iter().skip(1).product();
        Some(LeRows::new(
            *dtype,
            parts.iter().map(Bytes::read).collect(),
            n,
            k,
        ))
    }

    /// As a tensor in the stored dtype for fp16 (as [`super::load_tensor`] keeps it), f32 for
    /// every other.
    pub fn into_tensor(self) -> candle_core::Result<Tensor> {
        match self.0 {
            Inner::Tensor(t) => Ok(t),
            Inner::Mapped {
                dtype,
                shape,
                parts,
            } => {
                let bytes = match parts.as_slice() {
                    [one] => one.read(),
                    many => Cow::Owned(many.iter().flat_map(|p| p.read().into_owned()).collect()),
                };
                super::load_tensor(dtype, &shape, &bytes, &Device::Cpu)
            }
        }
    }

    /// As an f32 tensor, widened straight from the file's bytes where it is still there.
    pub fn into_f32_tensor(self) -> candle_core::Result<Tensor> {
        match self.0 {
            Inner::Tensor(t) => super::to_f32(t),
            Inner::Mapped {
                dtype,
                shape,
                parts,
            } => {
                let mut wide = vec![0f32; shape.iter().product()];
                let mut rest = wide.as_mut_slice();
                for part in &parts {
                    let bytes = part.read();
                    let (dst, tail) = rest.split_at_mut(bytes.len() / dtype.size_in_bytes());
                    super::widen_le(dtype, &bytes, dst)?;
                    rest = tail;
                }
                Tensor::from_vec(wide, shape, &Device::Cpu)
            }
        }
    }
}

/// The rows of an `[n, k]` matrix of little-endian f32, f16 or bf16 values, given as blocks of
/// whole rows in order (one for a tensor of a file, several for transformers' q, k, v), each
/// widened to f32 on demand: how a layer reads a weight from the file without copying all of it.
pub(crate) struct LeRows<'a> {
    dtype: DType,
    parts: Vec<Cow<'a, [u8]>>,
    /// The first row of each block, to find a row's block.
    firsts: Vec<usize>,
    /// Bytes per row.
    row: usize,
}

impl<'a> LeRows<'a> {
    /// Refuses a dtype other than f32, f16 and bf16, and blocks that are not exactly `n` rows
    /// of `k` values in all, or not whole rows each.
    pub(crate) fn new(
        dtype: DType,
        parts: Vec<Cow<'a, [u8]>>,
        n: usize,
        k: usize,
    ) -> candle_core::Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            candle_core::bail!("cannot read rows of {dtype:?} values");
        }
        let row = k.checked_mul(dtype.size_in_bytes());
        let have: usize = parts.iter().map(|p| p.len()).sum();
        if row.and_then(|r| r.checked_mul(n)) != Some(have) {
            candle_core::bail!("{have} bytes do not hold [{n}, {k}] {dtype:?} values");
        }
        let row = row.unwrap_or(0);
        if parts.iter().any(|p| p.len() % row.max(1) != 0) {
            candle_core::bail!("the blocks of a [{n}, {k}] matrix are not whole rows");
        }
        let firsts = parts
            .iter()
            .scan(0, |r, p| {
                let first = *r;
                *r += p.len() / row.max(1);
                Some(first)
            })
            .collect();
        Ok(LeRows {
            dtype,
            parts,
            firsts,
            row,
        })
    }

    /// Row `r` (`< n`) widened into `dst` (`k` values).
    pub(crate) fn widen(&self, r: usize, dst: &mut [f32]) {
        // The last block starting at or before `r`: empty blocks are skipped.
        let i = self.firsts.partition_point(|&f| f <= r) - 1;
        let bytes = &self.parts[i][(r - self.firsts[i]) * self.row..][..self.row];
        super::widen_le_row(self.dtype, bytes, dst).expect("dtype and lengths checked in new");
    }
}

/// A tensor's bytes are read once (packed, or copied into a tensor): when they are dropped, their
/// pages leave the resident set, so a loaded model is not charged for the whole file as well.
impl Drop for Bytes {
    fn drop(&mut self) {
        match self {
            Bytes::Record(r) => r.release_pages(),
            Bytes::Map { map, start, len } => zeroclip_pt::release_range(map, *start, *len),
            #[cfg(test)]
            Bytes::Owned(_) => {}
        }
    }
}

impl Bytes {
    fn len(&self) -> usize {
        match self {
            Bytes::Record(r) => r.numel() * r.dtype.size_in_bytes(),
            Bytes::Map { len, .. } => *len,
            #[cfg(test)]
            Bytes::Owned(v) => v.len(),
        }
    }

    fn read(&self) -> Cow<'_, [u8]> {
        match self {
            Bytes::Record(r) => r.contiguous_bytes(),
            // In bounds: checked in `StoredTensor::from_map`.
            Bytes::Map { map, start, len } => Cow::Borrowed(&map[*start..start + len]),
            #[cfg(test)]
            Bytes::Owned(v) => Cow::Borrowed(v),
        }
    }
}
