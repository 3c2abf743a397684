//! Strict loading, as `load_state_dict(strict=True)`: a missing, unexpected or misshapen tensor is
//! an error naming it (in the checkpoint's own naming), and bad model inputs are errors naming the
//! input, never panics.

mod model_common;

use candle_core::{DType, Device, Tensor};
use model_common::fixture;
use std::collections::HashMap;
use std::path::Path;
use zeroclip::{Clip, Error};

fn openai_tensors() -> (HashMap<String, Tensor>, zeroclip::ClipConfig) {
    let loaded = zeroclip::weights::load(&fixture("vit_zip.pt"), &Device::Cpu).unwrap();
    (loaded.tensors, loaded.config)
}

// The library's own error type, returned as the library returns it.
#[allow(clippy::result_large_err)]
fn build(t: HashMap<String, Tensor>, cfg: &zeroclip::ClipConfig) -> Result<Clip, Error> {
    Clip::from_tensors(t, cfg.clone(), &Device::Cpu)
}

#[test]
fn from_tensors_accepts_the_checkpoint_and_the_reference_ignored_keys() {
    let (mut t, cfg) = openai_tensors();
    for k in zeroclip::weights::IGNORED_KEYS {
        t.insert(k.to_string(), Tensor::new(77f32, &Device::Cpu).unwrap());
    }
    // Any float dtype is accepted and widened.
    let w = t["visual.proj"].to_dtype(DType::F16).unwrap();
    t.insert("visual.proj".into(), w);
    let model = build(t, &cfg).unwrap();
    assert_eq!(model.checksum().unwrap().len(), 64);
}

