//! 3×3, stride-1, padding-1 convolutions as Winograd's F(2×2, 3×3) on channels-last activations:
//! each 2×2 block of outputs from a 4×4 block of inputs with 16 multiplications per channel pair
//! instead of 36, i.e. 16 GEMMs `[tiles, c_in] @ [c_in, c_out]` on transformed inputs and
//! weights, 2.25× fewer multiply-adds than the direct (im2col) product.
//!
//! Why: 3×3 convolutions are 54 % of RN50's arithmetic (6.3 of 11.6 GFLOP per image) and every
//! ResNet block's middle convolution is stride 1 (CLIP's ResNets pool instead of striding).
//! Layers with small weights (the early, narrow ones) take blocks of tiles through the input
//! transform, the 16 products and the output transform on one thread, in L2-sized scratch;
//! wider ones run each step over the whole band on all threads (see [`Winograd3x3::run`]).
//! Either way each output is the same sum, so with zeroclip's GEMM kernels (whose sums do not
//! depend on how many rows a product has) the two paths give the same bits.
//! Arithmetic: the transforms use only ±1 and ½ (exact in binary), the weight transform is done
//! once in f64, so the extra rounding is a few additions per value; the effect on the embeddings
//! is measured in docs/FIDELITY.md.

use super::gemm::{self, Epilogue, PackedMatrix, SendPtr};
use candle_core::Result;
use rayon::prelude::*;

/// The transformed weight: `U_ξ = (G g Gᵀ)_ξ`, one packed `[c_in, c_out]` matrix per ξ of 16.
#[derive(Clone, Debug)]
pub struct Winograd3x3 {
    u: Vec<PackedMatrix>,
    c_in: usize,
    c_out: usize,
    /// [`MAX_BAND_FLOATS`], [`BLOCK_FLOATS`] and [`MAX_LOCAL_WEIGHT_FLOATS`]; other values in
    /// tests, to cover both paths and several bands or blocks.
    max_band_floats: usize,
    block_floats: usize,
    max_local_weight_floats: usize,
}

/// The most floats in one of the 16 transformed copies of a band of tiles.
const MAX_BAND_FLOATS: usize = 4 << 20;
/// The floats of a block's 16 transformed copies of its input and output tiles together
/// (256 KiB), for convolutions whose weights take the block path.
const BLOCK_FLOATS: usize = 64 << 10;
/// The largest transformed weight (all 16 matrices, 4 MiB) for which a block of tiles goes
/// through all three steps on one thread: every block then reads the whole weight again, which
/// costs less than the round trips to memory of whole-band copies as long as the weight stays
/// in the cache; with wider layers the per-step bands over both cores measured faster.
const MAX_LOCAL_WEIGHT_FLOATS: usize = 1 << 20;

/// Where a band of tiles lies: the image batch, its 2×2-tile grid and the band's tiles.
#[derive(Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
    first: usize,
    tiles: usize,
}

impl Geometry {
    /// Tile `t` of the band: its image and its row and column in the tile grid.
    fn tile(&self, t: usize) -> (usize, usize, usize) {
        let tg = self.first + t;
        let (th, tw) = (self.th, self.tw);
        (tg / (th * tw), tg / tw % th, tg % tw)
    }
}

/// Per-channel affine map, residual and ReLU applied to each output after the transform.
pub struct Finish<'a> {
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub residual: Option<&'a [f32]>,
    pub relu: bool,
}

impl Winograd3x3 {
    /// `w` `[c_out, c_in, 3, 3]` row-major.
    pub fn new(w: &[f32], c_out: usize, c_in: usize) -> Self {
        assert_eq!(
            w.len(),
            c_out * c_in * 9,
            "3×3 weight of {} values",
            w.len()
        );
        let mut u = vec![vec![0f32; c_out * c_in]; 16];
        for o in 0..c_out {
            for i in 0..c_in {
                let g = &w[(o * c_in + i) * 9..][..9];
                let g = |r: usize, s: usize| g[r * 3 + s] as f64;
                // G g: 4 rows of 3.
                let gg: [[f64; 3]; 4] = [
                    std::array::from_fn(|s| g(0, s)),
                    std::array::from_fn(|s| (g(0, s) + g(1, s) + g(2, s)) / 2.0),
                    std::array::from_fn(|s| (g(0, s) - g(1, s) + g(2, s)) / 2.0),
                    std::array::from_fn(|s| g(2, s)),
                ];
                for (r, row) in gg.iter().enumerate() {
                    let t = [
                        row[0],
                        (row[0] + row[1] + row[2]) / 2.0,
                        (row[0] - row[1] + row[2]) / 2.0,
                        row[2],
                    ];
                    for (s, v) in t.iter().enumerate() {
                        u[r * 4 + s][o * c_in + i] = *v as f32;
                    }
                }
            }
        }
        let u = u
            .iter()
            .map(|m| PackedMatrix::from_transposed(m, c_out, c_in))
            .collect();
        Winograd3x3 {
            u,
            c_in,
            c_out,
            max_band_floats: MAX_BAND_FLOATS,
            block_floats: BLOCK_FLOATS,
            max_local_weight_floats: MAX_LOCAL_WEIGHT_FLOATS,
        }
    }

