//! The SIMD micro-kernels: one macro body ([`simd_kernel`]) instantiated for each vector width
//! and operand encoding (f32, bf16 slots, int8 slots on VNNI, AVX-VNNI or `vpmaddubsw`), so the
//! AVX-512 and AVX2 kernels cannot drift apart and give the portable kernel's sums in the same
//! order (see the parent module).

use super::{Tile, TileEpi};
use crate::model::bf16::{dot256, dot512};
use crate::model::epilogue::NR;
use crate::model::fma_loop::{fp32_avx2_loop, fp32_avx512_loop, no_hand_loop};
use crate::model::int8::{dequant256, dequant256_signed, dequant512, dequant512_signed};
use crate::model::int8::{
    dot256 as int8_dot256, dot512 as int8_dot512, dot512_bw as int8_dot512_bw,
};
use crate::model::int8::{dot256_avx_vnni, dot256_vnni, merge_i32_256, merge_i32_512};
use crate::model::int8::{dot256_pair as int8_dot256_pair, dot512_bw_pair as int8_dot512_bw_pair};
use crate::model::int8::{
    dot256_signed as int8_dot256_signed, dot512_bw_signed as int8_dot512_bw_signed,
};
use crate::model::vmath::{quick_gelu_call16, quick_gelu_call8};

