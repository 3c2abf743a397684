//! Hugging Face transformers `CLIPModel` checkpoints (`openai/clip-vit-base-patch32` and the like):
//! `config.json` plus `model.safetensors` or `pytorch_model.bin`, and optionally
//! `preprocessor_config.json` for the pixel mean and std.
//!
//! transformers splits `nn.MultiheadAttention`'s fused `in_proj` into `q_proj`/`k_proj`/`v_proj`
//! (concatenated back here, in that order, without copying them out of the file) and stores the
//! two projections as `nn.Linear` weights, the transpose of OpenAI's `text_projection` /
//! `visual.proj`. The attention heads and
//! the activation come from `config.json` (missing fields take transformers' defaults). HF's
//! text pooling picks the first `eos_token_id`; with `clip.tokenize` ids that is the argmax
//! position the reference (and this crate) uses. `*.position_ids` buffers are ignored.

use super::{read_json, triple, Format, Loaded};
use crate::error::{Error, Result};
use crate::model::config::{OPENAI_MEAN, OPENAI_STD};
use crate::model::{Activation, ClipConfig, VisionConfig};
use crate::tensors::StoredTensor;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The model configuration file of a transformers directory.
pub const CONFIG_FILE: &str = "config.json";
/// Weight files, in order of preference.
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Same,
    /// `nn.Linear` weight `[out, in]` ↔ OpenAI's `[in, out]` parameter.
    Transpose,
    /// Row block `i` (q, k, v) of the fused `in_proj`.
    Qkv(usize),
}

/// transformers name → OpenAI name, outside the encoder blocks.
const TOP: [(&str, &str, Op); 14] = [
    ("logit_scale", "logit_scale", Op::Same),
    (
        "text_model.embeddings.token_embedding.weight",
        "token_embedding.weight",
        Op::Same,
    ),
    (
        "text_model.embeddings.position_embedding.weight",
        "positional_embedding",
        Op::Same,
    ),
    (
        "text_model.final_layer_norm.weight",
        "ln_final.weight",
        Op::Same,
    ),
    (
        "text_model.final_layer_norm.bias",
        "ln_final.bias",
        Op::Same,
    ),
    ("text_projection.weight", "text_projection", Op::Transpose),
    (
        "vision_model.embeddings.class_embedding",
        "visual.class_embedding",
        Op::Same,
    ),
    (
        "vision_model.embeddings.patch_embedding.weight",
        "visual.conv1.weight",
        Op::Same,
    ),
    (
        "vision_model.embeddings.position_embedding.weight",
        "visual.positional_embedding",
        Op::Same,
    ),
    (
        "vision_model.pre_layrnorm.weight",
        "visual.ln_pre.weight",
        Op::Same,
    ),
    (
        "vision_model.pre_layrnorm.bias",
        "visual.ln_pre.bias",
        Op::Same,
    ),
    (
        "vision_model.post_layernorm.weight",
        "visual.ln_post.weight",
        Op::Same,
    ),
    (
        "vision_model.post_layernorm.bias",
        "visual.ln_post.bias",
        Op::Same,
    ),
    ("visual_projection.weight", "visual.proj", Op::Transpose),
];

/// Encoder block prefixes: transformers → OpenAI.
const BLOCKS: [(&str, &str); 2] = [
    ("text_model.encoder.layers.", "transformer.resblocks."),
    (
        "vision_model.encoder.layers.",
        "visual.transformer.resblocks.",
    ),
];

