//! Bad input: every failure is an error naming the input, never a panic, and nothing is allocated
//! for an image over the pixel limit.

use std::path::Path;
use zeroclip_image::{Error, Preprocess};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/image/inputs"
    ))
    .join(name);
    std::fs::read(p).unwrap()
}

fn err(bytes: &[u8], name: &str) -> Error {
    let Err(e) = Preprocess::default().preprocess_bytes(bytes, name) else {
        panic!("{name} ({} bytes) decoded without error", bytes.len())
    };
    assert!(
        e.to_string().contains(name),
        "error does not name the input: {e}"
    );
    e
}

/// A PNG consisting of just a signature and an IHDR chunk for `w`×`h` RGB.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn truncated_files_of_every_format() {
    for name in [
        "photo_rocket.jpg",
        "photo_coffee_444_progressive.jpg",
        "rgba8.png",
        "chelsea_quantized.gif",
        "coffee_lossy.webp",
        "coffee_lossless.webp",
        "chelsea_24bit.bmp",
        "coffee_rgb.tiff",
        "palette.tiff",
        "cmyk.tiff",
        "rgba.tiff",
        "chelsea_ycck.jpg",
    ] {
        let full = fixture(name);
        for cut in [full.len() / 2, full.len() * 9 / 10, 20] {
            let e = err(&full[..cut], name);
            assert!(
                matches!(e, Error::Decode { .. } | Error::Unsupported { .. }),
                "{name}[..{cut}]: {e:?}"
            );
        }
    }
}

#[test]
fn corrupt_data() {
    let mut jpeg = fixture("photo_camera_gray.jpg");
    let mid = jpeg.len() / 3;
    jpeg[mid..mid + 200].fill(0xFF);
    // libjpeg recovers from some corruption (as Pillow does); it must not panic either way.
    let _ = Preprocess::default().preprocess_bytes(&jpeg, "corrupt.jpg");
    let mut png = fixture("gray8.png");
    let mid = png.len() / 2;
    png[mid..mid + 50].fill(0x55);
    assert!(matches!(err(&png, "corrupt.png"), Error::Decode { .. }));
}

#[test]
fn empty_and_unsupported() {
    assert!(matches!(err(b"", "empty.png"), Error::Decode { .. }));
    assert!(matches!(
        err(b"hello, world: not an image", "notes.txt"),
        Error::Unsupported { .. }
    ));
    assert!(matches!(
        err(b"\x00\x00\x01\x00 fake ico", "icon.ico"),
        Error::Unsupported { .. }
    ));
}

#[test]
fn zero_size_image() {
    // The size is checked from the header, before the decoder (which would only say "invalid
    // header") reads on: the error names the input and says the size is zero.
    for (w, h) in [(0, 10), (10, 0), (0, 0)] {
        let e = err(&png_header(w, h), "zero.png");
        assert!(
            matches!(e, Error::ZeroSize { width, height, .. } if (width, height) == (u64::from(w), u64::from(h))),
            "{e:?}"
        );
        assert!(e.to_string().contains("zero size"), "{e}");
    }
    // The other formats, from minimal headers announcing a zero width.
    let mut gif = b"GIF89a\0\0\x0a\0\0\0\0".to_vec();
    gif.extend_from_slice(b",\0\0\0\0\0\0\x0a\0\0\x02\x02\x4c\x01\0;");
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&62u32.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&0i32.to_le_bytes());
    bmp.extend_from_slice(&2i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    bmp.extend_from_slice(&[0; 8]);
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&4u16.to_le_bytes());
    for (tag, value) in [(256u16, 0u32), (257, 2), (258, 8), (262, 1)] {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&value.to_le_bytes());
    }
    tiff.extend_from_slice(&[0; 4]);
    for (bytes, name) in [(gif, "zero.gif"), (bmp, "zero.bmp"), (tiff, "zero.tiff")] {
        let e = err(&bytes, name);
        assert!(
            matches!(e, Error::ZeroSize { width: 0, .. }),
            "{name}: {e:?}"
        );
        assert!(e.to_string().contains("zero size"), "{e}");
    }
}

