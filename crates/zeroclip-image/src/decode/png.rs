//! PNG into Pillow's modes (`PngImagePlugin._MODES`): gray 1-bit → `1`, 2/4/8-bit → `L` (2 and
//! 4-bit scaled by 85 and 17), 16-bit → `I;16`; RGB 8/16 → `RGB`; palette → `P` (expanded here,
//! indices past the palette are black, transparency ignored as `convert("RGB")` does); gray+alpha
//! 8-bit → `LA`, 16-bit → `RGBA` of the gray; RGBA → `RGBA`. 16-bit color keeps the high byte.

use super::{unpack_bits, Limits};
use crate::error::{Error, Result};
use crate::pixels::{Layout, Pixels};
use png::{BitDepth, ColorType, Transformations};

pub(crate) fn decode(bytes: &[u8], input: &str, limits: &Limits) -> Result<Pixels> {
    // The size is in the IHDR chunk that must come first: check it before the decoder reads on.
    if bytes.len() >= 24 && &bytes[12..16] == b"IHDR" {
        let dim = |o: usize| {
            u64::from(u32::from_be_bytes([
                bytes[o],
                bytes[o + 1],
                bytes[o + 2],
                bytes[o + 3],
            ]))
        };
        limits.check(input, dim(16), dim(20))?;
    }
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(bytes),
        png::Limits { bytes: usize::MAX },
    );
    decoder.set_transformations(Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| Error::decode(input, e))?;
    let (width, height) = (reader.info().width as usize, reader.info().height as usize);
    limits.check(input, width as u64, height as u64)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::decode(input, "image too large for this platform"))?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| Error::decode(input, e))?;
    let info = reader.info();
    let line = frame.line_size;
    let rows = || buf.chunks_exact(line).take(height);
    let depth = info.bit_depth;
    let px = match (info.color_type, depth) {
        (ColorType::Grayscale, BitDepth::Sixteen) => {
            let mut data = Vec::with_capacity(width * height);
            for row in rows() {
                data.extend(
                    row[..width * 2]
                        .chunks_exact(2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]])),
                );
            }
            Pixels::new_i16(width, height, data)
        }
        (ColorType::Grayscale, _) => {
            let bits = depth as u8;
            let scale = 255 / ((1u16 << bits) - 1) as u8;
            let mut data = Vec::with_capacity(width * height);
            for row in rows() {
                data.extend(unpack_bits(row, bits, width).map(|v| v * scale));
            }
            Pixels::new_u8(width, height, Layout::L, depth == BitDepth::One, data)
        }
        (ColorType::Indexed, _) => {
            let palette = info.palette.as_deref().unwrap_or(&[]);
            let mut data = Vec::with_capacity(width * height * 3);
            for row in rows() {
                for i in unpack_bits(row, depth as u8, width) {
                    let i = usize::from(i) * 3;
                    data.extend_from_slice(palette.get(i..i + 3).unwrap_or(&[0, 0, 0]));
                }
            }
            Pixels::new_u8(width, height, Layout::Rgb, true, data)
        }
        (color, depth) => {
            // Gray + alpha: Pillow reads it as RGBA with the gray replicated; per channel that
            // is LA. 16-bit samples keep their high byte, as Pillow's 8-bit modes do.
            let layout = match color {
                ColorType::GrayscaleAlpha => Layout::La,
                ColorType::Rgb => Layout::Rgb,
                _ => Layout::Rgba,
            };
            if depth == BitDepth::Sixteen {
                let data = high_bytes(rows(), width * layout.channels());
                Pixels::new_u8(width, height, layout, false, data)
            } else {
                flat(buf, line, width, height, layout)
            }
        }
    };
    Ok(px)
}

fn high_bytes<'a>(rows: impl Iterator<Item = &'a [u8]>, samples: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for row in rows {
        data.extend(row[..samples * 2].iter().step_by(2));
    }
    data
}

/// 8-bit interleaved rows as they are: the decoder's buffer itself when rows are unpadded.
fn flat(mut buf: Vec<u8>, line: usize, width: usize, height: usize, layout: Layout) -> Pixels {
    let n = width * layout.channels();
    if line == n {
        buf.truncate(n * height);
    } else {
        buf = buf
            .chunks_exact(line)
            .take(height)
            .flat_map(|r| r[..n].iter().copied())
            .collect();
    }
    Pixels::new_u8(width, height, layout, false, buf)
}
