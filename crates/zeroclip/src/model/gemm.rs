//! The CPU matrix product for weights known at load time: `C = epilogue(A · B)` with `B` (a
//! layer's weight) packed once into the layout the kernel streams, and a per-column affine map,
//! residual, ReLU or QuickGELU applied to each finished tile while it is still in registers or L1.
//!
//! Why not candle's matmul (the `gemm` crate) for these: it packs the weight again on every call,
//! a large share of the work when a GEMM has few rows (batch 1), and it ran the ResNet's
//! convolution shapes well below the FMA peak (docs/PERFORMANCE.md, speed round 2). Here the
//! weight is packed at load into panels of `NR` columns, `[k][NR]` each (64-byte aligned, the
//! last panel zero-padded), and a register-blocked micro-kernel broadcasts `A` straight from its
//! rows (no copy of the activations), blocked by `KC` along `k` so a panel's slice stays in L1
//! while up to `MC` rows of `A` stream from L2. With AVX-512 it computes 12 rows × two panels
//! (24 of the 32 vector registers accumulate), which halves the loads per multiply-add against
//! the AVX2 + FMA kernel's 6 × 16; the AVX2 kernel takes single panels and CPUs without
//! AVX-512, a portable one CPUs without AVX2. The AVX2 kernel packs `A` as well (BLIS-style)
//! when a task spans many panels, where the copy pays for itself; on narrow shapes, and for the
//! AVX-512 kernel, it measured slower. Each kernel call prefetches the `C` rows of the next call.
//! `Format::Bf16` and `Format::Int8` matrices run through the same driver as slots of 2 or 4
//! values of consecutive `k` (see `bf16.rs`, `int8.rs`); the measurements are in
//! docs/PERFORMANCE.md.
//!
//! Arithmetic: each output is a sum of fused multiply-adds over `k` in increasing order within a
//! `KC` block, blocks added in order — the same in the AVX-512 and AVX2 kernels and for any
//! number of threads (the portable kernel rounds each product before adding); the epilogue computes
//! `acc·scale + shift`, `+ residual`, `max(0, ·)` or QuickGELU as the reference applies bias,
//! BatchNorm, residual and activation after its product.

use candle_core::{Device, Storage, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

use super::epilogue::finish;
pub use super::epilogue::{Epilogue, NR};
pub use super::microkernel::KERNEL_ENV;
use super::microkernel::{Kernel, Tile, TileEpi, MR_WIDE};
use super::ops::contiguous_f32;
use super::{bf16, int8};
use crate::tensors::Precision;

/// Rows per micro-kernel step (12 accumulator registers + 2 for `B` + 1 broadcast).
const MR: usize = 6;
/// `k` per block: a panel's slice is `KC × NR` floats = 16 KiB, half of L1.
const KC: usize = 256;
/// Rows of `A` per task: `MC × KC` floats = 120 KiB, resident in L2.
const MC: usize = 120;
/// Panels a task of the 6-row kernel must span before it packs `A` (see `block`).
const PACK_A_MIN_PANELS: usize = 32;

/// How a [`PackedMatrix`] stores its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// f32, as given.
    #[default]
    F32,
    /// Rounded to bf16 and stored as slots of two consecutive `k` (see `bf16.rs`); the
    /// left-hand side is rounded to bf16 for the product too, which accumulates in f32.
    Bf16,
    /// Symmetric int8 codes per column with a scale each, stored as slots of four consecutive
    /// `k` (see `int8.rs`); the left-hand side is quantized per row for each product.
    Int8,
}

impl From<Precision> for Format {
    fn from(p: Precision) -> Format {
        match p {
            Precision::Fp32 => Format::F32,
            Precision::Bf16 => Format::Bf16,
            Precision::Int8 => Format::Int8,
        }
    }
}