#[test]
fn decompression_bomb_is_refused_from_the_header() {
    // 20000 x 20000 = 400 M pixels announced by a 33-byte file: refused before allocating.
    match err(&png_header(20_000, 20_000), "bomb.png") {
        Error::TooManyPixels { pixels, limit, .. } => {
            assert_eq!(pixels, 400_000_000);
            assert_eq!(limit, 178_956_970);
        }
        e => panic!("{e:?}"),
    }
    // The limit is configurable, and applies to every format.
    let pre = Preprocess {
        max_pixels: 9_000,
        ..Preprocess::default()
    };
    for name in [
        "photo_rocket.jpg",
        "rgba8.png",
        "chelsea_quantized.gif",
        "coffee_lossy.webp",
        "chelsea_24bit.bmp",
        "coffee_rgb.tiff",
        "palette.tiff",
        "bilevel.tiff",
    ] {
        let e = pre.preprocess_bytes(&fixture(name), name).unwrap_err();
        assert!(
            matches!(e, Error::TooManyPixels { limit: 9_000, .. }),
            "{name}: {e:?}"
        );
    }
}

/// An uncompressed one-strip gray TIFF, `w`×`h` at `bits` per sample, in the given byte order.
fn gray_tiff(w: u16, h: u16, bits: u16, big_endian: bool) -> Vec<u8> {
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let row = (usize::from(w) * usize::from(bits)).div_ceil(8);
    let strip = row * usize::from(h);
    let tags: [(u16, u32); 7] = [
        (256, u32::from(w)),
        (257, u32::from(h)),
        (258, u32::from(bits)),
        (262, 1),
        (273, 8 + 2 + 7 * 12 + 4),
        (278, u32::from(h)),
        (279, strip as u32),
    ];
    let mut t = if big_endian {
        b"MM\0*".to_vec()
    } else {
        b"II*\0".to_vec()
    };
    t.extend_from_slice(&u32b(8));
    t.extend_from_slice(&u16b(tags.len() as u16));
    for (tag, value) in tags {
        t.extend_from_slice(&u16b(tag));
        t.extend_from_slice(&u16b(4));
        t.extend_from_slice(&u32b(1));
        t.extend_from_slice(&u32b(value));
    }
    t.extend_from_slice(&[0; 4]);
    t.extend((0..strip).map(|i| (i * 37) as u8));
    t
}

#[test]
fn tiff_variants_without_a_fixture_are_refused() {
    // 8-bit little-endian gray decodes (the builder is sound) ...
    Preprocess::default()
        .preprocess_bytes(&gray_tiff(4, 3, 8, false), "gray8.tiff")
        .unwrap();
    // ... but 4-bit gray and big-endian 16-bit gray (Pillow's I;16B) are refused, not guessed.
    for (bytes, name) in [
        (gray_tiff(4, 3, 4, false), "gray4.tiff"),
        (gray_tiff(4, 3, 16, true), "gray16_be.tiff"),
    ] {
        assert!(
            matches!(err(&bytes, name), Error::Unsupported { .. }),
            "{name}"
        );
    }
}

#[test]
fn zero_resolution_is_a_config_error() {
    let pre = Preprocess::openai(0);
    assert!(matches!(
        pre.preprocess_bytes(&fixture("gray8.png"), "gray8.png"),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn missing_file_is_an_io_error() {
    let e = Preprocess::default()
        .preprocess_path(Path::new("/nonexistent/x.jpg"))
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("/nonexistent/x.jpg"));
}

#[test]
fn exif_orientation_is_opt_in() {
    let bytes = fixture("photo_astronaut_exif6.jpg");
    let plain = Preprocess::default();
    let rotated = Preprocess {
        apply_exif_orientation: true,
        ..Preprocess::default()
    };
    let a = plain.crop_rgb8(&bytes, "exif").unwrap();
    let b = rotated.crop_rgb8(&bytes, "exif").unwrap();
    assert_ne!(a.data, b.data);
}

/// `path` read on a thread: the answer must come (a blocking open would hang the test, not fail it).
#[cfg(unix)]
fn preprocess_path_answers(path: &Path) -> zeroclip_image::Result<Vec<f32>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || tx.send(Preprocess::default().preprocess_path(&p)).unwrap());
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("reading the path never returned")
}

#[cfg(unix)]
#[test]
fn devices_and_fifos_are_refused_unread_and_the_batch_goes_on() {
    // /dev/zero was read until memory ran out; a FIFO blocked the batch forever.
    let err = preprocess_path_answers(Path::new("/dev/zero")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("/dev/zero"), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let fifo = std::env::temp_dir().join(format!("zeroclip-image-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()));
    let err = preprocess_path_answers(&fifo).unwrap_err();
    assert!(err.to_string().contains("a FIFO"), "{err}");
    let good = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/model/tiny.png"
    ));
    let results = Preprocess::default().preprocess_batch(&[fifo.clone(), good.to_path_buf()]);
    std::fs::remove_file(&fifo).unwrap();
    assert!(results[0].is_err());
    assert_eq!(results[1].as_ref().unwrap().len(), 3 * 224 * 224);
}
