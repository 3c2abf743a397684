//! torchvision's `Resize(n, BICUBIC)` then `CenterCrop(n)` on a PIL image, computed as the n×n
//! window of the resized image that the crop keeps.
//!
//! Reproduced exactly: the short side becomes n and the long side `int(n * long / short)` (float
//! division, truncated); an image already at that size is not resized at all (torchvision returns
//! it as is, so alpha is never premultiplied); the crop starts at `int(round((size - n) / 2.0))`,
//! Python rounding half to even. Resize(n) leaves both sides at least n, so CenterCrop never pads.

use crate::convert;
use crate::error::{Error, Result};
use crate::pixels::{Pixels, Samples};
use crate::resample::{self, Band, Coeffs};

/// torchvision's `_compute_resized_output_size` for an int size: (width, height).
pub(crate) fn target_size(width: usize, height: usize, n: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (n as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (n, new_long)
    } else {
        (new_long, n)
    }
}

/// Refuses an image whose resized long side Pillow could not take: `Image.resize` passes sizes
/// as C ints, so a side over `i32::MAX` (from a very elongated image) raises `OverflowError`.
pub(crate) fn check_target(width: usize, height: usize, n: usize, input: &str) -> Result<()> {
    let (tw, th) = target_size(width, height, n);
    if tw > i32::MAX as usize || th > i32::MAX as usize {
        return Err(Error::unsupported(
            input,
            format!(
                "{width}x{height} resized to short side {n} is {tw}x{th}, too large for Pillow"
            ),
        ));
    }
    Ok(())
}

/// Whether Pillow runs the vertical pass before the horizontal one for a `width`×`height` →
/// `tw`×`th` resize. Pillow 13 chooses the order itself; this rule was fitted to its results
/// (every geometry in `scripts/make_image_fixtures.py`'s probes and 400 random ones in RGB, L
/// and I;16 agree): vertical first exactly when the height shrinks by more than twice what the
/// width shrinks (pixels, not factors). Both orders give the same values when only one pass runs.
pub(crate) fn vertical_first(width: usize, height: usize, tw: usize, th: usize) -> bool {
    let shrink = |from: usize, to: usize| from as i64 - to as i64;
    tw != width && th < height && shrink(height, th) > 2 * shrink(width, tw)
}

/// torchvision's `center_crop` offset along one axis.
pub(crate) fn crop_offset(size: usize, n: usize) -> usize {
    ((size - n) as f64 / 2.0).round_ties_even() as usize
}

/// The uint8 RGB n×n crop (row-major, interleaved) that the reference feeds to `ToTensor`.
pub(crate) fn crop_rgb(px: &Pixels, n: usize) -> Vec<u8> {
    let (tw, th) = target_size(px.width, px.height, n);
    let (left, top) = (crop_offset(tw, n), crop_offset(th, n));
    let unchanged = tw == px.width && th == px.height;
    match &px.samples {
        Samples::U8(data) => {
            let ch = px.layout.channels();
            let window = if unchanged {
                copy_window(data, px.width, ch, left, top, n)
            } else if px.nearest {
                nearest_window(data, px.width, px.height, ch, tw, th, left, top, n)
            } else {
                let premultiplied = px.layout.has_alpha();
                let mut w = bicubic_window(px, data, ch, (tw, th), (left, top), n, premultiplied);
                if premultiplied {
                    convert::unpremultiply(&mut w, ch);
                }
                w
            };
            convert::to_rgb_u8(&window, px.layout)
        }
        Samples::U16(data) => {
            let window = if unchanged {
                copy_window(data, px.width, 1, left, top, n)
            } else {
                bicubic_window_16(px, data, (tw, th), (left, top), n)
            };
            convert::i16_to_rgb(&window)
        }
    }
}

