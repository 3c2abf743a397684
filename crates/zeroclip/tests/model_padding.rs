//! `encode_text` computes each sequence only up to its own EOT (sequences stacked without padding
//! on the CPU); under the causal mask this must equal
//! the reference's computation over all 77 positions.

mod model_common;

use candle_core::{Device, Tensor};
use model_common::{expected, fixture, max_abs_diff};
use zeroclip::Clip;

fn check(path: &str, ids: &Tensor) -> f32 {
    let model = Clip::load(&fixture(path), &Device::Cpu).unwrap();
    let trimmed = model.encode_text(ids).unwrap();
    let full = model.encode_text_all_positions(ids).unwrap();
    let d = max_abs_diff(&trimmed, &full);
    println!("{path}: trimmed vs all positions max |Δ| = {d:e}");
    // The same sums with fewer masked-out (exactly zero) terms: only the summation order of the
    // softmax and of attention @ V over 77 vs. fewer positions differs, a few ulps.
    assert!(
        d <= 1e-5,
        "{path}: trimmed and full text encodings differ by {d}"
    );
    d
}

#[test]
fn trimming_equals_all_positions_for_every_tower_kind() {
    let ids = &expected("vit_jit")["input_ids"];
    check("vit_jit.pt", ids);
    check("rn_jit.pt", ids);
    check("hf_gelu_bin", ids);
    check("openclip_vit_gelu", ids);
    check("hf_real_vocab", &expected("hf_real_vocab")["input_ids"]);
}

#[test]
fn one_short_row_alone_and_one_full_length_row() {
    let path = "hf_real_vocab";
    let short = zeroclip::tokenize(&["a cat"], false).unwrap();
    check(path, &short);
    let long_text = "a photo of a cat ".repeat(30);
    let long = zeroclip::tokenize(&[long_text.as_str(), "a dog"], true).unwrap();
    check(path, &long);
}

#[test]
fn rows_shorter_than_the_context_are_accepted() {
    // The trimmed computation never looks past the last EOT, so padding may be cut by the caller.
    let model = Clip::load(&fixture("hf_real_vocab"), &Device::Cpu).unwrap();
    let ids = zeroclip::tokenize(&["a diagram", "a dog"], false).unwrap();
    let cut = ids.narrow(1, 0, 8).unwrap();
    let d = max_abs_diff(
        &model.encode_text(&ids).unwrap(),
        &model.encode_text(&cut).unwrap(),
    );
    assert_eq!(d, 0.0);
}