    /// `src` `[n, h, w, c_in]` → `out` `[n, h, w, c_out]`; `v` and `m` are scratch kept by the
    /// caller (16 transformed copies of the input and of the output) for the wide layers' path;
    /// the small-weight path keeps one block's scratch per task instead.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        src: &[f32],
        (n, h, w): (usize, usize, usize),
        out: &mut [f32],
        finish: &Finish,
        v: &mut Vec<f32>,
        m: &mut Vec<f32>,
        threads: usize,
    ) -> Result<()> {
        let (c, co) = (self.c_in, self.c_out);
        if src.len() != n * h * w * c || out.len() != n * h * w * co {
            candle_core::bail!("winograd: slices do not match [{n}, {h}, {w}, {c}] → {co}");
        }
        let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
        let all = n * th * tw;
        let geometry = |first: usize, tiles: usize| Geometry {
            h,
            w,
            th,
            tw,
            first,
            tiles,
        };
        let out = SendPtr(out.as_mut_ptr());
        let block = (self.block_floats / (16 * (c + co)).max(1)).clamp(1, all.max(1));
        // Small weights, and blocks enough to keep every thread busy: each task takes a block
        // of tiles through all three steps on its own, so the block's transformed copies never
        // leave its core's L2.
        if 16 * c * co <= self.max_local_weight_floats && all.div_ceil(block) >= 2 * threads {
            let one = |v: &mut Vec<f32>, m: &mut Vec<f32>, b: usize| {
                let first = b * block;
                let g = geometry(first, block.min(all - first));
                self.run_band(src, &g, out, finish, v, m, false);
            };
            let blocks = 0..all.div_ceil(block);
            if threads > 1 {
                let scratch = || (Vec::new(), Vec::new());
                blocks
                    .into_par_iter()
                    .for_each_init(scratch, |(v, m), b| one(v, m, b));
            } else {
                blocks.for_each(|b| one(v, m, b));
            }
            return Ok(());
        }
        // Bands of tiles, so the 16 transformed copies stay under ~16 MiB each whatever the
        // batch (below glibc's largest mmap threshold; reused from band to band).
        let band = (self.max_band_floats / (16 * c.max(co)).max(1)).clamp(1, all.max(1));
        for first in (0..all).step_by(band) {
            let g = geometry(first, band.min(all - first));
            self.run_band(src, &g, out, finish, v, m, threads > 1);
        }
        Ok(())
    }

    /// Tiles `g.first..g.first + g.tiles` of [`Self::run`]: the input transform, the 16
    /// products and the output transform, each spread over the rayon workers if `par`, else on
    /// the calling thread.
    #[allow(clippy::too_many_arguments)]
    fn run_band(
        &self,
        src: &[f32],
        g: &Geometry,
        out: SendPtr,
        finish: &Finish,
        v: &mut Vec<f32>,
        m: &mut Vec<f32>,
        par: bool,
    ) {
        let (c, co, tiles) = (self.c_in, self.c_out, g.tiles);
        if v.len() < 16 * tiles * c {
            v.resize(16 * tiles * c, 0.0);
        }
        if m.len() < 16 * tiles * co {
            m.resize(16 * tiles * co, 0.0);
        }
        let vp = SendPtr(v.as_mut_ptr());
        let init = || (vec![0f32; 16 * c], vec![0f32; 16 * c]);
        // SAFETY: tile `t < tiles` writes only its own rows of `V` (one per ξ), inside `v`.
        let input =
            |(d, tr): &mut (Vec<f32>, Vec<f32>), t| unsafe { input_tile(src, g, c, t, d, tr, vp) };
        each_tile(par, tiles, init, input);
        // The 16 products M_ξ = V_ξ · U_ξ, each on one thread: 16 independent tasks balance
        // two cores better than splitting each (often small) product between them.
        let v = &v[..16 * tiles * c];
        let product = |((m_xi, v_xi), u): ((&mut [f32], &[f32]), &PackedMatrix)| {
            gemm::matmul(v_xi, c, tiles, u, m_xi, co, &Epilogue::default(), 1);
        };
        let m = &mut m[..16 * tiles * co];
        if par {
            let pairs = m.par_chunks_mut(tiles * co).zip(v.par_chunks(tiles * c));
            pairs.zip(&self.u).for_each(product);
        } else {
            let pairs = m.chunks_mut(tiles * co).zip(v.chunks(tiles * c));
            pairs.zip(&self.u).for_each(product);
        }
        let m = &m[..];
        let init = || vec![0f32; 8 * co];
        // SAFETY: each output pixel belongs to exactly one tile `t < tiles`, inside `out`.
        let output = |z: &mut Vec<f32>, t| unsafe { output_tile(m, g, co, t, z, finish, out) };
        each_tile(par, tiles, init, output);
    }
}

