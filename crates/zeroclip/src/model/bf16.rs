//! bf16 operands for the GEMM of `--precision bf16`: rounding f32 to bf16, and the 32-bit
//! "slot" the kernels read — two bf16 values of consecutive `k` (the even one in the low half),
//! which is the operand layout of AVX-512 BF16's `vdpbf16ps`. A bf16 matrix packed as slots has
//! the shape of an f32 matrix with half the `k`, so the f32 GEMM's blocking, tasks and edge tiles
//! serve it unchanged; only the micro-kernels differ.
//!
//! Arithmetic, on every path: both operands rounded to bf16 (nearest, ties to even), each
//! product exact in f32 (8-bit significands), accumulated in f32, the odd `k` of a slot first —
//! `vdpbf16ps`'s order, so the widening kernels for CPUs without it give the same sums.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether this CPU multiplies bf16 pairs natively (`vdpbf16ps`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) fn native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to bf16 (nearest, ties to even; a NaN stays a NaN), as its 16 bits.
pub(super) fn round(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7fc0;
    }
    let bits = x.to_bits();
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The f32 with the same value as bf16 bits `b`.
pub(super) fn widen(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// A slot of bf16 bits `(even, odd)`, stored in an f32's bits.
pub(super) fn slot(even: u16, odd: u16) -> f32 {
    f32::from_bits(even as u32 | (odd as u32) << 16)
}

/// The `(even, odd)` values of a slot, widened.
pub(super) fn unslot(s: f32) -> (f32, f32) {
    let bits = s.to_bits();
    (widen(bits as u16), widen((bits >> 16) as u16))
}

/// `src` (`k` values) rounded into `dst` (`k.div_ceil(2)` slots; an odd `k` padded with zero).
pub(super) fn pack_row(src: &[f32], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), src.len().div_ceil(2));
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if native() {
        // SAFETY: the CPU has AVX-512 F and BF16 (checked above).
        done = unsafe { pack_row_native(src, dst) };
    }
    for (i, d) in dst.iter_mut().enumerate().skip(done / 2) {
        let even = round(src[2 * i]);
        let odd = src.get(2 * i + 1).map_or(0, |&v| round(v));
        *d = slot(even, odd);
    }
}

/// The first `16·⌊k/16⌋` values of `src` converted with `vcvtneps2bf16`; returns how many.
///
/// # Safety
///
/// The CPU must have AVX-512 F and BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_row_native(src: &[f32], dst: &mut [f32]) -> usize {
    let whole = src.len() / 16 * 16;
    for (s, d) in src[..whole].chunks_exact(16).zip(dst.chunks_exact_mut(8)) {
        // SAFETY: `s` holds 16 floats and `d` 8 slots (32 bytes), both in bounds; the features
        // are enabled.
        unsafe {
            let v = _mm512_loadu_ps(s.as_ptr());
            let h = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(d.as_mut_ptr().cast(), h);
        }
    }
    whole
}

/// `acc + a_odd·b_odd + a_even·b_even` per lane, the slots of `a` and `b` as bf16 pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
pub(super) fn dot512(a: __m512, b: __m512, acc: __m512) -> __m512 {
    // SAFETY: `__m512` and `__m512bh` are both 64 bytes of plain bits.
    let (a, b) = unsafe {
        (
            std::mem::transmute::<__m512, __m512bh>(a),
            std::mem::transmute::<__m512, __m512bh>(b),
        )
    };
    _mm512_dpbf16_ps(acc, a, b)
}

/// [`dot512`]'s arithmetic on 8 lanes without AVX-512 BF16: each half widened (a shift or a
/// mask), then two fused multiply-adds, which are exact products added in the same order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn dot256(a: __m256, b: __m256, acc: __m256) -> __m256 {
    let high = _mm256_castsi256_ps(_mm256_set1_epi32(0xffff_0000_u32 as i32));
    let even = |v: __m256| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_castps_si256(v)));
    let acc = _mm256_fmadd_ps(_mm256_and_ps(a, high), _mm256_and_ps(b, high), acc);
    _mm256_fmadd_ps(even(a), even(b), acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even() {
        for (x, want) in [
            (1.0f32, 0x3f80u16),
            (-2.5, 0xc020),
            (f32::from_bits(0x3f80_8000), 0x3f80), // a tie, to the even 0x3f80
            (f32::from_bits(0x3f81_8000), 0x3f82), // a tie, to the even 0x3f82
            (f32::from_bits(0x3f80_8001), 0x3f81),
            (f32::INFINITY, 0x7f80),
            (f32::MAX, 0x7f80), // rounds up to infinity, as vcvtneps2bf16 does
        ] {
            assert_eq!(round(x), want, "{x:e}");
        }
        assert!(widen(round(f32::NAN)).is_nan());
        assert_eq!(widen(0x3f80), 1.0);
    }

    #[test]
    fn packs_rows_of_any_length_the_same_on_every_path() {
        for k in [0usize, 1, 2, 15, 16, 17, 33, 100] {
            let src: Vec<f32> = (0..k).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let mut dst = vec![f32::NAN; k.div_ceil(2)];
            pack_row(&src, &mut dst);
            for (i, &s) in dst.iter().enumerate() {
                let (even, odd) = unslot(s);
                assert_eq!(even, widen(round(src[2 * i])), "k {k} slot {i}");
                let want_odd = src.get(2 * i + 1).map_or(0.0, |&v| widen(round(v)));
                assert_eq!(odd, want_odd, "k {k} slot {i}");
            }
        }
    }
}
