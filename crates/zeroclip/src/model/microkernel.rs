//! The register-blocked micro-kernels of [`super::gemm`]: `C[r rows, cols] (+)= A · B` over one
//! `KC` block, with the epilogue applied in registers on the last block. One macro body serves the
//! AVX-512 kernel (12 rows × two 16-column panels, 24 of the 32 vector registers accumulate) and
//! the AVX2 + FMA one (6 rows × one panel as two 8-column halves), so they cannot drift apart; a
//! portable kernel runs the same loops on other CPUs. Which one runs is decided at run time: the
//! widest the CPU has, or a narrower class (`dispatch.rs`). bf16 and int8 kernels read 32-bit
//! slots of 2 or 4 values (`bf16.rs`, `int8.rs`) through the same macro body.

use super::bf16::unslot;
use super::epilogue::{finish, Epilogue, NR};
use super::int8;

/// Rows per step of the AVX-512 kernel (24 accumulator registers of 32).
pub(super) const MR_WIDE: usize = 12;

/// One micro-kernel call: a tile of `C` over one `k` block.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    /// `k` of this block.
    pub(super) kc: usize,
    /// `A`'s first row at the block's first `k`; rows `lda` apart, consecutive `k` of a row
    /// `ak` apart (1 where `A` is read in place, the tile's height where it was packed).
    pub(super) a: *const f32,
    pub(super) lda: usize,
    pub(super) ak: usize,
    /// The two column halves' `[kc][NR]` panel slices: two panels for AVX-512, a panel and its
    /// column 8 otherwise (the portable kernel reads the whole panel from `b[0]`).
    pub(super) b: [*const f32; 2],
    /// `C`'s first row and column of the tile; rows `ldc` apart.
    pub(super) c: *mut f32,
    /// `C`'s first row and column of the driver's next call (prefetched by the SIMD kernels;
    /// never dereferenced).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) next: *const f32,
    pub(super) ldc: usize,
    /// Whether `C` already holds the previous `k` blocks' sums.
    pub(super) accumulate: bool,
}

/// [`Epilogue`] for one full tile: pointers at its first column (and row, for the residual,
/// whose row stride is `C`'s); null where the step is skipped.
#[derive(Clone, Copy)]
pub(super) struct TileEpi {
    /// int8 only (else null, all four together): the tile's rows' activation scales and zero
    /// points, and its columns' weight scales and sums of codes (i32 bits); the accumulators
    /// hold i32 sums until then.
    pub(super) row_scale: *const f32,
    pub(super) row_zero: *const i32,
    pub(super) col_scale: *const f32,
    pub(super) col_sum: *const f32,
    pub(super) scale: *const f32,
    pub(super) shift: *const f32,
    pub(super) residual: *const f32,
    pub(super) relu: bool,
    /// QuickGELU last (`vmath.rs`'s, lane for lane what `ops::quick_gelu_slice` computes).
    pub(super) gelu: bool,
}

impl TileEpi {
    /// The same epilogue for the tile's rows from `first` on (rows `ldc` apart).
    #[cfg(target_arch = "x86_64")]
    fn rows_from(epi: Option<&TileEpi>, first: usize, ldc: usize) -> Option<TileEpi> {
        // Null stays null: a skipped step.
        fn skip<T>(p: *const T, n: usize) -> *const T {
            if p.is_null() {
                p
            } else {
                p.wrapping_add(n)
            }
        }
        epi.map(|e| TileEpi {
            row_scale: skip(e.row_scale, first),
            row_zero: skip(e.row_zero, first),
            residual: skip(e.residual, first * ldc),
            ..*e
        })
    }
}

