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
    #[cfg(not(target_arch = "x86_64"))]
    let _ = lanes;
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

#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(target_arch = "x86_64")]
pub(super) use simd::*;

#[cfg(test)]
mod tests;
