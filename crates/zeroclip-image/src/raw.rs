//! Images already decoded by someone else — a `PIL.Image.Image` handed over as its mode, size and
//! `tobytes()` — turned into the [`Pixels`] the Pillow-exact resize and crop work on.
//!
//! Reproduces what the reference does with such an image: Pillow resizes `1` and `P` with NEAREST,
//! `LA` and `RGBA` premultiplied, `I;16` in 16 bits, and converts to RGB after the crop (a palette
//! image by looking its indices up; a bilevel one as 0/255). The modes listed in [`RAW_MODES`] are
//! taken as Pillow lays them out in `tobytes()`: one byte per sample, except `1` (eight pixels per
//! byte, most significant bit first, each row padded to a byte) and `I;16` (16-bit little-endian).

use crate::decode::{unpack_bits, Limits};
use crate::error::{Error, Result};
use crate::pixels::{Layout, Pixels};

/// The Pillow modes [`RawImage`] accepts.
pub const RAW_MODES: &[&str] = &["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"];

/// An image in memory in one of Pillow's modes, as `Image.tobytes()` lays it out.
#[derive(Clone, Copy, Debug)]
pub struct RawImage<'a> {
    /// The Pillow mode, one of [`RAW_MODES`].
    pub mode: &'a str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The samples, `tobytes()` of the image.
    pub data: &'a [u8],
    /// For mode `P`: the palette as RGB triples (`getpalette("RGB")`); indices past its end are
    /// black, as in Pillow's palette, which is padded with zeros.
    pub palette: Option<&'a [u8]>,
}

impl RawImage<'_> {
    /// The image as [`Pixels`], checking that `data` holds exactly what the mode and size need.
    pub(crate) fn to_pixels(self, input: &str) -> Result<Pixels> {
        let (w, h) = (self.width as usize, self.height as usize);
        Limits {
            max_pixels: u64::MAX,
        }
        .check(input, w as u64, h as u64)?;
        let expect = |len: usize| -> Result<()> {
            if self.data.len() == len {
                Ok(())
            } else {
                Err(Error::decode(
                    input,
                    format!(
                        "a {w}x{h} {} image has {len} bytes, got {}",
                        self.mode,
                        self.data.len()
                    ),
                ))
            }
        };
        let u8_image = |layout: Layout, nearest: bool| -> Result<Pixels> {
            expect(w * h * layout.channels())?;
            Ok(Pixels::new_u8(w, h, layout, nearest, self.data.to_vec()))
        };
        match self.mode {
            "L" => u8_image(Layout::L, false),
            "LA" => u8_image(Layout::La, false),
            "RGB" => u8_image(Layout::Rgb, false),
            "RGBA" => u8_image(Layout::Rgba, false),
            "CMYK" => u8_image(Layout::Cmyk, false),
            "1" => {
                let stride = w.div_ceil(8);
                expect(stride * h)?;
                let mut data = Vec::with_capacity(w * h);
                for row in self.data.chunks_exact(stride) {
                    data.extend(unpack_bits(row, 1, w).map(|b| b * 255));
                }
                Ok(Pixels::new_u8(w, h, Layout::L, true, data))
            }
            "P" => {
                expect(w * h)?;
                let palette = self.palette.unwrap_or(&[]);
                let mut data = Vec::with_capacity(w * h * 3);
                for &i in self.data {
                    let at = 3 * usize::from(i);
                    match palette.get(at..at + 3) {
                        Some(rgb) => data.extend_from_slice(rgb),
                        None => data.extend_from_slice(&[0, 0, 0]),
                    }
                }
                Ok(Pixels::new_u8(w, h, Layout::Rgb, true, data))
            }
            "I;16" => {
                expect(w * h * 2)?;
                let data = self
                    .data
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect();
                Ok(Pixels::new_i16(w, h, data))
            }
            other => Err(Error::unsupported(
                input,
                format!(
                    "Pillow mode {other:?} (supported: {})",
                    RAW_MODES.join(", ")
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixels::Samples;

    fn raw<'a>(mode: &'a str, w: u32, h: u32, data: &'a [u8]) -> RawImage<'a> {
        RawImage {
            mode,
            width: w,
            height: h,
            data,
            palette: None,
        }
    }

    fn bytes(px: &Pixels) -> &[u8] {
        match &px.samples {
            Samples::U8(d) => d,
            Samples::U16(_) => panic!("16-bit"),
        }
    }

    #[test]
    fn bilevel_rows_are_padded_to_bytes() {
        // 10 pixels a row: 2 bytes; 1010000011 then padding.
        let px = raw("1", 10, 1, &[0b1010_0000, 0b1100_0000])
            .to_pixels("x")
            .unwrap();
        assert!(px.nearest);
        assert_eq!(bytes(&px), &[255, 0, 255, 0, 0, 0, 0, 0, 255, 255]);
    }

    #[test]
    fn palette_indices_past_the_palette_are_black() {
        let palette = [10, 20, 30, 40, 50, 60];
        let mut r = raw("P", 3, 1, &[1, 0, 7]);
        r.palette = Some(&palette);
        let px = r.to_pixels("x").unwrap();
        assert_eq!(bytes(&px), &[40, 50, 60, 10, 20, 30, 0, 0, 0]);
    }

    #[test]
    fn sixteen_bit_is_little_endian() {
        let px = raw("I;16", 2, 1, &[0x34, 0x12, 0xff, 0x00])
            .to_pixels("x")
            .unwrap();
        match px.samples {
            Samples::U16(d) => assert_eq!(d, vec![0x1234, 0xff]),
            Samples::U8(_) => panic!("8-bit"),
        }
    }

    #[test]
    fn wrong_sizes_and_modes_are_refused_naming_the_input() {
        let e = raw("RGB", 2, 2, &[0; 11]).to_pixels("img0").unwrap_err();
        assert!(e.to_string().contains("img0") && e.to_string().contains("12 bytes"));
        let e = raw("F", 1, 1, &[0; 4]).to_pixels("img1").unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
        let e = raw("L", 0, 3, &[]).to_pixels("img2").unwrap_err();
        assert!(matches!(e, Error::ZeroSize { .. }), "{e}");
    }
}