/// The micro-kernel this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kernel {
    /// 12 rows × two panels; only for pairs of full panels (see `block`).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    Portable,
    /// bf16 slots (see [`super::bf16`]), 12 rows × two panels with `vdpbf16ps`.
    #[cfg(target_arch = "x86_64")]
    Bf16Avx512,
    /// bf16 slots on 6 rows × one panel, widened to f32 for AVX2 + FMA.
    #[cfg(target_arch = "x86_64")]
    Bf16Avx2,
    /// bf16 slots without SIMD.
    Bf16Portable,
    /// int8 quads (see [`super::int8`]), 12 rows × two panels with `vpdpbusd`.
    #[cfg(target_arch = "x86_64")]
    Int8Vnni512,
    /// int8 quads, 12 rows × two panels with `vpmaddubsw` + `vpmaddwd` on 16 lanes (AVX-512 BW
    /// without VNNI), on narrow (±63) weight codes and the 7-bit activation codes that meet them,
    /// two steps per `vpmaddwd` (see [`super::int8`]).
    #[cfg(target_arch = "x86_64")]
    Int8Avx512Bw,
    /// [`Kernel::Int8Avx512Bw`] for full (±127) weight codes, on signed activations (8-bit codes
    /// around [`int8::ZERO_POINT`]; never narrow matrices).
    #[cfg(target_arch = "x86_64")]
    Int8Avx512BwSigned,
    /// int8 quads on 6 rows × one panel with 8-lane `vpdpbusd` (AVX-512 VL).
    #[cfg(target_arch = "x86_64")]
    Int8Vnni256,
    /// int8 quads on 6 rows × one panel with AVX-VNNI's `vpdpbusd` (VEX: Alder Lake and later,
    /// CPUs without AVX-512).
    #[cfg(target_arch = "x86_64")]
    Int8AvxVnni,
    /// int8 quads on 6 rows × one panel with `vpmaddubsw` + `vpmaddwd`, on narrow (±63) weight
    /// codes and the 7-bit activation codes that meet them, two steps per `vpmaddwd`.
    #[cfg(target_arch = "x86_64")]
    Int8Avx2,
    /// [`Kernel::Int8Avx2`] for full (±127) weight codes, on signed activations.
    #[cfg(target_arch = "x86_64")]
    Int8Avx2Signed,
    /// int8 quads without SIMD.
    Int8Portable,
}

/// `$f::<rows>($t, $epi)` for `$r` of 1 to 3 rows.
#[cfg(target_arch = "x86_64")]
macro_rules! up_to_three {
    ($f:ident, $r:expr, $t:expr, $epi:expr) => {
        match $r {
            3 => $f::<3>($t, $epi),
            2 => $f::<2>($t, $epi),
            1 => $f::<1>($t, $epi),
            r => unreachable!("a pass of {r} rows"),
        }
    };
}

