//! int8 operands for the GEMM of `--precision int8`, as dynamic quantization does it: each weight
//! column (an output channel) symmetric with its own scale, fixed at load; each activation row
//! quantized when the product runs, with its own scale, and offset by a zero point into unsigned
//! codes, the operand order of `vpdpbusd` (unsigned × signed). Four consecutive `k` codes make one
//! 32-bit slot, so — as for bf16 — the f32 GEMM's blocking and tasks serve the int8 matrix as an
//! f32 one with a quarter of the `k`; the kernels accumulate exact i32 sums and dequantize the
//! finished tile: `out = (Σ u·w − row_zero_point·Σ w) · row_scale · col_scale`, then the
//! usual epilogue (each matrix keeps its columns' `Σ w`).
//!
//! Without VNNI, `vpmaddubsw` adds two u8·i8 products into a saturating i16, and 255·127·2 would
//! overflow it. Two ways round that, for the two towers:
//! - **Narrow codes** (the image tower, which runs for every image): on a CPU class whose int8
//!   products run on `vpmaddubsw` (plain AVX2, AVX-512 without VNNI), the weights are quantized
//!   to ±[`W_MAX_NARROW`] at load, the range reduction ONNX Runtime's `reduce_range` also uses,
//!   and the activation rows that meet them to 7-bit codes, 1 to 127 over each row's own range
//!   with its own zero point (see [`ActivationCodes`]; ONNX Runtime's activations are asymmetric
//!   too). Then 127·63·4 < 2^15: two steps' `vpmaddubsw` pairs add in i16
//!   before one `vpmaddwd` widens them, three multiplies where 8-bit activations would take four
//!   ([`dot256_pair`], [`dot512_bw_pair`]).
//! - **Full codes** (±127: every tower on the other classes, and the text tower everywhere, which
//!   runs once per label set and whose cosine to fp32 the narrow codes cost the most): those
//!   kernels multiply the signed activation code `a = u − 128` instead, as `|a|` (unsigned) times
//!   the weight carrying `a`'s sign ([`dot256_signed`], [`dot512_bw_signed`]): 127·127·2 < 2^15.
//!   Their sums are `Σ a·w`, exactly the others' `Σ u·w − 128·Σ w`, so they skip the zero-point
//!   correction — and take only full matrices, whose activation codes lie around 128.
//!
//! The activations' code range follows the matrix's, not the kernel: every kernel that takes a
//! matrix sums the same integer products exactly, so all give the same bits on it; between the
//! ranges the weights' and the activations' rounding differ (docs/FIDELITY.md).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The offset that makes a full activation code unsigned (and stored token codes, `text.rs`).
pub(super) const ZERO_POINT: i32 = 128;
/// The largest weight code magnitude.
pub(super) const W_MAX: f32 = 127.0;
/// The largest weight code magnitude of matrices for `vpmaddubsw` kernels (see the module's
/// header).
pub(super) const W_MAX_NARROW: f32 = 63.0;

/// How the activation rows that meet a matrix are coded: 8-bit codes (1 to 255), symmetric
/// around 128, for full weight codes; 7-bit codes (1 to 127) for narrow weight codes, whose
/// kernels add two steps' `vpmaddubsw` pairs in i16 (see the module's header), with each row's
/// range `[min(x, 0), max(x, 0)]` mapped onto them and its own zero point (a one-sided row, such
/// as QuickGELU's output, keeps all 127 codes instead of half).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum ActivationCodes {
    /// ±127 around [`ZERO_POINT`].
    Full,
    /// 1 to 127, each row with its own zero point.
    Narrow,
}

impl ActivationCodes {
    /// The codes for a matrix of narrow (±[`W_MAX_NARROW`]) or full weight codes.
    pub(super) fn for_weights(narrow_codes: bool) -> Self {
        if narrow_codes {
            Self::Narrow
        } else {
            Self::Full
        }
    }

