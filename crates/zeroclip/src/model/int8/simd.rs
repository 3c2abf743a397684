//! The int8 products' SIMD arithmetic, shared by the micro-kernels: a step's exact integer
//! multiply-adds (`vpdpbusd` with VNNI; `vpmaddubsw` + `vpmaddwd` without, on narrow or signed
//! codes as the parent module's header explains), the sums of earlier `k` blocks added after a
//! block's, and the dequantization of a finished tile. Each is the vector form of the parent's
//! portable `dot_portable`, `merge_portable` and `dequant_portable`, and gives the same bits.

use std::arch::x86_64::*;

/// `acc + Σ u·w` per lane over the four byte pairs of each slot (`vpdpbusd`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
pub(in crate::model) fn dot512(a: __m512, b: __m512, acc: __m512) -> __m512 {
    let (a, b, acc) = (
        _mm512_castps_si512(a),
        _mm512_castps_si512(b),
        _mm512_castps_si512(acc),
    );
    _mm512_castsi512_ps(_mm512_dpbusd_epi32(acc, a, b))
}

/// [`dot512`] on 8 lanes (AVX-512 VL).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512vl,avx512vnni")]
#[inline]
pub(in crate::model) fn dot256_vnni(a: __m256, b: __m256, acc: __m256) -> __m256 {
    let (a, b, acc) = (
        _mm256_castps_si256(a),
        _mm256_castps_si256(b),
        _mm256_castps_si256(acc),
    );
    _mm256_castsi256_ps(_mm256_dpbusd_epi32(acc, a, b))
}

/// [`dot512`] on 8 lanes with AVX-VNNI (the VEX form, on CPUs without AVX-512). The same
/// instruction semantics as [`dot256_vnni`]; no CPU of the build machine has it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avxvnni")]
#[inline]
pub(in crate::model) fn dot256_avx_vnni(a: __m256, b: __m256, acc: __m256) -> __m256 {
    let (a, b, acc) = (
        _mm256_castps_si256(a),
        _mm256_castps_si256(b),
        _mm256_castps_si256(acc),
    );
    _mm256_castsi256_ps(_mm256_dpbusd_avx_epi32(acc, a, b))
}

/// [`dot256`] on 16 lanes (AVX-512 BW), for narrow codes on AVX-512 CPUs without VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(in crate::model) fn dot512_bw(a: __m512, b: __m512, acc: __m512) -> __m512 {
    let pairs = _mm512_maddubs_epi16(_mm512_castps_si512(a), _mm512_castps_si512(b));
    let quads = _mm512_madd_epi16(pairs, _mm512_set1_epi16(1));
    _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(acc), quads))
}

/// [`dot512_bw`] over two steps at once, on 7-bit activation codes: `acc + Σ u·w + Σ u'·w'`,
/// both steps' byte pairs added in i16 before one `vpmaddwd` (exact: 127·63·4 < 2^15).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(in crate::model) fn dot512_bw_pair(
    a: __m512,
    b: __m512,
    a2: __m512,
    b2: __m512,
    acc: __m512,
) -> __m512 {
    let pairs = _mm512_maddubs_epi16(_mm512_castps_si512(a), _mm512_castps_si512(b));
    let pairs2 = _mm512_maddubs_epi16(_mm512_castps_si512(a2), _mm512_castps_si512(b2));
    let quads = _mm512_madd_epi16(_mm512_add_epi16(pairs, pairs2), _mm512_set1_epi16(1));
    _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(acc), quads))
}

/// [`dot256_signed`] on 16 lanes (AVX-512 BW), for full codes on AVX-512 CPUs without VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(in crate::model) fn dot512_bw_signed(a: __m512, b: __m512, acc: __m512) -> __m512 {
    let signed = _mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi8(i8::MIN));
    // The weights whose activation is negative are negated under a mask; those whose
    // activation is zero meet `|a| = 0` anyway.
    let negative = _mm512_movepi8_mask(signed);
    let b = _mm512_castps_si512(b);
    let b = _mm512_mask_sub_epi8(b, negative, _mm512_setzero_si512(), b);
    let pairs = _mm512_maddubs_epi16(_mm512_abs_epi8(signed), b);
    let quads = _mm512_madd_epi16(pairs, _mm512_set1_epi16(1));
    _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(acc), quads))
}