/// A `[k, n]` right-hand matrix laid out for [`matmul`].
#[derive(Clone)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    format: Format,
    /// `k` as the kernels count it: values for f32, slots of two for bf16, of four for int8.
    steps: usize,
    data: Arc<Buffer>,
    /// int8 only: per column (padded to whole panels), the weight scale and the zero-point
    /// correction `ZERO_POINT · Σ codes` as i32 bits.
    quant: Option<Arc<(Vec<f32>, Vec<f32>)>>,
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
    fn from_transposed_with<T: Sync>(
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
        let mut packed = Self::build(k, n, format, |rows, p, cols, panel| {
            // The panel's weight rows widened whole into scratch (and rounded or quantized into
            // slots), then transposed: contiguous reads and writes on both sides.
            let len = k + steps;
            rows.resize(cols * len, 0.0);
            let mut codes = vec![0i8; k];
            for (j, row) in rows.chunks_exact_mut(len).enumerate() {
                let (wide, packed) = row.split_at_mut(k);
                widen(&w[(p * NR + j) * k..][..k], wide);
                match format {
                    Format::F32 => {}
                    Format::Bf16 => bf16::pack_row(wide, packed),
                    Format::Int8 => {
                        int8::quantize(wide, max, &mut codes);
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
        });
        if format == Format::Int8 {
            // The same codes again, for each column's scale and zero-point correction.
            let padded = n.div_ceil(NR) * NR;
            let mut scales = vec![0f32; padded];
            let mut corr = vec![0f32; padded];
            scales[..n]
                .par_iter_mut()
                .zip(&mut corr[..n])
                .enumerate()
                .for_each_init(
                    || (vec![0f32; k], vec![0i8; k]),
                    |(wide, codes), (j, (s, c))| {
                        widen(&w[j * k..][..k], wide);
                        *s = int8::quantize(wide, max, codes);
                        let sum: i32 = codes.iter().map(|&q| q as i32).sum();
                        *c = f32::from_bits((int8::ZERO_POINT * sum) as u32);
                    },
                );
            packed.quant = Some(Arc::new((scales, corr)));
        }
        packed
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
    fn from_rows(b: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(
            b.len(),
            n * k,
            "matrix of {} values for [{k}, {n}]",
            b.len()
        );
        Self::build(k, n, Format::F32, |_, p, cols, panel| {
            for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                dst[..cols].copy_from_slice(&b[kk * n + p * NR..][..cols]);
            }
        })
    }

    /// `fill(scratch, p, cols, panel)` writes panel `p` (`cols` valid columns) as
    /// `[steps][NR]`.
    fn build(
        k: usize,
        n: usize,
        format: Format,
        fill: impl Fn(&mut Vec<f32>, usize, usize, &mut [f32]) + Sync,
    ) -> Self {
        let steps = steps_of(k, format);
        let panels = n.div_ceil(NR);
        let len = panels * steps * NR;
        let mut data = Buffer::zeroed(len);
        if steps > 0 {
            data.as_mut_slice()
                .par_chunks_mut(steps * NR)
                .enumerate()
                .for_each_init(Vec::new, |scratch, (p, panel)| {
                    fill(scratch, p, NR.min(n - p * NR), panel)
                });
        }
        PackedMatrix {
            k,
            n,
            format,
            steps,
            data: Arc::new(data),
            quant: None,
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
    fn panel_slice(&self, p: usize, k0: usize, kc: usize) -> &[f32] {
        &self.data.as_slice()[(p * self.steps + k0) * NR..][..kc * NR]
    }
}

/// `k` as the kernels of `format` step through it.
fn steps_of(k: usize, format: Format) -> usize {
    match format {
        Format::F32 => k,
        Format::Bf16 => k.div_ceil(2),
        Format::Int8 => k.div_ceil(4),
    }
}

/// The largest weight code of `format` (int8): ±63 where the products run on the plain AVX2
/// kernel (see `int8.rs`), else ±127.
fn weight_code_max(format: Format) -> f32 {
    let kernels = kernels_for(Kernel::selected(), format, !Kernel::forced());
    int8_code_max(kernels)
}

/// [`weight_code_max`] for given kernels.
fn int8_code_max(kernels: Kernels) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if kernels.narrow == Kernel::Int8Avx2 {
        return 63.0;
    }
    let _ = kernels;
    127.0
}

/// `C[i, j] = epilogue(Σ_k A[i, k] · B[k, j])` for `A` `[m, k]` with row stride `lda` and `C`
/// `[m, n]` with row stride `ldc`, on up to `threads` rayon workers.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedMatrix,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
    threads: usize,
) {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(lda >= k && a.len() >= (m - 1) * lda + k, "A is too short");
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "C is too short");
    if let Some(r) = epi.residual {
        assert!(r.len() >= (m - 1) * ldc + n, "residual is too short");
    }
    for v in [epi.scale, epi.shift].into_iter().flatten() {
        assert!(v.len() >= n, "epilogue vector shorter than {n}");
    }
    let panels = n.div_ceil(NR);
    let kernels = kernels_for(Kernel::selected(), b.format, !Kernel::forced());
    // A bf16 or int8 product takes `A` rounded or quantized into slots, once per call.
    let converted;
    let (a, lda, row_scales): (&[f32], usize, &[f32]) = match b.format {
        Format::F32 => (a, lda, &[]),
        format => {
            converted = a_as_slots(a, lda, m, k, format, threads);
            (&converted.0, b.steps, &converted.1)
        }
    };
    let m_blocks = m.div_ceil(MC);
    // Equal row blocks (whole micro-tiles of either kernel), so no task is a small remainder.
    let mc = m.div_ceil(m_blocks).div_ceil(MR_WIDE) * MR_WIDE;
    // Enough tasks for the workers to balance, each a run of whole panels.
    let want = if threads > 1 { 4 * threads } else { 1 };
    let n_chunks = want.div_ceil(m_blocks).clamp(1, panels);
    // Whole pairs of panels for the AVX-512 kernel.
    let per_chunk = panels.div_ceil(n_chunks).next_multiple_of(2);
    let n_chunks = panels.div_ceil(per_chunk);
    let c_ptr = SendPtr(c.as_mut_ptr());
    let task = |t: usize| {
        let (mb, nc) = (t / n_chunks, t % n_chunks);
        let rows = (mb * mc).min(m)..(mb * mc + mc).min(m);
        let panels = nc * per_chunk..(nc * per_chunk + per_chunk).min(panels);
        // SAFETY: tasks write disjoint (row block, panel run) rectangles of C, all inside it.
        unsafe {
            block(
                kernels,
                a,
                lda,
                row_scales,
                b,
                c_ptr.get(),
                ldc,
                epi,
                rows,
                panels,
            )
        };
    };
    let tasks = m_blocks * n_chunks;
    if threads > 1 && tasks > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// The kernel the products of `format` run with (their wide one where there is one).
pub fn kernel_name_for(format: Format) -> &'static str {
    let k = kernels_for(Kernel::selected(), format, !Kernel::forced());
    k.wide.unwrap_or(k.narrow).name()
}

/// The kernels of a product: one for single panels, and one for pairs of full panels where
/// the CPU has a wider one.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Kernels {
    narrow: Kernel,
    wide: Option<Kernel>,
}