/// Inside one encoder block: transformers → OpenAI.
const IN_BLOCK: [(&str, &str, Op); 14] = [
    ("self_attn.q_proj.weight", "attn.in_proj_weight", Op::Qkv(0)),
    ("self_attn.k_proj.weight", "attn.in_proj_weight", Op::Qkv(1)),
    ("self_attn.v_proj.weight", "attn.in_proj_weight", Op::Qkv(2)),
    ("self_attn.q_proj.bias", "attn.in_proj_bias", Op::Qkv(0)),
    ("self_attn.k_proj.bias", "attn.in_proj_bias", Op::Qkv(1)),
    ("self_attn.v_proj.bias", "attn.in_proj_bias", Op::Qkv(2)),
    (
        "self_attn.out_proj.weight",
        "attn.out_proj.weight",
        Op::Same,
    ),
    ("self_attn.out_proj.bias", "attn.out_proj.bias", Op::Same),
    ("layer_norm1.weight", "ln_1.weight", Op::Same),
    ("layer_norm1.bias", "ln_1.bias", Op::Same),
    ("layer_norm2.weight", "ln_2.weight", Op::Same),
    ("layer_norm2.bias", "ln_2.bias", Op::Same),
    ("mlp.fc1.weight", "mlp.c_fc.weight", Op::Same),
    ("mlp.fc1.bias", "mlp.c_fc.bias", Op::Same),
];

/// The rest of [`IN_BLOCK`] (split only to keep the tables readable).
const IN_BLOCK_MLP: [(&str, &str, Op); 2] = [
    ("mlp.fc2.weight", "mlp.c_proj.weight", Op::Same),
    ("mlp.fc2.bias", "mlp.c_proj.bias", Op::Same),
];

fn in_block() -> impl Iterator<Item = &'static (&'static str, &'static str, Op)> {
    IN_BLOCK.iter().chain(IN_BLOCK_MLP.iter())
}

/// Splits `name` as `prefix` + block index + `.` + rest.
fn block_of<'a>(name: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (idx, tail) = rest.split_once('.')?;
    idx.bytes()
        .all(|b| b.is_ascii_digit())
        .then_some((idx, tail))
}

/// The OpenAI name and operation for a transformers name.
fn to_openai(name: &str) -> Option<(String, Op)> {
    if let Some((_, to, op)) = TOP.iter().find(|(from, _, _)| *from == name) {
        return Some((to.to_string(), *op));
    }
    for (from_prefix, to_prefix) in BLOCKS {
        if let Some((idx, tail)) = block_of(name, from_prefix) {
            let (_, to, op) = in_block().find(|(from, _, _)| *from == tail)?;
            return Some((format!("{to_prefix}{idx}.{to}"), *op));
        }
    }
    None
}

/// The transformers name for an OpenAI name (the `q_proj` part for a fused `in_proj`).
fn to_hf(name: &str) -> Option<(String, Op)> {
    if let Some((from, _, op)) = TOP.iter().find(|(_, to, _)| *to == name) {
        return Some((from.to_string(), *op));
    }
    for (from_prefix, to_prefix) in BLOCKS {
        if let Some((idx, tail)) = block_of(name, to_prefix) {
            let (from, _, op) = in_block().find(|(_, to, _)| *to == tail)?;
            return Some((format!("{from_prefix}{idx}.{from}"), *op));
        }
    }
    None
}

/// Whether the tensors use transformers names.
pub fn has_hf_names(raw: &[(String, StoredTensor)]) -> bool {
    raw.iter()
        .any(|(n, _)| n.starts_with("text_model.") || n.starts_with("vision_model."))
}

