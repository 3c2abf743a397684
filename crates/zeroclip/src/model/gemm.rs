//! The CPU matrix product for weights known at load time: `C = epilogue(A · B)` with `B` (a
//! layer's weight) packed once into the layout the kernel streams, and a per-column affine map,
//! residual, ReLU or QuickGELU applied to each finished tile while it is still in registers or L1.
//!
//! Why not candle's matmul (the `gemm` crate) for these: it packs the weight again on every call
//! (28 % of ViT-B/32's time at batch 1, where a GEMM has only 50 rows), and on the ResNet's
//! convolution shapes it ran at 60-140 GFLOP/s of the ~220 this machine's two cores can do
//! (docs/PERFORMANCE.md). Here the weight is packed at load into panels of [`NR`] columns,
//! `[k][NR]` each (64-byte aligned, the last panel zero-padded), and a register-blocked
//! micro-kernel broadcasts `A` straight from its rows (no copy of the activations), blocked by
//! [`KC`] along `k` so a panel's slice stays in L1 while up to [`MC`] rows of `A` stream from L2.
//! With AVX-512 it computes 12 rows × two panels (24 of the 32 vector registers accumulate),
//! which halves the loads per multiply-add against the AVX2 + FMA kernel's 6 × 16 and measured
//! 1.3-1.5× its speed on this AMD EPYC (Zen 4) even though both reach the same FMA peak; the
//! AVX2 kernel takes single panels and CPUs without AVX-512, a portable one CPUs without AVX2.
//! The AVX2 kernel packs `A` as well (BLIS-style) when a task spans many panels, where the copy
//! pays for itself; on the ResNet's narrow shapes, and for the AVX-512 kernel, it measured slower.
//! Each kernel call prefetches the `C` rows of the next call (docs/PERFORMANCE.md).
//!
//! Arithmetic: each output is a sum of fused multiply-adds over `k` in increasing order within a
//! [`KC`] block, blocks added in order — the same in the AVX-512 and AVX2 kernels and for any
//! number of threads (the portable kernel rounds each product before adding); the epilogue computes
//! `acc·scale + shift`, `+ residual`, `max(0, ·)` or QuickGELU as the reference applies bias,
//! BatchNorm, residual and activation after its product.

use candle_core::{Device, Storage, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

use super::bf16;
use super::epilogue::finish;
pub use super::epilogue::{Epilogue, NR};
pub use super::microkernel::KERNEL_ENV;
use super::microkernel::{Kernel, Tile, TileEpi, MR_WIDE};
use super::ops::contiguous_f32;
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
    /// Rounded to bf16 and stored as slots of two consecutive `k` (see [`super::bf16`]); the
    /// left-hand side is rounded to bf16 for the product too, which accumulates in f32.
    Bf16,
}

impl From<Precision> for Format {
    fn from(p: Precision) -> Format {
        match p {
            Precision::Fp32 => Format::F32,
            Precision::Bf16 => Format::Bf16,
        }
    }
}

