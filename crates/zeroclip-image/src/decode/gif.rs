//! GIF, first frame only, as Pillow opens it: mode `P` (expanded here) when the file has a palette,
//! else `L`. Outside the first frame's rectangle the canvas holds the transparent index if the
//! frame has one, else index 0 — Pillow's `load_prepare` for frame 0.

use super::Limits;
use crate::error::{Error, Result};
use crate::pixels::{Layout, Pixels};
use std::num::NonZeroU64;

pub(crate) fn decode(bytes: &[u8], input: &str, limits: &Limits) -> Result<Pixels> {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let cap = NonZeroU64::new(limits.max_pixels.max(1)).unwrap_or(NonZeroU64::MIN);
    opts.set_memory_limit(gif::MemoryLimit::Bytes(cap));
    let mut dec = opts
        .read_info(std::io::Cursor::new(bytes))
        .map_err(|e| Error::decode(input, e))?;
    let (width, height) = (usize::from(dec.width()), usize::from(dec.height()));
    limits.check(input, width as u64, height as u64)?;
    let global = dec.global_palette().map(<[u8]>::to_vec);
    let frame = dec
        .read_next_frame()
        .map_err(|e| Error::decode(input, e))?
        .ok_or_else(|| Error::decode(input, "GIF has no image"))?;
    let mut canvas = vec![frame.transparent.unwrap_or(0); width * height];
    let (fl, ft, fw) = (
        usize::from(frame.left),
        usize::from(frame.top),
        usize::from(frame.width),
    );
    for (y, row) in frame.buffer.chunks_exact(fw.max(1)).enumerate() {
        let cy = ft + y;
        if cy >= height || fw == 0 {
            break;
        }
        for (x, &v) in row.iter().enumerate() {
            if fl + x < width {
                canvas[cy * width + fl + x] = v;
            }
        }
    }
    let palette = frame.palette.clone().or(global);
    Ok(match palette {
        Some(p) => {
            let mut data = Vec::with_capacity(width * height * 3);
            for &i in &canvas {
                let i = usize::from(i) * 3;
                data.extend_from_slice(p.get(i..i + 3).unwrap_or(&[0, 0, 0]));
            }
            Pixels::new_u8(width, height, Layout::Rgb, true, data)
        }
        None => Pixels::new_u8(width, height, Layout::L, false, canvas),
    })
}