/// `f(scratch, t)` for each tile `t < tiles`, spread over the rayon workers (a scratch from
/// `init` per worker) if `par`, else in order on the calling thread with one scratch.
fn each_tile<S: Send>(
    par: bool,
    tiles: usize,
    init: impl Fn() -> S + Send + Sync,
    f: impl Fn(&mut S, usize) + Send + Sync,
) {
    if par {
        (0..tiles).into_par_iter().for_each_init(init, f);
    } else {
        let mut scratch = init();
        (0..tiles).for_each(|t| f(&mut scratch, t));
    }
}

/// The input transform `V = Bᵀ d B` of tile `t` of the band `g` (`c` channels), on whole
/// channel vectors, into row `(ξ, t)` of each `V_ξ` (`[g.tiles, c]` each) at `v`.
///
/// # Safety
/// `t < g.tiles`, the band's tiles lie in the batch (`g.first + g.tiles ≤ n·th·tw`), and `v`
/// must point to `16 · g.tiles · c` floats that no one else writes at rows `(·, t)`.
#[allow(clippy::too_many_arguments)]
unsafe fn input_tile(
    src: &[f32],
    g: &Geometry,
    c: usize,
    t: usize,
    d: &mut [f32],
    tr: &mut [f32],
    v: SendPtr,
) {
    let (h, w, tiles) = (g.h, g.w, g.tiles);
    let (img, ty, tx) = g.tile(t);
    // The 4×4 input block as 4 rows of 4 pixels (4·c values each): read in place when the
    // block lies inside the image, else copied with zero padding.
    let (y0, x0) = ((2 * ty) as isize - 1, (2 * tx) as isize - 1);
    let inside = y0 >= 0 && x0 >= 0 && y0 as usize + 4 <= h && x0 as usize + 4 <= w;
    if !inside {
        for r in 0..4 {
            for s in 0..4 {
                let (iy, ix) = (y0 + r as isize, x0 + s as isize);
                let dst = &mut d[(r * 4 + s) * c..][..c];
                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                    dst.fill(0.0);
                } else {
                    let at = ((img * h + iy as usize) * w + ix as usize) * c;
                    dst.copy_from_slice(&src[at..at + c]);
                }
            }
        }
    }
    let block_row = |r: usize| -> &[f32] {
        if inside {
            let at = ((img * h + (y0 as usize + r)) * w + x0 as usize) * c;
            &src[at..at + 4 * c]
        } else {
            &d[r * 4 * c..(r + 1) * 4 * c]
        }
    };
    let rows = [block_row(0), block_row(1), block_row(2), block_row(3)];
    // Rows (tr = Bᵀ d): t0 = d0 − d2, t1 = d1 + d2, t2 = d2 − d1, t3 = d1 − d3.
    for s in 0..4 {
        let row = |r: usize| &rows[r][s * c..][..c];
        combine(&mut tr[s * c..][..c], row(0), row(2), -1.0);
        combine(&mut tr[(4 + s) * c..][..c], row(1), row(2), 1.0);
        combine(&mut tr[(8 + s) * c..][..c], row(2), row(1), -1.0);
        combine(&mut tr[(12 + s) * c..][..c], row(1), row(3), -1.0);
    }
    // Columns (V = tr B), each of the 16 results a contiguous row of V_ξ.
    for r in 0..4 {
        let col = |s: usize| &tr[(r * 4 + s) * c..][..c];
        let plan = [(0, 2, -1.0), (1, 2, 1.0), (2, 1, -1.0), (1, 3, -1.0)];
        for (s, &(p, q, sign)) in plan.iter().enumerate() {
            // SAFETY: row (ξ, t) lies inside `v` and is this call's (the caller's contract).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(v.get().add(((r * 4 + s) * tiles + t) * c), c)
            };
            combine(dst, col(p), col(q), sign);
        }
    }
}

