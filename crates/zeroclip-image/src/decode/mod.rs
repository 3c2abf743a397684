//! Decoding: recognizes the format from the file's magic bytes and returns the image in the mode
//! Pillow's plugin for that format would give it (see [`crate::pixels`]).
//!
//! Every decoder reads the header and checks the pixel count against the configured limit before
//! allocating pixel memory, as Pillow's `DecompressionBombError` check does at `open`.

mod gif;
pub(crate) mod jpeg;
mod other;
mod png;
mod tiff;

use crate::error::{Error, Result};
use crate::pixels::Pixels;

/// Decoder limits.
pub(crate) struct Limits {
    pub max_pixels: u64,
}

impl Limits {
    /// Rejects zero-size images and images over the pixel limit.
    pub(crate) fn check(&self, input: &str, width: u64, height: u64) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(Error::ZeroSize {
                input: input.to_owned(),
                width,
                height,
            });
        }
        let pixels = width.saturating_mul(height);
        if pixels > self.max_pixels {
            return Err(Error::TooManyPixels {
                input: input.to_owned(),
                pixels,
                limit: self.max_pixels,
            });
        }
        Ok(())
    }
}

/// Decodes `bytes` (named `input` in errors) into its Pillow mode.
/// Samples of `bits` bits each, most significant first, as PNG and TIFF pack them.
pub(crate) fn unpack_bits(row: &[u8], bits: u8, count: usize) -> impl Iterator<Item = u8> + '_ {
    let per_byte = 8 / bits as usize;
    let mask = ((1u16 << bits) - 1) as u8;
    (0..count).map(move |i| {
        let byte = row[i / per_byte];
        let shift = 8 - bits as usize * (i % per_byte + 1);
        (byte >> shift) & mask
    })
}

/// Whether `bytes` start like a JPEG file (SOI and the next marker's prefix).
pub(crate) fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

pub(crate) fn decode(bytes: &[u8], input: &str, limits: &Limits) -> Result<Pixels> {
    if bytes.is_empty() {
        return Err(Error::decode(input, "empty file"));
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png::decode(bytes, input, limits)
    } else if is_jpeg(bytes) {
        jpeg::decode(bytes, input, limits)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        gif::decode(bytes, input, limits)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        other::decode(bytes, input, limits, image::ImageFormat::WebP)
    } else if bytes.starts_with(b"BM") {
        other::decode(bytes, input, limits, image::ImageFormat::Bmp)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        tiff::decode(bytes, input, limits)
    } else {
        Err(Error::unsupported(
            input,
            "not a PNG, JPEG, GIF, WebP, BMP or TIFF file",
        ))
    }
}
