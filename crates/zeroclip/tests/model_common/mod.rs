//! Helpers shared by the model tests: fixture paths, expected outputs, max |Δ|.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

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
