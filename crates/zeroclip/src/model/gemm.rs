//! The CPU matrix product for weights known at load time: `C = epilogue(A · B)` with `B` (a
//! layer's weight) packed once into the layout the kernel streams, and a per-column affine map,
//! residual, ReLU or QuickGELU applied to each finished tile while it is still in registers or L1.
//!
//! Why not candle's matmul (the `gemm` crate) for these: it packs the weight again on every call,
//! a large share of the work when a GEMM has few rows (batch 1), and it ran the ResNet's
//! convolution shapes well below the FMA peak (docs/PERFORMANCE.md, speed round 2). Here the
//! weight is packed at load into panels of `NR` columns, `[k][NR]` each (64-byte aligned, the
//! last panel zero-padded), and a register-blocked micro-kernel broadcasts `A` straight from its
//! rows (no copy of the activations), blocked by `KC` along `k`: a tile of `A`'s rows stays in
//! L1 while it meets each panel of a block of `NB` panels, which stays in L2 for the next tile
//! (rows are split into tiles as even as can be, so none is a thin remainder). With AVX-512 it
//! computes up to 12 rows × two panels (24 of the 32 vector registers accumulate; the `k` loop
//! scheduled by hand, `fma_loop.rs`), which halves the loads per multiply-add against
//! the AVX2 + FMA kernel's 6 × 16; the AVX2 kernel takes single panels and CPUs without
//! AVX-512, a portable one CPUs without AVX2. The AVX2 kernel packs `A` as well (BLIS-style)
//! when a task spans many panels, where the copy pays for itself; on narrow shapes, and for the
//! AVX-512 kernel, it measured slower. An f32 `A` whose rows lie a multiple of 4 KiB apart is
//! copied once per call with a line of padding per row (`with_stride`): its tiles' rows would all
//! map to the same L1 sets and evict one another. Each kernel call prefetches the `C` rows of the
//! next call.
//! Where only the portable kernel runs outside x86, the f32 products go to the `gemm` crate
//! instead (`fallback.rs`), on the weight kept as stored.
//! `Format::Bf16` and `Format::Int8` matrices run through the same driver as slots of 2 or 4
//! values of consecutive `k` (see `bf16.rs`, `int8.rs`); the measurements are in
//! docs/PERFORMANCE.md.
//!
//! Arithmetic: each output is a sum of fused multiply-adds over `k` in increasing order within a
//! `KC` block, blocks added in order — the same in the AVX-512 and AVX2 kernels and for any
//! number of threads (the portable kernel rounds each product before adding); the epilogue computes
//! `acc·scale + shift`, `+ residual`, `max(0, ·)` or QuickGELU as the reference applies bias,
//! BatchNorm, residual and activation after its product.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::a_tiles::{self, MR};
pub use super::dispatch::{kernel_name_for, Format, KERNEL_ENV};
use super::dispatch::{kernels_for, Class, Kernels};
use super::epilogue::finish;
pub use super::epilogue::{Epilogue, NR};
use super::microkernel::{Kernel, Tile, TileEpi, MR_WIDE};
pub use super::ops::with_f32;
use super::packed::{steps_of, Layout};
pub use super::packed::{Codes, PackedMatrix};
use super::{amx, bf16, int8};

/// `k` per block: a tile of 12 rows of `A` is `12 × KC` floats = 12 KiB, held in L1; a panel's
/// slice `KC × NR` floats = 16 KiB.
const KC: usize = 256;
/// Rows of `A` per task: `MC × KC` floats = 240 KiB, in L2 beside a block of panels; each task
/// reads its panels from L3 once per `MC` rows.
const MC: usize = 240;
/// Panels per block that a tile of rows meets before the next tile: `NB × KC × NR` floats =
/// 256 KiB, resident in L2 (an even number, so pairs of panels stay whole).
const NB: usize = 16;
/// Panels a task of the 6-row kernel must span before it packs `A` (see `block`).
const PACK_A_MIN_PANELS: usize = 32;

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
    // SAFETY: `f32` and `MaybeUninit<f32>` have the same layout, and `matmul_into` only
    // writes initialized values.
    let c = unsafe { &mut *(c as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]) };
    matmul_into(a, lda, m, b, c, ldc, epi, threads);
}

