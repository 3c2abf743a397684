//! TIFF into Pillow's modes (`TiffImagePlugin.OPEN_INFO`), through the `tiff` crate:
//! palette → `P` (expanded; the 16-bit `ColorMap` entries keep their high byte, as Pillow's
//! `b // 256`), 1-bit gray → `1` (0/255, resized with NEAREST), 8-bit CMYK → `CMYK` (not inverted),
//! gray or RGB with an extra sample → `L`/`RGB` (unspecified extra sample, dropped) or `LA`/`RGBA`
//! (unassociated alpha), and the other layouts through [`super::other`] (`L`, `RGB`, `I;16`).
//!
//! Pillow's TIFF plugin applies the EXIF orientation tag itself when it loads the pixels
//! (`TiffImageFile.load_end` calls `exif_transpose`), so, unlike the other formats, a TIFF is
//! always turned by its orientation, whatever `apply_exif_orientation` says.
//!
//! Refused rather than guessed (no fixture proves them): 2- and 4-bit gray, big-endian or
//! WhiteIsZero 16-bit gray, CMYK other than 8-bit, associated alpha, palette with alpha, planar
//! CMYK or extra samples, an orientation given only in XMP, and JPEG-compressed TIFF other than
//! gray or RGB strips (see [`jpeg_strips`]). Layouts the `image` crate does not read (YCbCr, Lab,
//! 32-bit integer and float) are refused by it.

use super::{unpack_bits, Limits};
use crate::error::{Error, Result};
use crate::orientation;
use crate::pixels::{Layout, Pixels};
use std::io::Cursor;
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;
use tiff::ColorType;

/// TIFF `PhotometricInterpretation` values used here.
const BLACK_IS_ZERO: u16 = 1;
const RGB_PALETTE: u16 = 3;

/// The TIFF being decoded: its bytes, its name in errors and its size.
struct Ctx<'a> {
    bytes: &'a [u8],
    input: &'a str,
    width: usize,
    height: usize,
}

impl Ctx<'_> {
    fn err(&self, e: tiff::TiffError) -> Error {
        tiff_error(self.input, e)
    }
}

/// The `tiff` crate's error as this crate's, naming `input`.
fn tiff_error(input: &str, e: tiff::TiffError) -> Error {
    match e {
        tiff::TiffError::UnsupportedError(u) => Error::unsupported(input, u),
        other => Error::decode(input, other),
    }
}

pub(crate) fn decode(bytes: &[u8], input: &str, limits: &Limits) -> Result<Pixels> {
    let terr = |e| tiff_error(input, e);
    // The `tiff` crate calls a zero dimension a format error; say what it is.
    let tag = |t| orientation::ifd0_uint(bytes, t).map(u64::from);
    if let (Some(w), Some(h)) = (tag(256), tag(257)) {
        if w == 0 || h == 0 {
            limits.check(input, w, h)?;
        }
    }
    let mut dec = open(bytes, input)?;
    let (w, h) = dec.dimensions().map_err(terr)?;
    limits.check(input, u64::from(w), u64::from(h))?;
    let (width, height) = (w as usize, h as usize);
    let c = Ctx {
        bytes,
        input,
        width,
        height,
    };
    let photometric = dec
        .find_tag_unsigned::<u16>(Tag::PhotometricInterpretation)
        .map_err(terr)?;
    if tag(274).is_none() {
        // Pillow then takes the orientation from XMP, and turns the image on load while
        // torchvision sized the resize from the unturned size: not reproduced.
        let xmp = orientation::ifd0_bytes(bytes, 700).and_then(orientation::xmp_orientation);
        if matches!(xmp, Some(2..=8)) {
            return Err(Error::unsupported(
                input,
                "TIFF with an XMP orientation but no EXIF orientation is not supported",
            ));
        }
    }
    let px = if tag(259) == Some(7) {
        jpeg_strips(&mut dec, &c, limits, photometric)?
    } else if tag(259) == Some(6) {
        return Err(Error::unsupported(
            input,
            "old-style JPEG-compressed TIFF is not supported",
        ));
    } else if photometric == Some(RGB_PALETTE) {
        palette(&c)?
    } else {
        match dec.colortype().map_err(terr)? {
            ColorType::Gray(1) => {
                let row = width.div_ceil(8);
                let packed = read_u8(&mut dec, &c, row * height)?;
                let data = packed
                    .chunks_exact(row)
                    .flat_map(|r| unpack_bits(r, 1, width))
                    .map(|v| v * 255)
                    .collect();
                Pixels::new_u8(width, height, Layout::L, true, data)
            }
            ColorType::Gray(bits @ (2 | 4)) => {
                return Err(Error::unsupported(
                    input,
                    format!("{bits}-bit gray TIFF is not supported"),
                ))
            }
            ColorType::Gray(16) if bytes.starts_with(b"MM") || photometric == Some(0) => {
                // Pillow reads these as `I;16B`, or as `I;16` without inverting WhiteIsZero.
                return Err(Error::unsupported(
                    input,
                    "big-endian or WhiteIsZero 16-bit gray TIFF is not supported",
                ));
            }
            ColorType::RGBA(8)
            | ColorType::Multiband {
                bit_depth: 8,
                num_samples: 2,
            }
            | ColorType::CMYK(8)
                if tag(284) == Some(2) =>
            {
                // The `tiff` crate then reads the first plane only.
                return Err(Error::unsupported(
                    input,
                    "planar TIFF with CMYK or an extra sample is not supported",
                ));
            }
            ColorType::RGBA(8)
            | ColorType::Multiband {
                bit_depth: 8,
                num_samples: 2,
            } if photometric != Some(0) => extra_channel(&mut dec, &c)?,
            ColorType::CMYK(8) => {
                let data = read_u8(&mut dec, &c, width * height * 4)?;
                Pixels::new_u8(width, height, Layout::Cmyk, false, data)
            }
            ColorType::CMYK(bits) | ColorType::CMYKA(bits) => {
                return Err(Error::unsupported(
                    input,
                    format!("{bits}-bit CMYK TIFF (or CMYK with alpha) is not supported"),
                ))
            }
            _ => super::other::decode(bytes, input, limits, image::ImageFormat::Tiff)?,
        }
    };
    Ok(match orientation::tiff_orientation(bytes) {
        Some(o) => orientation::apply(px, o),
        None => px,
    })
}