/// The kernels for `format` when the f32 products use `selected`, with the CPU's extensions
/// beyond the class (AVX-512 BF16 and VNNI, AVX-VNNI) where `extensions` allows.
fn kernels_for(selected: Kernel, format: Format, extensions: bool) -> Kernels {
    let (narrow, wide) = match (selected, format) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::F32) => (Kernel::Avx2Fma, Some(Kernel::Avx512)),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Bf16) => {
            let native = bf16::native() && extensions;
            (Kernel::Bf16Avx2, native.then_some(Kernel::Bf16Avx512))
        }
        #[cfg(target_arch = "x86_64")]
        (_, Format::Bf16) if selected != Kernel::Portable => (Kernel::Bf16Avx2, None),
        (_, Format::Bf16) => (Kernel::Bf16Portable, None),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Int8) if int8::vnni() && extensions => {
            (Kernel::Int8Vnni256, Some(Kernel::Int8Vnni512))
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Int8) if int8::avx512bw() => {
            (Kernel::Int8Avx2, Some(Kernel::Int8Avx512Bw))
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2Fma, Format::Int8) if int8::avx_vnni() && extensions => {
            (Kernel::Int8AvxVnni, None)
        }
        #[cfg(target_arch = "x86_64")]
        (_, Format::Int8) if selected != Kernel::Portable => (Kernel::Int8Avx2, None),
        (_, Format::Int8) => (Kernel::Int8Portable, None),
        (other, Format::F32) => (other, None),
    };
    Kernels { narrow, wide }
}

