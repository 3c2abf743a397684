//! A layer's weight packed once, at load, into the layout the micro-kernels stream: panels of
//! `NR` columns, `[steps][NR]` each (64-byte aligned, the last panel zero-padded), in f32, or as
//! bf16 or int8 slots (`bf16.rs`, `int8.rs`) with, for int8, each column's scale and zero-point
//! correction. Where the f32 products go through the `gemm` crate (`fallback.rs`), an f32 weight
//! is kept as given instead, `[n, k]` row-major: one copy, read in place by that crate.

use candle_core::{Storage, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

use super::dispatch::{narrow_int8_codes, Class, Format};
use super::epilogue::NR;
pub(super) use super::fallback::Layout;
use super::ops::with_f32;
use super::{bf16, int8};
use crate::tensors::{LeRows, StoredTensor};
use std::borrow::Cow;
use zeroclip_pt::DType;

/// The weight code range of an int8 matrix (see `int8.rs`); other formats ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codes {
    /// What the selected CPU class runs fastest: ±63 where its int8 products run on
    /// `vpmaddubsw` (plain AVX2, AVX-512 without VNNI), ±127 elsewhere. For the image tower,
    /// which runs for every image.
    Fastest,
    /// ±127 on every class: for the text tower, which runs once per label set.
    Full,
}

/// A `[k, n]` right-hand matrix laid out for [`super::gemm::matmul`].
#[derive(Clone)]
pub struct PackedMatrix {
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) format: Format,
    /// `k` as the kernels count it: values for f32, slots of two for bf16, of four for int8.
    pub(super) steps: usize,
    pub(super) layout: Layout,
    data: Arc<Buffer>,
    /// int8 only: per column (padded to whole panels), the weight scale and the sum of its codes
    /// as i32 bits (times an activation row's zero point, the correction of that row's sums).
    pub(super) quant: Option<Arc<(Vec<f32>, Vec<f32>)>>,
    /// int8 only: the weight codes lie within ±[`int8::W_MAX_NARROW`] rather than ±127 (packed
    /// for a CPU class whose products run on `vpmaddubsw`; see `int8.rs`).
    pub(super) narrow_codes: bool,
}

/// Whether an int8 matrix in `codes` gets ±63 codes under the selected CPU class.
fn narrow_codes(format: Format, codes: Codes) -> bool {
    format == Format::Int8 && codes == Codes::Fastest && narrow_int8_codes(Class::selected())
}

/// `len` zeroed floats starting at a 64-byte boundary of `data`.
struct Buffer {
    data: Vec<f32>,
    offset: usize,
    len: usize,
}

impl Buffer {
    fn zeroed(len: usize) -> Self {
        let data = vec![0f32; len + 16];
        let offset = data.as_ptr().align_offset(64).min(16);
        Buffer { data, offset, len }
    }

    fn as_slice(&self) -> &[f32] {
        &self.data[self.offset..self.offset + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[self.offset..self.offset + self.len]
    }
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix[{}, {}]", self.k, self.n)
    }
}

impl PackedMatrix {
    /// Packs `B = wᵀ` for `w` `[n, k]` row-major (an `nn.Linear` weight `[out, in]`, or a
    /// convolution weight flattened to `[out, in·kh·kw]`).
    pub fn from_transposed(w: &[f32], n: usize, k: usize) -> Self {
        Self::from_transposed_coded(w, n, k, Format::F32, Codes::Full)
    }

    /// [`Self::from_transposed`] in `format`, int8 weight codes in the range `codes` asks for.
    pub fn from_transposed_coded(
        w: &[f32],
        n: usize,
        k: usize,
        format: Format,
        codes: Codes,
    ) -> Self {
        let copy = |src: &[f32], dst: &mut [f32]| dst.copy_from_slice(src);
        let narrow = narrow_codes(format, codes);
        Self::from_transposed_with(w, n, k, format, Layout::for_format(format), narrow, copy)
    }

