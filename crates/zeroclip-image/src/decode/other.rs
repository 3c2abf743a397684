//! WebP, BMP and the common TIFF layouts (see [`super::tiff`] for the rest) through the `image`
//! crate, mapped onto Pillow's modes: 8-bit gray/gray+alpha/RGB/RGBA to `L`/`LA`/`RGB`/`RGBA`,
//! 16-bit gray to `I;16`, other 16-bit color to its high bytes.
//! BMP palettes follow `BmpImagePlugin`: a palette whose entries are exactly the gray ramp becomes
//! `L` (or `1` for two colors), any other palette stays `P`, resized with NEAREST.

use super::Limits;
use crate::error::{Error, Result};
use crate::pixels::{Layout, Pixels};
use image::{DynamicImage, ImageFormat, ImageReader};
use std::io::Cursor;

pub(crate) fn decode(
    bytes: &[u8],
    input: &str,
    limits: &Limits,
    format: ImageFormat,
) -> Result<Pixels> {
    if format == ImageFormat::Bmp {
        // The `image` crate calls a zero-width BMP "too large"; say what it is.
        if let Some((w, h)) = bmp_size(bytes) {
            if w == 0 || h == 0 {
                limits.check(input, w, h)?;
            }
        }
    }
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| map_err(input, e))?;
    limits.check(input, u64::from(w), u64::from(h))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.no_limits();
    let img = reader.decode().map_err(|e| map_err(input, e))?;
    let (width, height) = (w as usize, h as usize);
    let bmp = if format == ImageFormat::Bmp {
        bmp_palette_kind(bytes)
    } else {
        BmpPalette::None
    };
    let px = match img {
        DynamicImage::ImageLuma8(b) => {
            Pixels::new_u8(width, height, Layout::L, false, b.into_raw())
        }
        DynamicImage::ImageLumaA8(b) => {
            Pixels::new_u8(width, height, Layout::La, false, b.into_raw())
        }
        DynamicImage::ImageRgb8(b) => rgb8(width, height, b.into_raw(), bmp),
        DynamicImage::ImageRgba8(b) => Pixels::new_u8(
            width,
            height,
            Layout::Rgba,
            bmp == BmpPalette::Color,
            b.into_raw(),
        ),
        DynamicImage::ImageLuma16(b) => Pixels::new_i16(width, height, b.into_raw()),
        DynamicImage::ImageLumaA16(b) => high(width, height, Layout::La, b.as_raw()),
        DynamicImage::ImageRgb16(b) => high(width, height, Layout::Rgb, b.as_raw()),
        DynamicImage::ImageRgba16(b) => high(width, height, Layout::Rgba, b.as_raw()),
        other => {
            return Err(Error::unsupported(
                input,
                format!("{format:?} with {:?} samples", other.color()),
            ))
        }
    };
    Ok(px)
}

fn rgb8(width: usize, height: usize, data: Vec<u8>, bmp: BmpPalette) -> Pixels {
    match bmp {
        BmpPalette::Gray => {
            let gray = data.chunks_exact(3).map(|p| p[0]).collect();
            Pixels::new_u8(width, height, Layout::L, false, gray)
        }
        BmpPalette::Color | BmpPalette::Bilevel => {
            Pixels::new_u8(width, height, Layout::Rgb, true, data)
        }
        BmpPalette::None => Pixels::new_u8(width, height, Layout::Rgb, false, data),
    }
}

fn high(width: usize, height: usize, layout: Layout, data: &[u16]) -> Pixels {
    Pixels::new_u8(
        width,
        height,
        layout,
        false,
        data.iter().map(|&v| (v >> 8) as u8).collect(),
    )
}

fn map_err(input: &str, e: image::ImageError) -> Error {
    match e {
        image::ImageError::Unsupported(u) => Error::unsupported(input, u),
        other => Error::decode(input, other),
    }
}

/// A BMP's width and height from its info header (the height's sign only gives the row order).
fn bmp_size(b: &[u8]) -> Option<(u64, u64)> {
    let header = u32::from_le_bytes(b.get(14..18)?.try_into().ok()?);
    if header == 12 {
        let w = u16::from_le_bytes(b.get(18..20)?.try_into().ok()?);
        let h = u16::from_le_bytes(b.get(20..22)?.try_into().ok()?);
        Some((u64::from(w), u64::from(h)))
    } else {
        let w = i32::from_le_bytes(b.get(18..22)?.try_into().ok()?);
        let h = i32::from_le_bytes(b.get(22..26)?.try_into().ok()?);
        Some((u64::from(w.unsigned_abs()), u64::from(h.unsigned_abs())))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BmpPalette {
    None,
    Gray,
    Bilevel,
    Color,
}

/// How Pillow's `BmpImagePlugin` treats this file's palette, read from its header.
fn bmp_palette_kind(b: &[u8]) -> BmpPalette {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let Some(header) = u32_at(14) else {
        return BmpPalette::None;
    };
    let (bits, colors, padding) = if header == 12 {
        (u16_at(24).unwrap_or(0), 0, 3)
    } else {
        (u16_at(28).unwrap_or(0), u32_at(46).unwrap_or(0), 4)
    };
    if bits == 0 || bits > 8 {
        return BmpPalette::None;
    }
    let colors = if colors == 0 {
        1usize << bits
    } else {
        colors as usize
    };
    let start = 14 + header as usize;
    let indices: Vec<u8> = if colors == 2 {
        vec![0, 255]
    } else {
        (0..colors).map(|i| i as u8).collect()
    };
    let gray = indices.iter().enumerate().all(|(i, &v)| {
        b.get(start + i * padding..start + i * padding + 3)
            .is_some_and(|e| e == [v, v, v])
    });
    match (gray, colors <= 2) {
        (true, true) => BmpPalette::Bilevel,
        (true, false) => BmpPalette::Gray,
        (false, _) => BmpPalette::Color,
    }
}