/// `A` `[m, k]` (rows `lda` apart) as `format`'s slots, `[m, steps]`: rounded to bf16, or
/// quantized to int8 with each row's scale (the second vector; empty for bf16).
fn a_as_slots(
    a: &[f32],
    lda: usize,
    m: usize,
    k: usize,
    format: Format,
    threads: usize,
) -> (Vec<f32>, Vec<f32>) {
    let steps = steps_of(k, format).max(1);
    let mut out = vec![0f32; m * steps];
    let mut scales = vec![0f32; if format == Format::Int8 { m } else { 0 }];
    let row = |i: usize, dst: &mut [f32]| match format {
        Format::Int8 => int8::pack_activations(&a[i * lda..][..k], dst),
        _ => {
            bf16::pack_row(&a[i * lda..][..k], dst);
            0.0
        }
    };
    let parallel = threads > 1 && m * k >= 1 << 16;
    if format == Format::Int8 {
        let each = |(i, (dst, s)): (usize, (&mut [f32], &mut f32))| *s = row(i, dst);
        if parallel {
            let rows = out.par_chunks_mut(steps).zip(scales.par_iter_mut());
            rows.enumerate().for_each(each);
        } else {
            out.chunks_mut(steps)
                .zip(scales.iter_mut())
                .enumerate()
                .for_each(each);
        }
    } else if parallel {
        out.par_chunks_mut(steps).enumerate().for_each(|(i, d)| {
            row(i, d);
        });
    } else {
        out.chunks_mut(steps).enumerate().for_each(|(i, d)| {
            row(i, d);
        });
    }
    (out, scales)
}

/// Calls `f` with the values of a CPU f32 tensor (copied first if not contiguous).
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(contiguous_f32(cpu, layout, "matrix operand")?)),
        _ => candle_core::bail!("gemm: operand on {:?}, expected the CPU", t.device()),
    }
}

/// `x [rows, k] · B + bias (+ residual [rows, n])` → `[rows, n]`, then QuickGELU if
/// `quick_gelu`, on the CPU.
pub fn linear(
    x: &Tensor,
    b: &PackedMatrix,
    bias: Option<&[f32]>,
    residual: Option<&Tensor>,
    quick_gelu: bool,
) -> candle_core::Result<Tensor> {
    let (rows, k) = x.dims2()?;
    if k != b.k {
        candle_core::bail!("linear: input [{rows}, {k}] for a weight of {} inputs", b.k);
    }
    let mut out = vec![0f32; rows * b.n];
    let threads = super::threads();
    with_f32(x, |a| match residual {
        Some(r) => with_f32(r, |r| {
            let epi = Epilogue {
                shift: bias,
                residual: Some(r),
                quick_gelu,
                ..Default::default()
            };
            matmul(a, k, rows, b, &mut out, b.n, &epi, threads)
        }),
        None => {
            let epi = Epilogue {
                shift: bias,
                quick_gelu,
                ..Default::default()
            };
            matmul(a, k, rows, b, &mut out, b.n, &epi, threads);
            Ok(())
        }
    })??;
    Tensor::from_vec(out, (rows, b.n), &Device::Cpu)
}

