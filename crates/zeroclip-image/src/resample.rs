//! Pillow's separable convolution resampler (`libImaging/Resample.c`) for the BICUBIC filter, as
//! `Image.resize(size, BICUBIC)` runs it with no `box` and no `reducing_gap`.
//!
//! Reproduced exactly: the a = -0.5 cubic kernel with its support widened by the downscale factor;
//! per-output-pixel bounds rounded as `(int)(center ± support + 0.5)`; weights normalized by their
//! sum in double precision, then for 8-bit images turned into 22-bit fixed point
//! (`PRECISION_BITS = 32 - 8 - 2`, rounded half away from zero); sums started at half a unit and
//! clipped to 0..=255 after *each* pass; the two passes in Pillow's order (usually horizontal
//! first; see `crop::vertical_first`), each skipped when that dimension does not change. 16-bit gray (`I;16`) uses the double weights
//! directly, rounding half away from zero and clipping to 0..=65535 after each pass.
//!
//! Each output pixel depends only on its own coordinates, so this module computes just the window
//! that the center crop keeps — identical values, far less work for very elongated images.

use rayon::prelude::*;

const PRECISION_BITS: u32 = 32 - 8 - 2;
const BICUBIC_SUPPORT: f64 = 2.0;

/// Pillow's `bicubic_filter` (a = -0.5), with its exact operation order.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Convolution weights for a run of output pixels along one axis.
pub(crate) struct Coeffs {
    /// Maximum taps per output pixel; `weights` has this stride.
    ksize: usize,
    /// First input index and number of taps, per output pixel.
    bounds: Vec<(usize, usize)>,
    weights: Vec<f64>,
}

impl Coeffs {
    /// Pillow's `precompute_coeffs` for outputs `first..first + count` of an `in_size` → `out_size`
    /// resize.
    pub(crate) fn new(in_size: usize, out_size: usize, first: usize, count: usize) -> Self {
        // Pillow receives the box as C floats, so the input extent is rounded to f32 first.
        let extent = in_size as f32 - 0.0f32;
        let scale = f64::from(extent) / out_size as f64;
        let filterscale = if scale < 1.0 { 1.0 } else { scale };
        let support = BICUBIC_SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv_filterscale = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(count);
        let mut weights = vec![0.0f64; count * ksize];
        for (i, k) in weights.chunks_exact_mut(ksize).enumerate() {
            let xx = first + i;
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let taps = (xmax - xmin).max(0) as usize;
            let mut ww = 0.0;
            for (x, w) in k.iter_mut().enumerate().take(taps) {
                *w = bicubic(((x as i64 + xmin) as f64 - center + 0.5) * inv_filterscale);
                ww += *w;
            }
            if ww != 0.0 {
                for w in &mut k[..taps] {
                    *w /= ww;
                }
            }
            bounds.push((xmin as usize, taps));
        }
        Coeffs {
            ksize,
            bounds,
            weights,
        }
    }

    /// The input range `start..end` that these outputs read.
    pub(crate) fn input_span(&self) -> (usize, usize) {
        let start = self.bounds.first().map_or(0, |b| b.0);
        let end = self.bounds.last().map_or(0, |b| b.0 + b.1);
        (start, end)
    }

    /// Re-bases the input indices on a band starting at input index `by`.
    pub(crate) fn shift(&mut self, by: usize) {
        self.bounds.iter_mut().for_each(|b| b.0 -= by);
    }

    /// Pillow's `normalize_coeffs_8bpc`: 22-bit fixed point, rounded half away from zero.
    fn fixed(&self) -> Vec<i32> {
        let one = f64::from(1u32 << PRECISION_BITS);
        self.weights
            .iter()
            .map(|&k| {
                if k < 0.0 {
                    (-0.5 + k * one) as i32
                } else {
                    (0.5 + k * one) as i32
                }
            })
            .collect()
    }
}

