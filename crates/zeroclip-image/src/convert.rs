//! Pillow's mode conversions (`libImaging/Convert.c`) that the reference pipeline runs: `RGBA`→`RGBa`
//! and `LA`→`La` (premultiply) and back around the resize, then `convert("RGB")` after the crop.
//!
//! Reproduced exactly: premultiplication with `MULDIV255` (`(a*b + 128 + ((a*b + 128) >> 8)) >> 8`),
//! un-premultiplication as `min(255, 255 * c / alpha)` in integer division (alpha 0 and 255 left
//! as is); RGB conversion drops alpha without compositing, replicates gray, maps `CMYK` as
//! `nk - nk*c/255` with `nk = 255 - k`, and maps `I;16` to its value when it fits a byte, else 255.

use crate::pixels::Layout;

#[inline]
fn muldiv255(a: u32, b: u32) -> u8 {
    let t = a * b + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Premultiplies color by alpha in place (`rgbA2rgba`, `lA2la`); alpha is the last channel.
pub(crate) fn premultiply(data: &mut [u8], channels: usize) {
    for px in data.chunks_exact_mut(channels) {
        let alpha = u32::from(px[channels - 1]);
        for c in &mut px[..channels - 1] {
            *c = muldiv255(u32::from(*c), alpha);
        }
    }
}

/// Undoes [`premultiply`] in place (`rgba2rgbA`, `la2lA`).
pub(crate) fn unpremultiply(data: &mut [u8], channels: usize) {
    for px in data.chunks_exact_mut(channels) {
        let alpha = u32::from(px[channels - 1]);
        if alpha != 0 && alpha != 255 {
            for c in &mut px[..channels - 1] {
                *c = ((255 * u32::from(*c)) / alpha).min(255) as u8;
            }
        }
    }
}

/// Pillow's `convert("RGB")` for 8-bit layouts; returns interleaved RGB.
pub(crate) fn to_rgb_u8(data: &[u8], layout: Layout) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / layout.channels() * 3);
    match layout {
        Layout::Rgb => out.extend_from_slice(data),
        Layout::L => data.iter().for_each(|&v| out.extend_from_slice(&[v, v, v])),
        Layout::La => data
            .chunks_exact(2)
            .for_each(|p| out.extend_from_slice(&[p[0], p[0], p[0]])),
        Layout::Rgba => data
            .chunks_exact(4)
            .for_each(|p| out.extend_from_slice(&p[..3])),
        Layout::Cmyk => data.chunks_exact(4).for_each(|p| {
            let nk = 255 - u32::from(p[3]);
            for &c in &p[..3] {
                // nk - MULDIV255(c, nk) is never negative, so Pillow's CLIP8 is a no-op here.
                out.push((nk - u32::from(muldiv255(u32::from(c), nk))) as u8);
            }
        }),
        Layout::I16 => unreachable!("I;16 samples are 16-bit"),
    }
    out
}

/// Pillow's `I16_RGB`: the value when its high byte is 0, else white.
pub(crate) fn i16_to_rgb(data: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 3);
    for &v in data {
        let g = if v > 255 { 255 } else { v as u8 };
        out.extend_from_slice(&[g, g, g]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premultiply_roundtrip_is_lossy_like_pillow() {
        let mut px = vec![200, 100, 3, 128, 10, 20, 30, 0, 1, 2, 3, 255];
        premultiply(&mut px, 4);
        assert_eq!(px, vec![100, 50, 2, 128, 0, 0, 0, 0, 1, 2, 3, 255]);
        unpremultiply(&mut px, 4);
        // 255 * 100 / 128 = 199 (integer division), 255 * 2 / 128 = 3.
        assert_eq!(px, vec![199, 99, 3, 128, 0, 0, 0, 0, 1, 2, 3, 255]);
    }

    #[test]
    fn cmyk_and_i16() {
        assert_eq!(
            to_rgb_u8(&[0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255], Layout::Cmyk),
            vec![255, 255, 255, 0, 255, 255, 0, 0, 0]
        );
        assert_eq!(i16_to_rgb(&[7, 256]), vec![7, 7, 7, 255, 255, 255]);
    }
}
