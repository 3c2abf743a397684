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
    let e = err(&png_header(0, 10), "zero.png");
    // The PNG decoder rejects a zero dimension in the header itself.
    assert!(
        matches!(e, Error::Decode { .. } | Error::ZeroSize { .. }),
        "{e:?}"
    );
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
        max_pixels: 10_000,
        ..Preprocess::default()
    };
    for name in [
        "photo_rocket.jpg",
        "rgba8.png",
        "chelsea_quantized.gif",
        "coffee_lossy.webp",
        "chelsea_24bit.bmp",
    ] {
        let e = pre.preprocess_bytes(&fixture(name), name).unwrap_err();
        assert!(
            matches!(e, Error::TooManyPixels { limit: 10_000, .. }),
            "{name}: {e:?}"
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