    /// The coding of a row whose smallest and largest values, NaN skipped and 0 included, are
    /// `min` and `max`.
    fn row(self, min: f32, max: f32) -> RowCoding {
        match self {
            Self::Full => {
                let (scale, inv) = scale_of(if -min > max { -min } else { max }, 127.0);
                RowCoding {
                    scale,
                    inv,
                    lo: -127.0,
                    hi: 127.0,
                    zero_point: ZERO_POINT,
                }
            }
            Self::Narrow => {
                // A finite row whose span overflows f32 takes the largest finite one (an infinite
                // value makes the row NaN, as symmetric codes do).
                let span = max - min;
                let finite = min.is_finite() && max.is_finite();
                let span = if finite && span.is_infinite() {
                    f32::MAX
                } else {
                    span
                };
                let (scale, inv) = scale_of(span, 126.0);
                // `-min · inv` lies in 0..=126 (a NaN, from an infinite range, counts as 0).
                let zero_point = 1 + code(-min, inv, 0.0, 126.0);
                debug_assert!((1..=127).contains(&zero_point));
                RowCoding {
                    scale,
                    inv,
                    lo: (1 - zero_point) as f32,
                    hi: (127 - zero_point) as f32,
                    zero_point,
                }
            }
        }
    }
}

/// Each activation row's scale and zero point, as [`pack_activations`] returned them (empty for
/// f32 and bf16 products).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RowQuant<'a> {
    pub(super) scales: &'a [f32],
    pub(super) zeros: &'a [i32],
}

/// One activation row's code of `x`: `clamp(round(x · inv), lo, hi) + zero_point`.
#[derive(Clone, Copy, Debug)]
struct RowCoding {
    scale: f32,
    inv: f32,
    lo: f32,
    hi: f32,
    zero_point: i32,
}

/// Whether this CPU has AVX-512 VNNI (with VL, for the 8-lane kernel of single panels).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x / scale` within `lo..=hi`, rounded to nearest with ties to even — what `vcvtps2dq` does
/// in the default rounding mode, so the SIMD path gives the same codes. (Adding and subtracting
/// 1.5·2^23 rounds to an integer in f32 for magnitudes below 2^22, without SSE4.1.) NaN gives 0.
fn code(x: f32, inv: f32, lo: f32, hi: f32) -> i32 {
    const ROUND: f32 = 12_582_912.0;
    let v = (x * inv).clamp(lo, hi);
    ((v + ROUND) - ROUND) as i32
}

/// The scale that maps `±amax` onto codes `±max`, and its inverse (0 for an all-zero row).
fn scale_of(amax: f32, max: f32) -> (f32, f32) {
    let scale = amax / max;
    (scale, if scale > 0.0 { 1.0 / scale } else { 0.0 })
}

/// Symmetric codes of `src` within ±`max` into `dst`; returns the scale (0 for an all-zero row).
pub(super) fn quantize(src: &[f32], max: f32, dst: &mut [i8]) -> f32 {
    let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (scale, inv) = scale_of(amax, max);
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = code(x, inv, -max, max) as i8;
    }
    scale
}

/// Four codes as one slot.
pub(super) fn slot(bytes: [u8; 4]) -> f32 {
    f32::from_bits(u32::from_le_bytes(bytes))
}

/// The four codes of a slot.
pub(super) fn unslot(s: f32) -> [u8; 4] {
    s.to_bits().to_le_bytes()
}

/// The widest vectors the selected CPU class lets the activation quantizer use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lanes {
    /// AVX-512 F.
    Sixteen,
    /// AVX2.
    Eight,
    /// The portable loops.
    Scalar,
}

/// An activation row (`k` values) → `k.div_ceil(4)` slots of unsigned `codes` (a zero pads the
/// last slot; its weights are zero too); returns the row's scale and zero point. `lanes`: the
/// widest vectors the selected CPU class has (used where this CPU has them too). Every path
/// gives the same codes, NaN and infinities included.
pub(super) fn pack_activations(
    src: &[f32],
    dst: &mut [f32],
    lanes: Lanes,
    codes: ActivationCodes,
) -> (f32, i32) {
    debug_assert_eq!(dst.len(), src.len().div_ceil(4));
    #[cfg(target_arch = "x86_64")]
    if lanes == Lanes::Sixteen && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512 F (checked above).
        return unsafe { pack_activations_native(src, dst, codes) };
    }
    #[cfg(target_arch = "x86_64")]
    if lanes != Lanes::Scalar && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { pack_activations_avx2(src, dst, codes) };
    }
    let (min, max) = min_max(src, 0.0, 0.0);
    let row = codes.row(min, max);
    pack_coded(src, dst, row);
    (row.scale, row.zero_point)
}

