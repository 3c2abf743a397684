//! Golden fixtures from the reference (`scripts/make_image_fixtures.py`): for every fixture image,
//! the uint8 crop must equal Pillow + torchvision's exactly, and for the ones with a stored tensor
//! the normalized float32 values must match to float rounding.

use serde_json::Value;
use std::path::{Path, PathBuf};
use zeroclip_image::Preprocess;

fn root() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/image"
    ))
    .to_path_buf()
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("manifest.json")).expect("manifest.json");
    let v: Value = serde_json::from_str(&text).expect("manifest is JSON");
    v["fixtures"].as_array().expect("fixtures list").clone()
}

/// An 8-bit RGB PNG's pixels.
fn read_rgb_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("expected PNG"));
    let mut reader = png::Decoder::new(file).read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight)
    );
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// A little-endian float32 C-order .npy's values.
fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("npy");
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A manifest entry's input file name, resolution, input bytes and the reference's RGB crop
/// named by `expected_key` (with its width and height).
fn load(f: &Value, expected_key: &str) -> (String, u32, Vec<u8>, (u32, u32, Vec<u8>)) {
    let input = f["input"].as_str().unwrap().to_string();
    let n = f["resolution"].as_u64().unwrap() as u32;
    let bytes = std::fs::read(root().join("inputs").join(&input)).unwrap();
    let expected = root()
        .join("expected")
        .join(f[expected_key].as_str().unwrap());
    (input, n, bytes, read_rgb_png(&expected))
}

#[test]
fn uint8_crops_are_identical_to_the_reference() {
    let fixtures = manifest();
    assert!(fixtures.len() >= 25);
    let mut failures = Vec::new();
    for f in &fixtures {
        let (input, n, bytes, (w, h, want)) = load(f, "expected");
        assert_eq!((w, h), (n, n));
        let got = match Preprocess::openai(n).crop_rgb8(&bytes, &input) {
            Ok(img) => img,
            Err(e) => {
                failures.push(format!("{input} (n={n}): error {e}"));
                continue;
            }
        };
        let diffs: Vec<u8> = got
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let differing = diffs.iter().filter(|&&d| d != 0).count();
        if differing != 0 {
            let max = diffs.iter().max().unwrap();
            failures.push(format!(
                "{input} (mode {}, n={n}): {differing} of {} samples differ, max difference {max}",
                f["mode"],
                diffs.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
}

/// JPEGs take a streaming path (decode overlapped with resampling); with EXIF orientation on they
/// take the decode-then-resize path. Without an orientation tag both must equal the reference.
#[test]
fn jpeg_full_decode_path_matches_too() {
    let pre = |n| Preprocess {
        apply_exif_orientation: true,
        ..Preprocess::openai(n)
    };
    let mut checked = 0;
    for f in manifest() {
        let name = f["input"].as_str().unwrap();
        if !name.ends_with(".jpg") || f.get("orientation").is_some() {
            continue;
        }
        let (input, n, bytes, (_, _, want)) = load(&f, "expected");
        assert_eq!(
            pre(n).crop_rgb8(&bytes, &input).unwrap().data,
            want,
            "{input}"
        );
        checked += 1;
    }
    assert!(checked >= 8);
}

/// With the opt-in flag, every fixture carrying an EXIF orientation (JPEG, PNG `eXIf`, WebP
/// `EXIF`) must equal the reference's crop after `ImageOps.exif_transpose`; TIFFs are turned
/// either way, as Pillow's TIFF plugin turns them on load.
#[test]
fn exif_orientation_opt_in_matches_exif_transpose() {
    let mut checked = Vec::new();
    for f in manifest()
        .iter()
        .filter(|f| f.get("expected_exif").is_some())
    {
        let (input, n, bytes, (_, _, want)) = load(f, "expected_exif");
        let pre = Preprocess {
            apply_exif_orientation: true,
            ..Preprocess::openai(n)
        };
        assert_eq!(pre.crop_rgb8(&bytes, &input).unwrap().data, want, "{input}");
        checked.push(input.rsplit('.').next().unwrap().to_owned());
    }
    for ext in ["jpg", "png", "webp", "tiff"] {
        assert!(
            checked.iter().any(|e| e == ext),
            "no {ext} fixture with an orientation"
        );
    }
}

/// Files the reference reads but zeroclip cannot yet read exactly are refused as unsupported,
/// naming the file, rather than given pixels that differ.
#[test]
fn refused_variants_are_unsupported_errors() {
    let text = std::fs::read_to_string(root().join("manifest.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let refused = v["refused"].as_array().expect("refused list");
    assert!(!refused.is_empty());
    for f in refused {
        let input = f["input"].as_str().unwrap();
        let bytes = std::fs::read(root().join("inputs").join(input)).unwrap();
        match Preprocess::openai(48).crop_rgb8(&bytes, input) {
            Err(e @ zeroclip_image::Error::Unsupported { .. }) => {
                assert!(e.to_string().contains(input), "{e}")
            }
            other => panic!("{input}: expected Unsupported, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn normalized_tensors_match_the_reference() {
    let mut checked = 0;
    for f in manifest().iter().filter(|f| f.get("tensor").is_some()) {
        let input = f["input"].as_str().unwrap();
        let n = f["resolution"].as_u64().unwrap() as u32;
        let want = read_npy_f32(&root().join("tensors").join(f["tensor"].as_str().unwrap()));
        let got = Preprocess::openai(n)
            .preprocess_path(&root().join("inputs").join(input))
            .unwrap();
        assert_eq!(got.len(), want.len());
        assert_eq!(got.len(), 3 * (n * n) as usize);
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max <= 1e-6, "{input}: max difference {max}");
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn batch_matches_single_and_keeps_order() {
    let pre = Preprocess::openai(32);
    let dir = root().join("inputs");
    let paths: Vec<PathBuf> = ["photo_rocket.jpg", "does_not_exist.png", "rgba8.png"]
        .iter()
        .map(|p| dir.join(p))
        .collect();
    let out = pre.preprocess_batch(&paths);
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0].as_ref().unwrap(),
        &pre.preprocess_path(&paths[0]).unwrap()
    );
    let err = out[1].as_ref().unwrap_err().to_string();
    assert!(err.contains("does_not_exist.png"), "{err}");
    assert_eq!(
        out[2].as_ref().unwrap(),
        &pre.preprocess_path(&paths[2]).unwrap()
    );
}