    /// [`Self::from_transposed_coded`] for an fp16 weight, widened as it is packed (checkpoints
    /// store fp16; this skips an f32 copy of the whole weight).
    fn from_transposed_f16(
        w: &[half::f16],
        n: usize,
        k: usize,
        format: Format,
        codes: Codes,
    ) -> Self {
        use half::slice::HalfFloatSliceExt;
        let widen = |src: &[half::f16], dst: &mut [f32]| src.convert_to_f32_slice(dst);
        let (layout, narrow) = (Layout::for_format(format), narrow_codes(format, codes));
        Self::from_transposed_with(w, n, k, format, layout, narrow, widen)
    }

    /// `layout` [`Layout::Transposed`] only for f32; int8 codes within ±63 if `narrow`.
    pub(super) fn from_transposed_with<T: Sync>(
        w: &[T],
        n: usize,
        k: usize,
        format: Format,
        layout: Layout,
        narrow: bool,
        widen: impl Fn(&[T], &mut [f32]) + Sync,
    ) -> Self {
        assert_eq!(
            w.len(),
            n * k,
            "weight of {} values for [{n}, {k}]",
            w.len()
        );
        let row = |r: usize, dst: &mut [f32]| widen(&w[r * k..][..k], dst);
        Self::from_rows_widened(n, k, format, layout, narrow, row)
    }

    /// Packs `wᵀ` for `w` `[n, k]` given as row-major little-endian f32, f16 or bf16 `bytes` (a
    /// weight as a checkpoint file stores it), each row widened as it is packed: no full-size
    /// copy of the weight is made. Refuses bytes that do not hold exactly `n·k` such values.
    pub fn from_le_bytes_transposed(
        dtype: DType,
        bytes: &[u8],
        n: usize,
        k: usize,
        format: Format,
    ) -> candle_core::Result<Self> {
        let rows = LeRows::new(dtype, vec![Cow::Borrowed(bytes)], n, k)?;
        Ok(Self::from_le_rows(&rows, n, k, format, Codes::Fastest))
    }

    /// Packs `wᵀ` for `w` `[n, k]` read row by row from the file.
    fn from_le_rows(rows: &LeRows<'_>, n: usize, k: usize, format: Format, codes: Codes) -> Self {
        let (layout, narrow) = (Layout::for_format(format), narrow_codes(format, codes));
        Self::from_rows_widened(n, k, format, layout, narrow, |r, dst| rows.widen(r, dst))
    }

    /// Packs `wᵀ` for a weight `[n, k]` as the checkpoint reader left it: from the mapped file's
    /// bytes, or from a tensor ([`Self::from_tensor_transposed`]); int8 codes as `codes` asks.
    pub fn from_stored_transposed(
        w: StoredTensor,
        format: Format,
        codes: Codes,
    ) -> candle_core::Result<Self> {
        let &[n, k] = w.dims() else {
            candle_core::bail!("a weight to pack has shape {:?}, not [n, k]", w.dims());
        };
        if let Some(rows) = w.le_rows() {
            return Ok(Self::from_le_rows(&rows?, n, k, format, codes));
        }
        Self::from_tensor_transposed(&w.into_tensor()?, format, codes)
    }