/// A `[k, n]` right-hand matrix laid out for [`matmul`].
#[derive(Clone)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    format: Format,
    /// `k` as the kernels count it: values for f32, slots (pairs) for bf16.
    steps: usize,
    data: Arc<Buffer>,
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
        Self::from_transposed_with(w, n, k, format, |src, dst| dst.copy_from_slice(src))
    }

    /// [`Self::from_transposed`] for an fp16 weight, widened as it is packed (checkpoints store
    /// fp16; this skips an f32 copy of the whole weight).
    pub fn from_transposed_f16(w: &[half::f16], n: usize, k: usize, format: Format) -> Self {
        use half::slice::HalfFloatSliceExt;
        Self::from_transposed_with(w, n, k, format, |src, dst| src.convert_to_f32_slice(dst))
    }

    fn from_transposed_with<T: Sync>(
        w: &[T],
        n: usize,
        k: usize,
        format: Format,
        widen: impl Fn(&[T], &mut [f32]) + Sync,
    ) -> Self {
        assert_eq!(
            w.len(),
            n * k,
            "weight of {} values for [{n}, {k}]",
            w.len()
        );
        let steps = steps_of(k, format);
        Self::build(k, n, format, |rows, p, cols, panel| {
            // The panel's weight rows widened whole into scratch (and rounded into slots for
            // bf16), then transposed: contiguous reads and writes on both sides.
            let len = k + steps;
            rows.resize(cols * len, 0.0);
            for (j, row) in rows.chunks_exact_mut(len).enumerate() {
                let (wide, packed) = row.split_at_mut(k);
                widen(&w[(p * NR + j) * k..][..k], wide);
                match format {
                    Format::F32 => {}
                    Format::Bf16 => bf16::pack_row(wide, packed),
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
    }
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
    let kernels = kernels_for(Kernel::selected(), b.format);
    // A bf16 product takes `A` rounded into slots, once per call.
    let slots;
    let (a, lda) = match b.format {
        Format::F32 => (a, lda),
        Format::Bf16 => {
            slots = a_as_slots(a, lda, m, k, threads);
            (&slots[..], b.steps)
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
        unsafe { block(kernels, a, lda, b, c_ptr.get(), ldc, epi, rows, panels) };
    };
    let tasks = m_blocks * n_chunks;
    if threads > 1 && tasks > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// The instruction set the products run with: `avx512`, `avx2` or `portable` (see
/// [`KERNEL_ENV`]).
pub fn kernel_name() -> &'static str {
    Kernel::selected().name()
}

/// The instruction set the bf16 products run with (their wide kernel where there is one).
pub fn kernel_name_bf16() -> &'static str {
    let k = kernels_for(Kernel::selected(), Format::Bf16);
    k.wide.unwrap_or(k.narrow).name()
}

/// The kernels of a product: one for single panels, and one for pairs of full panels where
/// the CPU has a wider one.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Kernels {
    narrow: Kernel,
    wide: Option<Kernel>,
}

/// The kernels for `format` when the f32 products use `selected`.
fn kernels_for(selected: Kernel, format: Format) -> Kernels {
    let (narrow, wide) = match (selected, format) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::F32) => (Kernel::Avx2Fma, Some(Kernel::Avx512)),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Bf16) => (
            Kernel::Bf16Avx2,
            bf16::native().then_some(Kernel::Bf16Avx512),
        ),
        #[cfg(target_arch = "x86_64")]
        (_, Format::Bf16) if selected != Kernel::Portable => (Kernel::Bf16Avx2, None),
        (_, Format::Bf16) => (Kernel::Bf16Portable, None),
        (other, Format::F32) => (other, None),
    };
    Kernels { narrow, wide }
}

/// `A` `[m, k]` (rows `lda` apart) rounded into bf16 slots, `[m, k.div_ceil(2)]`.
fn a_as_slots(a: &[f32], lda: usize, m: usize, k: usize, threads: usize) -> Vec<f32> {
    let steps = k.div_ceil(2);
    let mut out = vec![0f32; m * steps];
    let row = |(i, dst): (usize, &mut [f32])| bf16::pack_row(&a[i * lda..][..k], dst);
    if threads > 1 && m * k >= 1 << 16 {
        out.par_chunks_mut(steps.max(1)).enumerate().for_each(row);
    } else {
        out.chunks_mut(steps.max(1)).enumerate().for_each(row);
    }
    out
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
        // The operands as the product sees them.
        let seen = |v: &[f32]| -> Vec<f32> {
            match format {
                Format::F32 => v.to_vec(),
                Format::Bf16 => v.iter().map(|&x| bf16::widen(bf16::round(x))).collect(),
            }
        };
        let (a_seen, bt_seen) = (seen(&a), seen(&bt));
        let packed = PackedMatrix::from_transposed_as(&bt, n, k, format);
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
        let (a_in, lda_in) = match format {
            Format::F32 => (a.clone(), k),
            Format::Bf16 => (a_as_slots(&a, k, m, k, 1), k.div_ceil(2)),
        };
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
                if kernels == kernels_for(Kernel::selected(), format) {
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
        let formats = [Format::F32, Format::Bf16];
        let all = formats.into_iter().flat_map(|f| {
            let each = Kernel::supported().into_iter();
            each.map(move |s| (kernels_for(s, f), f))
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
