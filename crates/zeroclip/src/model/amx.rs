//! int8 and bf16 products on AMX tiles (Sapphire Rapids and later Xeons): one `tdpbusd` or
//! `tdpbf16ps` multiplies a 16-row tile of `A` by a 16-column tile of `B` over 64 int8 (32 bf16)
//! values of `k`, about eight times the work of an AVX-512 VNNI instruction per cycle.
//!
//! The packed layouts were chosen for this: a panel's `[steps][NR]` slots of 4 int8 or 2 bf16
//! consecutive `k` are, 16 steps at a time, exactly a `B` tile (16 rows of 64 bytes, the
//! "VNNI layout"), and `A`'s rows of slots are an `A` tile as they stand. So the tiles load
//! straight from the packed weight and the quantized or rounded activations, with no copy. A
//! task runs 32 rows × 32 columns at a time — four accumulator tiles, two `A` and two `B` tiles,
//! the eight tile registers — over the whole `k` without leaving the tiles, then stores the
//! sums to a scratch block and applies the epilogue in AVX-512 registers, in the same order as
//! the SIMD kernels' (`microkernel.rs`): the int8 results are bit for bit those of the
//! AVX-512 VNNI kernel, since both sum the same integers exactly.
//!
//! Linux hands the tile registers to a process only on request (`arch_prctl` with
//! `ARCH_REQ_XCOMP_PERM`), made once; elsewhere, or when refused, AMX is not used.

use std::ops::Range;

use super::epilogue::Epilogue;
use super::packed::PackedMatrix;

/// Slots of `k` per tile (16 rows of a `B` tile; 64 bytes of an `A` tile's row).
pub(super) const STEPS_PER_TILE: usize = 16;
/// Rows of `C` per step of a task (two `A` tiles).
pub(super) const ROWS: usize = 32;

/// CPUID leaf 7's EDX bits: AMX-BF16, AMX-TILE, AMX-INT8.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const CPUID_AMX: (u32, u32, u32) = (1 << 22, 1 << 24, 1 << 25);

/// CPUID leaf 7's EDX, read once: `kernels_for` asks on every product, and in a virtual
/// machine each `cpuid` traps to the hypervisor.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn cpuid_edx() -> u32 {
    static EDX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    // CPUID leaf 7 exists on every CPU with AVX-512 or AMX; on older ones EDX reads as zero.
    *EDX.get_or_init(|| std::arch::x86_64::__cpuid_count(7, 0).edx)
}

