//! The JPEG fast path: the same computation as [`crate::crop`], with the horizontal pass run on
//! each band of rows while libjpeg decodes the next one, so decoding and resampling overlap.
//!
//! Only the order of work changes: each row's horizontal pass reads that row alone, so feeding
//! rows in bands gives the same bytes as resampling the fully decoded image. Rows outside the
//! ones the crop needs are still decoded (and dropped), so corrupt data anywhere is reported as
//! Pillow, which decodes the whole image, would report it.

use crate::convert;
use crate::crop::{check_target, crop_offset, crop_rgb, target_size};
use crate::decode::{jpeg::Reader, Limits};
use crate::error::Result;
use crate::resample::{vertical_8, Band, Coeffs, Horizontal};

/// Rows decoded per band.
const BAND: usize = 16;

/// The uint8 RGB n×n crop of a JPEG, as [`crop_rgb`] would compute it from the decoded image.
pub(crate) fn crop_rgb_jpeg(
    bytes: &[u8],
    input: &str,
    limits: &Limits,
    n: usize,
) -> Result<Vec<u8>> {
    let mut r = Reader::open(bytes, input, limits)?;
    let (w, h, layout) = (r.width, r.height, r.layout);
    let ch = layout.channels();
    let row_len = w * ch;
    check_target(w, h, n, input)?;
    let (tw, th) = target_size(w, h, n);
    if tw == w || th == h || crate::crop::vertical_first(w, h, tw, th) {
        // A pass is skipped, or Pillow runs the vertical pass first: nothing to overlap with
        // decoding, use the general path.
        return Ok(crop_rgb(&r.into_pixels()?, n));
    }
    let (left, top) = (crop_offset(tw, n), crop_offset(th, n));
    let vc = Coeffs::new(h, th, top, n);
    let (y0, y1) = vc.input_span();
    let hc = Coeffs::new(w, tw, left, n);
    let horizontal = Horizontal::new(&hc, ch);

    let mut scratch = Vec::new();
    skip_rows(&mut r, &mut scratch, row_len, y0)?;
    let mut inter = vec![0u8; (y1 - y0) * n * ch];
    let mut result = Ok(());
    rayon::in_place_scope(|s| {
        for out in inter.chunks_mut(BAND * n * ch) {
            let mut rows = vec![0u8; out.len() / (n * ch) * row_len];
            if let Err(e) = r.read_rows(&mut rows) {
                result = Err(e);
                return;
            }
            let horizontal = &horizontal;
            s.spawn(move |_| horizontal.run(&rows, w, out));
        }
    });
    result?;
    skip_rows(&mut r, &mut scratch, row_len, h - y1)?;
    r.finish()?;
    let window = vertical_8(
        &Band {
            data: &inter,
            width: n,
            first_row: y0,
        },
        ch,
        &vc,
    );
    Ok(convert::to_rgb_u8(&window, layout))
}

/// Decodes and drops the next `count` rows.
fn skip_rows(r: &mut Reader, scratch: &mut Vec<u8>, row_len: usize, count: usize) -> Result<()> {
    let mut left = count;
    while left > 0 {
        let k = left.min(BAND);
        scratch.resize(k * row_len, 0);
        r.read_rows(scratch)?;
        left -= k;
    }
    Ok(())
}