/// A destination pointer shared by parallel tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: the pointer is only dereferenced by tasks that write disjoint parts of a buffer that
// outlives them (see each use); sending or sharing the address itself is harmless.
unsafe impl Send for SendPtr {}
// SAFETY: as for `Send`.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// One task: rows `rows` of `C` × the columns of `panels`.
///
/// # Safety
///
/// `c` must be valid for reads and writes of `C` (`a`'s rows × `b.n` columns, rows `ldc`
/// apart) for the rows and panels given, and no other thread may touch that rectangle
/// meanwhile; `rows` must lie within `a`'s rows and `panels` within `b`'s; `kernel` must be one
/// this CPU runs (see [`kernels_for`]); `a` and `lda` count `b`'s steps (bf16 slots for a bf16
/// `b`).
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    kernels: Kernels,
    a: &[f32],
    lda: usize,
    row_scales: &[f32],
    b: &PackedMatrix,
    c: *mut f32,
    ldc: usize,
    epi: &Epilogue,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    let (k, n) = (b.steps, b.n);
    let Kernels {
        narrow: kernel,
        wide,
    } = kernels;
    let quant = b.quant.as_deref();
    let mut edge = [0f32; MR * NR];
    // The 6-row kernel broadcasts `A` from six rows at once; over many panels, copying each
    // block of `A` into `[kc][MR]` tiles first (one stream instead of six) pays for the copy.
    let pack = wide.is_none() && panels.len() >= PACK_A_MIN_PANELS;
    let mut packed: Vec<f32> = Vec::new();
    // SAFETY: every tile addressed below lies in the rows and panels the caller vouches for
    // (the last, partial panel goes through the full-width `edge` scratch tile).
    unsafe {
        for k0 in (0..k.max(1)).step_by(KC) {
            let kc = KC.min(k - k0);
            let last = k0 + kc >= k;
            if pack {
                let tiles = rows.len().div_ceil(MR);
                packed.clear();
                packed.resize(tiles * kc * MR, 0.0);
                for (t, dst) in packed.chunks_exact_mut(kc * MR).enumerate() {
                    let r0 = rows.start + t * MR;
                    for i in 0..MR.min(rows.end - r0) {
                        let src = &a[(r0 + i) * lda + k0..][..kc];
                        for (p, v) in src.iter().enumerate() {
                            dst[p * MR + i] = *v;
                        }
                    }
                }
            }
            let packed_ptr = packed.as_ptr();
            let tile = |r0: usize, col0: usize, b: [*const f32; 2]| Tile {
                kc,
                a: if pack {
                    packed_ptr.add((r0 - rows.start) / MR * kc * MR)
                } else {
                    a.as_ptr().add(r0 * lda + k0)
                },
                lda: if pack { 1 } else { lda },
                ak: if pack { MR } else { 1 },
                b,
                c: c.add(r0 * ldc + col0),
                ldc,
                accumulate: k0 > 0,
            };
            // A tile of full panels `width` columns wide: on the last `k` block the epilogue is
            // applied in registers before the store, and QuickGELU on the stored tile.
            let full = |kernel: Kernel, r0: usize, r: usize, col0: usize, width: usize, b| {
                let t = tile(r0, col0, b);
                let te = last.then(|| TileEpi {
                    row_scale: quant.map_or(std::ptr::null(), |_| row_scales[r0..].as_ptr()),
                    col_scale: quant.map_or(std::ptr::null(), |q| q.0[col0..].as_ptr()),
                    corr: quant.map_or(std::ptr::null(), |q| q.1[col0..].as_ptr()),
                    scale: epi.scale.map_or(std::ptr::null(), |v| v[col0..].as_ptr()),
                    shift: epi.shift.map_or(std::ptr::null(), |v| v[col0..].as_ptr()),
                    residual: (epi.residual)
                        .map_or(std::ptr::null(), |v| v[r0 * ldc + col0..].as_ptr()),
                    relu: epi.relu,
                });
                kernel.run(r, &t, te.as_ref());
                if last && epi.quick_gelu {
                    activate(t.c, r, width, ldc);
                }
            };
            let mut p = panels.start;
            while p < panels.end {
                let col0 = p * NR;
                #[cfg(target_arch = "x86_64")]
                if let Some(wide) = wide.filter(|_| p + 1 < panels.end && (p + 2) * NR <= n) {
                    // Two full panels side by side: 12 rows × 32 columns per step in AVX-512.
                    let bs = [
                        b.panel_slice(p, k0, kc).as_ptr(),
                        b.panel_slice(p + 1, k0, kc).as_ptr(),
                    ];
                    for r0 in rows.clone().step_by(MR_WIDE) {
                        full(wide, r0, MR_WIDE.min(rows.end - r0), col0, 2 * NR, bs);
                    }
                    p += 2;
                    continue;
                }
                let bp = b.panel_slice(p, k0, kc).as_ptr();
                let bs = [bp, bp.wrapping_add(8)];
                let cols = NR.min(n - col0);
                for r0 in rows.clone().step_by(MR) {
                    let r = MR.min(rows.end - r0);
                    if cols == NR {
                        full(kernel, r0, r, col0, NR, bs);
                        continue;
                    }
                    // Last, partial panel: compute into a full-width scratch tile.
                    let cp = c.add(r0 * ldc + col0);
                    for i in 0..r {
                        for j in 0..cols {
                            edge[i * NR + j] = *cp.add(i * ldc + j);
                        }
                    }
                    let t = Tile {
                        c: edge.as_mut_ptr(),
                        ldc: NR,
                        ..tile(r0, col0, bs)
                    };
                    kernel.run(r, &t, None);
                    for i in 0..r {
                        for j in 0..cols {
                            *cp.add(i * ldc + j) = edge[i * NR + j];
                        }
                    }
                    if last {
                        for i in 0..r {
                            let row = std::slice::from_raw_parts_mut(cp.add(i * ldc), cols);
                            if let Some((scales, corr)) = quant {
                                let (scales, corr) = (&scales[col0..], &corr[col0..]);
                                int8::dequant_row(row, corr, scales, row_scales[r0 + i]);
                            }
                            let res = epi.residual.map(|v| &v[(r0 + i) * ldc + col0..][..cols]);
                            finish(row, col0, res, epi);
                        }
                    }
                }
                p += 1;
            }
        }
    }
}

