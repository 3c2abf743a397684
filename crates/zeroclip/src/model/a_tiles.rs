//! `A`'s rows copied into the `[k][6]` tiles the 6-row kernels read when they pack `A` (one
//! stream of broadcasts instead of six, BLIS-style; `gemm::block` decides when). A 32-bit copy,
//! so f32 values and bf16 or int8 slots alike keep their bits. With AVX2 a full tile moves
//! eight steps of its six rows at a time through registers (six loads, 18 shuffles, six
//! stores) instead of one scalar store per value at a stride of six.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows of a tile: the height of the 6-row kernels (12 accumulator registers + 2 for `B` + 1
/// broadcast in the AVX2 f32 kernel).
pub(super) const MR: usize = 6;

/// Copies columns `k0..k0 + kc` of `A`'s rows `rows` (`lda` floats apart) into `dst`, one tile
/// of `kc × MR` floats per `MR` rows, each `[step][row]`; the last tile's missing rows are left
/// as `dst` has them (zeros, for the kernels). `simd`: whether the selected CPU class lets the
/// copy use AVX2 (used where this CPU has it too).
pub(super) fn pack(
    a: &[f32],
    lda: usize,
    rows: std::ops::Range<usize>,
    k0: usize,
    kc: usize,
    dst: &mut [f32],
    simd: bool,
) {
    if kc == 0 {
        return;
    }
    for (t, tile) in dst.chunks_exact_mut(kc * MR).enumerate() {
        let r0 = rows.start + t * MR;
        let height = MR.min(rows.end - r0);
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if simd && height == MR && std::arch::is_x86_feature_detected!("avx2") {
            let src = &a[r0 * lda + k0..][..(MR - 1) * lda + kc];
            // SAFETY: the CPU has AVX2 (checked above).
            done = unsafe { pack_full_avx2(src, lda, kc, tile) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = simd;
        for i in 0..height {
            let src = &a[(r0 + i) * lda + k0..][..kc];
            for (p, v) in src.iter().enumerate().skip(done) {
                tile[p * MR + i] = *v;
            }
        }
    }
}

/// The first `kc / 8 · 8` steps of a full tile: `src` holds its six rows (`lda` apart, `kc`
/// each), `dst` the tile (`kc × 6`). Returns the steps copied.
///
/// # Safety
///
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_full_avx2(src: &[f32], lda: usize, kc: usize, dst: &mut [f32]) -> usize {
    let whole = kc / 8 * 8;
    assert!(src.len() >= (MR - 1) * lda + kc && dst.len() >= kc * MR);
    for p in (0..whole).step_by(8) {
        // SAFETY: rows `i < 6` of steps `p..p + 8` lie in `src`, and the 48 floats of those
        // steps in `dst` (both checked by the assertion above, as `p + 8 <= kc`).
        unsafe {
            let row = |i: usize| _mm256_loadu_ps(src.as_ptr().add(i * lda + p));
            // Rows side by side in pairs: `x01` holds (row 0, row 1) of steps 0, 1 | 4, 5 as
            // 64-bit lanes, `y01` of steps 2, 3 | 6, 7.
            let pair = |i: usize| {
                let (r, s) = (row(i), row(i + 1));
                (
                    _mm256_castps_pd(_mm256_unpacklo_ps(r, s)),
                    _mm256_castps_pd(_mm256_unpackhi_ps(r, s)),
                )
            };
            let ((x01, y01), (x23, y23), (x45, y45)) = (pair(0), pair(2), pair(4));
            // Each 128-bit half of `u*` is two consecutive 64-bit pairs of the output; the low
            // halves make steps 0 to 3, the high ones steps 4 to 7.
            let u = [
                _mm256_unpacklo_pd(x01, x23),          // s0: 01 23 | s4: 01 23
                _mm256_shuffle_pd::<0b1010>(x45, x01), // s0: 45, s1: 01 | s4: 45, s5: 01
                _mm256_unpackhi_pd(x23, x45),          // s1: 23 45 | s5: 23 45
                _mm256_unpacklo_pd(y01, y23),          // s2: 01 23 | s6: 01 23
                _mm256_shuffle_pd::<0b1010>(y45, y01), // s2: 45, s3: 01 | s6: 45, s7: 01
                _mm256_unpackhi_pd(y23, y45),          // s3: 23 45 | s7: 23 45
            ];
            let out = dst.as_mut_ptr().add(p * MR).cast::<f64>();
            for j in 0..3 {
                let (a, b) = (u[2 * j], u[2 * j + 1]);
                _mm256_storeu_pd(out.add(4 * j), _mm256_permute2f128_pd::<0x20>(a, b));
                _mm256_storeu_pd(out.add(12 + 4 * j), _mm256_permute2f128_pd::<0x31>(a, b));
            }
        }
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_packs_the_same_tiles() {
        // NaN payloads too: the copy moves bits, never values.
        let (lda, m) = (61, 15);
        let a: Vec<f32> = (0..lda * m)
            .map(|i| f32::from_bits(0x7fc0_0000 ^ (i as u32).wrapping_mul(2_654_435_761)))
            .collect();
        for (k0, kc) in [(0, 0), (0, 7), (3, 8), (1, 29), (5, 56)] {
            for rows in [0..m, 2..14, 4..5] {
                let tiles = rows.len().div_ceil(MR);
                let mut want = vec![0f32; tiles * kc * MR];
                for (t, tile) in want.chunks_exact_mut((kc * MR).max(1)).enumerate() {
                    for i in 0..MR.min(rows.end - rows.start - t * MR) {
                        for p in 0..kc {
                            tile[p * MR + i] = a[(rows.start + t * MR + i) * lda + k0 + p];
                        }
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                for simd in [true, false] {
                    let mut got = vec![0f32; tiles * kc * MR];
                    pack(&a, lda, rows.clone(), k0, kc, &mut got, simd);
                    assert_eq!(bits(&got), bits(&want), "{k0} {kc} {rows:?} {simd}");
                }
            }
        }
    }
}