/// The smallest and largest of `src`, `min` and `max`: a value replaces the running one only
/// if strictly smaller or larger, so NaN is skipped and the sign of a zero is that of the
/// running value, exactly as `vminps`/`vmaxps` with the running value second.
fn min_max(src: &[f32], min: f32, max: f32) -> (f32, f32) {
    src.iter().fold((min, max), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    })
}

/// `src` as slots of `row`'s codes.
fn pack_coded(src: &[f32], dst: &mut [f32], row: RowCoding) {
    for (d, quad) in dst.iter_mut().zip(src.chunks(4)) {
        let mut b = [0u8; 4];
        for (b, &x) in b.iter_mut().zip(quad) {
            *b = (code(x, row.inv, row.lo, row.hi) + row.zero_point) as u8;
        }
        *d = slot(b);
    }
}

/// [`pack_activations`] with AVX-512: the same minimum and maximum, scale, zero point and codes,
/// 16 values a step.
///
/// # Safety
///
/// The CPU must have AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_activations_native(
    src: &[f32],
    dst: &mut [f32],
    codes: ActivationCodes,
) -> (f32, i32) {
    let whole = src.len() / 16 * 16;
    let (mut min, mut max) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for c in src[..whole].chunks_exact(16) {
        // SAFETY: `c` holds 16 floats.
        let v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
        // `vminps`/`vmaxps` return their second operand when either is NaN: the running values
        // go second, so a NaN is skipped as `f32::min` and `max` skip it.
        min = _mm512_min_ps(v, min);
        max = _mm512_max_ps(v, max);
    }
    let (min, max) = min_max(
        &src[whole..],
        _mm512_reduce_min_ps(min),
        _mm512_reduce_max_ps(max),
    );
    let row = codes.row(min, max);
    let (lo, hi, vinv) = (
        _mm512_set1_ps(row.lo),
        _mm512_set1_ps(row.hi),
        _mm512_set1_ps(row.inv),
    );
    let zero_point = _mm512_set1_epi32(row.zero_point);
    for (c, d) in src[..whole].chunks_exact(16).zip(dst.chunks_exact_mut(4)) {
        // SAFETY: `c` holds 16 floats and `d` 4 slots (16 bytes).
        unsafe {
            let v = _mm512_mul_ps(_mm512_loadu_ps(c.as_ptr()), vinv);
            // The value second, so a NaN stays NaN as through `f32::clamp`, and lands on the
            // zero point as in `code` (`vcvtps2dq` gives 0x8000_0000, whose low byte after the
            // offset is the zero point).
            let v = _mm512_min_ps(hi, _mm512_max_ps(lo, v));
            let q = _mm512_add_epi32(_mm512_cvtps_epi32(v), zero_point);
            _mm_storeu_si128(d.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(q));
        }
    }
    pack_coded(&src[whole..], &mut dst[whole / 4..], row);
    (row.scale, row.zero_point)
}

/// [`pack_activations`] with AVX2: the same minimum and maximum, scale, zero point and codes, 8
/// values a step.
///
/// # Safety
///
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_activations_avx2(
    src: &[f32],
    dst: &mut [f32],
    codes: ActivationCodes,
) -> (f32, i32) {
    let whole = src.len() / 8 * 8;
    let (mut min, mut max) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for c in src[..whole].chunks_exact(8) {
        // SAFETY: `c` holds 8 floats.
        let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        // The running values second, as in `pack_activations_native`.
        min = _mm256_min_ps(v, min);
        max = _mm256_max_ps(v, max);
    }
    let (mut mins, mut maxs) = ([0f32; 8], [0f32; 8]);
    // SAFETY: both arrays hold 8 floats.
    unsafe {
        _mm256_storeu_ps(mins.as_mut_ptr(), min);
        _mm256_storeu_ps(maxs.as_mut_ptr(), max);
    }
    let (min, _) = min_max(&mins, 0.0, 0.0);
    let (_, max) = min_max(&maxs, 0.0, 0.0);
    let (min, max) = min_max(&src[whole..], min, max);
    let row = codes.row(min, max);
    let (lo, hi, vinv) = (
        _mm256_set1_ps(row.lo),
        _mm256_set1_ps(row.hi),
        _mm256_set1_ps(row.inv),
    );
    let zero_point = _mm256_set1_epi32(row.zero_point);
    // The low byte of each 32-bit lane, packed into the first four bytes of each 128-bit half.
    let low_bytes = _mm256_setr_epi8(
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1,
    );
    for (c, d) in src[..whole].chunks_exact(8).zip(dst.chunks_exact_mut(2)) {
        // SAFETY: `c` holds 8 floats and `d` 2 slots (8 bytes).
        unsafe {
            let v = _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), vinv);
            let v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
            let q = _mm256_add_epi32(_mm256_cvtps_epi32(v), zero_point);
            let q = _mm256_shuffle_epi8(q, low_bytes);
            let q = _mm_unpacklo_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
            _mm_storel_epi64(d.as_mut_ptr().cast(), q);
        }
    }
    pack_coded(&src[whole..], &mut dst[whole / 4..], row);
    (row.scale, row.zero_point)
}

