//! JPEG through libjpeg (the mozjpeg fork of libjpeg-turbo, built from source by `mozjpeg-sys`), so
//! the integer IDCT, fancy chroma upsampling and YCbCr→RGB conversion are the ones Pillow's
//! libjpeg-turbo runs, at its defaults (`JDCT_ISLOW`, fancy upsampling, no draft mode).
//!
//! Modes as `JpegImagePlugin`: 1 component → `L`, 3 → `RGB`, 4 → `CMYK` read as libjpeg's CMYK
//! output (YCCK converted by libjpeg) then inverted, because Pillow always assumes Adobe polarity
//! (`CMYK;I`). A file without an EOI marker after its first scan is an error, as Pillow's
//! "image file is truncated" is (libjpeg itself would pad it with gray).

use super::Limits;
use crate::error::{Error, Result};
use crate::pixels::{Layout, Pixels};
use mozjpeg::decompress::DecompressStarted;
use mozjpeg::{ColorSpace, Decompress};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub(crate) fn decode(bytes: &[u8], input: &str, limits: &Limits) -> Result<Pixels> {
    Reader::open(bytes, input, limits)?.into_pixels()
}

/// A started libjpeg decompression that hands out rows in order.
pub(crate) struct Reader<'a> {
    started: Option<DecompressStarted<&'a [u8]>>,
    input: &'a str,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// The Pillow mode the rows are in (`L`, `RGB` or `CMYK`).
    pub layout: Layout,
}

/// Runs libjpeg calls, turning its unwinding fatal errors into [`Error::Decode`].
fn guard<T>(input: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    // mozjpeg's error manager resumes an unwind without running the panic hook.
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg error".to_owned());
            Err(Error::decode(input, msg))
        }
    }
}

impl<'a> Reader<'a> {
    /// Every remaining row, as the decoded image.
    pub(crate) fn into_pixels(mut self) -> Result<Pixels> {
        let (width, height, layout) = (self.width, self.height, self.layout);
        let mut data = vec![0u8; width * height * layout.channels()];
        self.read_rows(&mut data)?;
        self.finish()?;
        Ok(Pixels::new_u8(width, height, layout, false, data))
    }

    /// Reads the header, checks the limits, and starts decompression in Pillow's mode.
    pub(crate) fn open(bytes: &'a [u8], input: &'a str, limits: &Limits) -> Result<Self> {
        if !has_eoi_after_scan(bytes) {
            return Err(Error::decode(
                input,
                "JPEG data is truncated (no end-of-image marker)",
            ));
        }
        guard(input, || {
            let d = Decompress::new_mem(bytes).map_err(|e| Error::decode(input, e))?;
            let (width, height) = d.size();
            limits.check(input, width as u64, height as u64)?;
            let (space, layout) = match d.components().len() {
                1 => (ColorSpace::JCS_GRAYSCALE, Layout::L),
                3 => (ColorSpace::JCS_RGB, Layout::Rgb),
                4 => (ColorSpace::JCS_CMYK, Layout::Cmyk),
                n => {
                    return Err(Error::unsupported(
                        input,
                        format!("JPEG with {n} components"),
                    ))
                }
            };
            let started = d
                .to_colorspace(space)
                .map_err(|e| Error::decode(input, e))?;
            Ok(Reader {
                started: Some(started),
                input,
                width,
                height,
                layout,
            })
        })
    }

    /// Fills `buf` with the next `buf.len() / (width * channels)` rows.
    pub(crate) fn read_rows(&mut self, buf: &mut [u8]) -> Result<()> {
        let input = self.input;
        let started = self
            .started
            .as_mut()
            .ok_or_else(|| Error::decode(input, "decoder failed earlier"))?;
        let read = guard(input, || {
            started
                .read_scanlines_into(buf)
                .map(|r| r.len())
                .map_err(|e| Error::decode(input, e))
        });
        match read {
            Ok(len) if len == buf.len() => {}
            Ok(_) => return Err(Error::decode(input, "JPEG data is truncated")),
            Err(e) => {
                // After a libjpeg error the decompressor may only be destroyed.
                self.started = None;
                return Err(e);
            }
        }
        if self.layout == Layout::Cmyk {
            // Pillow reads CMYK JPEGs as `CMYK;I` (Adobe polarity): inverted.
            buf.iter_mut().for_each(|v| *v = !*v);
        }
        Ok(())
    }

    /// Ends decompression once every row was read.
    pub(crate) fn finish(mut self) -> Result<()> {
        let input = self.input;
        let started = self
            .started
            .take()
            .ok_or_else(|| Error::decode(input, "decoder failed earlier"))?;
        guard(input, || {
            started.finish().map_err(|e| Error::decode(input, e))
        })
    }
}

/// Whether an EOI marker follows the first SOS segment. Entropy-coded data cannot contain
/// `FF D9` (0xFF bytes are stuffed), so this finds truncation without decoding.
fn has_eoi_after_scan(bytes: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if marker == 0xDA {
            let scan = bytes.get(i + 2 + len..).unwrap_or(&[]);
            return scan.windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + len;
    }
    false
}

/// The data after `prefix` of the first APP1 segment that starts with it (before the scan).
pub(crate) fn app1<'b>(bytes: &'b [u8], prefix: &[u8]) -> Option<&'b [u8]> {
    find_segment(bytes, |marker, seg| {
        if marker == 0xE1 {
            seg.strip_prefix(prefix)
        } else {
            None
        }
    })
}

/// Walks the marker segments before the first scan, handing each marker and its payload to
/// `pick` until it answers; `None` when none does or the segments are malformed or truncated.
pub(crate) fn find_segment<'b, T>(
    bytes: &'b [u8],
    mut pick: impl FnMut(u8, &'b [u8]) -> Option<T>,
) -> Option<T> {
    let mut i = 2;
    while i + 4 <= bytes.len() && bytes[i] == 0xFF {
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if marker == 0xDA || len < 2 {
            return None;
        }
        let seg = bytes.get(i + 4..i + 2 + len)?;
        if let Some(found) = pick(marker, seg) {
            return Some(found);
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eoi_detection() {
        let sos = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34];
        assert!(!has_eoi_after_scan(&sos));
        let mut full = sos.to_vec();
        full.extend_from_slice(&[0xFF, 0xD9]);
        assert!(has_eoi_after_scan(&full));
    }

    #[test]
    fn orientation_from_exif() {
        let mut app1 = b"Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0".to_vec();
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        jpeg.append(&mut app1);
        assert_eq!(crate::orientation::exif_orientation(&jpeg), Some(6));
    }
}