/// Renames transformers tensors to OpenAI's, fusing q/k/v (left in the file as three blocks of
/// rows) and transposing the projections (read from the file).
pub fn to_canonical(raw: Vec<(String, StoredTensor)>) -> Result<HashMap<String, StoredTensor>> {
    let mut out = HashMap::new();
    let mut fused: HashMap<String, [Option<(String, StoredTensor)>; 3]> = HashMap::new();
    for (name, t) in raw {
        if name.ends_with(".position_ids") {
            continue;
        }
        let (to, op) = to_openai(&name).ok_or(Error::UnexpectedTensor { name: name.clone() })?;
        match op {
            Op::Same => {
                out.insert(to, t);
            }
            Op::Transpose => {
                if t.dims().len() != 2 {
                    return Err(Error::ShapeMismatch {
                        name,
                        expected: vec![0, 0],
                        got: t.dims().to_vec(),
                    });
                }
                out.insert(to, t.into_tensor()?.t()?.contiguous()?.into());
            }
            Op::Qkv(i) => fused.entry(to).or_default()[i] = Some((name, t)),
        }
    }
    for (to, parts) in fused {
        let q_name = to_hf(&to).map(|(n, _)| n).unwrap_or_else(|| to.clone());
        let mut tensors = Vec::with_capacity(3);
        for (i, part) in parts.into_iter().enumerate() {
            let (name, t) = part.ok_or_else(|| Error::MissingTensor {
                name: q_name.replace("q_proj", ["q_proj", "k_proj", "v_proj"][i]),
            })?;
            if let Some(first) = tensors.first() {
                let first: &StoredTensor = first;
                if first.dims() != t.dims() {
                    return Err(Error::ShapeMismatch {
                        name,
                        expected: first.dims().to_vec(),
                        got: t.dims().to_vec(),
                    });
                }
            }
            tensors.push(t);
        }
        out.insert(to, StoredTensor::cat_rows(tensors)?);
    }
    Ok(out)
}

/// Puts transformers names (and orientation) back into a tensor error from the model builder.
pub fn source_names(e: Error) -> Error {
    match e {
        Error::MissingTensor { name } => match to_hf(&name) {
            Some((hf, _)) => Error::MissingTensor { name: hf },
            None => Error::MissingTensor { name },
        },
        Error::UnexpectedTensor { name } => match to_hf(&name) {
            Some((hf, _)) => Error::UnexpectedTensor { name: hf },
            None => Error::UnexpectedTensor { name },
        },
        Error::ShapeMismatch {
            name,
            mut expected,
            mut got,
        } => match to_hf(&name) {
            Some((hf, op)) => {
                match op {
                    Op::Transpose => {
                        expected.reverse();
                        got.reverse();
                    }
                    Op::Qkv(_) => {
                        for s in [&mut expected, &mut got] {
                            if let Some(d) = s.first_mut() {
                                *d /= 3;
                            }
                        }
                    }
                    Op::Same => {}
                }
                Error::ShapeMismatch {
                    name: hf,
                    expected,
                    got,
                }
            }
            None => Error::ShapeMismatch {
                name,
                expected,
                got,
            },
        },
        other => other,
    }
}

/// Finishes loading tensors read from `weights`, with the configuration files in `dir`.
pub fn from_raw(
    raw: Vec<(String, StoredTensor)>,
    weights: &Path,
    dir: &Path,
) -> Result<Loaded<StoredTensor>> {
    let config_path = dir.join(CONFIG_FILE);
    let mut files: Vec<PathBuf> = vec![weights.to_path_buf(), config_path.clone()];
    let mut config = parse_config(
        &read_json(&config_path)?,
        &config_path.display().to_string(),
    )?;
    let pre = dir.join(PREPROCESSOR_FILE);
    if pre.is_file() {
        let j = read_json(&pre)?;
        config.mean = triple(j.get("image_mean")).unwrap_or(OPENAI_MEAN);
        config.std = triple(j.get("image_std")).unwrap_or(OPENAI_STD);
        files.push(pre);
    }
    Ok(Loaded {
        format: Format::HuggingFace,
        tensors: to_canonical(raw)?,
        config,
        files,
    })
}

