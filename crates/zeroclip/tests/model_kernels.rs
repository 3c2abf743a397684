//! The fidelity checks of `model_fidelity.rs` (the reference's outputs for the tiny fixture
//! checkpoints, |Δ| ≤ 1e-4 on embeddings, ≤ 1e-3 on logits) under the narrow kernel classes a
//! machine with SIMD does not pick by itself: `ZEROCLIP_KERNEL=portable` (the portable loops)
//! and `candle` (the f32 products through the `gemm` crate, as on aarch64). The kernel is
//! chosen once per process, so each class runs in a child process of this test binary.

mod model_common;

use candle_core::Device;
use model_common::{expected, fixture, max_abs_diff, EMBED_TOL, LOGIT_TOL};
use std::process::Command;
use zeroclip::Clip;

/// Set in the child processes: the class they run under.
const CHILD: &str = "ZEROCLIP_TEST_KERNEL_CHILD";
const TEST: &str = "the_narrow_kernel_classes_match_the_reference";

/// Loads the fixture `name` and compares its outputs to the reference's.
fn check(name: &str, file: &str) {
    let model = Clip::load(&fixture(file), &Device::Cpu).unwrap();
    let exp = expected(name);
    let image = model.encode_image(&exp["pixels"]).unwrap();
    let text = model.encode_text(&exp["input_ids"]).unwrap();
    let (per_image, _) = model.forward(&exp["pixels"], &exp["input_ids"]).unwrap();
    let d_img = max_abs_diff(&image, &exp["image_embeds"]);
    let d_txt = max_abs_diff(&text, &exp["text_embeds"]);
    let d_log = max_abs_diff(&per_image, &exp["logits_per_image"]);
    println!("{name}: max |Δ| image {d_img:.3e}, text {d_txt:.3e}, logits {d_log:.3e}");
    assert!(
        d_img <= EMBED_TOL,
        "{name}: image embeddings differ by {d_img}"
    );
    assert!(
        d_txt <= EMBED_TOL,
        "{name}: text embeddings differ by {d_txt}"
    );
    assert!(d_log <= LOGIT_TOL, "{name}: logits differ by {d_log}");
}

#[test]
fn the_narrow_kernel_classes_match_the_reference() {
    if let Ok(class) = std::env::var(CHILD) {
        let kernel = zeroclip::model::gemm::kernel_name_for(zeroclip::model::gemm::Format::F32);
        let want = if class == "candle" {
            "candle (gemm crate)"
        } else {
            "portable"
        };
        assert_eq!(kernel, want, "the f32 products run where the class says");
        for (name, file) in [
            ("vit_jit", "vit_jit.pt"),
            ("rn_jit", "rn_jit.pt"),
            ("openclip_rn_quickgelu", "openclip_rn_quickgelu"),
        ] {
            check(name, file);
        }
        return;
    }
    for class in ["portable", "candle"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, class)
            .env("ZEROCLIP_KERNEL", class)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{class}:\n{stdout}\n{stderr}");
        // The child ran the checks (and did not, say, filter the test out).
        assert!(stdout.contains("rn_jit: max |Δ|"), "{class}:\n{stdout}");
        println!("{class}:\n{stdout}");
    }
}
