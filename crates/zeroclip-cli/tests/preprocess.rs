//! `zeroclip preprocess`: the written .npy holds exactly the reference tensor stored by
//! `scripts/make_image_fixtures.py`, and bad inputs exit with code 1 and a message naming them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/image"
    ))
    .to_path_buf()
}

fn npy_f32(bytes: &[u8]) -> (String, Vec<f32>) {
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "header must be padded to 64 bytes");
    let header = String::from_utf8(bytes[10..10 + len].to_vec()).unwrap();
    let data = bytes[10 + len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (header, data)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zeroclip-preprocess-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn writes_the_reference_tensor() {
    let out = tmp("rocket.npy");
    let status = Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .arg("preprocess")
        .arg(fixtures().join("inputs/photo_rocket.jpg"))
        .args(["--resolution", "64", "--output"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let (header, got) = npy_f32(&std::fs::read(&out).unwrap());
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'shape': (3, 64, 64)"),
        "{header}"
    );
    let (_, want) =
        npy_f32(&std::fs::read(fixtures().join("tensors/photo_rocket_jpg_at64.npy")).unwrap());
    assert_eq!(got.len(), want.len());
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-6, "max difference {max}");
}

#[test]
fn bad_image_exits_1_naming_it() {
    let bad = tmp("not_an_image.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .arg("preprocess")
        .arg(&bad)
        .arg("--output")
        .arg(tmp("never.npy"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not_an_image.png"), "{stderr}");
    assert!(!tmp("never.npy").exists());
}

#[test]
fn missing_output_argument_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .args(["preprocess", "x.png"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