#[test]
fn missing_tensor_is_named() {
    let (mut t, cfg) = openai_tensors();
    t.remove("transformer.resblocks.1.mlp.c_fc.bias");
    match build(t, &cfg) {
        Err(Error::MissingTensor { name }) => {
            assert_eq!(name, "transformer.resblocks.1.mlp.c_fc.bias")
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn unexpected_tensor_is_named() {
    let (mut t, cfg) = openai_tensors();
    t.insert(
        "visual.extra".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    match build(t, &cfg) {
        Err(Error::UnexpectedTensor { name }) => assert_eq!(name, "visual.extra"),
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
}

#[test]
fn misshapen_tensor_is_named_with_both_shapes() {
    let (mut t, cfg) = openai_tensors();
    t.insert(
        "visual.ln_post.weight".into(),
        Tensor::zeros(65, DType::F32, &Device::Cpu).unwrap(),
    );
    match build(t, &cfg) {
        Err(Error::ShapeMismatch {
            name,
            expected,
            got,
        }) => {
            assert_eq!(name, "visual.ln_post.weight");
            assert_eq!((expected, got), (vec![64], vec![65]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

/// Copies a fixture directory, applying `edit` to its safetensors weights.
fn edited_copy(
    src: &str,
    weights: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(src)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let path = dir.path().join(weights);
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, &path).unwrap();
    dir
}

fn load_err(path: &Path) -> Error {
    Clip::load(path, &Device::Cpu).expect_err("load should fail")
}

#[test]
fn hugging_face_errors_use_transformers_names() {
    let d = edited_copy("hf_real_vocab", "model.safetensors", |t| {
        t.remove("text_model.final_layer_norm.bias");
    });
    match load_err(d.path()) {
        Error::MissingTensor { name } => assert_eq!(name, "text_model.final_layer_norm.bias"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }

    let d = edited_copy("hf_real_vocab", "model.safetensors", |t| {
        t.remove("vision_model.encoder.layers.1.self_attn.v_proj.bias");
    });
    match load_err(d.path()) {
        Error::MissingTensor { name } => {
            assert_eq!(name, "vision_model.encoder.layers.1.self_attn.v_proj.bias")
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }

    let d = edited_copy("hf_real_vocab", "model.safetensors", |t| {
        let z = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        t.insert("text_model.pooler.weight".into(), z);
    });
    match load_err(d.path()) {
        Error::UnexpectedTensor { name } => assert_eq!(name, "text_model.pooler.weight"),
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }

    // HF's [out, in] orientation is reported, not OpenAI's transposed one.
    let d = edited_copy("hf_real_vocab", "model.safetensors", |t| {
        let z = Tensor::zeros((32, 33), DType::F16, &Device::Cpu).unwrap();
        t.insert("visual_projection.weight".into(), z);
    });
    match load_err(d.path()) {
        Error::ShapeMismatch {
            name,
            expected,
            got,
        } => {
            assert_eq!(name, "visual_projection.weight");
            assert_eq!((expected, got), (vec![32, 32], vec![32, 33]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn hugging_face_position_ids_are_ignored() {
    let d = edited_copy("hf_real_vocab", "model.safetensors", |t| {
        let ids = Tensor::arange(0i64, 77, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        t.insert("text_model.embeddings.position_ids".into(), ids);
    });
    Clip::load(d.path(), &Device::Cpu).unwrap();
}

#[test]
fn open_clip_extra_tensor_is_unexpected() {
    let d = edited_copy("openclip_vit_gelu", "open_clip_model.safetensors", |t| {
        t.insert(
            "logit_bias".into(),
            Tensor::new(-10f32, &Device::Cpu).unwrap(),
        );
    });
    match load_err(d.path()) {
        Error::UnexpectedTensor { name } => assert_eq!(name, "logit_bias"),
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
}

#[test]
fn open_clip_unsupported_option_is_a_config_error() {
    let d = edited_copy("openclip_vit_gelu", "open_clip_model.safetensors", |_| {});
    let cfg = d.path().join("open_clip_config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "\"head_width\": 16",
            "\"head_width\": 16, \"ls_init_value\": 0.1",
        ),
    )
    .unwrap();
    match load_err(d.path()) {
        Error::Config { reason, .. } => assert!(reason.contains("ls_init_value"), "{reason}"),
        other => panic!("expected Config, got {other:?}"),
    }
}

#[test]
fn openai_safetensors_file_with_a_missing_tensor() {
    let (mut t, _) = openai_tensors();
    t.remove("visual.transformer.resblocks.0.attn.out_proj.weight");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.safetensors");
    candle_core::safetensors::save(&t, &path).unwrap();
    match load_err(&path) {
        Error::MissingTensor { name } => {
            assert_eq!(name, "visual.transformer.resblocks.0.attn.out_proj.weight")
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn unreadable_paths_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("config.json"), "{e}");
    let missing = dir.path().join("nope.pt");
    let e = load_err(&missing);
    assert!(e.to_string().contains("nope.pt"), "{e}");
    let junk = dir.path().join("junk.pt");
    std::fs::write(&junk, b"this is not a checkpoint").unwrap();
    let e = load_err(&junk);
    assert!(e.to_string().contains("junk.pt"), "{e}");
}

#[test]
fn bad_inputs_are_errors_naming_the_input() {
    let model = Clip::load(&fixture("vit_zip.pt"), &Device::Cpu).unwrap();
    let px = Tensor::zeros((1, 3, 31, 32), DType::F32, &Device::Cpu).unwrap();
    let e = model.encode_image(&px).unwrap_err();
    assert!(
        matches!(&e, Error::ModelInput { input, .. } if input == "pixels"),
        "{e}"
    );
    let ids = Tensor::new(&[[199u32, 200, 0]], &Device::Cpu).unwrap();
    let e = model.encode_text(&ids).unwrap_err();
    assert!(e.to_string().contains("200"), "{e}");
    let ids = Tensor::zeros((1, 78), DType::U32, &Device::Cpu).unwrap();
    assert!(model.encode_text(&ids).is_err());
    let ids = Tensor::new(&[[1f32, 2.0]], &Device::Cpu).unwrap();
    assert!(model.encode_text(&ids).is_err());
    // Empty batches are fine.
    let empty = Tensor::zeros((0, 77), DType::U32, &Device::Cpu).unwrap();
    assert_eq!(model.encode_text(&empty).unwrap().dims(), &[0, 32]);
}