/// Pillow's `clip8`: the top bits of the fixed-point sum, clamped to a byte.
#[inline(always)]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `CLIP16(ROUND_UP(ss))`.
#[inline(always)]
fn round_clip16(ss: f64) -> u16 {
    let r = if ss >= 0.0 {
        (ss + 0.5) as i32
    } else {
        (ss - 0.5) as i32
    };
    r.clamp(0, 65535) as u16
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// One row of the 8-bit horizontal pass.
#[inline(always)]
fn horizontal_row<const C: usize>(line_in: &[u8], co: &Coeffs, kk: &[i32], line_out: &mut [u8]) {
    for (xx, &(xmin, taps)) in co.bounds.iter().enumerate() {
        let k = &kk[xx * co.ksize..xx * co.ksize + taps];
        let px = &line_in[xmin * C..(xmin + taps) * C];
        let mut ss = [HALF; C];
        for (p, &w) in px.chunks_exact(C).zip(k) {
            for c in 0..C {
                ss[c] = ss[c].wrapping_add(i32::from(p[c]).wrapping_mul(w));
            }
        }
        for c in 0..C {
            line_out[xx * C + c] = clip8(ss[c]);
        }
    }
}

fn horizontal_u8<const C: usize>(rows: &[u8], in_w: usize, co: &Coeffs, out: &mut [u8]) {
    let kk = co.fixed();
    let out_w = co.bounds.len();
    out.par_chunks_mut(out_w * C)
        .zip(rows.par_chunks(in_w * C))
        .for_each(|(line_out, line_in)| horizontal_row::<C>(line_in, co, &kk, line_out));
}

/// The horizontal pass with its fixed-point weights computed once, for callers that feed rows
/// in pieces (streaming decode).
pub(crate) struct Horizontal<'a> {
    co: &'a Coeffs,
    kk: Vec<i32>,
    channels: usize,
}

impl<'a> Horizontal<'a> {
    pub(crate) fn new(co: &'a Coeffs, channels: usize) -> Self {
        Horizontal {
            co,
            kk: co.fixed(),
            channels,
        }
    }

    /// Resamples whole rows of `rows` (input width `in_w`) into `out`, on this thread.
    pub(crate) fn run(&self, rows: &[u8], in_w: usize, out: &mut [u8]) {
        let ch = self.channels;
        let out_w = self.co.bounds.len();
        for (line_in, line_out) in rows
            .chunks_exact(in_w * ch)
            .zip(out.chunks_exact_mut(out_w * ch))
        {
            match ch {
                1 => horizontal_row::<1>(line_in, self.co, &self.kk, line_out),
                2 => horizontal_row::<2>(line_in, self.co, &self.kk, line_out),
                3 => horizontal_row::<3>(line_in, self.co, &self.kk, line_out),
                _ => horizontal_row::<4>(line_in, self.co, &self.kk, line_out),
            }
        }
    }
}

fn vertical_u8<const C: usize>(
    rows: &[u8],
    w: usize,
    first_row: usize,
    co: &Coeffs,
    out: &mut [u8],
) {
    let kk = co.fixed();
    let stride = w * C;
    out.par_chunks_mut(stride)
        .enumerate()
        .for_each(|(yy, line_out)| {
            let (ymin, taps) = co.bounds[yy];
            let k = &kk[yy * co.ksize..yy * co.ksize + taps];
            let mut ss = vec![HALF; stride];
            for (y, &wgt) in k.iter().enumerate() {
                let line_in = &rows[(ymin - first_row + y) * stride..][..stride];
                for (s, &p) in ss.iter_mut().zip(line_in) {
                    *s = s.wrapping_add(i32::from(p).wrapping_mul(wgt));
                }
            }
            for (o, &s) in line_out.iter_mut().zip(&ss) {
                *o = clip8(s);
            }
        });
}

fn horizontal_u16(rows: &[u16], in_w: usize, co: &Coeffs, out: &mut [u16]) {
    let out_w = co.bounds.len();
    out.par_chunks_mut(out_w)
        .zip(rows.par_chunks(in_w))
        .for_each(|(line_out, line_in)| {
            for (xx, &(xmin, taps)) in co.bounds.iter().enumerate() {
                let k = &co.weights[xx * co.ksize..xx * co.ksize + taps];
                let mut ss = 0.0f64;
                for (&p, &w) in line_in[xmin..xmin + taps].iter().zip(k) {
                    ss += f64::from(p) * w;
                }
                line_out[xx] = round_clip16(ss);
            }
        });
}

fn vertical_u16(rows: &[u16], w: usize, first_row: usize, co: &Coeffs, out: &mut [u16]) {
    out.par_chunks_mut(w)
        .enumerate()
        .for_each(|(yy, line_out)| {
            let (ymin, taps) = co.bounds[yy];
            let k = &co.weights[yy * co.ksize..yy * co.ksize + taps];
            for (xx, o) in line_out.iter_mut().enumerate() {
                let mut ss = 0.0f64;
                for (y, &wgt) in k.iter().enumerate() {
                    ss += f64::from(rows[(ymin - first_row + y) * w + xx]) * wgt;
                }
                *o = round_clip16(ss);
            }
        });
}

/// Rows `first..first + rows.len() / stride` of an image; the unit a pass reads.
pub(crate) struct Band<'a, T> {
    pub data: &'a [T],
    pub width: usize,
    pub first_row: usize,
}

