//! Tensors as views into storages: dtype, shape, strides and offset over shared raw bytes.
//!
//! This reproduces how `torch.load` rebuilds a tensor from `_rebuild_tensor_v2(storage, offset,
//! size, stride)`: several tensors may view one storage (tied weights, slices, transposes), so a
//! storage is shared and a tensor's elements are gathered in row-major order only when asked.

use crate::error::{format_fault, Fault};
use crate::value::TensorRef;
use memmap2::Mmap;
use std::borrow::Cow;
use std::sync::Arc;

/// Largest contiguous copy of a view that repeats its storage's elements (1 GiB).
const MAX_EXPANDED_BYTES: usize = 1 << 30;

/// Element type of a tensor, as its PyTorch storage class names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 16-bit integer.
    I16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean, one byte each.
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// PyTorch's name for the dtype (`float16`, `bfloat16`, ...).
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }
}

/// The raw bytes of one storage: a range of the memory-mapped file (or, in unit tests, a vector).
#[derive(Debug)]
pub(crate) enum Bytes {
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
    #[cfg(test)]
    Owned(Vec<u8>),
}

/// One storage of a checkpoint, shared by every tensor that views it.
#[derive(Debug)]
pub(crate) struct Storage {
    pub bytes: Bytes,
    /// The file was written on a big-endian machine: elements are byte-swapped when read.
    pub big_endian: bool,
}

impl Storage {
    fn as_slice(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped { map, start, len } => map.get(*start..start + len).unwrap_or(&[]),
            #[cfg(test)]
            Bytes::Owned(v) => v,
        }
    }
}

/// One named tensor of a checkpoint: metadata plus a view into its (possibly shared) storage.
#[derive(Debug, Clone)]
pub struct TensorRecord {
    /// Name as a `state_dict` would have it, e.g. `visual.conv1.weight`.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Size of each dimension.
    pub shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
    storage: Arc<Storage>,
}

