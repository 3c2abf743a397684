//! EXIF orientation, as Pillow's `ImageOps.exif_transpose`: orientation 2 mirrors, 3 rotates
//! 180°, 4 flips, 5 transposes, 6 rotates 90° clockwise, 7 transverses, 8 rotates 90°
//! counter-clockwise.
//!
//! The reference applies it to TIFF only (Pillow's TIFF plugin turns the image as it loads it;
//! see `decode::tiff`); for JPEG, PNG and WebP it is opt-in. The tag is read where Pillow's
//! `getexif` finds it: a JPEG's APP1 `Exif` segment, a PNG's `eXIf` chunk, a WebP's `EXIF`
//! chunk (each TIFF-structured, with or without an `Exif\0\0` prefix), a TIFF's first IFD;
//! without an EXIF orientation, the first `tiff:Orientation` of the XMP packet (JPEG APP1, PNG
//! `tEXt`/uncompressed `iTXt`, WebP `XMP ` chunk). Not read: ImageMagick's PNG
//! "Raw profile type exif" text and compressed `iTXt`.

use crate::pixels::{Pixels, Samples};

/// The orientation `ImageOps.exif_transpose` applies to a JPEG, PNG or WebP file, if any: the
/// EXIF tag, or when EXIF has none, the XMP `tiff:Orientation` (Pillow's `getexif` fallback).
/// TIFF and the other formats give `None`: a TIFF's orientation is applied when it is decoded,
/// as Pillow does.
pub(crate) fn exif_orientation(bytes: &[u8]) -> Option<u16> {
    let (exif, xmp) = if bytes.starts_with(&[0xFF, 0xD8]) {
        let app1 = |prefix| crate::decode::jpeg::app1(bytes, prefix);
        (app1(b"Exif\0\0"), app1(b"http://ns.adobe.com/xap/1.0/\0"))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        (png_chunk(bytes, b"eXIf"), png_xmp(bytes))
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        (webp_chunk(bytes, b"EXIF"), webp_chunk(bytes, b"XMP "))
    } else {
        return None;
    };
    exif.and_then(tiff_orientation)
        .or_else(|| xmp.and_then(xmp_orientation))
}

/// The data of a PNG's first chunk of `kind`, wherever it is (Pillow loads the image to find
/// an `eXIf` after the image data).
fn png_chunk<'b>(b: &'b [u8], kind: &[u8]) -> Option<&'b [u8]> {
    png_chunks(b).find(|(k, _)| *k == kind).map(|(_, d)| d)
}

fn png_chunks(b: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut i = 8;
    std::iter::from_fn(move || {
        let head = b.get(i..i + 8)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let data = b.get(i + 8..(i + 8).checked_add(len)?)?;
        if &head[4..8] == b"IEND" {
            return None;
        }
        i += 12 + len;
        Some((&head[4..8], data))
    })
}

/// The XMP packet of a PNG: the text of a `tEXt` or uncompressed `iTXt` chunk with keyword
/// `XML:com.adobe.xmp`, as Pillow puts it in `info`. (A compressed `iTXt` is not read.)
fn png_xmp(b: &[u8]) -> Option<&[u8]> {
    let key = b"XML:com.adobe.xmp\0";
    png_chunks(b).find_map(|(kind, data)| {
        let rest = data.strip_prefix(&key[..])?;
        match kind {
            b"tEXt" => Some(rest),
            // compression flag, method, language tag\0, translated keyword\0, text
            b"iTXt" if rest.first() == Some(&0) => {
                let mut fields = rest.get(2..)?.splitn(3, |&c| c == 0);
                fields.next()?;
                fields.next()?;
                fields.next()
            }
            _ => None,
        }
    })
}

/// The data of a WebP's first `kind` chunk (RIFF chunks are padded to an even size).
fn webp_chunk<'b>(b: &'b [u8], kind: &[u8]) -> Option<&'b [u8]> {
    let mut i = 12;
    while let Some(head) = b.get(i..i + 8) {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let data = b.get(i + 8..(i + 8).checked_add(len)?)?;
        if &head[..4] == kind {
            return Some(data);
        }
        i += 8 + len + (len & 1);
    }
    None
}

/// The byte order and offset of the first-IFD entry for `tag` in TIFF-structured data.
fn ifd0_entry(t: &[u8], tag: u16) -> Option<(bool, usize)> {
    let le = match t.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let ifd = read_u32(t, 4, le)? as usize;
    let count = usize::from(read_u16(t, ifd, le)?);
    (0..count)
        .map(|e| ifd + 2 + e * 12)
        .find(|&entry| read_u16(t, entry, le) == Some(tag))
        .map(|entry| (le, entry))
}

fn read_u16(t: &[u8], o: usize, le: bool) -> Option<u16> {
    let b: [u8; 2] = t.get(o..o + 2)?.try_into().ok()?;
    Some(if le {
        u16::from_le_bytes(b)
    } else {
        u16::from_be_bytes(b)
    })
}