/// Defines a SIMD micro-kernel `C[0..R, 0..2·lanes] (+)= A[0..R, 0..kc] · B` whose two column
/// vectors per row come from `b[0] + p·NR` and `b[1] + p·NR` (two halves of one panel for AVX2,
/// two panels for AVX-512), with the [`TileEpi`] applied in registers before the store — one
/// body for every vector width, so the kernels cannot drift apart. With `pairs $pair`, the
/// steps go two at a time through `$pair(a, b, a', b', acc)` (an odd last one through `$fma`).
macro_rules! simd_kernel {
    ($name:ident, $feature:literal, $zero:ident, $load:ident, $splat:ident, $fma:ident,
     $mul:ident, $add:ident, $merge:ident, $max:ident, $store:ident, $dequant:ident, $gelu:ident,
     $lanes:expr, $k_loop:ident $(, pairs $pair:ident)?) => {
        /// The SIMD kernel for these target features.
        ///
        /// # Safety
        ///
        /// See `kernel_portable`; the CPU must also have these features.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        pub(super) unsafe fn $name<const R: usize>(t: &Tile, epi: Option<&TileEpi>) {
            use std::arch::x86_64::*;
            // SAFETY: every load and store below stays inside the rows and columns the caller
            // vouches for (the function's contract); the target features are enabled.
            unsafe {
                let Tile {
                    kc,
                    a,
                    lda,
                    ak,
                    b,
                    c,
                    ldc,
                    next,
                    accumulate,
                } = *t;
                // Fetch the `C` of the driver's next call now, and this tile's residual, so the
                // loads that end that call find them in cache instead of waiting on memory.
                for i in 0..R {
                    let next = next.wrapping_add(i * ldc) as *const i8;
                    _mm_prefetch::<_MM_HINT_T0>(next);
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(8 * $lanes - 4));
                }
                if let Some(e) = epi.filter(|e| !e.residual.is_null()) {
                    for i in 0..R {
                        let r = e.residual.wrapping_add(i * ldc) as *const i8;
                        _mm_prefetch::<_MM_HINT_T0>(r);
                        _mm_prefetch::<_MM_HINT_T0>(r.wrapping_add(8 * $lanes - 4));
                    }
                }
                let mut lo = [$zero(); R];
                let mut hi = [$zero(); R];
                if !$k_loop(kc, a, lda, ak, b, &mut lo, &mut hi) {
                    #[allow(unused_mut)]
                    let mut first = 0;
                    $(
                        // Two steps a call (`$pair` adds both), the last of an odd `kc` below.
                        while first + 2 <= kc {
                            let (p, q) = (first, first + 1);
                            let (b0, b1) = ($load(b[0].add(p * NR)), $load(b[1].add(p * NR)));
                            let (c0, c1) = ($load(b[0].add(q * NR)), $load(b[1].add(q * NR)));
                            for i in 0..R {
                                let av = $splat(*a.add(i * lda + p * ak));
                                let aq = $splat(*a.add(i * lda + q * ak));
                                lo[i] = $pair(av, b0, aq, c0, lo[i]);
                                hi[i] = $pair(av, b1, aq, c1, hi[i]);
                            }
                            first += 2;
                        }
                    )?
                    for p in first..kc {
                        let b0 = $load(b[0].add(p * NR));
                        let b1 = $load(b[1].add(p * NR));
                        for i in 0..R {
                            let av = $splat(*a.add(i * lda + p * ak));
                            lo[i] = $fma(av, b0, lo[i]);
                            hi[i] = $fma(av, b1, hi[i]);
                        }
                    }
                }
                // The earlier blocks' sums join after this block's (not before, as the first
                // value of each chain): their loads, often waiting on memory, then hold up no
                // multiply-add.
                if accumulate {
                    for i in 0..R {
                        lo[i] = $merge($load(c.add(i * ldc)), lo[i]);
                        hi[i] = $merge($load(c.add(i * ldc + $lanes)), hi[i]);
                    }
                }
                if let Some(e) = epi {
                    if !e.row_scale.is_null() {
                        // i32 sums → f32, in the order of `int8::dequant_portable`.
                        let (c0, c1) = ($load(e.col_sum), $load(e.col_sum.add($lanes)));
                        let (s0, s1) = ($load(e.col_scale), $load(e.col_scale.add($lanes)));
                        for i in 0..R {
                            let (rs, zero) = ($splat(*e.row_scale.add(i)), *e.row_zero.add(i));
                            lo[i] = $dequant(lo[i], c0, zero, $mul(rs, s0));
                            hi[i] = $dequant(hi[i], c1, zero, $mul(rs, s1));
                        }
                    }
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
                    if e.gelu {
                        for i in 0..R {
                            lo[i] = $gelu(lo[i]);
                            hi[i] = $gelu(hi[i]);
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
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_storeu_ps,
    dequant256,
    quick_gelu_call8,
    8,
    fp32_avx2_loop
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
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_storeu_ps,
    dequant512,
    quick_gelu_call16,
    NR,
    fp32_avx512_loop
);

simd_kernel!(
    kernel_bf16_avx512,
    "avx512f,avx512bf16",
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    dot512,
    _mm512_mul_ps,
    _mm512_add_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_storeu_ps,
    dequant512,
    quick_gelu_call16,
    NR,
    no_hand_loop
);
simd_kernel!(
    kernel_bf16_avx2,
    "avx2,fma",
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    dot256,
    _mm256_mul_ps,
    _mm256_add_ps,
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_storeu_ps,
    dequant256,
    quick_gelu_call8,
    8,
    no_hand_loop
);

simd_kernel!(
    kernel_int8_vnni512,
    "avx512f,avx512vnni",
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    int8_dot512,
    _mm512_mul_ps,
    _mm512_add_ps,
    merge_i32_512,
    _mm512_max_ps,
    _mm512_storeu_ps,
    dequant512,
    quick_gelu_call16,
    NR,
    no_hand_loop
);
simd_kernel!(
    kernel_int8_vnni256,
    "avx2,fma,avx512vl,avx512vnni",
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    dot256_vnni,
    _mm256_mul_ps,
    _mm256_add_ps,
    merge_i32_256,
    _mm256_max_ps,
    _mm256_storeu_ps,
    dequant256,
    quick_gelu_call8,
    8,
    no_hand_loop
);
simd_kernel!(
    kernel_int8_avx512bw,
    "avx512f,avx512bw",
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    int8_dot512_bw,
    _mm512_mul_ps,
    _mm512_add_ps,
    merge_i32_512,
    _mm512_max_ps,
    _mm512_storeu_ps,
    dequant512,
    quick_gelu_call16,
    NR,
    no_hand_loop,
    pairs int8_dot512_bw_pair
);
simd_kernel!(
    kernel_int8_avx_vnni,
    "avx2,fma,avxvnni",
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    dot256_avx_vnni,
    _mm256_mul_ps,
    _mm256_add_ps,
    merge_i32_256,
    _mm256_max_ps,
    _mm256_storeu_ps,
    dequant256,
    quick_gelu_call8,
    8,
    no_hand_loop
);
simd_kernel!(
    kernel_int8_avx2,
    "avx2,fma",
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    int8_dot256,
    _mm256_mul_ps,
    _mm256_add_ps,
    merge_i32_256,
    _mm256_max_ps,
    _mm256_storeu_ps,
    dequant256,
    quick_gelu_call8,
    8,
    no_hand_loop,
    pairs int8_dot256_pair
);

simd_kernel!(
    kernel_int8_avx512bw_signed,
    "avx512f,avx512bw",
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    int8_dot512_bw_signed,
    _mm512_mul_ps,
    _mm512_add_ps,
    merge_i32_512,
    _mm512_max_ps,
    _mm512_storeu_ps,
    dequant512_signed,
    quick_gelu_call16,
    NR,
    no_hand_loop
);
simd_kernel!(
    kernel_int8_avx2_signed,
    "avx2,fma",
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    int8_dot256_signed,
    _mm256_mul_ps,
    _mm256_add_ps,
    merge_i32_256,
    _mm256_max_ps,
    _mm256_storeu_ps,
    dequant256_signed,
    quick_gelu_call8,
    8,
    no_hand_loop
);