/// `acc + Σ u·w` per lane with plain AVX2, on narrow weight codes (±[`super::W_MAX_NARROW`]): byte
/// pairs into i16 (`vpmaddubsw`, exact since 127·63·2 < 2^15), then pairs of those into i32
/// (`vpmaddwd`); the last step of an odd `k` block ([`dot256_pair`] takes the others). See the
/// module's header.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(in crate::model) fn dot256(a: __m256, b: __m256, acc: __m256) -> __m256 {
    let pairs = _mm256_maddubs_epi16(_mm256_castps_si256(a), _mm256_castps_si256(b));
    let quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(acc), quads))
}

/// [`dot256`] over two steps at once, on 7-bit activation codes: `acc + Σ u·w + Σ u'·w'`, both
/// steps' byte pairs added in i16 before one `vpmaddwd` (exact: 127·63·4 < 2^15).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(in crate::model) fn dot256_pair(
    a: __m256,
    b: __m256,
    a2: __m256,
    b2: __m256,
    acc: __m256,
) -> __m256 {
    let pairs = _mm256_maddubs_epi16(_mm256_castps_si256(a), _mm256_castps_si256(b));
    let pairs2 = _mm256_maddubs_epi16(_mm256_castps_si256(a2), _mm256_castps_si256(b2));
    let quads = _mm256_madd_epi16(_mm256_add_epi16(pairs, pairs2), _mm256_set1_epi16(1));
    _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(acc), quads))
}

/// `acc + Σ a·w` per lane with plain AVX2 on full (±127) weight codes, `a = u − 128` the signed
/// activation codes: `|a|` times the weights carrying `a`'s sign (negated by `(w ^ m) − m` under
/// the sign mask `m`, which runs on more ports than `vpsignb`), byte pairs into i16
/// (`vpmaddubsw`, exact since 127·127·2 < 2^15), then pairs of those into i32 (`vpmaddwd`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(in crate::model) fn dot256_signed(a: __m256, b: __m256, acc: __m256) -> __m256 {
    let signed = _mm256_xor_si256(_mm256_castps_si256(a), _mm256_set1_epi8(i8::MIN));
    let negative = _mm256_cmpgt_epi8(_mm256_setzero_si256(), signed);
    let b = _mm256_xor_si256(_mm256_castps_si256(b), negative);
    let b = _mm256_sub_epi8(b, negative);
    let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(signed), b);
    let quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(acc), quads))
}

/// The signed kernels' dequantization on 16 lanes: `acc · scale` (the column sums and zero
/// point unused: the sums are already `Σ a·w`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(in crate::model) fn dequant512_signed(
    acc: __m512,
    _col_sum: __m512,
    _zero: i32,
    scale: __m512,
) -> __m512 {
    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_castps_si512(acc)), scale)
}

/// [`dequant512_signed`] on 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(in crate::model) fn dequant256_signed(
    acc: __m256,
    _col_sum: __m256,
    _zero: i32,
    scale: __m256,
) -> __m256 {
    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_castps_si256(acc)), scale)
}

/// [`merge_portable`] on 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(in crate::model) fn merge_i32_512(earlier: __m512, block: __m512) -> __m512 {
    let (e, b) = (_mm512_castps_si512(earlier), _mm512_castps_si512(block));
    _mm512_castsi512_ps(_mm512_add_epi32(e, b))
}

/// [`merge_portable`] on 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(in crate::model) fn merge_i32_256(earlier: __m256, block: __m256) -> __m256 {
    let (e, b) = (_mm256_castps_si256(earlier), _mm256_castps_si256(block));
    _mm256_castsi256_ps(_mm256_add_epi32(e, b))
}

/// [`dequant_portable`] on 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(in crate::model) fn dequant512(
    acc: __m512,
    col_sum: __m512,
    zero_point: i32,
    scale: __m512,
) -> __m512 {
    let corr = _mm512_mullo_epi32(_mm512_castps_si512(col_sum), _mm512_set1_epi32(zero_point));
    let d = _mm512_sub_epi32(_mm512_castps_si512(acc), corr);
    _mm512_mul_ps(_mm512_cvtepi32_ps(d), scale)
}

/// [`dequant_portable`] on 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(in crate::model) fn dequant256(
    acc: __m256,
    col_sum: __m256,
    zero_point: i32,
    scale: __m256,
) -> __m256 {
    let corr = _mm256_mullo_epi32(_mm256_castps_si256(col_sum), _mm256_set1_epi32(zero_point));
    let d = _mm256_sub_epi32(_mm256_castps_si256(acc), corr);
    _mm256_mul_ps(_mm256_cvtepi32_ps(d), scale)
}