/// A decoder whose buffer limits do not refuse images Pillow reads: the pixel count is checked
/// against [`Limits`] before any pixel buffer is allocated. Tag values keep the crate's 1 MiB cap.
fn open<'b>(bytes: &'b [u8], input: &str) -> Result<Decoder<Cursor<&'b [u8]>>> {
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = usize::MAX;
    limits.intermediate_buffer_size = usize::MAX;
    Ok(Decoder::new(Cursor::new(bytes))
        .map_err(|e| tiff_error(input, e))?
        .with_limits(limits))
}

/// The 8-bit samples of the image, rows byte-aligned as the file stores them; exactly `len`
/// bytes, or an error.
fn read_u8(dec: &mut Decoder<Cursor<&[u8]>>, c: &Ctx, len: usize) -> Result<Vec<u8>> {
    match dec.read_image().map_err(|e| c.err(e))? {
        DecodingResult::U8(v) if v.len() == len => Ok(v),
        DecodingResult::U8(_) => Err(Error::decode(c.input, "TIFF data does not match its size")),
        _ => Err(Error::decode(c.input, "TIFF samples are not 8-bit")),
    }
}

/// Gray or RGB with one extra 8-bit sample, as its `ExtraSamples` tag makes Pillow read it:
/// 0 (unspecified) is dropped (`LX` → `L`, `RGBX` → `RGB`), 2 (unassociated alpha) is alpha
/// (`LA`, `RGBA`). Associated (premultiplied) alpha is refused: no fixture proves Pillow's
/// un-premultiplication of it here.
fn extra_channel(dec: &mut Decoder<Cursor<&[u8]>>, c: &Ctx) -> Result<Pixels> {
    let (input, width, height) = (c.input, c.width, c.height);
    let extra = orientation::ifd0_uint(c.bytes, 338);
    let ch = match dec.colortype().map_err(|e| c.err(e))? {
        ColorType::RGBA(_) => 4,
        _ => 2,
    };
    let (color, with_alpha) = if ch == 2 {
        (Layout::L, Layout::La)
    } else {
        (Layout::Rgb, Layout::Rgba)
    };
    let data = read_u8(dec, c, width * height * ch)?;
    match extra {
        Some(0) => {
            let kept = data
                .chunks_exact(ch)
                .flat_map(|p| p[..ch - 1].iter().copied())
                .collect();
            Ok(Pixels::new_u8(width, height, color, false, kept))
        }
        Some(2) => Ok(Pixels::new_u8(width, height, with_alpha, false, data)),
        other => Err(Error::unsupported(
            input,
            format!("TIFF with an extra sample of kind {other:?} (ExtraSamples) is not supported"),
        )),
    }
}

