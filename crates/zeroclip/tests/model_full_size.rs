//! Full-size fidelity, run by scripts/full_size_check.py (not part of CI: the checkpoints are
//! hundreds of MB and are written to a temporary directory by the script).
//!
//! For every `<name>.expected.safetensors` in `$ZEROCLIP_FULL_SIZE_DIR` (only `$ZEROCLIP_FULL_SIZE_ONLY`
//! if set), loads `<name>.pt`, runs the saved inputs and compares with the reference's outputs
//! (fp32, and the same weights in float64 to tell fp32 rounding noise from errors).
//! Prints one `FULL-SIZE` line per model for the script to collect.

mod model_common;

use candle_core::Device;
use model_common::{max_abs_diff, EMBED_TOL, LOGIT_TOL};
use std::path::PathBuf;
use std::time::Instant;
use zeroclip::Clip;

fn max_abs(t: &candle_core::Tensor) -> f32 {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

#[test]
#[ignore = "run by scripts/full_size_check.py, which writes the checkpoints"]
fn full_size_checkpoints() {
    let dir = PathBuf::from(
        std::env::var("ZEROCLIP_FULL_SIZE_DIR")
            .expect("set ZEROCLIP_FULL_SIZE_DIR (scripts/full_size_check.py does)"),
    );
    let only = std::env::var("ZEROCLIP_FULL_SIZE_ONLY").ok();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".expected.safetensors").map(String::from)
        })
        .filter(|n| only.as_deref().is_none_or(|o| o == n))
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "no expected outputs in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for name in names {
        let exp = candle_core::safetensors::load(
            dir.join(format!("{name}.expected.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let t0 = Instant::now();
        let model = Clip::load(&dir.join(format!("{name}.pt")), &Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let t_load = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let image = model.encode_image(&exp["pixels"]).unwrap();
        let t_image = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let text = model.encode_text(&exp["input_ids"]).unwrap();
        let t_text = t2.elapsed().as_secs_f64();
        let (logits, _) = model.forward(&exp["pixels"], &exp["input_ids"]).unwrap();
        let mut line = format!("FULL-SIZE {name}");
        let mut passed = true;
        for (key, ours, tol) in [
            ("image", &image, EMBED_TOL),
            ("text", &text, EMBED_TOL),
            ("logits", &logits, LOGIT_TOL),
        ] {
            let ref_key = if key == "logits" {
                "logits_per_image".to_string()
            } else {
                format!("{key}_embeds")
            };
            let (r32, r64) = (&exp[&ref_key], &exp[&format!("{ref_key}_f64")]);
            let d32 = max_abs_diff(ours, r32);
            let d64 = max_abs_diff(ours, r64);
            let gap = max_abs_diff(r32, r64);
            // Within tolerance of the fp32 reference, or no farther from the float64 result than
            // the fp32 reference itself is (ill-conditioned random nets, see docs/FIDELITY.md).
            passed &= d32 <= tol || d64 <= tol.max(1.5 * gap);
            line += &format!(
                " {key}_dmax={d32:.3e} {key}_d64={d64:.3e} {key}_ref_gap={gap:.3e} {key}_absmax={:.3e}",
                max_abs(r32)
            );
        }
        println!(
            "{line} load_s={t_load:.2} image_s={t_image:.2} text_s={t_text:.2} n_images={} n_texts={}",
            image.dim(0).unwrap(),
            text.dim(0).unwrap(),
        );
        if !passed {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "outside tolerance: {failures:?}");
}
