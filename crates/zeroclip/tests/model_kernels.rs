//! The fidelity checks of `model_fidelity.rs` (the reference's outputs for the tiny fixture
//! checkpoints, |Δ| ≤ 1e-4 on embeddings, ≤ 1e-3 on logits) under the narrow kernel classes a
//! machine with SIMD does not pick by itself: `ZEROCLIP_KERNEL=portable` (the portable loops)
//! and `candle` (the f32 products through the `gemm` crate, as on aarch64). The kernel is
//! chosen once per process, so each class runs in a child process of this test binary.

mod model_common;

use model_common::check_fixture;
use std::process::Command;

/// Set in the child processes: the class they run under.
const CHILD: &str = "ZEROCLIP_TEST_KERNEL_CHILD";
const TEST: &str = "the_narrow_kernel_classes_match_the_reference";

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
            check_fixture(name, file);
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
