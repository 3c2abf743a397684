//! Fidelity against the reference, for every checkpoint format: the fixtures in
//! tests/fixtures/model/ hold tiny random-weight checkpoints written by
//! scripts/make_model_fixtures.py with the reference implementations, and the outputs those
//! computed (fp32, CPU) for fixed inputs. Tolerances: |Δ| ≤ 1e-4 on embeddings, ≤ 1e-3 on logits.

mod model_common;

use candle_core::{Device, Tensor};
use model_common::{check_fixture as check, expected, fixture, max_abs_diff, EMBED_TOL, LOGIT_TOL};
use zeroclip::model::{Activation, VisionConfig};
use zeroclip::weights::Format;
use zeroclip::Clip;

#[test]
fn openai_torchscript_vit() {
    check("vit_jit", "vit_jit.pt");
    let model = Clip::load(&fixture("vit_jit.pt"), &Device::Cpu).unwrap();
    let cfg = model.config();
    assert_eq!(
        cfg.vision,
        VisionConfig::ViT {
            width: 128,
            layers: 2,
            heads: 2,
            patch_size: 8
        }
    );
    assert_eq!(
        (cfg.text_heads, cfg.text_layers, cfg.vocab_size),
        (2, 2, 300)
    );
    assert_eq!(
        (cfg.embed_dim, cfg.image_resolution, cfg.context_length),
        (64, 32, 77)
    );
}

#[test]
fn openai_torchscript_resnet() {
    check("rn_jit", "rn_jit.pt");
    let model = Clip::load(&fixture("rn_jit.pt"), &Device::Cpu).unwrap();
    assert_eq!(
        model.config().vision,
        VisionConfig::ResNet {
            layers: [2, 1, 1, 2],
            width: 4,
            heads: 2
        }
    );
}

#[test]
fn resnet_batches_of_any_size_equal_single_images() {
    // The CPU trunk runs the stem and first stage 4 images at a time and the rest 16 at a time:
    // 19 images cross every pass boundary; each image's embedding must equal its own run.
    let model = Clip::load(&fixture("rn_jit.pt"), &Device::Cpu).unwrap();
    let r = model.config().image_resolution;
    let pixels = Tensor::randn(0f32, 1.0, (19, 3, r, r), &Device::Cpu).unwrap();
    let batch = model.encode_image(&pixels).unwrap();
    for i in [0, 3, 4, 15, 16, 18] {
        let one = model
            .encode_image(&pixels.narrow(0, i, 1).unwrap())
            .unwrap();
        let d = max_abs_diff(&batch.narrow(0, i, 1).unwrap(), &one);
        assert!(d <= 1e-6, "image {i}: batch vs alone {d}");
    }
}

#[test]
fn torch_save_zip_state_dict() {
    check("vit_zip", "vit_zip.pt");
}

#[test]
fn torch_save_legacy_state_dict() {
    check("rn_legacy", "rn_legacy.pt");
}

#[test]
fn hugging_face_safetensors_directory() {
    check("hf_real_vocab", "hf_real_vocab");
    // The weights file alone finds its config.json beside it.
    check("hf_real_vocab", "hf_real_vocab/model.safetensors");
    let model = Clip::load(&fixture("hf_real_vocab"), &Device::Cpu).unwrap();
    assert_eq!(model.config().vocab_size, 49408);
    assert_eq!(
        (model.config().text_width, model.config().text_heads),
        (16, 2)
    );
}

#[test]
fn hugging_face_bin_directory_with_gelu() {
    check("hf_gelu_bin", "hf_gelu_bin");
    let model = Clip::load(&fixture("hf_gelu_bin"), &Device::Cpu).unwrap();
    assert_eq!(model.config().activation, Activation::Gelu);
}

#[test]
fn open_clip_safetensors_with_gelu() {
    check("openclip_vit_gelu", "openclip_vit_gelu");
    let loaded = zeroclip::weights::load(&fixture("openclip_vit_gelu"), &Device::Cpu).unwrap();
    assert_eq!(loaded.format, Format::OpenClip);
    assert_eq!(loaded.config.activation, Activation::Gelu);
}

#[test]
fn open_clip_bin_resnet_with_quickgelu() {
    check("openclip_rn_quickgelu", "openclip_rn_quickgelu");
    check(
        "openclip_rn_quickgelu",
        "openclip_rn_quickgelu/open_clip_pytorch_model.bin",
    );
    let model = Clip::load(&fixture("openclip_rn_quickgelu"), &Device::Cpu).unwrap();
    assert_eq!(model.config().activation, Activation::QuickGelu);
    assert_eq!(
        model.config().vision,
        VisionConfig::ResNet {
            layers: [1, 1, 2, 1],
            width: 4,
            heads: 4
        }
    );
}

#[test]
fn real_vocabulary_labels_and_png() {
    let model = Clip::load(&fixture("hf_real_vocab"), &Device::Cpu).unwrap();
    let exp = expected("hf_real_vocab");
    // zeroclip's tokenizer gives the reference's ids for the labels.
    let ids = zeroclip::tokenize(&["a diagram", "a dog", "a cat"], false).unwrap();
    let ref_ids: Vec<i64> = exp["label_ids"].flatten_all().unwrap().to_vec1().unwrap();
    let our_ids: Vec<u32> = ids.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(
        our_ids.iter().map(|&v| v as i64).collect::<Vec<_>>(),
        ref_ids
    );

    let text = model.encode_text(&ids).unwrap();
    let d_txt = max_abs_diff(&text, &exp["label_text_embeds"]);
    let image = model.encode_image(&exp["png_pixels"]).unwrap();
    let d_img = max_abs_diff(&image, &exp["png_image_embeds"]);
    let (logits, _) = model.forward(&exp["png_pixels"], &ids).unwrap();
    let d_log = max_abs_diff(&logits, &exp["png_logits_per_image"]);
    println!("labels: max |Δ| image {d_img:.3e}, text {d_txt:.3e}, logits {d_log:.3e}");
    assert!(d_txt <= EMBED_TOL && d_img <= EMBED_TOL && d_log <= LOGIT_TOL);
}

#[test]
fn logit_scale_is_exponentiated_and_checksum_is_the_file_digest() {
    let model = Clip::load(&fixture("vit_zip.pt"), &Device::Cpu).unwrap();
    // CLIP's initial logit_scale is ln(1/0.07); the fixture keeps it.
    assert!(
        (model.logit_scale() - 1.0 / 0.07).abs() < 1e-3,
        "{}",
        model.logit_scale()
    );
    let sum = model.checksum().unwrap();
    assert_eq!(sum.len(), 64);
    assert_eq!(model.checksum().unwrap(), sum);
    let bytes = std::fs::read(fixture("vit_zip.pt")).unwrap();
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sum, want);
}