/// QuickGELU over `rows` × `cols` of a finished tile at `c` (row stride `ldc`).
///
/// # Safety
///
/// `c` must be valid for reads and writes of `rows` rows of `cols` floats, `ldc` apart, that no
/// one else accesses meanwhile.
unsafe fn activate(c: *mut f32, rows: usize, cols: usize, ldc: usize) {
    for i in 0..rows {
        // SAFETY: row `i` of the tile, inside what the caller vouches for.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        for v in row {
            *v = super::ops::quick_gelu_value(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// f64 reference of `epilogue(A·B)`.
    fn naive(a: &[f32], m: usize, k: usize, bt: &[f32], n: usize, epi: &Epilogue) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for kk in 0..k {
                    s += a[i * k + kk] as f64 * bt[j * k + kk] as f64;
                }
                let mut v = s as f32;
                if let Some(sc) = epi.scale {
                    v *= sc[j];
                }
                if let Some(sh) = epi.shift {
                    v += sh[j];
                }
                if let Some(r) = epi.residual {
                    v += r[i * n + j];
                }
                if epi.relu {
                    v = v.max(0.0);
                }
                if epi.quick_gelu {
                    v = crate::model::ops::quick_gelu_value(v);
                }
                out[i * n + j] = v;
            }
        }
        out
    }

    fn check(kernels: Kernels, format: Format, m: usize, k: usize, n: usize, threads: usize) {
        let a = rand(m * k, 1);
        let bt = rand(n * k, 2); // [n, k], B = btᵀ
        let (scale, shift, res) = (rand(n, 3), rand(n, 4), rand(m * n, 5));
        // The operands as the product sees them: rounded, or quantized per row of `A` and per
        // column of `B` (a row of `bt`).
        let max = int8_code_max(kernels);
        let seen = |v: &[f32], rows: usize, activations: bool| -> Vec<f32> {
            match format {
                Format::F32 => v.to_vec(),
                Format::Bf16 => v.iter().map(|&x| bf16::widen(bf16::round(x))).collect(),
                Format::Int8 => v
                    .chunks(k)
                    .take(rows)
                    .flat_map(|row| {
                        if activations {
                            let mut slots = vec![0f32; k.div_ceil(4)];
                            let s = int8::pack_activations(row, &mut slots);
                            let codes = slots.iter().flat_map(|&q| int8::unslot(q));
                            let values = codes.map(|u| (u as i32 - int8::ZERO_POINT) as f32 * s);
                            values.take(k).collect::<Vec<_>>()
                        } else {
                            let mut codes = vec![0i8; k];
                            let s = int8::quantize(row, max, &mut codes);
                            codes.iter().map(|&q| q as f32 * s).collect()
                        }
                    })
                    .collect(),
            }
        };
        let (a_seen, bt_seen) = (seen(&a, m, true), seen(&bt, n, false));
        let copy = |s: &[f32], d: &mut [f32]| d.copy_from_slice(s);
        let packed = PackedMatrix::from_transposed_with(&bt, n, k, format, max, copy);
        let mut matrices = vec![packed];
        if format == Format::F32 {
            let mut b_rows = vec![0f32; k * n];
            for j in 0..n {
                for kk in 0..k {
                    b_rows[kk * n + j] = bt[j * k + kk];
                }
            }
            matrices.push(PackedMatrix::from_rows(&b_rows, k, n));
        }
        // `A` as the kernels read it.
        let (a_in, row_scales) = match format {
            Format::F32 => (a.clone(), Vec::new()),
            _ => a_as_slots(&a, k, m, k, format, 1),
        };
        let lda_in = steps_of(k, format).max(1);
        let epis = [
            Epilogue::default(),
            Epilogue {
                shift: Some(&shift),
                residual: Some(&res),
                ..Default::default()
            },
            Epilogue {
                scale: Some(&scale),
                shift: Some(&shift),
                relu: true,
                ..Default::default()
            },
            Epilogue {
                shift: Some(&shift),
                quick_gelu: true,
                ..Default::default()
            },
        ];
        for (e, epi) in epis.iter().enumerate() {
            let want = naive(&a_seen, m, k, &bt_seen, n, epi);
            for b in &matrices {
                let mut c = vec![f32::NAN; m * n];
                // Same loops as `matmul`, forcing the kernel under test.
                let tasks = m.div_ceil(MC);
                for t in 0..tasks {
                    let rows = t * MC..(t * MC + MC).min(m);
                    // SAFETY: one task at a time, each inside `c`; the kernel was checked above.
                    unsafe {
                        block(
                            kernels,
                            &a_in,
                            lda_in,
                            &row_scales,
                            b,
                            c.as_mut_ptr(),
                            n,
                            epi,
                            rows,
                            0..n.div_ceil(NR),
                        )
                    };
                }
                let tol = 1e-5 * (k as f32).sqrt().max(1.0);
                for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= tol,
                        "{kernels:?} {m}x{k}x{n} epilogue {e} at {i}: {g} vs {w}"
                    );
                }
                if kernels == kernels_for(Kernel::selected(), format, !Kernel::forced()) {
                    let mut c2 = vec![f32::NAN; m * n];
                    matmul(&a, k, m, b, &mut c2, n, epi, threads);
                    assert_eq!(c, c2, "tasks and kernel width change nothing: {m}x{k}x{n}");
                }
            }
        }
    }

    #[test]
    fn matches_a_naive_product_on_every_edge() {
        // Every kernel this CPU runs, whichever `matmul` picks, in both formats.
        let formats = [Format::F32, Format::Bf16, Format::Int8];
        let all = formats.into_iter().flat_map(|f| {
            let each = Kernel::supported().into_iter();
            // With and without the extensions: every class this CPU can stand in for.
            each.flat_map(move |s| [true, false].map(|x| (kernels_for(s, f, x), f)))
        });
        for (kernels, format) in all {
            for (m, k, n) in [
                (1, 1, 1),
                (5, 3, 17),
                (6, 16, 16),
                (7, 255, 31),
                (13, 257, 48),
                (50, 520, 40),
                (121, 33, 5),
                (250, 64, 70),
                (600, 40, 20),
                (30, 70, 100),
                (19, 530, 520),
            ] {
                check(kernels, format, m, k, n, 2);
            }
        }
    }

    #[test]
    fn int8_extreme_codes_do_not_saturate_on_any_kernel() {
        // Every activation at its largest code (u = 255 or 1) against every weight at its
        // largest (±127, or ±63 for the AVX2 kernel), so every byte pair of `vpmaddubsw` sits at
        // the edge of its i16 range: the sums must still be exact.
        let (m, k, n) = (7, 96, 40);
        let a: Vec<f32> = (0..m * k)
            .map(|i| if (i / k) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let bt: Vec<f32> = (0..n * k)
            .map(|i| if (i / k) % 3 == 0 { -2.0 } else { 2.0 })
            .collect();
        let all = Kernel::supported().into_iter();
        for kernels in all.flat_map(|s| [true, false].map(|x| kernels_for(s, Format::Int8, x))) {
            let max = int8_code_max(kernels);
            let copy = |s: &[f32], d: &mut [f32]| d.copy_from_slice(s);
            let b = PackedMatrix::from_transposed_with(&bt, n, k, Format::Int8, max, copy);
            let (a_in, row_scales) = a_as_slots(&a, k, m, k, Format::Int8, 1);
            let mut c = vec![f32::NAN; m * n];
            let epi = Epilogue::default();
            // SAFETY: one task over all of `c`; the kernels are ones this CPU runs.
            unsafe {
                let panels = 0..n.div_ceil(NR);
                let (ptr, steps) = (c.as_mut_ptr(), k.div_ceil(4));
                block(
                    kernels,
                    &a_in,
                    steps,
                    &row_scales,
                    &b,
                    ptr,
                    n,
                    &epi,
                    0..m,
                    panels,
                )
            };
            for i in 0..m {
                for j in 0..n {
                    let want = a[i * k] * bt[j * k] * k as f32;
                    let got = c[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-3,
                        "{kernels:?} ({i}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn respects_row_strides() {
        let (m, k, n, lda, ldc) = (9, 20, 18, 27, 25);
        let a = rand(m * lda, 7);
        let bt = rand(n * k, 8);
        let b = PackedMatrix::from_transposed(&bt, n, k);
        let mut c = vec![-7f32; m * ldc];
        matmul(&a, lda, m, &b, &mut c, ldc, &Epilogue::default(), 2);
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j];
                if j >= n {
                    assert_eq!(got, -7.0, "padding column {j} of row {i} untouched");
                    continue;
                }
                let want: f32 = (0..k).map(|kk| a[i * lda + kk] * bt[j * k + kk]).sum();
                assert!((got - want).abs() < 1e-4, "{i},{j}: {got} vs {want}");
            }
        }
    }
}
