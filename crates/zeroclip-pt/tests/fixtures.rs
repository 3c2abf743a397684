//! Every tensor of every fixture equals, element for element, what torch.load / torch.jit.load
//! gave when `scripts/make_pt_fixtures.py` wrote it.

mod common;

use common::{fixture, GOOD};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroclip_pt::{read, Kind};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(name: &str) {
    let path = fixture(&format!("{name}.pt"));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    let ckpt = read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(format!("{:?}", ckpt.kind), expected["kind"], "{name}: kind");
    let want = expected["tensors"].as_array().unwrap();
    let got_names: Vec<&str> = ckpt.tensors.iter().map(|t| t.name.as_str()).collect();
    let want_names: Vec<&str> = want.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(got_names, want_names, "{name}: tensor names and order");
    for (t, w) in ckpt.tensors.iter().zip(want) {
        let what = format!("{name}: {}", t.name);
        assert_eq!(t.dtype.torch_name(), w["dtype"], "{what}: dtype");
        let shape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, shape, "{what}: shape");
        let bytes = t.contiguous_bytes();
        assert_eq!(
            bytes.len(),
            t.numel() * t.dtype.size_in_bytes(),
            "{what}: length"
        );
        if let Some(h) = w.get("hex") {
            assert_eq!(hex(&bytes), h.as_str().unwrap(), "{what}: elements");
        }
        assert_eq!(
            hex(&Sha256::digest(&bytes)),
            w["sha256"].as_str().unwrap(),
            "{what}: elements (SHA-256 of the little-endian bytes); first bytes {}",
            hex(&bytes[..bytes.len().min(16)])
        );
    }
}

#[test]
fn torchscript_module_tree_of_current_pytorch() {
    check("script_tree");
}

#[test]
fn torchscript_clip_in_the_pytorch_17_layout_openai_released() {
    check("script_clip_pytorch17");
    let ckpt = read(&fixture("script_clip_pytorch17.pt")).unwrap();
    assert_eq!(ckpt.kind, Kind::TorchScript);
    // OpenAI's convert_weights: fp16 for attention weights, fp32 for LayerNorm.
    let attn = ckpt
        .get("visual.transformer.resblocks.0.attn.in_proj_weight")
        .unwrap();
    assert_eq!(attn.dtype, zeroclip_pt::DType::F16);
    assert_eq!(attn.shape, [192, 64]);
    assert_eq!(
        ckpt.get("ln_final.weight").unwrap().dtype,
        zeroclip_pt::DType::F32
    );
}

#[test]
fn torch_save_zip_with_views_and_every_dtype() {
    check("state_zip");
}

#[test]
fn torch_save_legacy_with_views_and_every_dtype() {
    check("state_legacy");
}

#[test]
fn big_endian_storages_are_swapped() {
    check("state_big_endian");
}

#[test]
fn training_checkpoint_nested_state_dict_without_data_parallel_prefix() {
    check("train_ckpt_zip");
    check("train_ckpt_legacy");
}

#[test]
fn views_share_one_storage_and_contiguous_tensors_are_borrowed() {
    for name in ["state_zip", "state_legacy"] {
        let ckpt = read(&fixture(&format!("{name}.pt"))).unwrap();
        let base = ckpt.get("base").unwrap();
        assert!(matches!(
            base.contiguous_bytes(),
            std::borrow::Cow::Borrowed(_)
        ));
        let t = ckpt.get("transposed").unwrap();
        assert!(!t.is_contiguous());
        assert_eq!(t.strides(), [1, 8]);
        let s = ckpt.get("slice").unwrap();
        assert_eq!(s.storage_offset(), 10);
    }
}

#[test]
fn fixture_list_covers_every_expected_file() {
    for name in GOOD {
        assert!(fixture(&format!("{name}.expected.json")).exists(), "{name}");
    }
}