    /// `widen(r, dst)` writes row `r` of `w` (`k` values, f32) into `dst`; int8 codes within
    /// ±63 if `narrow_codes`, else ±127.
    fn from_rows_widened(
        n: usize,
        k: usize,
        format: Format,
        layout: Layout,
        narrow_codes: bool,
        widen: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Self {
        if layout == Layout::Transposed {
            assert_eq!(format, Format::F32, "only f32 is kept as given");
            let mut data = Buffer::zeroed(n * k);
            if k > 0 {
                let rows = data.as_mut_slice().par_chunks_mut(k).enumerate();
                rows.for_each(|(r, dst)| widen(r, dst));
            }
            return PackedMatrix {
                k,
                n,
                format,
                steps: k,
                layout,
                data: Arc::new(data),
                quant: None,
                narrow_codes: false,
            };
        }
        let steps = steps_of(k, format);
        let w_max = if narrow_codes {
            int8::W_MAX_NARROW
        } else {
            int8::W_MAX
        };
        Self::build(
            k,
            n,
            format,
            narrow_codes,
            |rows, p, cols, panel, column_quant| {
                // The panel's weight rows widened whole into scratch (and rounded or quantized into
                // slots), then transposed: contiguous reads and writes on both sides.
                let len = k + steps;
                rows.resize(cols * len, 0.0);
                let mut codes = vec![0i8; k];
                for ((j, row), quant) in rows.chunks_exact_mut(len).enumerate().zip(column_quant) {
                    let (wide, packed) = row.split_at_mut(k);
                    widen(p * NR + j, wide);
                    match format {
                        Format::F32 => {}
                        Format::Bf16 => bf16::pack_row(wide, packed),
                        Format::Int8 => {
                            let scale = int8::quantize(wide, w_max, &mut codes);
                            let sum: i32 = codes.iter().map(|&q| q as i32).sum();
                            *quant = [scale, f32::from_bits(sum as u32)];
                            for (d, q) in packed.iter_mut().zip(codes.chunks(4)) {
                                let mut b = [0u8; 4];
                                for (b, c) in b.iter_mut().zip(q) {
                                    *b = *c as u8;
                                }
                                *d = int8::slot(b);
                            }
                        }
                    }
                }
                let from = if format == Format::F32 { 0 } else { k };
                for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    for (j, d) in dst.iter_mut().enumerate().take(cols) {
                        *d = rows[j * len + from + kk];
                    }
                }
            },
        )
    }

    /// Packs `wᵀ` for a CPU tensor `w` `[n, k]` in f32 or f16, stored in `format` (int8 codes as
    /// `codes` asks).
    pub fn from_tensor_transposed(
        w: &Tensor,
        format: Format,
        codes: Codes,
    ) -> candle_core::Result<Self> {
        let (n, k) = w.dims2()?;
        if w.dtype() == candle_core::DType::F16 {
            let w = w.contiguous()?;
            let (storage, layout) = w.storage_and_layout();
            if let (Storage::Cpu(candle_core::CpuStorage::F16(v)), Some((a, b))) =
                (&*storage, layout.contiguous_offsets())
            {
                return Ok(Self::from_transposed_f16(&v[a..b], n, k, format, codes));
            }
        }
        let w = w.to_dtype(candle_core::DType::F32)?;
        with_f32(&w, |v| Self::from_transposed_coded(v, n, k, format, codes))
    }