/// A JPEG-compressed TIFF, each strip decoded by libjpeg as the JPEG stream libtiff hands it:
/// the shared `JPEGTables` then the strip's own data. The `tiff` crate's JPEG decoder is not
/// libjpeg (it differs by a few levels). Only gray (`L`) and RGB strips, as Pillow writes them;
/// YCbCr (which libtiff converts itself), tiles and planar files are refused.
fn jpeg_strips(
    dec: &mut Decoder<Cursor<&[u8]>>,
    c: &Ctx,
    limits: &Limits,
    photometric: Option<u16>,
) -> Result<Pixels> {
    let (bytes, input, width, height) = (c.bytes, c.input, c.width, c.height);
    let terr = |e| c.err(e);
    let tag = |t| orientation::ifd0_uint(bytes, t);
    let layout = match (photometric, tag(277).unwrap_or(1)) {
        (Some(BLACK_IS_ZERO), 1) => Layout::L,
        (Some(2), 3) => Layout::Rgb,
        (p, n) => {
            return Err(Error::unsupported(
                input,
                format!("JPEG-compressed TIFF with photometric {p:?} and {n} samples"),
            ))
        }
    };
    if tag(322).is_some() || tag(284) == Some(2) {
        return Err(Error::unsupported(
            input,
            "tiled or planar JPEG-compressed TIFF is not supported",
        ));
    }
    let offsets = dec.get_tag_u64_vec(Tag::StripOffsets).map_err(terr)?;
    let counts = dec.get_tag_u64_vec(Tag::StripByteCounts).map_err(terr)?;
    let tables = orientation::ifd0_bytes(bytes, 347).unwrap_or(&[]);
    // The tables stream without its EOI, then the strip without its SOI.
    let head = tables.strip_suffix(&[0xFF, 0xD9]).unwrap_or(tables);
    let mut data = Vec::with_capacity(width * height * layout.channels());
    for (&off, &len) in offsets.iter().zip(&counts) {
        let strip = usize::try_from(off)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(o, l)| bytes.get(o..o.checked_add(l)?))
            .ok_or_else(|| Error::decode(input, "TIFF strip lies outside the file"))?;
        let stream = if head.is_empty() {
            strip.to_vec()
        } else {
            let body = strip.strip_prefix(&[0xFF, 0xD8]).unwrap_or(strip);
            [head, body].concat()
        };
        if layout == Layout::Rgb && sof_component_ids(&stream).as_deref() != Some(b"RGB") {
            // libjpeg would take components 1, 2, 3 for YCbCr; what libtiff then does is
            // not reproduced.
            return Err(Error::unsupported(
                input,
                "JPEG-compressed RGB TIFF whose strips are not marked RGB",
            ));
        }
        let px = super::jpeg::decode(&stream, input, limits)?;
        let crate::pixels::Samples::U8(rows) = px.samples else {
            return Err(Error::decode(input, "JPEG strip is not 8-bit"));
        };
        if px.width != width || px.layout != layout {
            return Err(Error::decode(input, "JPEG strip does not match the TIFF"));
        }
        data.extend_from_slice(&rows);
        if data.len() >= width * height * layout.channels() {
            break;
        }
    }
    if data.len() != width * height * layout.channels() {
        return Err(Error::decode(
            input,
            "JPEG strips do not add up to the TIFF's height",
        ));
    }
    Ok(Pixels::new_u8(width, height, layout, false, data))
}

/// The component ids of a JPEG stream's frame header (before its first scan).
fn sof_component_ids(b: &[u8]) -> Option<Vec<u8>> {
    // The first frame header decides, even when it is too short to hold its ids.
    super::jpeg::find_segment(b, |marker, seg| {
        matches!(marker, 0xC0..=0xC2).then(|| {
            let n = usize::from(*seg.get(5)?);
            (0..n).map(|c| seg.get(6 + 3 * c).copied()).collect()
        })
    })
    .flatten()
}

/// A palette TIFF, expanded. The `tiff` crate does not read palette images, so the indices are
/// read as gray from a copy whose `PhotometricInterpretation` says BlackIsZero.
fn palette(c: &Ctx) -> Result<Pixels> {
    let (bytes, input, width, height) = (c.bytes, c.input, c.width, c.height);
    let terr = |e| c.err(e);
    let mut patched = bytes.to_vec();
    if !orientation::set_ifd0_short(&mut patched, 262, BLACK_IS_ZERO) {
        return Err(Error::decode(input, "malformed TIFF directory"));
    }
    let mut dec = open(&patched, input)?;
    let bits = match dec.colortype().map_err(terr)? {
        ColorType::Gray(b @ (1 | 2 | 4 | 8)) => b,
        other => {
            return Err(Error::unsupported(
                input,
                format!("palette TIFF with {other:?} indices"),
            ))
        }
    };
    let map = dec.get_tag_u16_vec(Tag::ColorMap).map_err(terr)?;
    let entries = 1usize << bits;
    if map.len() < 3 * entries {
        return Err(Error::decode(input, "TIFF ColorMap is too short"));
    }
    let row = (width * usize::from(bits)).div_ceil(8);
    let packed = read_u8(&mut dec, c, row * height)?;
    let mut data = Vec::with_capacity(width * height * 3);
    for i in packed
        .chunks_exact(row)
        .flat_map(|r| unpack_bits(r, bits, width))
    {
        let i = usize::from(i);
        // ColorMap holds all reds, then all greens, then all blues (Pillow's "RGB;L").
        data.extend((0..3).map(|c| (map[c * entries + i] >> 8) as u8));
    }
    Ok(Pixels::new_u8(width, height, Layout::Rgb, true, data))
}