impl TensorRecord {
    /// Checks that the view lies inside the storage, so reading it later cannot fail.
    pub(crate) fn new(name: String, t: &TensorRef, storage: Arc<Storage>) -> Result<Self, Fault> {
        let dtype = t.storage.dtype;
        let offset = t
            .storage
            .view_offset
            .checked_add(t.offset)
            .ok_or_else(|| format_fault!("tensor `{name}`: storage offset overflows"))?;
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| format_fault!("tensor `{name}`: size {:?} overflows", t.shape))?;
        if numel > 0 {
            let last = t
                .shape
                .iter()
                .zip(&t.strides)
                .try_fold(offset, |acc, (&d, &s)| {
                    acc.checked_add((d - 1).checked_mul(s)?)
                });
            let end_bytes = last
                .and_then(|l| l.checked_add(1))
                .and_then(|n| n.checked_mul(dtype.size_in_bytes()));
            let have = storage.as_slice().len();
            let gathered = numel.checked_mul(dtype.size_in_bytes());
            // Only overlapping (stride-0, expanded) views gather more bytes than their storage
            // holds; a hostile file could make one ask for terabytes, so those are capped.
            if gathered.is_none_or(|g| g > have && g > MAX_EXPANDED_BYTES) {
                return Err(format_fault!(
                    "tensor `{name}` (size {:?}, stride {:?}) expands its storage `{}` of \
                     {have} bytes beyond {MAX_EXPANDED_BYTES} bytes",
                    t.shape,
                    t.strides,
                    t.storage.key
                ));
            }
            if end_bytes.is_none_or(|e| e > have) {
                return Err(format_fault!(
                    "tensor `{name}` (size {:?}, stride {:?}, offset {offset}) reaches past \
                     its storage `{}` of {have} bytes",
                    t.shape,
                    t.strides,
                    t.storage.key
                ));
            }
        }
        Ok(TensorRecord {
            name,
            dtype,
            shape: t.shape.clone(),
            strides: t.strides.clone(),
            offset,
            storage,
        })
    }

    /// Element strides into the storage, as PyTorch's `tensor.stride()`.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Element offset into the storage, as PyTorch's `tensor.storage_offset()`.
    pub fn storage_offset(&self) -> usize {
        self.offset
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the elements are already row-major and adjacent in the storage.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d == 0 {
                return true;
            }
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// Lets the tensor's pages of the mapped file leave the process's resident memory, once its
    /// values have been read: the page cache keeps them, and a later read faults them back in
    /// from the file. Only the whole pages inside the tensor's bytes are released, so that its
    /// neighbours' stay. A gathered (non-contiguous) view releases nothing.
    pub fn release_pages(&self) {
        #[allow(irrefutable_let_patterns)] // `Bytes::Owned` exists in unit tests only
        let Bytes::Mapped { map, start, .. } = &self.storage.bytes
        else {
            return;
        };
        if !self.is_contiguous() {
            return;
        }
        let elem = self.dtype.size_in_bytes();
        let from = start + self.offset * elem;
        release_range(map, from, self.numel() * elem);
    }

    /// The elements in row-major contiguous order, little-endian. Borrowed from the mapped file
    /// when the tensor is contiguous there; gathered (and byte-swapped if needed) otherwise.
    pub fn contiguous_bytes(&self) -> Cow<'_, [u8]> {
        let elem = self.dtype.size_in_bytes();
        let numel = self.numel();
        let data = self.storage.as_slice();
        if numel == 0 {
            return Cow::Borrowed(&[]);
        }
        if self.is_contiguous() && !self.storage.big_endian {
            let start = self.offset * elem;
            return Cow::Borrowed(&data[start..start + numel * elem]);
        }
        let mut out = Vec::with_capacity(numel * elem);
        let rank = self.shape.len();
        if rank == 0 {
            out.extend_from_slice(&data[self.offset * elem..(self.offset + 1) * elem]);
        } else {
            let (inner, inner_stride) = (self.shape[rank - 1], self.strides[rank - 1]);
            let outer = &self.shape[..rank - 1];
            let mut index = vec![0usize; outer.len()];
            'rows: loop {
                let base = self.offset
                    + index
                        .iter()
                        .zip(&self.strides)
                        .map(|(i, s)| i * s)
                        .sum::<usize>();
                if inner_stride == 1 {
                    out.extend_from_slice(&data[base * elem..(base + inner) * elem]);
                } else {
                    for j in 0..inner {
                        let at = (base + j * inner_stride) * elem;
                        out.extend_from_slice(&data[at..at + elem]);
                    }
                }
                // Odometer over the outer dimensions, last fastest.
                let mut dim = outer.len();
                loop {
                    if dim == 0 {
                        break 'rows;
                    }
                    dim -= 1;
                    index[dim] += 1;
                    if index[dim] < outer[dim] {
                        break;
                    }
                    index[dim] = 0;
                }
            }
        }
        if self.storage.big_endian && elem > 1 {
            for chunk in out.chunks_exact_mut(elem) {
                chunk.reverse();
            }
        }
        Cow::Owned(out)
    }
}