fn read_u32(t: &[u8], o: usize, le: bool) -> Option<u32> {
    let b: [u8; 4] = t.get(o..o + 4)?.try_into().ok()?;
    Some(if le {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    })
}

/// The orientation tag (0x0112) of TIFF-structured data (an EXIF block or a TIFF file), if any.
pub(crate) fn tiff_orientation(t: &[u8]) -> Option<u16> {
    let t = t.strip_prefix(b"Exif\0\0").unwrap_or(t);
    let (le, entry) = ifd0_entry(t, 0x0112)?;
    // A SHORT value sits in the entry's first two value bytes.
    read_u16(t, entry + 8, le)
}

/// The SHORT or LONG value of `tag` in a TIFF's first IFD.
pub(crate) fn ifd0_uint(t: &[u8], tag: u16) -> Option<u32> {
    let (le, entry) = ifd0_entry(t, tag)?;
    match read_u16(t, entry + 2, le)? {
        3 => read_u16(t, entry + 8, le).map(u32::from),
        4 => read_u32(t, entry + 8, le),
        _ => None,
    }
}

/// The bytes of a BYTE or UNDEFINED `tag` (such as XMP, 700) in a TIFF's first IFD.
pub(crate) fn ifd0_bytes(t: &[u8], tag: u16) -> Option<&[u8]> {
    let (le, entry) = ifd0_entry(t, tag)?;
    if !matches!(read_u16(t, entry + 2, le)?, 1 | 7) {
        return None;
    }
    let count = read_u32(t, entry + 4, le)? as usize;
    let start = if count <= 4 {
        entry + 8
    } else {
        read_u32(t, entry + 8, le)? as usize
    };
    t.get(start..start.checked_add(count)?)
}

/// The orientation Pillow's `getexif` takes from XMP when EXIF has none: the first
/// `tiff:Orientation="N"` or `tiff:Orientation>N`.
pub(crate) fn xmp_orientation(xmp: &[u8]) -> Option<u16> {
    let key = b"tiff:Orientation";
    xmp.windows(key.len())
        .enumerate()
        .filter(|(_, w)| *w == key)
        .find_map(|(at, _)| match xmp.get(at + key.len()..)? {
            [b'=', b'"', d, ..] | [b'>', d, ..] if d.is_ascii_digit() => Some(u16::from(d - b'0')),
            _ => None,
        })
}

/// Overwrites the SHORT value of `tag` in a TIFF's first IFD; false when it has no such entry.
pub(crate) fn set_ifd0_short(t: &mut [u8], tag: u16, value: u16) -> bool {
    let Some((le, entry)) = ifd0_entry(t, tag) else {
        return false;
    };
    let bytes = if le {
        value.to_le_bytes()
    } else {
        value.to_be_bytes()
    };
    match t.get_mut(entry + 8..entry + 10) {
        Some(slot) => {
            slot.copy_from_slice(&bytes);
            true
        }
        None => false,
    }
}

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

    const EXIF6: &[u8] = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0";

    #[test]
    fn orientation_in_png_and_webp_chunks() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [
            (&b"IHDR"[..], &[0u8; 13][..]),
            (b"eXIf", EXIF6),
            (b"IEND", b""),
        ] {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(kind);
            png.extend_from_slice(data);
            png.extend_from_slice(&[0; 4]);
        }
        assert_eq!(exif_orientation(&png), Some(6));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
        webp.extend_from_slice(&10u32.to_le_bytes());
        webp.extend_from_slice(&[0; 10]);
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend_from_slice(EXIF6);
        exif.push(0); // odd length: the chunk is padded
        webp.extend_from_slice(b"EXIF");
        webp.extend_from_slice(&(exif.len() as u32).to_le_bytes());
        webp.extend_from_slice(&exif);
        assert_eq!(exif_orientation(&webp), Some(6));
        // A TIFF's own orientation is applied at decode, never here.
        assert_eq!(exif_orientation(EXIF6), None);
        assert_eq!(tiff_orientation(EXIF6), Some(6));
        let mut t = EXIF6.to_vec();
        assert!(set_ifd0_short(&mut t, 0x0112, 3));
        assert_eq!(tiff_orientation(&t), Some(3));
        assert!(!set_ifd0_short(&mut t, 262, 1));
    }

    #[test]
    fn orientation_in_xmp() {
        assert_eq!(xmp_orientation(br#"<d tiff:Orientation="6"/>"#), Some(6));
        assert_eq!(
            xmp_orientation(b"<tiff:Orientation>3</tiff:Orientation>"),
            Some(3)
        );
        assert_eq!(xmp_orientation(b"<tiff:Orientation/>"), None);
        // The first occurrence that matches, as `re.search` finds it.
        assert_eq!(
            xmp_orientation(b"<tiff:Orientation/><tiff:Orientation>8<"),
            Some(8)
        );
        assert_eq!(xmp_orientation(b"no orientation"), None);
    }
}
