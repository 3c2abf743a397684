//! Helpers shared by the model tests: fixture paths, expected outputs, max |Δ|, and the
//! fidelity check of a fixture against the reference's outputs.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use zeroclip::Clip;

/// Embedding tolerance of the fidelity tests (issue 4).
pub const EMBED_TOL: f32 = 1e-4;
/// Logit tolerance of the fidelity tests (issue 4).
pub const LOGIT_TOL: f32 = 1e-3;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/model"
    ))
    .join(name)
}

/// `<name>.expected.safetensors`: the fixed inputs and the reference's outputs.
pub fn expected(name: &str) -> HashMap<String, Tensor> {
    let path = fixture(&format!("{name}.expected.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// max |a - b| over all elements; the shapes must agree.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Loads `path`, runs the fixture's inputs and compares; returns the max |Δ| seen per output.
pub fn check_fixture(name: &str, path: &str) -> (f32, f32, f32) {
    let model =
        Clip::load(&fixture(path), &Device::Cpu).unwrap_or_else(|e| panic!("loading {path}: {e}"));
    let exp = expected(name);
    let image = model.encode_image(&exp["pixels"]).unwrap();
    let text = model.encode_text(&exp["input_ids"]).unwrap();
    let (per_image, per_text) = model.forward(&exp["pixels"], &exp["input_ids"]).unwrap();
    let d_img = max_abs_diff(&image, &exp["image_embeds"]);
    let d_txt = max_abs_diff(&text, &exp["text_embeds"]);
    let d_log = max_abs_diff(&per_image, &exp["logits_per_image"]);
    let d_log_t = max_abs_diff(&per_text, &exp["logits_per_image"].t().unwrap());
    println!("{name}: max |Δ| image {d_img:.3e}, text {d_txt:.3e}, logits {d_log:.3e}");
    assert!(
        d_img <= EMBED_TOL,
        "{name}: image embeddings differ by {d_img}"
    );
    assert!(
        d_txt <= EMBED_TOL,
        "{name}: text embeddings differ by {d_txt}"
    );
    assert!(
        d_log <= LOGIT_TOL,
        "{name}: logits_per_image differ by {d_log}"
    );
    assert!(
        d_log_t <= LOGIT_TOL,
        "{name}: logits_per_text differ by {d_log_t}"
    );
    (d_img, d_txt, d_log)
}