impl Kernel {
    /// The kernel's name, as `ZEROCLIP_KERNEL` spells the f32 ones.
    pub(super) fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => "avx2",
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Bf16Avx512 => "avx512-bf16",
            #[cfg(target_arch = "x86_64")]
            Kernel::Bf16Avx2 => "avx2 (bf16 widened)",
            Kernel::Bf16Portable => "portable (bf16)",
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Vnni512 => "avx512-vnni",
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Vnni256 => "avx512-vnni (8 lanes)",
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Avx512Bw => "avx512bw (int8 vpmaddubsw)",
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Avx512BwSigned => "avx512bw (int8 vpmaddubsw, signed)",
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8AvxVnni => "avx-vnni",
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Avx2 => "avx2 (int8 vpmaddubsw)",
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Avx2Signed => "avx2 (int8 vpmaddubsw, signed)",
            Kernel::Int8Portable => "portable (int8)",
        }
    }

    /// The kernel to run on full (±127) int8 weight codes instead of `self`: another one where
    /// `self` needs codes within ±[`int8::W_MAX_NARROW`], on which `vpmaddubsw` cannot saturate
    /// (see [`super::int8`]).
    pub(super) fn for_full_codes(self) -> Kernel {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Avx2 => Kernel::Int8Avx2Signed,
            #[cfg(target_arch = "x86_64")]
            Kernel::Int8Avx512Bw => Kernel::Int8Avx512BwSigned,
            other => other,
        }
    }

    /// Whether the kernel's int8 sums are `Σ a·w` on signed activation codes, already
    /// corrected for the zero point (see [`super::int8`]), rather than `Σ u·w`.
    pub(super) fn signed_sums(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if matches!(self, Kernel::Int8Avx2Signed | Kernel::Int8Avx512BwSigned) {
            return true;
        }
        false
    }

    /// `C[0..r, cols] (+)= A[0..r, 0..kc] · B` for `r` up to 12 (AVX-512) or 6 rows.
    ///
    /// # Safety
    ///
    /// As for the kernels: `t` and `epi` must point at memory valid for `r` rows of the tile
    /// (see `kernel_portable`), and `self` must be a kernel this CPU runs (one of
    /// `dispatch::Class::kernel` or `dispatch::kernels_for`).
    #[inline]
    pub(super) unsafe fn run(self, r: usize, t: &Tile, epi: Option<&TileEpi>) {
        macro_rules! arms {
            ($f:ident; $($n:literal),*) => {
                match r {
                    $($n => $f::<$n>(t, epi),)*
                    1 => $f::<1>(t, epi),
                    // The drivers never ask for 0 rows or more than the kernel's height.
                    _ => unreachable!("micro-kernel called for {r} rows"),
                }
            };
            (wide $f:ident) => { arms!($f; 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2) };
            (narrow $f:ident) => { arms!($f; 6, 5, 4, 3, 2) };
        }
        // SAFETY: the caller upholds the kernels' contract for `r` rows, and `self` names a
        // kernel whose features this CPU has.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => arms!(wide kernel_avx512),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2Fma => arms!(narrow kernel_avx2),
                Kernel::Portable => arms!(narrow kernel_portable),
                #[cfg(target_arch = "x86_64")]
                Kernel::Bf16Avx512 => {
                    arms!(wide kernel_bf16_avx512)
                }
                #[cfg(target_arch = "x86_64")]
                Kernel::Bf16Avx2 => in_passes_of_three(r, t, epi, |r, t, epi| {
                    // At most three rows of the tile the caller vouches for.
                    up_to_three!(kernel_bf16_avx2, r, t, epi)
                }),
                Kernel::Bf16Portable => arms!(narrow kernel_bf16_portable),
                #[cfg(target_arch = "x86_64")]
                Kernel::Int8Vnni512 => {
                    arms!(wide kernel_int8_vnni512)
                }
                #[cfg(target_arch = "x86_64")]
                Kernel::Int8Vnni256 => arms!(narrow kernel_int8_vnni256),
                #[cfg(target_arch = "x86_64")]
                Kernel::Int8Avx512Bw => arms!(wide kernel_int8_avx512bw),
                #[cfg(target_arch = "x86_64")]
                Kernel::Int8Avx512BwSigned => arms!(wide kernel_int8_avx512bw_signed),
                #[cfg(target_arch = "x86_64")]
                Kernel::Int8AvxVnni => arms!(narrow kernel_int8_avx_vnni),
                #[cfg(target_arch = "x86_64")]
                Kernel::Int8Avx2 => in_passes_of_three(r, t, epi, |r, t, epi| {
                    // At most three rows of the tile the caller vouches for.
                    up_to_three!(kernel_int8_avx2, r, t, epi)
                }),
                #[cfg(target_arch = "x86_64")]
                Kernel::Int8Avx2Signed => in_passes_of_three(r, t, epi, |r, t, epi| {
                    // At most three rows of the tile the caller vouches for.
                    up_to_three!(kernel_int8_avx2_signed, r, t, epi)
                }),
                Kernel::Int8Portable => arms!(narrow kernel_int8_portable),
            }
        }
    }
}

/// A 6-row kernel on `r` rows as passes of at most three: the widening bf16 kernel and the
/// `vpmaddubsw` int8 kernels need more registers than the fp32 one, and six rows would spill
/// the accumulators.
///
/// # Safety
///
/// As for [`Kernel::run`]; `pass(rows, tile, epi)` must be such a call for at most 3 rows.
#[cfg(target_arch = "x86_64")]
unsafe fn in_passes_of_three(
    r: usize,
    t: &Tile,
    epi: Option<&TileEpi>,
    pass: impl Fn(usize, &Tile, Option<&TileEpi>),
) {
    if r <= 3 {
        return pass(r, t, epi);
    }
    pass(3, t, epi);
    let rest = Tile {
        a: t.a.wrapping_add(3 * t.lda),
        c: t.c.wrapping_add(3 * t.ldc),
        next: t.next.wrapping_add(3 * t.ldc),
        ..*t
    };
    pass(r - 3, &rest, TileEpi::rows_from(epi, 3, t.ldc).as_ref());
}

#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(target_arch = "x86_64")]
use simd::*;

