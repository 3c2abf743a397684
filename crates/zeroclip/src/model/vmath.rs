//! `e^x` and QuickGELU (`x · sigmoid(1.702 x)`) on SIMD vectors: 8 lanes with AVX2 + FMA, 16
//! with AVX-512, from one macro body, so every lane computes the same bits whichever width runs
//! it. The slices of `ops.rs` (attention's softmax, QuickGELU outside the GEMM) and the GEMM's
//! in-register epilogue (`microkernel.rs`) use them; the widest the CPU has runs, then the
//! narrower one on what is left, then the scalar form.
//!
//! `e^x`: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` by its Taylor polynomial of degree 6
//! (relative error below 1.2e-7 there, within about 1 ulp of libm's `expf`), times `2^n` built
//! in the exponent bits. Inputs are held to [-87, 88], where `2^n` stays a normal float; beyond,
//! the sigmoid is 0 or 1 to f32 precision either way. QuickGELU divides as the scalar form does.

use std::arch::x86_64::*;

/// Defines `$exp` and `$gelu` on `$v` vectors with the target features `$feature`, `$gelu_call`
/// (the same, never inlined), and `$run`, which applies one of them in place to the whole
/// vectors at the start of a slice of floats and returns how many values it did.
macro_rules! vector_math {
    ($feature:literal, $v:ident, $lanes:literal, $exp:ident, $gelu:ident, $gelu_call:ident,
     $run:ident, $set1:ident, $set1_epi32:ident, $min:ident, $max:ident, $mul:ident,
     $add:ident, $div:ident, $fmadd:ident, $fnmadd:ident, $round:ident, $cvt:ident,
     $add_epi32:ident, $slli:ident, $cast:ident, $load:ident, $store:ident) => {
        /// `e^x` per lane (see the module's header).
        #[target_feature(enable = $feature)]
        #[inline]
        pub(super) fn $exp(x: $v) -> $v {
            let x = $min($max(x, $set1(-87.0)), $set1(88.0));
            let n = $round::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>($mul(
                x,
                $set1(std::f32::consts::LOG2_E),
            ));
            // ln 2 split in two so that `n · ln2_hi` is exact.
            let r = $fnmadd(n, $set1(0.693_145_75), x);
            let r = $fnmadd(n, $set1(1.428_606_8e-6), r);
            let mut p = $set1(1.0 / 720.0);
            for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
                p = $fmadd(p, r, $set1(c));
            }
            let bits = $slli::<23>($add_epi32($cvt(n), $set1_epi32(127)));
            $mul(p, $cast(bits))
        }

        /// QuickGELU per lane: `v · (1 / (1 + e^(-1.702 v)))`, in the scalar form's order.
        #[target_feature(enable = $feature)]
        #[inline]
        pub(super) fn $gelu(v: $v) -> $v {
            let one = $set1(1.0);
            let e = $exp($mul(v, $set1(-1.702)));
            $mul(v, $div(one, $add(one, e)))
        }

        /// [`$gelu`], out of line on purpose: inlined into a micro-kernel, its constants
        /// took registers from the accumulators of the `k` loop, which then spilled on every
        /// step.
        #[target_feature(enable = $feature)]
        #[inline(never)]
        pub(super) fn $gelu_call(v: $v) -> $v {
            $gelu(v)
        }

        /// [`$gelu`] (`exp` false) or [`$exp`] (`exp` true) in place on the whole vectors at
        /// the start of `values`; returns how many values.
        #[target_feature(enable = $feature)]
        fn $run(values: &mut [f32], exp: bool) -> usize {
            let whole = values.len() / $lanes * $lanes;
            for chunk in values[..whole].chunks_exact_mut($lanes) {
                // SAFETY: `chunk` holds one vector's floats.
                unsafe {
                    let v = $load(chunk.as_ptr());
                    $store(chunk.as_mut_ptr(), if exp { $exp(v) } else { $gelu(v) });
                }
            }
            whole
        }
    };
}

vector_math!(
    "avx2,fma",
    __m256,
    8,
    exp8,
    quick_gelu8,
    quick_gelu_call8,
    run8,
    _mm256_set1_ps,
    _mm256_set1_epi32,
    _mm256_min_ps,
    _mm256_max_ps,
    _mm256_mul_ps,
    _mm256_add_ps,
    _mm256_div_ps,
    _mm256_fmadd_ps,
    _mm256_fnmadd_ps,
    _mm256_round_ps,
    _mm256_cvtps_epi32,
    _mm256_add_epi32,
    _mm256_slli_epi32,
    _mm256_castsi256_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps
);
vector_math!(
    "avx512f",
    __m512,
    16,
    exp16,
    quick_gelu16,
    quick_gelu_call16,
    run16,
    _mm512_set1_ps,
    _mm512_set1_epi32,
    _mm512_min_ps,
    _mm512_max_ps,
    _mm512_mul_ps,
    _mm512_add_ps,
    _mm512_div_ps,
    _mm512_fmadd_ps,
    _mm512_fnmadd_ps,
    _mm512_roundscale_ps,
    _mm512_cvtps_epi32,
    _mm512_add_epi32,
    _mm512_slli_epi32,
    _mm512_castsi512_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps
);

/// [`run16`] (if `wide` and the CPU has AVX-512 F) then [`run8`] (if it has AVX2 and FMA) on
/// what each can take of `values`; returns how many values were done (the rest is the
/// caller's). `wide` is the caller's CPU class (`dispatch.rs`): a class held to AVX2 runs AVX2.
fn in_vectors(values: &mut [f32], wide: bool, exp: bool) -> usize {
    let mut done = 0;
    if wide && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512 F (checked above).
        done = unsafe { run16(values, exp) };
    }
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        done += unsafe { run8(&mut values[done..], exp) };
    }
    done
}

/// QuickGELU in place on as much of `values` as whole vectors cover (16 lanes only if
/// `wide`); returns how many.
pub(super) fn quick_gelu_vectors(values: &mut [f32], wide: bool) -> usize {
    in_vectors(values, wide, false)
}

/// `e^x` in place on as much of `values` as whole vectors cover (16 lanes only if `wide`);
/// returns how many.
pub(super) fn exp_vectors(values: &mut [f32], wide: bool) -> usize {
    in_vectors(values, wide, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_widths_give_the_same_bits() {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            eprintln!("skipped: this CPU has not both widths");
            return;
        }
        let xs: Vec<f32> = (-20_000..20_000)
            .map(|i| i as f32 * 7.3e-3)
            .chain([-200.0, -87.5, 88.5, 200.0, 0.0, -0.0, 1e-30])
            .collect();
        let whole = xs.len() / 16 * 16;
        for exp in [false, true] {
            let (mut a, mut b) = (xs[..whole].to_vec(), xs[..whole].to_vec());
            // SAFETY: the CPU has both widths' features (checked above).
            unsafe {
                assert_eq!(run16(&mut a, exp), whole);
                assert_eq!(run8(&mut b, exp), whole);
            }
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "input {}", xs[i]);
            }
        }
    }
}