/// [`matmul`] into a `C` that may be uninitialized (a fresh buffer, which then needs no
/// zeroing): every `C[i, j]` is written before anything reads it; the columns past `n` of
/// each row (if `ldc > n`) are left alone, and must be initialized.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_into(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedMatrix,
    c: &mut [std::mem::MaybeUninit<f32>],
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
    if b.layout == Layout::Transposed {
        for row in c.chunks_mut(ldc) {
            for v in row.iter_mut().take(n) {
                v.write(0.0);
            }
        }
        // SAFETY: the layouts are the same; every `C[i, j]` was just initialized, and the
        // columns past `n` are initialized (the function's contract).
        let c = unsafe { &mut *(c as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
        return super::fallback::matmul(a, lda, m, b, c, ldc, epi, threads);
    }
    let panels = n.div_ceil(NR);
    let kernels = kernels_for(Class::selected(), b.format).for_codes(b.narrow_codes);
    let tiles = kernels.amx && amx::fits(b);
    // Tiles read `A` in whole blocks of rows; the padding rows are zeros. The SIMD kernels
    // take any number of rows (`row_tiles` evens them out), so their tasks can be equal.
    let (unit, padded) = if tiles {
        (amx::ROWS, m.next_multiple_of(amx::ROWS))
    } else {
        (1, m)
    };
    // A bf16 or int8 product takes `A` rounded or quantized into slots, once per call.
    let converted;
    let restrided;
    let (a, lda, row_quant): (&[f32], usize, int8::RowQuant) = match b.format {
        Format::F32 if aliasing(lda) && m > 1 => {
            let mut stride = k + ALIASING_PAD;
            if aliasing(stride) {
                stride += ALIASING_PAD;
            }
            restrided = with_stride(a, lda, m, k, stride, threads);
            (&restrided, stride, Default::default())
        }
        Format::F32 => (a, lda, Default::default()),
        format => {
            let lanes = kernels.lanes();
            let codes = int8::ActivationCodes::for_weights(b.narrow_codes);
            converted = a_as_slots(a, lda, m, padded, k, format, lanes, codes, threads);
            (&converted.data, b.steps, converted.row_quant())
        }
    };
    let m_blocks = m.div_ceil(MC);
    // Equal row blocks (whole blocks of tiles for AMX), so no task is a small remainder.
    let mc = m.div_ceil(m_blocks).next_multiple_of(unit);
    // Enough tasks for the workers to balance, each a run of whole panels.
    let want = if threads > 1 { 4 * threads } else { 1 };
    let n_chunks = want.div_ceil(m_blocks).clamp(1, panels);
    // Whole pairs of panels for the AVX-512 kernel.
    let per_chunk = panels.div_ceil(n_chunks).next_multiple_of(2);
    let n_chunks = panels.div_ceil(per_chunk);
    let c_ptr = SendPtr(c.as_mut_ptr().cast::<f32>());
    let task = |t: usize| {
        let (mb, nc) = (t / n_chunks, t % n_chunks);
        let rows = (mb * mc).min(m)..(mb * mc + mc).min(m);
        let panels = nc * per_chunk..(nc * per_chunk + per_chunk).min(panels);
        if tiles {
            let (c, epi) = (c_ptr.get(), epi);
            // SAFETY: tasks write disjoint (row block, panel run) rectangles of C, all inside
            // it; tiles run only where usable and fitting, on `A` padded to whole row blocks.
            unsafe { amx::block(a, lda, row_quant, b, c, ldc, epi, rows, panels) };
            return;
        }
        // SAFETY: tasks write disjoint (row block, panel run) rectangles of C, all inside it.
        unsafe {
            block(
                kernels,
                a,
                lda,
                row_quant,
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

/// Whether rows `lda` floats apart all start in the same L1 sets (a multiple of 4 KiB, the
/// span of the sets on the x86 CPUs the kernels run on): a tile's rows then evict one another
/// (`k` of 1024, 2048, 3072: the MLP's `c_proj`, the ViT's patch rows, wide 1×1 convolutions).
fn aliasing(lda: usize) -> bool {
    lda.is_multiple_of(1024)
}

/// Floats added to each row of an aliasing `A` (one cache line), so that consecutive rows start
/// in different sets.
const ALIASING_PAD: usize = 16;

/// `A` `[m, k]` (rows `lda` apart) copied with rows `stride` apart (the padding left zero).
fn with_stride(
    a: &[f32],
    lda: usize,
    m: usize,
    k: usize,
    stride: usize,
    threads: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; m * stride];
    let copy = |(i, row): (usize, &mut [f32])| row[..k].copy_from_slice(&a[i * lda..][..k]);
    if threads > 1 && m * k >= 1 << 16 {
        out.par_chunks_mut(stride).enumerate().for_each(copy);
    } else {
        out.chunks_mut(stride).enumerate().for_each(copy);
    }
    out
}

/// A left-hand side as slots, `[rows, steps]`, and each row's int8 scale and zero point (zeros
/// for bf16, none for f32).
struct Slots {
    data: Vec<f32>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

impl Slots {
    /// The rows' quantization, as the kernels take it.
    fn row_quant(&self) -> int8::RowQuant<'_> {
        int8::RowQuant {
            scales: &self.scales,
            zeros: &self.zeros,
        }
    }
}

/// `A` `[m, k]` (rows `lda` apart) as `format`'s slots, `[padded, steps]` (rows past `m`
/// zero): rounded to bf16, or quantized to int8 `codes` with each row's scale and zero point,
/// int8 rows with vectors of `lanes`.
#[allow(clippy::too_many_arguments)]
fn a_as_slots(
    a: &[f32],
    lda: usize,
    m: usize,
    padded: usize,
    k: usize,
    format: Format,
    lanes: int8::Lanes,
    codes: int8::ActivationCodes,
    threads: usize,
) -> Slots {
    let steps = steps_of(k, format).max(1);
    let mut out = vec![0f32; padded.max(m) * steps];
    let out_rows = &mut out[..m * steps];
    // One scale and zero point per row (bf16 rows have none: theirs stay 0 and are not read).
    let (mut scales, mut zeros) = (vec![0f32; m], vec![0i32; m]);
    let each = |(i, ((dst, s), z)): (usize, ((&mut [f32], &mut f32), &mut i32))| {
        let src = &a[i * lda..][..k];
        match format {
            Format::Int8 => (*s, *z) = int8::pack_activations(src, dst, lanes, codes),
            _ => bf16::pack_row(src, dst),
        }
    };
    if threads > 1 && m * k >= 1 << 16 {
        let rows = out_rows.par_chunks_mut(steps).zip(scales.par_iter_mut());
        rows.zip(zeros.par_iter_mut()).enumerate().for_each(each);
    } else {
        let rows = out_rows.chunks_mut(steps).zip(scales.iter_mut());
        rows.zip(zeros.iter_mut()).enumerate().for_each(each);
    }
    Slots {
        data: out,
        scales,
        zeros,
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
    let len = rows * b.n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let threads = super::threads();
    with_f32(x, |a| match residual {
        Some(r) => with_f32(r, |r| {
            let epi = Epilogue {
                shift: bias,
                residual: Some(r),
                quick_gelu,
                ..Default::default()
            };
            let c = &mut out.spare_capacity_mut()[..len];
            matmul_into(a, k, rows, b, c, b.n, &epi, threads)
        }),
        None => {
            let epi = Epilogue {
                shift: bias,
                quick_gelu,
                ..Default::default()
            };
            let c = &mut out.spare_capacity_mut()[..len];
            matmul_into(a, k, rows, b, c, b.n, &epi, threads);
            Ok(())
        }
    })??;
    // SAFETY: `matmul_into` wrote all `rows × n` values (row stride `n`).
    unsafe { out.set_len(len) };
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
/// `c` must be valid for writes of `C` (`a`'s rows × `b.n` columns, rows `ldc` apart) for the
/// rows and panels given, and for reads of what this call wrote there (it reads nothing it has
/// not written, so `C` may start uninitialized), and no other thread may touch that rectangle
/// meanwhile; `rows` must lie within `a`'s rows and `panels` within `b`'s; `kernel` must be one
/// this CPU runs (see [`kernels_for`]); `a` and `lda` count `b`'s steps (bf16 slots for a bf16
/// `b`).
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    kernels: Kernels,
    a: &[f32],
    lda: usize,
    row_quant: int8::RowQuant,
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
        ..
    } = kernels;
    debug_assert!(
        b.narrow_codes || !kernels.need_narrow_codes(),
        "±127 int8 codes would saturate the {kernels:?}"
    );
    // The signed kernels take activation codes around 128, which narrow matrices do not get.
    debug_assert!(
        !b.narrow_codes || !(kernel.signed_sums() || wide.is_some_and(Kernel::signed_sums)),
        "a narrow int8 matrix met the {kernels:?}"
    );
    let quant = b.quant.as_deref();
    let mut edge = [0f32; MR * NR];
    // The 6-row kernel broadcasts `A` from six rows at once; over many panels, copying each
    // block of `A` into `[kc][MR]` tiles first (one stream instead of six) pays for the copy.
    let pack = wide.is_none() && panels.len() >= PACK_A_MIN_PANELS;
    let rows_outer = wide.is_some();
    let mut packed: Vec<f32> = Vec::new();
    // The tiles `A` is packed in: the row tiles of the 6-row kernel, in the order the loops
    // below meet them.
    let tiles: Vec<(usize, usize)> = match pack {
        true => row_tiles(rows.clone(), MR).collect(),
        false => Vec::new(),
    };
    // SAFETY: every tile addressed below lies in the rows and panels the caller vouches for
    // (the last, partial panel goes through the full-width `edge` scratch tile).
    unsafe {
        for k0 in (0..k.max(1)).step_by(KC) {
            let kc = KC.min(k - k0);
            let last = k0 + kc >= k;
            if pack {
                packed.resize(tiles.len() * kc * MR, 0.0);
                let simd = kernels.lanes() != int8::Lanes::Scalar;
                a_tiles::pack(a, lda, &tiles, k0, kc, &mut packed, simd);
            }
            let packed_ptr = packed.as_ptr();
            // `slot`: the tile's place among `tiles` (where `A` is packed); `next`: the `C`
            // of the call that follows (row and column), for its prefetch.
            let tile = |slot: usize, r0: usize, col0: usize, b, next: (usize, usize)| Tile {
                kc,
                a: if pack {
                    packed_ptr.add(slot * kc * MR)
                } else {
                    a.as_ptr().add(r0 * lda + k0)
                },
                lda: if pack { 1 } else { lda },
                ak: if pack { MR } else { 1 },
                b,
                c: c.add(r0 * ldc + col0),
                next: c.wrapping_add(next.0 * ldc + next.1),
                ldc,
                accumulate: k0 > 0,
            };
            // A tile of full panels: on the last `k` block the epilogue (QuickGELU included) is
            // applied in registers before the store.
            let full = |kernel: Kernel, slot, r0: usize, r: usize, col0: usize, b, next| {
                let t = tile(slot, r0, col0, b, next);
                let te = last.then(|| TileEpi {
                    row_scale: quant.map_or(std::ptr::null(), |_| row_quant.scales[r0..].as_ptr()),
                    row_zero: quant.map_or(std::ptr::null(), |_| row_quant.zeros[r0..].as_ptr()),
                    col_scale: quant.map_or(std::ptr::null(), |q| q.0[col0..].as_ptr()),
                    col_sum: quant.map_or(std::ptr::null(), |q| q.1[col0..].as_ptr()),
                    scale: epi.scale.map_or(std::ptr::null(), |v| v[col0..].as_ptr()),
                    shift: epi.shift.map_or(std::ptr::null(), |v| v[col0..].as_ptr()),
                    residual: (epi.residual)
                        .map_or(std::ptr::null(), |v| v[r0 * ldc + col0..].as_ptr()),
                    relu: epi.relu,
                    gelu: epi.quick_gelu,
                });
                kernel.run(r, &t, te.as_ref());
            };
            // The edge panel (narrower than `NR`) goes through the full-width scratch tile.
            let mut partial = |slot, r0: usize, r: usize, col0: usize, bs: [*const f32; 2]| {
                let cols = n - col0;
                let cp = c.add(r0 * ldc + col0);
                // `C` holds earlier blocks' sums only from the second block on (before, it may
                // be uninitialized).
                if k0 > 0 {
                    for i in 0..r {
                        for j in 0..cols {
                            edge[i * NR + j] = *cp.add(i * ldc + j);
                        }
                    }
                }
                let t = Tile {
                    c: edge.as_mut_ptr(),
                    ldc: NR,
                    ..tile(slot, r0, col0, bs, (r0, col0))
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
                        if let Some((scales, sums)) = quant {
                            let (scales, sums) = (&scales[col0..], &sums[col0..]);
                            let sums = (!kernel.signed_sums()).then_some(sums);
                            let (rs, zero) = (row_quant.scales[r0 + i], row_quant.zeros[r0 + i]);
                            int8::dequant_row(row, sums, scales, rs, zero);
                        }
                        let res = epi.residual.map(|v| &v[(r0 + i) * ldc + col0..][..cols]);
                        finish(row, col0, res, epi, wide.is_some());
                    }
                }
            };
            // A tile of rows stays in L1 while it meets every panel of a block of `NB`, which
            // stays in L2 for the next tile of rows. The 6-row kernel measured faster the other
            // way round (blocks of one panel: the panel in L1, every row tile meeting it).
            let (height, block) = if rows_outer { (MR_WIDE, NB) } else { (MR, 1) };
            for nb in panels.clone().step_by(block) {
                let nb = nb..(nb + block).min(panels.end);
                // With `A` packed, these are `tiles` (the kernel's height), `slot` their index.
                for (slot, (r0, r)) in row_tiles(rows.clone(), height).enumerate() {
                    // After the block's last panels, the next tile of rows at its first.
                    #[cfg(target_arch = "x86_64")]
                    let next_rows = (r0 + r, nb.start * NR);
                    let mut p = nb.start;
                    while p < nb.end {
                        let col0 = p * NR;
                        #[cfg(target_arch = "x86_64")]
                        if let Some(wide) = wide.filter(|_| p + 1 < nb.end && (p + 2) * NR <= n) {
                            // Two full panels side by side: 12 rows × 32 columns in AVX-512.
                            let bs = [
                                b.panel_slice(p, k0, kc).as_ptr(),
                                b.panel_slice(p + 1, k0, kc).as_ptr(),
                            ];
                            let next = if p + 2 < nb.end {
                                (r0, col0 + 2 * NR)
                            } else {
                                next_rows
                            };
                            if r0 == rows.start && p + 3 < nb.end {
                                // The first tile of rows reads the block's panels from memory:
                                // start the next pair's first steps now (the kernel's own
                                // prefetches run 32 steps ahead within its pair).
                                prefetch_steps(b.panel_slice(p + 2, k0, kc));
                                prefetch_steps(b.panel_slice(p + 3, k0, kc));
                            }
                            full(wide, slot, r0, r, col0, bs, next);
                            p += 2;
                            continue;
                        }
                        let bp = b.panel_slice(p, k0, kc).as_ptr();
                        let bs = [bp, bp.wrapping_add(8)];
                        for (r1, r) in row_tiles(r0..r0 + r, MR) {
                            if NR <= n - col0 {
                                // Panel-outer blocks (one panel) go down the rows.
                                let next = match rows_outer {
                                    true if p + 1 < nb.end => (r1, col0 + NR),
                                    _ => (r1 + r, col0),
                                };
                                if !rows_outer && r1 == rows.start && p + 1 < panels.end {
                                    // As for pairs above: the next panel's first steps.
                                    prefetch_steps(b.panel_slice(p + 1, k0, kc));
                                }
                                full(kernel, slot, r1, r, col0, bs, next);
                            } else {
                                partial(slot, r1, r, col0, bs);
                            }
                        }
                        p += 1;
                    }
                }
            }
        }
    }
}

/// Prefetches the first 32 steps of a panel's slice into L1.
fn prefetch_steps(slice: &[f32]) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slice;
    #[cfg(target_arch = "x86_64")]
    for line in slice.chunks(NR).take(32) {
        // SAFETY: prefetching has no effect on memory and cannot fault; the address is inside
        // the slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
}

/// `rows` as consecutive tiles `(first row, height)` of at most `height` rows, as even as can
/// be (50 rows of at most 12: five of 10), so no tile is a thin remainder that runs the kernel
/// at a fraction of its speed.
fn row_tiles(rows: std::ops::Range<usize>, height: usize) -> impl Iterator<Item = (usize, usize)> {
    let len = rows.len();
    let tiles = len.div_ceil(height);
    let (base, extra) = len
        .checked_div(tiles)
        .map_or((height, 0), |b| (b, len % tiles));
    (0..tiles).scan(rows.start, move |r0, t| {
        let r = (base + usize::from(t < extra)).min(rows.end - *r0);
        let tile = (*r0, r);
        *r0 += r;
        Some(tile)
    })
}

#[cfg(test)]
mod tests;
