//! `A`'s rows copied into the `[k][6]` tiles the 6-row kernels read when they pack `A` (one
//! stream of broadcasts instead of six, BLIS-style; `gemm::block` decides when). A 32-bit copy,
//! so f32 values and bf16 or int8 slots alike keep their bits. The driver's tiles are as even
//! as its row tiles (50 rows: five of 6 and four of 5), so no thin remainder runs the kernel
//! at a fraction of its speed; a shorter tile keeps the stride of six. With AVX2 a tile moves
//! eight steps of its rows at a time through registers (six loads, the last row repeated past
//! the tile's height; 18 shuffles, six stores) instead of one scalar store per value.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows of a tile: the height of the 6-row kernels (12 accumulator registers + 2 for `B` + 1
/// broadcast in the AVX2 f32 kernel).
pub(super) const MR: usize = 6;

/// Copies columns `k0..k0 + kc` of `A`'s rows into `dst`, one tile of `kc × MR` floats per
/// `(first row, height)` of `tiles` (rows `lda` floats apart, heights at most `MR`), each
/// `[step][row]`. A tile's slots past its height hold copies of its last row (the kernels
/// read only `height` rows). `simd`: whether the selected CPU class lets the copy use AVX2
/// (used where this CPU has it too).
pub(super) fn pack(
    a: &[f32],
    lda: usize,
    tiles: &[(usize, usize)],
    k0: usize,
    kc: usize,
    dst: &mut [f32],
    simd: bool,
) {
    if kc == 0 {
        return;
    }
    for (&(r0, height), tile) in tiles.iter().zip(dst.chunks_exact_mut(kc * MR)) {
        assert!((1..=MR).contains(&height), "a tile of {height} rows");
        #[cfg(target_arch = "x86_64")]
        let done = if simd && std::arch::is_x86_feature_detected!("avx2") {
            let src = &a[r0 * lda + k0..][..(height - 1) * lda + kc];
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { pack_avx2(src, lda, height, kc, tile) }
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = {
            let _ = simd;
            0
        };
        for i in 0..MR {
            let src = &a[(r0 + i.min(height - 1)) * lda + k0..][..kc];
            for (p, v) in src.iter().enumerate().skip(done) {
                tile[p * MR + i] = *v;
            }
        }
    }
}

/// The first `kc / 8 · 8` steps of a tile: `src` holds its `height` rows (`lda` apart, `kc`
/// each; the last repeated up to six), `dst` the tile (`kc × 6`). Returns the steps copied.
///
/// # Safety
///
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_avx2(src: &[f32], lda: usize, height: usize, kc: usize, dst: &mut [f32]) -> usize {
    let whole = kc / 8 * 8;
    assert!(height >= 1 && src.len() >= (height - 1) * lda + kc && dst.len() >= kc * MR);
    for p in (0..whole).step_by(8) {
        // SAFETY: rows `i < height` of steps `p..p + 8` lie in `src`, and the 48 floats of
        // those steps in `dst` (both checked by the assertion above, as `p + 8 <= kc`).
        unsafe {
            let row = |i: usize| _mm256_loadu_ps(src.as_ptr().add(i.min(height - 1) * lda + p));
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
        let layouts: [&[(usize, usize)]; 4] = [
            &[(0, 6), (6, 6), (12, 3)],
            &[(2, 5), (7, 5), (12, 2)],
            &[(4, 1)],
            &[(0, 4), (4, 6)],
        ];
        for (k0, kc) in [(0, 0), (0, 7), (3, 8), (1, 29), (5, 56)] {
            for tiles in layouts {
                let mut want = vec![0f32; tiles.len() * kc * MR];
                for (&(r0, h), tile) in tiles.iter().zip(want.chunks_exact_mut((kc * MR).max(1))) {
                    for i in 0..MR {
                        for p in 0..kc {
                            tile[p * MR + i] = a[(r0 + i.min(h - 1)) * lda + k0 + p];
                        }
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                for simd in [true, false] {
                    let mut got = vec![0f32; tiles.len() * kc * MR];
                    pack(&a, lda, tiles, k0, kc, &mut got, simd);
                    assert_eq!(bits(&got), bits(&want), "{k0} {kc} {tiles:?} {simd}");
                }
            }
        }
    }
}