/// The exact integer sum of one slot step: `Σ u·w` over its four codes.
pub(super) fn dot_portable(acc: f32, a: f32, b: f32) -> f32 {
    let (a, b) = (unslot(a), unslot(b));
    let mut s = acc.to_bits() as i32;
    for (u, w) in a.iter().zip(b) {
        s += *u as i32 * w as i8 as i32;
    }
    f32::from_bits(s as u32)
}

/// The sums of earlier `k` blocks plus this block's, both i32 bits (exact, as any order).
pub(super) fn merge_portable(earlier: f32, block: f32) -> f32 {
    let sum = (earlier.to_bits() as i32).wrapping_add(block.to_bits() as i32);
    f32::from_bits(sum as u32)
}

/// `(acc − zero_point · col_sum) · scale` for one output: `acc` and `col_sum` (the weight
/// column's sum of codes) are i32 bits, `zero_point` the activation row's.
pub(super) fn dequant_portable(acc: f32, col_sum: f32, zero_point: i32, scale: f32) -> f32 {
    let corr = (col_sum.to_bits() as i32).wrapping_mul(zero_point);
    (acc.to_bits() as i32).wrapping_sub(corr) as f32 * scale
}

/// [`dequant_portable`] over a row segment: `col_sum` and `col_scale` for its columns;
/// `col_sum` is `None` for the sums of the signed kernels ([`dot256_signed`],
/// [`dot512_bw_signed`]), already corrected.
pub(super) fn dequant_row(
    row: &mut [f32],
    col_sum: Option<&[f32]>,
    col_scale: &[f32],
    row_scale: f32,
    row_zero: i32,
) {
    for (j, (v, s)) in row.iter_mut().zip(col_scale).enumerate() {
        let c = col_sum.map_or(0f32, |c| c[j]);
        *v = dequant_portable(*v, c, row_zero, row_scale * s);
    }
}

/// `acc + Σ u·w` per lane over the four byte pairs of each slot (`vpdpbusd`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
pub(super) fn dot512(a: __m512, b: __m512, acc: __m512) -> __m512 {
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
pub(super) fn dot256_vnni(a: __m256, b: __m256, acc: __m256) -> __m256 {
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
pub(super) fn dot256_avx_vnni(a: __m256, b: __m256, acc: __m256) -> __m256 {
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
pub(super) fn dot512_bw(a: __m512, b: __m512, acc: __m512) -> __m512 {
    let pairs = _mm512_maddubs_epi16(_mm512_castps_si512(a), _mm512_castps_si512(b));
    let quads = _mm512_madd_epi16(pairs, _mm512_set1_epi16(1));
    _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(acc), quads))
}

/// [`dot512_bw`] over two steps at once, on 7-bit activation codes: `acc + Σ u·w + Σ u'·w'`,
/// both steps' byte pairs added in i16 before one `vpmaddwd` (exact: 127·63·4 < 2^15).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(super) fn dot512_bw_pair(a: __m512, b: __m512, a2: __m512, b2: __m512, acc: __m512) -> __m512 {
    let pairs = _mm512_maddubs_epi16(_mm512_castps_si512(a), _mm512_castps_si512(b));
    let pairs2 = _mm512_maddubs_epi16(_mm512_castps_si512(a2), _mm512_castps_si512(b2));
    let quads = _mm512_madd_epi16(_mm512_add_epi16(pairs, pairs2), _mm512_set1_epi16(1));
    _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(acc), quads))
}

