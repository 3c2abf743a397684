//! `--precision bf16` and `int8` against fp32 on the tiny fixture checkpoints (ViT and ResNet, OpenAI,
//! transformers and open_clip layouts), on every GEMM kernel (`ZEROCLIP_KERNEL`): the image
//! embeddings of `zeroclip embed` (and the text embeddings, for the fixture with the real
//! vocabulary) stay within a cosine of 0.9995 (bf16) or 0.998 (int8, the target) of
//! fp32's, and differ from them (the mode is applied).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/model");
const LABELS: [&str; 3] = ["a diagram", "a dog", "a cat"];
/// Each precision and the smallest cosine to fp32 it must keep.
const PRECISIONS: [(&str, f64); 2] = [("bf16", 0.9995), ("int8", 0.998)];
/// The fixture whose tokenizer has the real vocabulary (the others' have 200 tokens).
const REAL_VOCAB: &str = "hf_real_vocab";

fn embed(model: &str, kernel: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .arg("embed")
        .args(["--model", &format!("{FIXTURES}/{model}")])
        .args(args)
        .env("ZEROCLIP_KERNEL", kernel)
        .output()
        .unwrap()
}

/// Rows of a float32 C-order 2-D `.npy` file.
fn read_npy(path: &Path) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    let cols: usize = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.split(',').nth(1))
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    let data: Vec<f32> = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    data.chunks(cols).map(<[f32]>::to_vec).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The embeddings of `tiny.png` and of [`LABELS`] in `precision` with `kernel`.
fn embeddings(model: &str, kernel: &str, precision: &str, dir: &Path) -> Vec<Vec<f32>> {
    let png = format!("{FIXTURES}/tiny.png");
    let (images, texts) = (dir.join("images.npy"), dir.join("texts.npy"));
    let (i, t) = (images.display().to_string(), texts.display().to_string());
    let mut runs = vec![vec![png.as_str(), "-o", &i]];
    let with_text = model == REAL_VOCAB;
    if with_text {
        let mut text_args = vec!["-o", t.as_str(), "--text"];
        text_args.extend(LABELS);
        runs.push(text_args);
    }
    for args in runs {
        let mut all = vec!["--precision", precision];
        all.extend(args);
        let out = embed(model, kernel, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{model} {kernel}: {stderr}");
    }
    let mut rows = read_npy(&images);
    if with_text {
        rows.extend(read_npy(&texts));
    }
    rows
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zeroclip-precision-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bf16_and_int8_stay_within_their_cosine_targets_on_every_kernel() {
    let dir = temp_dir("modes");
    for model in ["vit_zip.pt", "rn_jit.pt", REAL_VOCAB, "openclip_vit_gelu"] {
        let fp32 = embeddings(model, "native", "fp32", &dir);
        // int8 text rows of the SIMD classes: the text tower keeps ±127 weight codes on every
        // class (the image tower's narrow on `vpmaddubsw` ones), and its sums are exact.
        let mut int8_text: Option<(&str, Vec<Vec<f32>>)> = None;
        for kernel in [
            "native",
            "avx512-vnni",
            "avx512",
            "avx2-vnni",
            "avx2",
            "portable",
            "candle",
        ] {
            for (precision, min_cosine) in PRECISIONS {
                let got = embeddings(model, kernel, precision, &dir);
                assert_eq!(got.len(), fp32.len());
                let mut differs = false;
                for (row, (g, f)) in got.iter().zip(&fp32).enumerate() {
                    let c = cosine(g, f);
                    assert!(
                        c >= min_cosine,
                        "{model} {kernel} {precision} row {row}: {c}"
                    );
                    differs |= g != f;
                }
                assert!(
                    differs,
                    "{model} {kernel}: {precision} gave the fp32 numbers"
                );
                let simd = !matches!(kernel, "portable" | "candle");
                if model == REAL_VOCAB && precision == "int8" && simd {
                    let text = got[got.len() - LABELS.len()..].to_vec();
                    match &int8_text {
                        None => int8_text = Some((kernel, text)),
                        Some((first, want)) => assert!(
                            &text == want,
                            "int8 text embeddings under {kernel} differ from {first}'s"
                        ),
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_precision_is_a_usage_error() {
    let png = format!("{FIXTURES}/tiny.png");
    let out = embed("vit_zip.pt", "avx2", &["--precision", "int4", &png]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("int4") && stderr.contains("fp32, bf16, int8"),
        "{stderr}"
    );
}