    /// Packs `B` `[k, n]` row-major (the tests' second way to build the same matrix).
    #[cfg(test)]
    pub(super) fn from_rows(b: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(
            b.len(),
            n * k,
            "matrix of {} values for [{k}, {n}]",
            b.len()
        );
        Self::build(k, n, Format::F32, false, |_, p, cols, panel, _| {
            for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                dst[..cols].copy_from_slice(&b[kk * n + p * NR..][..cols]);
            }
        })
    }

    /// `fill(scratch, p, cols, panel, column_quant)` writes panel `p` (`cols` valid columns) as
    /// `[steps][NR]`, and for int8 each of its columns' `[scale, sum of codes]` (its codes within
    /// ±63 if `narrow_codes`).
    fn build(
        k: usize,
        n: usize,
        format: Format,
        narrow_codes: bool,
        fill: impl Fn(&mut Vec<f32>, usize, usize, &mut [f32], &mut [[f32; 2]]) + Sync,
    ) -> Self {
        let steps = steps_of(k, format);
        let panels = n.div_ceil(NR);
        let len = panels * steps * NR;
        let mut data = Buffer::zeroed(len);
        // Per column (int8 only): the weight scale and the sum of its codes.
        let mut column_quant = vec![[0f32; 2]; panels * NR];
        if steps > 0 {
            data.as_mut_slice()
                .par_chunks_mut(steps * NR)
                .zip(column_quant.par_chunks_mut(NR))
                .enumerate()
                .for_each_init(Vec::new, |scratch, (p, (panel, quant))| {
                    fill(scratch, p, NR.min(n - p * NR), panel, quant)
                });
        }
        let quant = (format == Format::Int8).then(|| {
            let (scales, corr) = column_quant.iter().map(|q| (q[0], q[1])).unzip();
            Arc::new((scales, corr))
        });
        PackedMatrix {
            k,
            n,
            format,
            steps,
            layout: Layout::Panels,
            data: Arc::new(data),
            quant,
            narrow_codes,
        }
    }

    /// `n`, the output columns.
    pub fn cols(&self) -> usize {
        self.n
    }

    /// How the values are stored.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Steps `k0..k0 + kc` of panel `p`, `[kc][NR]` ([`Layout::Panels`]).
    pub(super) fn panel_slice(&self, p: usize, k0: usize, kc: usize) -> &[f32] {
        debug_assert_eq!(self.layout, Layout::Panels);
        &self.data.as_slice()[(p * self.steps + k0) * NR..][..kc * NR]
    }

    /// An f32 matrix's `Bᵀ` `[n, k]` row-major, from either layout (the per-layer precision
    /// report repacks it in the other formats).
    pub(super) fn to_transposed(&self) -> Vec<f32> {
        assert_eq!(self.format, Format::F32, "only f32 unpacks exactly");
        let (k, n) = (self.k, self.n);
        if self.layout == Layout::Transposed {
            return self.transposed()[..n * k].to_vec();
        }
        let mut w = vec![0f32; n * k];
        for (j, row) in w.chunks_exact_mut(k.max(1)).enumerate().take(n) {
            let panel = &self.data.as_slice()[j / NR * k * NR..];
            for (kk, v) in row.iter_mut().enumerate() {
                *v = panel[kk * NR + j % NR];
            }
        }
        w
    }

    /// `Bᵀ` `[n, k]` row-major ([`Layout::Transposed`]).
    pub(super) fn transposed(&self) -> &[f32] {
        debug_assert_eq!(self.layout, Layout::Transposed);
        self.data.as_slice()
    }
}