/// `MADV_DONTNEED` on the whole pages of `map[start..start + len]`; a failure only leaves them
/// resident.
pub fn release_range(map: &Mmap, start: usize, len: usize) {
    // Pages are at least this large; rounding inward to it never touches bytes outside the range
    // (memmap2 rounds the start down to the real page size, which only widens it on a larger one).
    const PAGE: usize = 4096;
    if start.saturating_add(len) > map.len() {
        return;
    }
    let base = map.as_ptr() as usize;
    let Some(first) = base.checked_add(start) else {
        return;
    };
    let (Some(from), Some(to)) = (first.checked_next_multiple_of(PAGE), first.checked_add(len))
    else {
        return;
    };
    let to = to / PAGE * PAGE;
    if to <= from {
        return;
    }
    // SAFETY: `Mmap::map` maps the file shared and read-only, so after MADV_DONTNEED a read of
    // these pages faults the same file bytes back in: slices borrowed from the map keep reading
    // the values they read before (the file must not change while mapped, as for the map itself).
    #[cfg(unix)]
    let _ = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from - base, to - from)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::StorageRef;

    fn record(shape: &[usize], strides: &[usize], offset: usize, big: bool) -> TensorRecord {
        let bytes: Vec<u8> = (0..24u16).flat_map(|v| v.to_le_bytes()).collect();
        let storage = Arc::new(Storage {
            bytes: Bytes::Owned(bytes),
            big_endian: big,
        });
        let t = TensorRef {
            storage: StorageRef {
                key: "0".into(),
                dtype: DType::I16,
                numel: 24,
                view_offset: 0,
            },
            offset,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
        };
        TensorRecord::new("t".into(), &t, storage).unwrap()
    }

    fn values(r: &TensorRecord) -> Vec<u16> {
        r.contiguous_bytes()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn gathers_transposes_slices_and_scalars() {
        // storage 0..24 viewed as 4x6; its transpose is 6x4 with strides (1, 6).
        let t = record(&[6, 4], &[1, 6], 0, false);
        assert!(!t.is_contiguous());
        assert_eq!(&values(&t)[..5], &[0, 6, 12, 18, 1]);
        let s = record(&[2, 3], &[6, 1], 8, false);
        assert_eq!(values(&s), vec![8, 9, 10, 14, 15, 16]);
        let scalar = record(&[], &[], 5, false);
        assert_eq!(values(&scalar), vec![5]);
        let contiguous = record(&[3], &[1], 2, false);
        assert!(matches!(contiguous.contiguous_bytes(), Cow::Borrowed(_)));
        assert_eq!(values(&contiguous), vec![2, 3, 4]);
        let empty = record(&[0, 3], &[3, 1], 0, false);
        assert!(values(&empty).is_empty());
        let three = record(&[2, 2, 2], &[12, 1, 6], 0, false);
        assert_eq!(values(&three), vec![0, 6, 1, 7, 12, 18, 13, 19]);
    }

    #[test]
    fn swaps_big_endian_storages() {
        let t = record(&[2], &[1], 1, true);
        assert_eq!(values(&t), vec![0x0100, 0x0200]);
    }

    #[test]
    fn refuses_views_past_the_storage() {
        let storage = Arc::new(Storage {
            bytes: Bytes::Owned(vec![0; 8]),
            big_endian: false,
        });
        let t = TensorRef {
            storage: StorageRef {
                key: "k".into(),
                dtype: DType::F32,
                numel: 2,
                view_offset: 0,
            },
            offset: 1,
            shape: vec![2],
            strides: vec![1],
        };
        assert!(TensorRecord::new("x".into(), &t, storage.clone()).is_err());
        // A stride-0 view of 2 elements may be expanded, but not to terabytes.
        let expand = |n: usize| TensorRef {
            offset: 0,
            shape: vec![n, 2],
            strides: vec![0, 1],
            ..t.clone()
        };
        assert!(TensorRecord::new("x".into(), &expand(3), storage.clone()).is_ok());
        assert!(TensorRecord::new("x".into(), &expand(1 << 40), storage).is_err());
    }
}

#[cfg(test)]
mod release_tests {
    use super::*;

    #[test]
    fn released_pages_read_back_the_same_bytes() {
        let path = std::env::temp_dir().join(format!("zeroclip-pt-release-{}", std::process::id()));
        let bytes: Vec<u8> = (0..5 * 4096 + 123).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a read-only map of a file only this test writes, before mapping it.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        assert_eq!(&map[..], &bytes[..]);
        release_range(&map, 100, 3 * 4096 + 5);
        release_range(&map, 0, map.len());
        release_range(&map, map.len() - 1, 1);
        // Out of range or empty: nothing happens.
        release_range(&map, map.len(), 4096);
        release_range(&map, usize::MAX, 2);
        assert_eq!(&map[..], &bytes[..]);
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}
