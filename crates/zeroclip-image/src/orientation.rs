//! Opt-in EXIF orientation, as Pillow's `ImageOps.exif_transpose` (the reference never applies
//! it): orientation 2 mirrors, 3 rotates 180°, 4 flips, 5 transposes, 6 rotates 90° clockwise,
//! 7 transverses, 8 rotates 90° counter-clockwise.

use crate::pixels::{Pixels, Samples};

/// `px` transformed for EXIF orientation `o`; other values leave it unchanged.
pub(crate) fn apply(px: Pixels, o: u16) -> Pixels {
    if !(2..=8).contains(&o) {
        return px;
    }
    let (w, h) = (px.width, px.height);
    let swap = o >= 5;
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    let source = |ox: usize, oy: usize| -> (usize, usize) {
        match o {
            2 => (w - 1 - ox, oy),
            3 => (w - 1 - ox, h - 1 - oy),
            4 => (ox, h - 1 - oy),
            5 => (oy, ox),
            6 => (oy, h - 1 - ox),
            7 => (w - 1 - oy, h - 1 - ox),
            _ => (w - 1 - oy, ox),
        }
    };
    let ch = px.layout.channels();
    let samples = match &px.samples {
        Samples::U8(d) => Samples::U8(remap(d, ch, ow, oh, w, &source)),
        Samples::U16(d) => Samples::U16(remap(d, 1, ow, oh, w, &source)),
    };
    Pixels {
        width: ow,
        height: oh,
        samples,
        ..px
    }
}

fn remap<T: Copy>(
    d: &[T],
    ch: usize,
    ow: usize,
    oh: usize,
    w: usize,
    source: &dyn Fn(usize, usize) -> (usize, usize),
) -> Vec<T> {
    let mut out = Vec::with_capacity(d.len());
    for oy in 0..oh {
        for ox in 0..ow {
            let (sx, sy) = source(ox, oy);
            out.extend_from_slice(&d[(sy * w + sx) * ch..][..ch]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixels::Layout;

    fn img() -> Pixels {
        // 3 wide, 2 high: 0 1 2 / 3 4 5
        Pixels::new_u8(3, 2, Layout::L, false, vec![0, 1, 2, 3, 4, 5])
    }

    fn data(p: &Pixels) -> Vec<u8> {
        match &p.samples {
            Samples::U8(d) => d.clone(),
            Samples::U16(_) => unreachable!(),
        }
    }

    #[test]
    fn rotations() {
        assert_eq!(data(&apply(img(), 2)), vec![2, 1, 0, 5, 4, 3]);
        assert_eq!(data(&apply(img(), 3)), vec![5, 4, 3, 2, 1, 0]);
        // 90° clockwise: the left column, bottom to top, becomes the top row.
        let r = apply(img(), 6);
        assert_eq!((r.width, r.height), (2, 3));
        assert_eq!(data(&r), vec![3, 0, 4, 1, 5, 2]);
        assert_eq!(data(&apply(img(), 8)), vec![2, 5, 1, 4, 0, 3]);
    }
}