/// [`dot256_signed`] on 16 lanes (AVX-512 BW), for full codes on AVX-512 CPUs without VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(super) fn dot512_bw_signed(a: __m512, b: __m512, acc: __m512) -> __m512 {
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

/// Whether this CPU has AVX-512 BW.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) fn avx512bw() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX-VNNI.
pub(super) fn avx_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `acc + Σ u·w` per lane with plain AVX2, on narrow weight codes (±[`W_MAX_NARROW`]): byte
/// pairs into i16 (`vpmaddubsw`, exact since 127·63·2 < 2^15), then pairs of those into i32
/// (`vpmaddwd`); the last step of an odd `k` block ([`dot256_pair`] takes the others). See the
/// module's header.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn dot256(a: __m256, b: __m256, acc: __m256) -> __m256 {
    let pairs = _mm256_maddubs_epi16(_mm256_castps_si256(a), _mm256_castps_si256(b));
    let quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(acc), quads))
}

/// [`dot256`] over two steps at once, on 7-bit activation codes: `acc + Σ u·w + Σ u'·w'`, both
/// steps' byte pairs added in i16 before one `vpmaddwd` (exact: 127·63·4 < 2^15).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn dot256_pair(a: __m256, b: __m256, a2: __m256, b2: __m256, acc: __m256) -> __m256 {
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
pub(super) fn dot256_signed(a: __m256, b: __m256, acc: __m256) -> __m256 {
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
pub(super) fn dequant512_signed(
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
pub(super) fn dequant256_signed(
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
pub(super) fn merge_i32_512(earlier: __m512, block: __m512) -> __m512 {
    let (e, b) = (_mm512_castps_si512(earlier), _mm512_castps_si512(block));
    _mm512_castsi512_ps(_mm512_add_epi32(e, b))
}

/// [`merge_portable`] on 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn merge_i32_256(earlier: __m256, block: __m256) -> __m256 {
    let (e, b) = (_mm256_castps_si256(earlier), _mm256_castps_si256(block));
    _mm256_castsi256_ps(_mm256_add_epi32(e, b))
}

/// [`dequant_portable`] on 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn dequant512(acc: __m512, col_sum: __m512, zero_point: i32, scale: __m512) -> __m512 {
    let corr = _mm512_mullo_epi32(_mm512_castps_si512(col_sum), _mm512_set1_epi32(zero_point));
    let d = _mm512_sub_epi32(_mm512_castps_si512(acc), corr);
    _mm512_mul_ps(_mm512_cvtepi32_ps(d), scale)
}

/// [`dequant_portable`] on 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn dequant256(acc: __m256, col_sum: __m256, zero_point: i32, scale: __m256) -> __m256 {
    let corr = _mm256_mullo_epi32(_mm256_castps_si256(col_sum), _mm256_set1_epi32(zero_point));
    let d = _mm256_sub_epi32(_mm256_castps_si256(acc), corr);
    _mm256_mul_ps(_mm256_cvtepi32_ps(d), scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_half_to_even_and_stay_in_range() {
        let mut q = [0i8; 7];
        let s = quantize(&[127.0, -127.0, 2.5, 3.5, -2.5, 0.0, 0.4], 127.0, &mut q);
        assert_eq!(s, 1.0);
        assert_eq!(q, [127, -127, 2, 4, -2, 0, 0]);
        let mut z = [5i8; 3];
        assert_eq!(quantize(&[0.0; 3], 63.0, &mut z), 0.0);
        assert_eq!(z, [0; 3]);
    }

    #[test]
    fn activations_pack_into_unsigned_quads_with_a_zero_pad() {
        let src = [2.0f32, -2.0, 1.0, 0.0, 0.5];
        let mut dst = [f32::NAN; 2];
        let full = ActivationCodes::for_weights(false);
        let got = pack_activations(&src, &mut dst, Lanes::Sixteen, full);
        assert_eq!(got, (2.0 / 127.0, 128));
        assert_eq!(unslot(dst[0]), [255, 1, 192, 128]);
        assert_eq!(unslot(dst[1]), [160, 0, 0, 0]);
        // 7-bit codes for narrow weights, 1 to 127 over the row's range with 0 in it: here
        // symmetric, so around 64 (1 · 31.499998, the f32 inverse of the scale, rounds to 31).
        let narrow = ActivationCodes::for_weights(true);
        let got = pack_activations(&src, &mut dst, Lanes::Sixteen, narrow);
        assert_eq!(got, (4.0 / 126.0, 64));
        assert_eq!(unslot(dst[0]), [127, 1, 95, 64]);
        assert_eq!(unslot(dst[1]), [80, 0, 0, 0]);
        // A one-sided row keeps every code: zero at 1 (or at 127 for a negative row).
        let mut one = [f32::NAN; 1];
        let got = pack_activations(&[0.0, 1.0, 2.0, 3.0], &mut one, Lanes::Sixteen, narrow);
        assert_eq!((got, unslot(one[0])), ((3.0 / 126.0, 1), [1, 43, 85, 127]));
        let got = pack_activations(&[-1.0, -0.5, 0.0], &mut one, Lanes::Sixteen, narrow);
        assert_eq!((got, unslot(one[0])), ((1.0 / 126.0, 127), [1, 64, 127, 0]));
    }

    #[test]
    fn every_path_packs_the_same_codes() {
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0];
        let rows = [1usize, 15, 16, 17, 40, 100].into_iter().flat_map(|k| {
            let src: Vec<f32> = (0..k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.173)
                .collect();
            // One-sided too, as QuickGELU's output is (a zero point of its own in 7 bits).
            let one_sided = src.iter().map(|v| v.abs() - 0.1).collect::<Vec<_>>();
            // The row as it is, then with a NaN (after its largest value, in the same lane),
            // then with each other special value, at the start of a later vector.
            let with = move |at: usize, v: f32| {
                let mut row = src.clone();
                if at < row.len() {
                    row[at] = v;
                }
                row
            };
            [with(k, 0.0), with(16, f32::NAN), one_sided]
                .into_iter()
                .chain(special.map(|v| with(8, v)))
        });
        // Whole rows of one kind, long enough for the vector loops: zeros, negative zeros, NaN,
        // negative values, and a finite span that overflows f32.
        let uniform = [0.0, -0.0, f32::NAN, -0.7].map(|v| vec![v; 19]);
        let wide = (0..19)
            .map(|i| if i % 2 == 0 { 2e38 } else { -2e38 })
            .collect();
        for src in rows.chain(uniform).chain([wide]) {
            let k = src.len();
            for codes in [false, true].map(ActivationCodes::for_weights) {
                let mut slow = vec![f32::NAN; k.div_ceil(4)];
                let (min, max) = min_max(&src, 0.0, 0.0);
                let row = codes.row(min, max);
                pack_coded(&src, &mut slow, row);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                // AVX-512 and AVX2 where the CPU has them, and the loops, as a class asks.
                for lanes in [Lanes::Sixteen, Lanes::Eight, Lanes::Scalar] {
                    let mut fast = vec![f32::NAN; k.div_ceil(4)];
                    let got = pack_activations(&src, &mut fast, lanes, codes);
                    let what = format!("{src:?} {lanes:?} {codes:?}");
                    let want = (row.scale.to_bits(), row.zero_point);
                    assert_eq!((got.0.to_bits(), got.1), want, "{what}");
                    assert_eq!(bits(&fast), bits(&slow), "{what}");
                }
                // The codes stay in range (7 bits for narrow weights), and finite values come
                // back within half a step (where the span fits in f32).
                let top = if codes == ActivationCodes::Narrow {
                    127
                } else {
                    255
                };
                let bytes = slow.iter().flat_map(|&q| unslot(q)).take(k);
                for (u, &x) in bytes.zip(&src) {
                    assert!((1..=top).contains(&u), "{src:?} {codes:?}: code {u}");
                    let back = (u as i32 - row.zero_point) as f32 * row.scale;
                    if x.is_finite() && (max - min).is_finite() {
                        let err = (back - x).abs();
                        assert!(err <= 0.5001 * row.scale, "{x} → {u} → {back} {codes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_portable_sums_are_exact_at_the_extremes() {
        let a = slot([255; 4]);
        let b = slot([(-127i8) as u8; 4]);
        let acc = dot_portable(f32::from_bits(0), a, b);
        assert_eq!(acc.to_bits() as i32, -4 * 255 * 127);
        assert_eq!(
            dequant_portable(acc, f32::from_bits((-125i32) as u32), 8, 0.5),
            -64270.0
        );
    }
}
