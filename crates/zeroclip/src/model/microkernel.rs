//! The register-blocked micro-kernels of [`super::gemm`]: `C[r rows, cols] (+)= A · B` over one
//! `KC` block, with the epilogue applied in registers on the last block. One macro body serves the
//! AVX-512 kernel (12 rows × two 16-column panels, 24 of the 32 vector registers accumulate) and
//! the AVX2 + FMA one (6 rows × one panel as two 8-column halves), so they cannot drift apart; a
//! portable kernel runs the same loops on other CPUs. Which one runs is decided at run time.

use super::epilogue::{finish, Epilogue, NR};

/// Rows per step of the AVX-512 kernel (24 accumulator registers of 32).
pub(super) const MR_WIDE: usize = 12;

/// Whether this CPU runs the AVX-512 kernel on pairs of panels.
pub(super) fn wide_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One micro-kernel call: a tile of `C` over one `k` block.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    /// `k` of this block.
    pub(super) kc: usize,
    /// `A`'s first row at the block's first `k`; rows `lda` apart.
    pub(super) a: *const f32,
    pub(super) lda: usize,
    /// The two column halves' `[kc][NR]` panel slices: two panels for AVX-512, a panel and its
    /// column 8 otherwise (the portable kernel reads the whole panel from `b[0]`).
    pub(super) b: [*const f32; 2],
    /// `C`'s first row and column of the tile; rows `ldc` apart.
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    /// Whether `C` already holds the previous `k` blocks' sums.
    pub(super) accumulate: bool,
}

/// [`Epilogue`] for one full tile: pointers at its first column (and row, for the residual,
/// whose row stride is `C`'s); null where the step is skipped.
pub(super) struct TileEpi {
    pub(super) scale: *const f32,
    pub(super) shift: *const f32,
    pub(super) residual: *const f32,
    pub(super) relu: bool,
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
}

impl Kernel {
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernel::Avx2Fma;
            }
        }
        Kernel::Portable
    }

    /// `C[0..r, cols] (+)= A[0..r, 0..kc] · B` for `r` up to 12 (AVX-512) or 6 rows.
    ///
    /// # Safety
    ///
    /// As for the kernels: `t` and `epi` must point at memory valid for `r` rows of the tile
    /// (see `kernel_portable`), and `self` must be a kernel this CPU runs ([`Kernel::detect`],
    /// or [`Kernel::Avx512`] only where [`wide_available`]).
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
        }
        // SAFETY: the caller upholds the kernels' contract for `r` rows, and `self` names a
        // kernel whose features this CPU has.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => arms!(kernel_avx512; 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2Fma => arms!(kernel_avx2; 6, 5, 4, 3, 2),
                Kernel::Portable => arms!(kernel_portable; 6, 5, 4, 3, 2),
            }
        }
    }
}