/// Horizontal pass over every row of `band`, producing output columns `hc`.
pub(crate) fn horizontal_8(band: &Band<u8>, channels: usize, hc: &Coeffs) -> Vec<u8> {
    let rows = band.data.len() / (band.width * channels);
    let mut out = vec![0u8; rows * hc.bounds.len() * channels];
    match channels {
        1 => horizontal_u8::<1>(band.data, band.width, hc, &mut out),
        2 => horizontal_u8::<2>(band.data, band.width, hc, &mut out),
        3 => horizontal_u8::<3>(band.data, band.width, hc, &mut out),
        _ => horizontal_u8::<4>(band.data, band.width, hc, &mut out),
    }
    out
}

/// Vertical pass producing output rows `vc` from `band`, which must hold every row they read.
pub(crate) fn vertical_8(band: &Band<u8>, channels: usize, vc: &Coeffs) -> Vec<u8> {
    let mut out = vec![0u8; vc.bounds.len() * band.width * channels];
    match channels {
        1 => vertical_u8::<1>(band.data, band.width, band.first_row, vc, &mut out),
        2 => vertical_u8::<2>(band.data, band.width, band.first_row, vc, &mut out),
        3 => vertical_u8::<3>(band.data, band.width, band.first_row, vc, &mut out),
        _ => vertical_u8::<4>(band.data, band.width, band.first_row, vc, &mut out),
    }
    out
}

/// 16-bit horizontal pass.
pub(crate) fn horizontal_16(band: &Band<u16>, hc: &Coeffs) -> Vec<u16> {
    let rows = band.data.len() / band.width;
    let mut out = vec![0u16; rows * hc.bounds.len()];
    horizontal_u16(band.data, band.width, hc, &mut out);
    out
}

/// 16-bit vertical pass.
pub(crate) fn vertical_16(band: &Band<u16>, vc: &Coeffs) -> Vec<u16> {
    let mut out = vec![0u16; vc.bounds.len() * band.width];
    vertical_u16(band.data, band.width, band.first_row, vc, &mut out);
    out
}

/// Source indices of Pillow's NEAREST resize (`ImagingScaleAffine`) along one axis, for outputs
/// `first..first + count`: the position starts at half a step and *accumulates* the step in double
/// precision, truncating each time; an index outside the input yields `None` (Pillow leaves 0).
pub(crate) fn nearest_indices(
    in_size: usize,
    out_size: usize,
    first: usize,
    count: usize,
) -> Vec<Option<usize>> {
    let step = f64::from(in_size as f32) / out_size as f64;
    let mut pos = step * 0.5;
    let mut out = Vec::with_capacity(count);
    for i in 0..first + count {
        if i >= first {
            let idx = if pos < 0.0 { -1 } else { pos as i64 };
            out.push((idx >= 0 && (idx as usize) < in_size).then_some(idx as usize));
        }
        pos += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_matches_closed_form() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(2.0), 0.0);
        assert_eq!(bicubic(0.5), 0.5625);
        assert_eq!(bicubic(-1.5), -0.0625);
    }

    #[test]
    fn downscale_weights_sum_to_one_and_widen() {
        let co = Coeffs::new(1000, 100, 0, 100);
        // Support 2 * 10 on each side: 41 taps max.
        assert_eq!(co.ksize, 41);
        for (i, &(_, taps)) in co.bounds.iter().enumerate() {
            let s: f64 = co.weights[i * co.ksize..i * co.ksize + taps].iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
        // Fixed-point weights of an interior pixel sum to one unit, give or take rounding.
        let kk = co.fixed();
        let s: i32 = kk[50 * co.ksize..51 * co.ksize].iter().sum();
        assert!((s - (1 << PRECISION_BITS)).abs() < 41);
    }

    #[test]
    fn constant_image_stays_constant() {
        let data = vec![77u8; 9 * 7 * 3];
        let band = Band {
            data: &data,
            width: 9,
            first_row: 0,
        };
        let h = horizontal_8(&band, 3, &Coeffs::new(9, 4, 0, 4));
        let band = Band {
            data: &h,
            width: 4,
            first_row: 0,
        };
        let v = vertical_8(&band, 3, &Coeffs::new(7, 13, 0, 13));
        assert!(v.iter().all(|&p| p == 77));
    }

    #[test]
    fn nearest_picks_centers() {
        let idx = nearest_indices(4, 2, 0, 2);
        assert_eq!(idx, vec![Some(1), Some(3)]);
        let idx = nearest_indices(1, 3, 1, 2);
        assert_eq!(idx, vec![Some(0), Some(0)]);
    }
}
