//! Full-size fidelity, run by scripts/full_size_check.py (not part of CI: the checkpoints are
//! hundreds of MB and are written to a temporary directory by the script).
//!
//! For every `<name>.expected.safetensors` in `$ZEROCLIP_FULL_SIZE_DIR` (only `$ZEROCLIP_FULL_SIZE_ONLY`
//! if set), loads `<name>.pt`, runs the saved inputs and compares with the reference's outputs.
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
    assert!(!names.is_empty(), "no expected outputs in {}", dir.display());
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
        let d_img = max_abs_diff(&image, &exp["image_embeds"]);
        let d_txt = max_abs_diff(&text, &exp["text_embeds"]);
        let d_log = max_abs_diff(&logits, &exp["logits_per_image"]);
        println!(
            "FULL-SIZE {name} image_dmax={d_img:.3e} image_absmax={:.3e} text_dmax={d_txt:.3e} \
             text_absmax={:.3e} logits_dmax={d_log:.3e} load_s={t_load:.2} image_s={t_image:.2} \
             text_s={t_text:.2} n_images={} n_texts={}",
            max_abs(&exp["image_embeds"]),
            max_abs(&exp["text_embeds"]),
            image.dim(0).unwrap(),
            text.dim(0).unwrap(),
        );
        if d_img > EMBED_TOL || d_txt > EMBED_TOL || d_log > LOGIT_TOL {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "outside tolerance: {failures:?}");
}
