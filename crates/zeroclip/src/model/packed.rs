//! A layer's weight packed once, at load, into the layout the micro-kernels stream: panels of
//! `NR` columns, `[steps][NR]` each (64-byte aligned, the last panel zero-padded), in f32, or as
//! bf16 or int8 slots (`bf16.rs`, `int8.rs`) with, for int8, each column's scale and zero-point
//! correction.

use candle_core::{Storage, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

use super::dispatch::{weight_code_max, Format};
use super::epilogue::NR;
use super::ops::with_f32;
use super::{bf16, int8};

/// A `[k, n]` right-hand matrix laid out for [`super::gemm::matmul`].
#[derive(Clone)]
pub struct PackedMatrix {
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) format: Format,
    /// `k` as the kernels count it: values for f32, slots of two for bf16, of four for int8.
    pub(super) steps: usize,
    data: Arc<Buffer>,
    /// int8 only: per column (padded to whole panels), the weight scale and the zero-point
    /// correction `ZERO_POINT · Σ codes` as i32 bits.
    pub(super) quant: Option<Arc<(Vec<f32>, Vec<f32>)>>,
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
        Self::from_transposed_as(w, n, k, Format::F32)
    }

    /// [`Self::from_transposed`] in `format`.
    pub fn from_transposed_as(w: &[f32], n: usize, k: usize, format: Format) -> Self {
        let max = weight_code_max(format);
        Self::from_transposed_with(w, n, k, format, max, |src, dst| dst.copy_from_slice(src))
    }

    /// [`Self::from_transposed`] for an fp16 weight, widened as it is packed (checkpoints store
    /// fp16; this skips an f32 copy of the whole weight).
    pub fn from_transposed_f16(w: &[half::f16], n: usize, k: usize, format: Format) -> Self {
        use half::slice::HalfFloatSliceExt;
        let max = weight_code_max(format);
        let widen = |src: &[half::f16], dst: &mut [f32]| src.convert_to_f32_slice(dst);
        Self::from_transposed_with(w, n, k, format, max, widen)
    }

    /// `max`: the largest int8 weight code (see [`weight_code_max`]).
    pub(super) fn from_transposed_with<T: Sync>(
        w: &[T],
        n: usize,
        k: usize,
        format: Format,
        max: f32,
        widen: impl Fn(&[T], &mut [f32]) + Sync,
    ) -> Self {
        assert_eq!(
            w.len(),
            n * k,
            "weight of {} values for [{n}, {k}]",
            w.len()
        );
        let steps = steps_of(k, format);
        Self::build(k, n, format, |rows, p, cols, panel, column_quant| {
            // The panel's weight rows widened whole into scratch (and rounded or quantized into
            // slots), then transposed: contiguous reads and writes on both sides.
            let len = k + steps;
            rows.resize(cols * len, 0.0);
            let mut codes = vec![0i8; k];
            for ((j, row), quant) in rows.chunks_exact_mut(len).enumerate().zip(column_quant) {
                let (wide, packed) = row.split_at_mut(k);
                widen(&w[(p * NR + j) * k..][..k], wide);
                match format {
                    Format::F32 => {}
                    Format::Bf16 => bf16::pack_row(wide, packed),
                    Format::Int8 => {
                        let scale = int8::quantize(wide, max, &mut codes);
                        let sum: i32 = codes.iter().map(|&q| q as i32).sum();
                        *quant = [scale, f32::from_bits((int8::ZERO_POINT * sum) as u32)];
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
        })
    }

    /// Packs `wᵀ` for a CPU tensor `w` `[n, k]` in f32 or f16, stored in `format`.
    pub fn from_tensor_transposed(w: &Tensor, format: Format) -> candle_core::Result<Self> {
        let (n, k) = w.dims2()?;
        if w.dtype() == candle_core::DType::F16 {
            let w = w.contiguous()?;
            let (storage, layout) = w.storage_and_layout();
            if let (Storage::Cpu(candle_core::CpuStorage::F16(v)), Some((a, b))) =
                (&*storage, layout.contiguous_offsets())
            {
                return Ok(Self::from_transposed_f16(&v[a..b], n, k, format));
            }
        }
        let w = w.to_dtype(candle_core::DType::F32)?;
        with_f32(&w, |v| Self::from_transposed_as(v, n, k, format))
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
        Self::build(k, n, Format::F32, |_, p, cols, panel, _| {
            for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                dst[..cols].copy_from_slice(&b[kk * n + p * NR..][..cols]);
            }
        })
    }

    /// `fill(scratch, p, cols, panel, column_quant)` writes panel `p` (`cols` valid columns) as
    /// `[steps][NR]`, and for int8 each of its columns' `[scale, correction]`.
    fn build(
        k: usize,
        n: usize,
        format: Format,
        fill: impl Fn(&mut Vec<f32>, usize, usize, &mut [f32], &mut [[f32; 2]]) + Sync,
    ) -> Self {
        let steps = steps_of(k, format);
        let panels = n.div_ceil(NR);
        let len = panels * steps * NR;
        let mut data = Buffer::zeroed(len);
        // Per column (int8 only): the weight scale and the zero-point correction.
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
            data: Arc::new(data),
            quant,
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

    /// Steps `k0..k0 + kc` of panel `p`, `[kc][NR]`.
    pub(super) fn panel_slice(&self, p: usize, k0: usize, kc: usize) -> &[f32] {
        &self.data.as_slice()[(p * self.steps + k0) * NR..][..kc * NR]
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
