//! Weights packed straight from the mapped checkpoint give the model that packing the same
//! tensors read into memory gives, bit for bit, for every checkpoint format, every stored float
//! type and every precision; a safetensors file whose header does not match its bytes is refused
//! with an error, not a panic.

mod model_common;

use candle_core::{DType, Device, Tensor};
use model_common::{expected, fixture};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use zeroclip::{Clip, LoadOptions, Precision};

fn bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.iter().map(|x| x.to_bits()).collect()
}

/// `path` loaded as `Clip::load_with` does (weights packed from the file) and through tensors in
/// memory (`weights::load` then `Clip::from_tensors_with`) give the same embeddings.
fn same_model(path: &Path, inputs: &str) {
    let exp = expected(inputs);
    for precision in [Precision::Fp32, Precision::Bf16, Precision::Int8] {
        let options = LoadOptions::with_precision(precision);
        let mapped = Clip::load_with(path, &Device::Cpu, &options).unwrap();
        let loaded = zeroclip::weights::load(path, &Device::Cpu).unwrap();
        let in_memory =
            Clip::from_tensors_with(loaded.tensors, loaded.config, &Device::Cpu, &options).unwrap();
        for (what, a, b) in [
            (
                "image",
                mapped.encode_image(&exp["pixels"]).unwrap(),
                in_memory.encode_image(&exp["pixels"]).unwrap(),
            ),
            (
                "text",
                mapped.encode_text(&exp["input_ids"]).unwrap(),
                in_memory.encode_text(&exp["input_ids"]).unwrap(),
            ),
        ] {
            assert!(
                bits(&a) == bits(&b),
                "{} {precision} {what}: packed from the file differs",
                path.display()
            );
        }
    }
}

#[test]
fn every_fixture_packs_from_the_file_as_from_tensors() {
    // fp16 and f32 tensors in TorchScript, zip and legacy PyTorch files; open_clip safetensors
    // and .bin; transformers safetensors (q/k/v fused in memory) and .bin.
    for (path, inputs) in [
        ("vit_zip.pt", "vit_zip"),
        ("vit_jit.pt", "vit_jit"),
        ("rn_jit.pt", "rn_jit"),
        ("rn_legacy.pt", "rn_legacy"),
        ("openclip_vit_gelu", "openclip_vit_gelu"),
        ("openclip_rn_quickgelu", "openclip_rn_quickgelu"),
        ("hf_gelu_bin", "hf_gelu_bin"),
        ("hf_real_vocab", "hf_real_vocab"),
    ] {
        same_model(&fixture(path), inputs);
    }
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("zeroclip-mapped-{}-{name}", std::process::id()))
}

#[test]
fn safetensors_of_every_float_type_pack_from_the_file_as_from_tensors() {
    for (fixture_name, inputs) in [("vit_zip.pt", "vit_zip"), ("rn_legacy.pt", "rn_legacy")] {
        let loaded = zeroclip::weights::load(&fixture(fixture_name), &Device::Cpu).unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let tensors: HashMap<String, Tensor> = loaded
                .tensors
                .iter()
                .map(|(k, t)| (k.clone(), t.to_dtype(dtype).unwrap()))
                .collect();
            let path = temp(&format!("{inputs}-{dtype:?}.safetensors"));
            candle_core::safetensors::save(&tensors, &path).unwrap();
            same_model(&path, inputs);
            std::fs::remove_file(&path).unwrap();
        }
    }
}

/// A safetensors file of one tensor `w` with `header` as its `w` entry, and `data` bytes.
fn safetensors(name: &str, header: &str, data: &[u8]) -> PathBuf {
    let mut json = format!("{{\"w\":{header}}}").into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json);
    bytes.extend(data);
    let path = temp(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn truncated_or_misdeclared_safetensors_are_refused() {
    let f32_4x4 = r#"{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}"#;
    let cases = [
        // The file ends before the tensor's declared bytes do.
        ("cut", f32_4x4, 60),
        // The shape needs more bytes than the offsets give it.
        (
            "shape",
            r#"{"dtype":"F32","shape":[4,5],"data_offsets":[0,64]}"#,
            64,
        ),
        // The dtype needs fewer.
        (
            "dtype",
            r#"{"dtype":"F16","shape":[4,4],"data_offsets":[0,64]}"#,
            64,
        ),
    ];
    for (name, header, len) in cases {
        let path = safetensors(name, header, &vec![0u8; len]);
        let err = zeroclip::weights::read_tensors(&path, &Device::Cpu).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&*path.to_string_lossy()) && msg.contains("safetensors"),
            "{name}: {msg}"
        );
        std::fs::remove_file(&path).unwrap();
    }
    // The well-formed file reads, and its weight's shape is the declared one.
    let path = safetensors("ok", f32_4x4, &[0u8; 64]);
    let read = zeroclip::weights::read_tensors(&path, &Device::Cpu).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(read[0].1.dims(), [4, 4]);
}