/// `k` as the kernels of `format` step through it.
pub(super) fn steps_of(k: usize, format: Format) -> usize {
    match format {
        Format::F32 => k,
        Format::Bf16 => k.div_ceil(2),
        Format::Int8 => k.div_ceil(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `n·k` pseudo-random values of `dtype` (as f32, exactly representable in it), the tensor
    /// holding them in `dtype`, and their little-endian bytes.
    fn weight(dtype: DType, n: usize, k: usize, seed: u32) -> (Tensor, Vec<u8>) {
        let mut x = seed;
        let values: Vec<f32> = (0..n * k)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        let dev = Device::Cpu;
        match dtype {
            DType::F32 => {
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (Tensor::from_vec(values, (n, k), &dev).unwrap(), bytes)
            }
            DType::F16 => {
                let h: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
                let bytes = h.iter().flat_map(|v| v.to_le_bytes()).collect();
                (Tensor::from_vec(h, (n, k), &dev).unwrap(), bytes)
            }
            DType::BF16 => {
                let h: Vec<half::bf16> = values.iter().map(|&v| half::bf16::from_f32(v)).collect();
                let bytes = h.iter().flat_map(|v| v.to_le_bytes()).collect();
                (Tensor::from_vec(h, (n, k), &dev).unwrap(), bytes)
            }
            other => unreachable!("no {other:?} weights in these tests"),
        }
    }

    fn same_bits(a: &PackedMatrix, b: &PackedMatrix) -> bool {
        let bits = |m: &PackedMatrix| -> Vec<u32> {
            let quant = m.quant.iter().flat_map(|q| q.0.iter().chain(&q.1));
            m.data
                .as_slice()
                .iter()
                .chain(quant)
                .map(|v| v.to_bits())
                .collect()
        };
        (a.k, a.n, a.steps, a.format) == (b.k, b.n, b.steps, b.format) && bits(a) == bits(b)
    }

    #[test]
    fn packing_the_file_bytes_equals_packing_the_tensor() {
        // Neither k nor n a multiple of a slot or a panel.
        let (n, k) = (2 * NR + 5, 45);
        for format in [Format::F32, Format::Bf16, Format::Int8] {
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let (t, bytes) = weight(dtype, n, k, 7);
                let want =
                    PackedMatrix::from_tensor_transposed(&t, format, Codes::Fastest).unwrap();
                let got = PackedMatrix::from_le_bytes_transposed(dtype, &bytes, n, k, format);
                assert!(same_bits(&got.unwrap(), &want), "{dtype:?} as {format:?}");
                // Unaligned in memory: the same values through the byte-wise path.
                let mut shifted = vec![0u8];
                shifted.extend(&bytes);
                let got =
                    PackedMatrix::from_le_bytes_transposed(dtype, &shifted[1..], n, k, format);
                assert!(same_bits(&got.unwrap(), &want), "{dtype:?} unaligned");
                let stored = StoredTensor::from_bytes(dtype, &[n, k], bytes.clone()).unwrap();
                let got =
                    PackedMatrix::from_stored_transposed(stored, format, Codes::Fastest).unwrap();
                assert!(same_bits(&got, &want), "{dtype:?} stored as {format:?}");
                // As blocks of rows (transformers' q, k, v), one of them empty.
                let row = k * dtype.size_in_bytes();
                let blocks = [(0, 10), (10, 10), (10, n)].map(|(a, b)| {
                    let part = bytes[a * row..b * row].to_vec();
                    StoredTensor::from_bytes(dtype, &[b - a, k], part).unwrap()
                });
                let stacked = StoredTensor::cat_rows(blocks.into()).unwrap();
                let got =
                    PackedMatrix::from_stored_transposed(stacked, format, Codes::Fastest).unwrap();
                assert!(same_bits(&got, &want), "{dtype:?} in blocks as {format:?}");
            }
        }
    }

    #[test]
    fn bytes_that_do_not_hold_the_weight_are_refused() {
        let (_, bytes) = weight(DType::F16, 4, 6, 1);
        let pack = |dtype, b: &[u8], n, k| {
            PackedMatrix::from_le_bytes_transposed(dtype, b, n, k, Format::Int8)
                .unwrap_err()
                .to_string()
        };
        let msg = pack(DType::F16, &bytes[..bytes.len() - 1], 4, 6);
        assert!(
            msg.contains("47 bytes do not hold [4, 6] F16 values"),
            "{msg}"
        );
        // Declared larger than the bytes, and so large that n·k·size overflows.
        assert!(pack(DType::F16, &bytes, 4, 7).contains("do not hold"));
        assert!(pack(DType::F32, &bytes, usize::MAX / 2, 3).contains("do not hold"));
        assert!(pack(DType::I16, &bytes, 4, 6).contains("cannot read rows of I16 values"));
        let msg = StoredTensor::from_bytes(DType::F32, &[4, 6], bytes.clone())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("48 bytes do not hold F32 elements of shape [4, 6]"),
            "{msg}"
        );
        let stored = StoredTensor::from_bytes(DType::F16, &[2, 2, 6], bytes.clone()).unwrap();
        let msg =
            PackedMatrix::from_stored_transposed(stored, Format::F32, Codes::Full).unwrap_err();
        assert!(msg.to_string().contains("not [n, k]"), "{msg}");
        let stored = StoredTensor::from_bytes(DType::F16, &[4, 6], bytes.clone()).unwrap();
        assert!(stored.reshape(&[5, 5]).is_err());
        let parts = vec![Cow::Borrowed(&bytes[..10]), Cow::Borrowed(&bytes[10..])];
        let msg = LeRows::new(DType::F16, parts, 4, 6)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("not whole rows"), "{msg}");
    }
}