/// Reads a transformers `CLIPConfig` (with transformers' defaults for absent fields).
pub fn parse_config(j: &Value, source_name: &str) -> Result<ClipConfig> {
    let bad = |reason: String| Error::Config {
        source_name: source_name.to_string(),
        reason,
    };
    if let Some(t) = j.get("model_type").and_then(Value::as_str) {
        if t != "clip" {
            return Err(bad(format!("model_type {t:?} is not \"clip\"")));
        }
    }
    let empty = Value::Object(Default::default());
    let section = |key: &str| {
        j.get(key)
            .filter(|v| v.is_object())
            .or_else(|| j.get(format!("{key}_dict")).filter(|v| v.is_object()))
            .unwrap_or(&empty)
    };
    let (text, vision) = (section("text_config"), section("vision_config"));
    let int = |v: &Value, key: &str, default: usize| -> Result<usize> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| bad(format!("`{key}` is not a non-negative integer: {x}"))),
        }
    };
    let act = |v: &Value| -> Result<Activation> {
        match v
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("quick_gelu")
        {
            "quick_gelu" => Ok(Activation::QuickGelu),
            "gelu" => Ok(Activation::Gelu),
            other => Err(bad(format!(
                "hidden_act {other:?} is not supported (quick_gelu, gelu)"
            ))),
        }
    };
    let eps = |v: &Value| {
        v.get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-5) as f32
    };
    let (text_act, vision_act) = (act(text)?, act(vision)?);
    if text_act != vision_act || eps(text) != eps(vision) {
        return Err(bad(
            "text and vision towers use different activations or LayerNorm epsilons".into(),
        ));
    }
    let text_width = int(text, "hidden_size", 512)?;
    let vision_width = int(vision, "hidden_size", 768)?;
    for (tower, v, width, default) in [
        ("text", text, text_width, 2048),
        ("vision", vision, vision_width, 3072),
    ] {
        let inter = int(v, "intermediate_size", default)?;
        if inter != 4 * width {
            return Err(bad(format!(
                "{tower} intermediate_size {inter} is not 4 × hidden_size {width}"
            )));
        }
    }
    if int(vision, "num_channels", 3)? != 3 {
        return Err(bad("vision num_channels must be 3".into()));
    }
    let cfg = ClipConfig {
        embed_dim: int(j, "projection_dim", 512)?,
        image_resolution: int(vision, "image_size", 224)?,
        vision: VisionConfig::ViT {
            width: vision_width,
            layers: int(vision, "num_hidden_layers", 12)?,
            heads: int(vision, "num_attention_heads", 12)?,
            patch_size: int(vision, "patch_size", 32)?,
        },
        context_length: int(text, "max_position_embeddings", 77)?,
        vocab_size: int(text, "vocab_size", 49408)?,
        text_width,
        text_heads: int(text, "num_attention_heads", 8)?,
        text_layers: int(text, "num_hidden_layers", 12)?,
        activation: text_act,
        layer_norm_eps: eps(text),
        mean: OPENAI_MEAN,
        std: OPENAI_STD,
    };
    cfg.validate(source_name)?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for hf in [
            "text_model.encoder.layers.11.mlp.fc2.bias",
            "vision_model.encoder.layers.3.self_attn.out_proj.weight",
            "vision_model.pre_layrnorm.bias",
            "visual_projection.weight",
        ] {
            let (openai, _) = to_openai(hf).unwrap();
            assert_eq!(to_hf(&openai).unwrap().0, hf);
        }
        assert_eq!(
            to_openai("vision_model.encoder.layers.0.self_attn.k_proj.weight").unwrap(),
            (
                "visual.transformer.resblocks.0.attn.in_proj_weight".to_string(),
                Op::Qkv(1)
            )
        );
        assert!(to_openai("text_model.encoder.layers.x.mlp.fc1.weight").is_none());
        assert!(to_openai("text_model.pooler.weight").is_none());
    }

    #[test]
    fn config_defaults_are_vit_b_32() {
        let cfg = parse_config(&serde_json::json!({"model_type": "clip"}), "test").unwrap();
        assert_eq!(cfg, ClipConfig::preset("ViT-B/32").unwrap());
        let err = parse_config(&serde_json::json!({"model_type": "siglip"}), "test").unwrap_err();
        assert!(err.to_string().contains("siglip"));
    }
}