/// Defines a SIMD micro-kernel `C[0..R, 0..2·lanes] (+)= A[0..R, 0..kc] · B` whose two column
/// vectors per row come from `b[0] + p·NR` and `b[1] + p·NR` (two halves of one panel for AVX2,
/// two panels for AVX-512), with the [`TileEpi`] applied in registers before the store — one
/// body for every vector width, so the kernels cannot drift apart.
macro_rules! simd_kernel {
    ($name:ident, $feature:literal, $zero:ident, $load:ident, $splat:ident, $fma:ident,
     $mul:ident, $add:ident, $max:ident, $store:ident, $lanes:expr) => {
        /// The SIMD kernel for these target features.
        ///
        /// # Safety
        ///
        /// See `kernel_portable`; the CPU must also have these features.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name<const R: usize>(t: &Tile, epi: Option<&TileEpi>) {
            use std::arch::x86_64::*;
            // SAFETY: every load and store below stays inside the rows and columns the caller
            // vouches for (the function's contract); the target features are enabled.
            unsafe {
                let Tile {
                    kc,
                    a,
                    lda,
                    b,
                    c,
                    ldc,
                    accumulate,
                } = *t;
                let mut lo = [$zero(); R];
                let mut hi = [$zero(); R];
                if accumulate {
                    for i in 0..R {
                        lo[i] = $load(c.add(i * ldc));
                        hi[i] = $load(c.add(i * ldc + $lanes));
                    }
                }
                for p in 0..kc {
                    let b0 = $load(b[0].add(p * NR));
                    let b1 = $load(b[1].add(p * NR));
                    for i in 0..R {
                        let av = $splat(*a.add(i * lda + p));
                        lo[i] = $fma(av, b0, lo[i]);
                        hi[i] = $fma(av, b1, hi[i]);
                    }
                }
                if let Some(e) = epi {
                    // The same operations, in the same order, as `finish`.
                    if !e.scale.is_null() {
                        let (s0, s1) = ($load(e.scale), $load(e.scale.add($lanes)));
                        for i in 0..R {
                            lo[i] = $mul(lo[i], s0);
                            hi[i] = $mul(hi[i], s1);
                        }
                    }
                    if !e.shift.is_null() {
                        let (s0, s1) = ($load(e.shift), $load(e.shift.add($lanes)));
                        for i in 0..R {
                            lo[i] = $add(lo[i], s0);
                            hi[i] = $add(hi[i], s1);
                        }
                    }
                    if !e.residual.is_null() {
                        for i in 0..R {
                            let r = e.residual.add(i * ldc);
                            lo[i] = $add(lo[i], $load(r));
                            hi[i] = $add(hi[i], $load(r.add($lanes)));
                        }
                    }
                    if e.relu {
                        let zero = $zero();
                        for i in 0..R {
                            lo[i] = $max(lo[i], zero);
                            hi[i] = $max(hi[i], zero);
                        }
                    }
                }
                for i in 0..R {
                    $store(c.add(i * ldc), lo[i]);
                    $store(c.add(i * ldc + $lanes), hi[i]);
                }
            }
        }
    };
}

simd_kernel!(
    kernel_avx2,
    "avx2,fma",
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_mul_ps,
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_storeu_ps,
    8
);
simd_kernel!(
    kernel_avx512,
    "avx512f",
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_mul_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_storeu_ps,
    NR
);

/// The kernel without SIMD: the same loops on any CPU.
///
/// # Safety
///
/// `t.a` must be readable for `R` rows (`t.lda` apart) of `t.kc` floats; `t.b[0]` and `t.b[1]`
/// for `t.kc` steps of `NR` floats (the halves or panels this kernel reads); `t.c` readable and
/// writable for `R` rows (`t.ldc` apart) of the tile's columns; the non-null pointers of `epi`
/// readable for the tile's columns (the residual for `R` rows `t.ldc` apart).
unsafe fn kernel_portable<const R: usize>(t: &Tile, epi: Option<&TileEpi>) {
    let Tile {
        kc,
        a,
        lda,
        b,
        c,
        ldc,
        accumulate,
    } = *t;
    let mut acc = [[0f32; NR]; R];
    // SAFETY: every pointer read or written below stays inside the rows and columns the
    // caller vouches for (the function's contract).
    unsafe {
        if accumulate {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = *c.add(i * ldc + j);
                }
            }
        }
        for p in 0..kc {
            let bp = std::slice::from_raw_parts(b[0].add(p * NR), NR);
            for (i, row) in acc.iter_mut().enumerate() {
                let av = *a.add(i * lda + p);
                for (v, &bv) in row.iter_mut().zip(bp) {
                    *v += av * bv;
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                *c.add(i * ldc + j) = *v;
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
                quick_gelu: false, // applied by `block` after the kernel
            };
            for i in 0..R {
                let row = std::slice::from_raw_parts_mut(c.add(i * ldc), NR);
                let res = (!e.residual.is_null())
                    .then(|| std::slice::from_raw_parts(e.residual.add(i * ldc), NR));
                finish(row, 0, res, &whole);
            }
        }
    }
}