/// The kernel without SIMD: the same loops on any CPU.
///
/// # Safety
///
/// See [`kernel_with`].
unsafe fn kernel_portable<const R: usize>(t: &Tile, epi: Option<&TileEpi>) {
    // SAFETY: the caller upholds `kernel_with`'s contract.
    unsafe { kernel_with::<R>(t, epi, |acc, a, b| acc + a * b, |e, s| e + s) }
}

/// [`kernel_portable`] on bf16 slots: exact products added odd `k` first, as `vdpbf16ps` does.
///
/// # Safety
///
/// See [`kernel_with`].
unsafe fn kernel_bf16_portable<const R: usize>(t: &Tile, epi: Option<&TileEpi>) {
    let dot = |acc: f32, a: f32, b: f32| {
        let ((ae, ao), (be, bo)) = (unslot(a), unslot(b));
        acc + ao * bo + ae * be
    };
    // SAFETY: the caller upholds `kernel_with`'s contract.
    unsafe { kernel_with::<R>(t, epi, dot, |e, s| e + s) }
}

/// [`kernel_portable`] on int8 quads: exact i32 sums, dequantized on the last block.
///
/// # Safety
///
/// See [`kernel_with`].
unsafe fn kernel_int8_portable<const R: usize>(t: &Tile, epi: Option<&TileEpi>) {
    // SAFETY: the caller upholds `kernel_with`'s contract.
    unsafe { kernel_with::<R>(t, epi, int8::dot_portable, int8::merge_portable) }
}

/// The portable loops, `madd(acc, a, b)` adding one step's product from zero, then
/// `merge(earlier, block)` adding the earlier `k` blocks' sums, as the SIMD kernels do.
///
/// # Safety
///
/// `t.a` must be readable for `R` rows (`t.lda` apart) of `t.kc` floats; `t.b[0]` and `t.b[1]`
/// for `t.kc` steps of `NR` floats (the halves or panels this kernel reads); `t.c` readable and
/// writable for `R` rows (`t.ldc` apart) of the tile's columns; the non-null pointers of `epi`
/// readable for the tile's columns (the residual for `R` rows `t.ldc` apart; the row scales and
/// zero points for `R` rows).
unsafe fn kernel_with<const R: usize>(
    t: &Tile,
    epi: Option<&TileEpi>,
    madd: impl Fn(f32, f32, f32) -> f32,
    merge: impl Fn(f32, f32) -> f32,
) {
    let Tile {
        kc,
        a,
        lda,
        ak,
        b,
        c,
        ldc,
        accumulate,
        ..
    } = *t;
    let mut acc = [[0f32; NR]; R];
    // SAFETY: every pointer read or written below stays inside the rows and columns the
    // caller vouches for (the function's contract).
    unsafe {
        for p in 0..kc {
            let bp = std::slice::from_raw_parts(b[0].add(p * NR), NR);
            for (i, row) in acc.iter_mut().enumerate() {
                let av = *a.add(i * lda + p * ak);
                for (v, &bv) in row.iter_mut().zip(bp) {
                    *v = madd(*v, av, bv);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let c = c.add(i * ldc + j);
                *c = if accumulate { merge(*c, *v) } else { *v };
            }
        }
        if let Some(e) = epi {
            let opt =
                |p: *const f32, len| (!p.is_null()).then(|| std::slice::from_raw_parts(p, len));
            let whole = Epilogue {
                scale: opt(e.scale, NR),
                shift: opt(e.shift, NR),
                residual: None,
                relu: e.relu,
                quick_gelu: e.gelu,
            };
            for i in 0..R {
                let row = std::slice::from_raw_parts_mut(c.add(i * ldc), NR);
                if !e.row_scale.is_null() {
                    let sums = std::slice::from_raw_parts(e.col_sum, NR);
                    let scales = std::slice::from_raw_parts(e.col_scale, NR);
                    let (rs, zero) = (*e.row_scale.add(i), *e.row_zero.add(i));
                    int8::dequant_row(row, Some(sums), scales, rs, zero);
                }
                let res = (!e.residual.is_null())
                    .then(|| std::slice::from_raw_parts(e.residual.add(i * ldc), NR));
                finish(row, 0, res, &whole, false);
            }
        }
    }
}