/// The output transform `Y = Aᵀ M A` of tile `t` of the band `g` (`co` channels) from the 16
/// products `m`, then `finish`, written to the tile's pixels that lie inside the image.
///
/// # Safety
/// `t < g.tiles`, the band's tiles lie in the batch (`g.first + g.tiles ≤ n·th·tw`), and `out`
/// must point to the `[n, h, w, co]` output, whose tile-`t` pixels no one else writes.
#[allow(clippy::too_many_arguments)]
unsafe fn output_tile(
    m: &[f32],
    g: &Geometry,
    co: usize,
    t: usize,
    z: &mut [f32],
    finish: &Finish,
    out: SendPtr,
) {
    let (h, w, tiles) = (g.h, g.w, g.tiles);
    let (img, ty, tx) = g.tile(t);
    let mrow = |xi: usize| &m[(xi * tiles + t) * co..][..co];
    // z = Aᵀ M: z0 = m0 + m1 + m2, z1 = m1 − m2 − m3 (rows of 4 columns).
    for s in 0..4 {
        let (z0, z1) = z.split_at_mut(4 * co);
        let (a, b, c2, d) = (mrow(s), mrow(4 + s), mrow(8 + s), mrow(12 + s));
        for o in 0..co {
            z0[s * co + o] = a[o] + b[o] + c2[o];
            z1[s * co + o] = b[o] - c2[o] - d[o];
        }
    }
    for i in 0..2 {
        for jj in 0..2 {
            let (oy, ox) = (2 * ty + i, 2 * tx + jj);
            if oy >= h || ox >= w {
                continue;
            }
            let at = ((img * h + oy) * w + ox) * co;
            // SAFETY: the pixel is inside the output and this tile's (the caller's contract).
            let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(at), co) };
            let zr = |s: usize| &z[(i * 4 + s) * co..][..co];
            let (z0, z1, z2, z3) = (zr(0), zr(1), zr(2), zr(3));
            for o in 0..co {
                let y = if jj == 0 {
                    z0[o] + z1[o] + z2[o]
                } else {
                    z1[o] - z2[o] - z3[o]
                };
                let mut val = y * finish.scale[o] + finish.shift[o];
                if let Some(r) = finish.residual {
                    val += r[at + o];
                }
                dst[o] = if finish.relu { val.max(0.0) } else { val };
            }
        }
    }
}

/// `dst = a + sign·b`, element-wise (`sign` ±1).
#[inline]
fn combine(dst: &mut [f32], a: &[f32], b: &[f32], sign: f32) {
    if sign > 0.0 {
        for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
            *d = x + y;
        }
    } else {
        for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
            *d = x - y;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_direct_convolution_with_padding_and_odd_sizes() {
        let (n, h, w, c, co) = (2, 5, 7, 3, 20);
        let rand = |len: usize, seed: u32| -> Vec<f32> {
            (0..len)
                .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
                .collect()
        };
        let x = rand(n * h * w * c, 1);
        let wt = rand(co * c * 9, 2);
        let (scale, shift, res) = (rand(co, 3), rand(co, 4), rand(n * h * w * co, 5));
        let mut wino = Winograd3x3::new(&wt, co, c);
        // Bands of 5 tiles (of 2 × 3 × 4 = 24), the last one short; or blocks of 3 tiles on
        // the small-weight path, on two threads or one (other row counts per product).
        wino.max_band_floats = 16 * co * 5;
        wino.block_floats = 16 * (c + co) * 3;
        let finish = Finish {
            scale: &scale,
            shift: &shift,
            residual: Some(&res),
            relu: true,
        };
        let mut outs = Vec::new();
        for (local, threads) in [(0, 2), (usize::MAX, 2), (usize::MAX, 1)] {
            wino.max_local_weight_floats = local;
            let mut out = vec![f32::NAN; n * h * w * co];
            let (mut v, mut m) = (Vec::new(), Vec::new());
            wino.run(&x, (n, h, w), &mut out, &finish, &mut v, &mut m, threads)
                .unwrap();
            outs.push(out);
        }
        let bits = |o: &[f32]| o.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(
            outs.iter().all(|o| bits(o) == bits(&outs[0])),
            "paths differ"
        );
        let out = &outs[0];
        for img in 0..n {
            for oy in 0..h {
                for ox in 0..w {
                    for o in 0..co {
                        let mut acc = 0f64;
                        for i in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (oy as isize + ky - 1, ox as isize + kx - 1);
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let xv = x[((img * h + iy as usize) * w + ix as usize) * c + i];
                                    let wv = wt[(o * c + i) * 9 + (ky * 3 + kx) as usize];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        let at = ((img * h + oy) * w + ox) * co + o;
                        let want = ((acc as f32 * scale[o] + shift[o]) + res[at]).max(0.0);
                        assert!(
                            (out[at] - want).abs() < 1e-4,
                            "({img}, {oy}, {ox}, {o}): {} vs {want}",
                            out[at]
                        );
                    }
                }
            }
        }
    }
}