/// Whether the tiles may be used: the CPU has them (with AVX-512 F for the epilogue) and the
/// OS granted this process their state. Asked once.
pub(super) fn usable() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *USABLE.get_or_init(|| {
            if cpuid_edx() & CPUID_AMX.1 == 0 || !std::arch::is_x86_feature_detected!("avx512f") {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: a plain system call with integer arguments; it only changes which
            // register state the kernel lets this process use.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                )
            };
            rc == 0
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Whether the CPU has AMX-INT8 (whether it may be used is [`usable`]).
pub(super) fn int8() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        cpuid_edx() & CPUID_AMX.2 != 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Whether the CPU has AMX-BF16 (whether it may be used is [`usable`]).
pub(super) fn bf16() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        cpuid_edx() & CPUID_AMX.0 != 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Whether `b`'s products can run on tiles: its `k` fills whole tiles (every CLIP width does).
pub(super) fn fits(b: &PackedMatrix) -> bool {
    b.steps > 0 && b.steps.is_multiple_of(STEPS_PER_TILE)
}

/// One task of [`super::gemm::matmul`] on tiles: rows `rows` of `C` × the columns of `panels`.
///
/// # Safety
///
/// As for `gemm::block`, and: [`usable`] and the format's AMX feature hold; [`fits`]`(b)`;
/// `a` (rows `lda` slots apart) is readable for the rows from `rows.start` up to the next
/// multiple of [`ROWS`] past `rows.end` (its padding rows may hold anything finite).
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block(
    a: &[f32],
    lda: usize,
    row_quant: super::int8::RowQuant,
    b: &PackedMatrix,
    c: *mut f32,
    ldc: usize,
    epi: &Epilogue,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: forwarded from the caller.
    unsafe {
        x86::block(a, lda, row_quant, b, c, ldc, epi, rows, panels)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        let _ = (a, lda, row_quant, b, c, ldc, epi, rows, panels);
        unreachable!("AMX is never usable off x86-64 Linux");
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86 {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::super::dispatch::Format;
    use super::super::epilogue::{Epilogue, NR};
    use super::super::int8::dequant512;
    use super::super::packed::PackedMatrix;
    use super::{ROWS, STEPS_PER_TILE};

    /// The tile configuration (palette 1): all eight tiles 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    const CONFIG: Config = Config {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
        rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
    };

    /// The sums of one 32 × 32 block, row-major (i32 bits for int8).
    #[repr(C, align(64))]
    struct Sums([f32; ROWS * 2 * NR]);

    /// Bytes between the sums' rows.
    const SUMS_STRIDE: usize = 2 * NR * 4;
    /// Bytes between a panel's steps (a `B` tile's rows).
    const B_STRIDE: usize = NR * 4;

    /// `tmm0..3 = A0·B0, A0·B1, A1·B0, A1·B1` over `tiles` tiles of `k`, then stored to `sums`.
    macro_rules! tile_loop {
        ($op:literal, $a0:expr, $a1:expr, $b0:expr, $b1:expr, $lda_bytes:expr, $tiles:expr, $sums:expr) => {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                concat!($op, " tmm0, tmm4, tmm6"),
                "tileloadd tmm7, [{b1} + {sb}*1]",
                concat!($op, " tmm1, tmm4, tmm7"),
                "tileloadd tmm5, [{a1} + {sa}*1]",
                concat!($op, " tmm2, tmm5, tmm6"),
                concat!($op, " tmm3, tmm5, tmm7"),
                "add {a0}, 64",
                "add {a1}, 64",
                "add {b0}, {step}",
                "add {b1}, {step}",
                "dec {n}",
                "jnz 2b",
                "tilestored [{s} + {ss}*1], tmm0",
                "tilestored [{s} + {ss}*1 + 64], tmm1",
                "tilestored [{s2} + {ss}*1], tmm2",
                "tilestored [{s2} + {ss}*1 + 64], tmm3",
                a0 = inout(reg) $a0 => _,
                a1 = inout(reg) $a1 => _,
                b0 = inout(reg) $b0 => _,
                b1 = inout(reg) $b1 => _,
                n = inout(reg) $tiles => _,
                sa = in(reg) $lda_bytes,
                sb = in(reg) B_STRIDE,
                step = in(reg) STEPS_PER_TILE * B_STRIDE,
                s = in(reg) $sums,
                s2 = in(reg) $sums.wrapping_byte_add(16 * SUMS_STRIDE),
                ss = in(reg) SUMS_STRIDE,
                options(nostack),
            )
        };
    }

    /// See [`super::block`].
    ///
    /// # Safety
    ///
    /// See [`super::block`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block(
        a: &[f32],
        lda: usize,
        row_quant: super::super::int8::RowQuant,
        b: &PackedMatrix,
        c: *mut f32,
        ldc: usize,
        epi: &Epilogue,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        let (steps, n) = (b.steps, b.n);
        let tiles = steps / STEPS_PER_TILE;
        let int8 = b.format == Format::Int8;
        let mut sums = Sums([0.0; ROWS * 2 * NR]);
        // SAFETY: the configuration is a valid palette-1 layout; the caller vouches that this
        // process may use the tiles. Every tile load reads inside `a` (rows padded to whole
        // blocks, `k` whole tiles) or inside a panel (`fits`); the stores stay in `sums`; the
        // epilogue writes only the task's rows and the matrix's columns of `C`.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
            // Panels outer: a pair's slice of `B` stays in L1 while the task's rows of `A`
            // stream past it from L2 (the other order re-reads all of `B` per block of rows).
            let mut p = panels.start;
            while p < panels.end {
                let b0 = b.panel_slice(p, 0, steps).as_ptr();
                // A lone last panel is computed twice rather than on its own path.
                let pair = p + 1 < panels.end;
                let b1 = if pair {
                    b.panel_slice(p + 1, 0, steps).as_ptr()
                } else {
                    b0
                };
                for r0 in rows.clone().step_by(ROWS) {
                    let a0 = a.as_ptr().add(r0 * lda);
                    let a1 = a0.add(16 * lda);
                    let s = sums.0.as_mut_ptr();
                    if int8 {
                        tile_loop!("tdpbusd", a0, a1, b0, b1, lda * 4, tiles, s);
                    } else {
                        tile_loop!("tdpbf16ps", a0, a1, b0, b1, lda * 4, tiles, s);
                    }
                    let live = (rows.end - r0).min(ROWS);
                    let mut width = 0;
                    for half in 0..1 + pair as usize {
                        let col0 = (p + half) * NR;
                        let cols = NR.min(n - col0);
                        width += cols;
                        finish_tile(
                            &sums.0[half * NR..],
                            row_quant,
                            b,
                            c,
                            ldc,
                            epi,
                            r0,
                            live,
                            col0,
                            cols,
                        );
                    }
                    if epi.quick_gelu {
                        // Both tiles' columns at once, as the SIMD kernels' driver does.
                        for row in r0..r0 + live {
                            let dst = c.add(row * ldc + p * NR);
                            let row = std::slice::from_raw_parts_mut(dst, width);
                            // Tiles run only in the native class, which has AVX-512.
                            super::super::ops::quick_gelu_slice(row, true);
                        }
                    }
                }
                p += 2;
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }

    /// The epilogue of one 16-column tile but QuickGELU (which the caller applies to both
    /// tiles): `live` rows of sums (32 floats apart) → `C` rows `r0..`, columns `col0..col0 +
    /// cols`.
    ///
    /// # Safety
    ///
    /// `C` writable (and the residual readable) for those rows and columns; for int8 the
    /// matrix's column scales and sums cover the whole panel, and `row_quant` the rows.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn finish_tile(
        sums: &[f32],
        row_quant: super::super::int8::RowQuant,
        b: &PackedMatrix,
        c: *mut f32,
        ldc: usize,
        epi: &Epilogue,
        r0: usize,
        live: usize,
        col0: usize,
        cols: usize,
    ) {
        let mask: __mmask16 = if cols == NR { !0 } else { (1 << cols) - 1 };
        // SAFETY: every masked load and store touches only the `cols` columns the caller
        // vouches for; the quantization vectors are padded to whole panels.
        unsafe {
            let vec =
                |v: Option<&[f32]>| v.map(|v| _mm512_maskz_loadu_ps(mask, v[col0..].as_ptr()));
            let (scale, shift) = (vec(epi.scale), vec(epi.shift));
            let quant = b.quant.as_deref().map(|(s, col_sum)| {
                (
                    _mm512_loadu_ps(s[col0..].as_ptr()),
                    _mm512_loadu_ps(col_sum[col0..].as_ptr()),
                )
            });
            for i in 0..live {
                let row = r0 + i;
                let mut v = _mm512_loadu_ps(sums[i * 2 * NR..].as_ptr());
                // The order of the SIMD kernels' epilogue (`simd_kernel!`).
                if let Some((col_scale, col_sum)) = quant {
                    let (rs, zero) = (_mm512_set1_ps(row_quant.scales[row]), row_quant.zeros[row]);
                    v = dequant512(v, col_sum, zero, _mm512_mul_ps(rs, col_scale));
                }
                if let Some(s) = scale {
                    v = _mm512_mul_ps(v, s);
                }
                if let Some(s) = shift {
                    v = _mm512_add_ps(v, s);
                }
                if let Some(r) = epi.residual {
                    let r = _mm512_maskz_loadu_ps(mask, r.as_ptr().add(row * ldc + col0));
                    v = _mm512_add_ps(v, r);
                }
                if epi.relu {
                    v = _mm512_max_ps(v, _mm512_setzero_ps());
                }
                _mm512_mask_storeu_ps(c.add(row * ldc + col0), mask, v);
            }
        }
    }
}