fn copy_window<T: Copy>(
    data: &[T],
    width: usize,
    ch: usize,
    left: usize,
    top: usize,
    n: usize,
) -> Vec<T> {
    let mut out = Vec::with_capacity(n * n * ch);
    for y in top..top + n {
        out.extend_from_slice(&data[(y * width + left) * ch..(y * width + left + n) * ch]);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn nearest_window(
    data: &[u8],
    width: usize,
    height: usize,
    ch: usize,
    tw: usize,
    th: usize,
    left: usize,
    top: usize,
    n: usize,
) -> Vec<u8> {
    let xs = resample::nearest_indices(width, tw, left, n);
    let ys = resample::nearest_indices(height, th, top, n);
    let mut out = vec![0u8; n * n * ch];
    for (row, yi) in out.chunks_exact_mut(n * ch).zip(&ys) {
        let Some(yi) = *yi else { continue };
        for (o, xi) in row.chunks_exact_mut(ch).zip(&xs) {
            if let Some(xi) = *xi {
                o.copy_from_slice(&data[(yi * width + xi) * ch..][..ch]);
            }
        }
    }
    out
}

/// The rows a vertical pass (or, without one, the crop) reads, and that pass's coefficients.
fn rows_needed(height: usize, th: usize, top: usize, n: usize) -> (usize, usize, Option<Coeffs>) {
    if th == height {
        (top, top + n, None)
    } else {
        let vc = Coeffs::new(height, th, top, n);
        let (a, b) = vc.input_span();
        (a, b, Some(vc))
    }
}

fn bicubic_window(
    px: &Pixels,
    data: &[u8],
    ch: usize,
    (tw, th): (usize, usize),
    (left, top): (usize, usize),
    n: usize,
    premultiplied: bool,
) -> Vec<u8> {
    let stride = px.width * ch;
    let (y0, y1, vc) = rows_needed(px.height, th, top, n);
    let rows = &data[y0 * stride..y1 * stride];
    if let (Some(vc), true) = (&vc, vertical_first(px.width, px.height, tw, th)) {
        // Vertical pass over just the columns the horizontal pass then reads.
        let mut hc = Coeffs::new(px.width, tw, left, n);
        let (x0, x1) = hc.input_span();
        let mut band = columns(rows, px.width, ch, x0, x1 - x0);
        if premultiplied {
            convert::premultiply(&mut band, ch);
        }
        let inter = resample::vertical_8(
            &Band {
                data: &band,
                width: x1 - x0,
                first_row: y0,
            },
            ch,
            vc,
        );
        hc.shift(x0);
        return resample::horizontal_8(
            &Band {
                data: &inter,
                width: x1 - x0,
                first_row: 0,
            },
            ch,
            &hc,
        );
    }
    let inter = if tw != px.width {
        let mut hc = Coeffs::new(px.width, tw, left, n);
        if premultiplied {
            // Premultiply a copy of just the columns the horizontal pass reads.
            let (x0, x1) = hc.input_span();
            let mut band = columns(rows, px.width, ch, x0, x1 - x0);
            convert::premultiply(&mut band, ch);
            hc.shift(x0);
            let band = Band {
                data: &band,
                width: x1 - x0,
                first_row: y0,
            };
            resample::horizontal_8(&band, ch, &hc)
        } else {
            let band = Band {
                data: rows,
                width: px.width,
                first_row: y0,
            };
            resample::horizontal_8(&band, ch, &hc)
        }
    } else {
        let mut band = columns(rows, px.width, ch, left, n);
        if premultiplied {
            convert::premultiply(&mut band, ch);
        }
        band
    };
    match vc {
        Some(vc) => resample::vertical_8(
            &Band {
                data: &inter,
                width: n,
                first_row: y0,
            },
            ch,
            &vc,
        ),
        None => inter,
    }
}

fn bicubic_window_16(
    px: &Pixels,
    data: &[u16],
    (tw, th): (usize, usize),
    (left, top): (usize, usize),
    n: usize,
) -> Vec<u16> {
    let (y0, y1, vc) = rows_needed(px.height, th, top, n);
    let rows = &data[y0 * px.width..y1 * px.width];
    if let (Some(vc), true) = (&vc, vertical_first(px.width, px.height, tw, th)) {
        let mut hc = Coeffs::new(px.width, tw, left, n);
        let (x0, x1) = hc.input_span();
        let band = columns(rows, px.width, 1, x0, x1 - x0);
        let inter = resample::vertical_16(
            &Band {
                data: &band,
                width: x1 - x0,
                first_row: y0,
            },
            vc,
        );
        hc.shift(x0);
        return resample::horizontal_16(
            &Band {
                data: &inter,
                width: x1 - x0,
                first_row: 0,
            },
            &hc,
        );
    }
    let band = Band {
        data: rows,
        width: px.width,
        first_row: y0,
    };
    let inter = if tw != px.width {
        resample::horizontal_16(&band, &Coeffs::new(px.width, tw, left, n))
    } else {
        columns(rows, px.width, 1, left, n)
    };
    match vc {
        Some(vc) => resample::vertical_16(
            &Band {
                data: &inter,
                width: n,
                first_row: y0,
            },
            &vc,
        ),
        None => inter,
    }
}

/// Columns `left..left + n` of every row.
fn columns<T: Copy>(rows: &[T], width: usize, ch: usize, left: usize, n: usize) -> Vec<T> {
    rows.chunks_exact(width * ch)
        .flat_map(|r| r[left * ch..(left + n) * ch].iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_truncate_like_torchvision() {
        assert_eq!(target_size(2162, 762, 224), (635, 224));
        assert_eq!(target_size(1, 5000, 224), (224, 1_120_000));
        assert_eq!(target_size(225, 224, 224), (225, 224));
        assert_eq!(target_size(300, 300, 336), (336, 336));
    }

    #[test]
    fn sides_beyond_a_c_int_are_refused() {
        assert!(check_target(1, 9_000_000, 224, "x").is_ok());
        let e = check_target(1, 10_000_000, 224, "tall.png").unwrap_err();
        assert!(e.to_string().contains("tall.png"));
    }

    #[test]
    fn pass_order_follows_pillow() {
        // Measured on Pillow 13: 120x400 -> 48x160 runs the vertical pass first, the
        // transposed geometry and ordinary photos the horizontal one.
        assert!(vertical_first(120, 400, 48, 160));
        assert!(!vertical_first(400, 120, 160, 48));
        assert!(!vertical_first(3000, 4000, 224, 298));
        assert!(vertical_first(762, 2162, 224, 635));
        // Ties and vertical upscales go horizontal first.
        assert!(!vertical_first(100, 100, 60, 20));
        assert!(!vertical_first(100, 100, 200, 110));
    }

    #[test]
    fn offsets_round_half_to_even() {
        assert_eq!(crop_offset(225, 224), 0); // 0.5 -> 0
        assert_eq!(crop_offset(227, 224), 2); // 1.5 -> 2
        assert_eq!(crop_offset(229, 224), 2); // 2.5 -> 2
        assert_eq!(crop_offset(635, 224), 206); // 205.5 -> 206
    }
}
