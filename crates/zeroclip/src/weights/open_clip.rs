//! open_clip checkpoints: `open_clip_config.json` plus `open_clip_model.safetensors` or
//! `open_clip_pytorch_model.bin` (as on the Hub), or a checkpoint file with that config beside it.
//!
//! open_clip's `CLIP` class keeps OpenAI's tensor names, so the rename table is the identity apart
//! from DataParallel's `module.` prefix (`zeroclip-pt` already drops it and unwraps `state_dict`
//! for `.bin` files; it is dropped here for safetensors too). The architecture comes from the
//! config: heads are `width / head_width` for the image tower and `heads` for text, and
//! `quick_gelu` picks QuickGELU over exact GELU. Options that change the architecture beyond
//! OpenAI's (layer scale, attentional pooling, custom text towers, timm / HF towers, …) are
//! reported as unsupported rather than silently ignored.

use super::{read_json, triple, Format, Loaded};
use crate::error::{Error, Result};
use crate::model::config::{OPENAI_MEAN, OPENAI_STD};
use crate::model::{Activation, ClipConfig, VisionConfig};
use crate::tensors::StoredTensor;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The configuration file of an open_clip directory.
pub const CONFIG_FILE: &str = "open_clip_config.json";
/// Weight files, in order of preference.
pub const WEIGHT_FILES: [&str; 2] = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];

/// Finishes loading tensors read from `weights`, with `open_clip_config.json` from `dir`.
pub fn from_raw(
    raw: Vec<(String, StoredTensor)>,
    weights: &Path,
    dir: &Path,
) -> Result<Loaded<StoredTensor>> {
    let config_path = dir.join(CONFIG_FILE);
    let config = parse_config(
        &read_json(&config_path)?,
        &config_path.display().to_string(),
    )?;
    Ok(Loaded {
        format: Format::OpenClip,
        tensors: to_canonical(raw),
        config,
        files: vec![weights.to_path_buf(), config_path],
    })
}

/// open_clip names → OpenAI names: drop a DataParallel `module.` prefix.
pub fn to_canonical(raw: Vec<(String, StoredTensor)>) -> HashMap<String, StoredTensor> {
    let prefixed = !raw.is_empty() && raw.iter().all(|(n, _)| n.starts_with("module."));
    raw.into_iter()
        .map(|(n, t)| match (prefixed, n.strip_prefix("module.")) {
            (true, Some(rest)) => (rest.to_string(), t),
            _ => (n, t),
        })
        .collect()
}

/// Reads `open_clip_config.json` (`{"model_cfg": {...}, "preprocess_cfg": {...}}`, or a bare model
/// config as in open_clip's `model_configs/`).
pub fn parse_config(j: &Value, source_name: &str) -> Result<ClipConfig> {
    let bad = |reason: String| Error::Config {
        source_name: source_name.to_string(),
        reason,
    };
    let model = j.get("model_cfg").unwrap_or(j);
    let empty = Value::Object(Default::default());
    let vision = model.get("vision_cfg").unwrap_or(&empty);
    let text = model.get("text_cfg").unwrap_or(&empty);
    if model.get("custom_text").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "custom_text towers (`text.*` names) are not supported".into()
        ));
    }
    if model.get("init_logit_bias").is_some_and(|v| !v.is_null()) {
        return Err(bad("SigLIP-style `init_logit_bias` is not supported".into()));
    }
    // Options that must be absent, null, false or their OpenAI-architecture value.
    let unsupported = |v: &Value, tower: &str, keys: &[(&str, Value)]| -> Result<()> {
        for (key, ok) in keys {
            match v.get(*key) {
                None | Some(Value::Null) => {}
                Some(x) if x == ok || x == &Value::Bool(false) => {}
                Some(x) if x.as_f64().is_some() && x.as_f64() == ok.as_f64() => {}
                Some(x) => {
                    return Err(bad(format!(
                        "{tower} option `{key}` = {x} is not supported"
                    )));
                }
            }
        }
        Ok(())
    };
    use serde_json::json;
    // Transformer options both towers share, checked after each tower's own.
    let both = [
        ("mlp_ratio", json!(4.0)),
        ("qk_norm", json!(false)),
        ("scaled_cosine_attn", json!(false)),
        ("scale_heads", json!(false)),
        ("scale_attn_inner", json!(false)),
        ("scale_attn", json!(false)),
        ("scale_fc", json!(false)),
        ("act_kwargs", Value::Null),
        ("norm_kwargs", Value::Null),
    ];
    unsupported(
        vision,
        "vision_cfg",
        &[
            ("timm_model_name", Value::Null),
            ("ls_init_value", Value::Null),
            ("attentional_pool", json!(false)),
            ("no_ln_pre", json!(false)),
            ("final_ln_after_pool", json!(false)),
            ("pool_type", json!("tok")),
            ("pos_embed_type", json!("learnable")),
        ],
    )?;
    unsupported(vision, "vision_cfg", &both)?;
    unsupported(
        text,
        "text_cfg",
        &[
            ("hf_model_name", Value::Null),
            ("ls_init_value", Value::Null),
            ("embed_cls", json!(false)),
            ("no_causal_mask", json!(false)),
            ("final_ln_after_pool", json!(false)),
            ("pool_type", json!("argmax")),
            ("proj_bias", json!(false)),
            ("proj_type", json!("linear")),
        ],
    )?;
    unsupported(text, "text_cfg", &both)?;
    let int = |v: &Value, key: &str, default: usize| -> Result<usize> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| bad(format!("`{key}` is not a non-negative integer: {x}"))),
        }
    };
    let image_size = match vision.get("image_size") {
        Some(Value::Array(a)) if a.len() == 2 && a[0] == a[1] => {
            a[0].as_u64().unwrap_or(0) as usize
        }
        Some(Value::Array(a)) => return Err(bad(format!("non-square image_size {a:?}"))),
        _ => int(vision, "image_size", 224)?,
    };
    let width = int(vision, "width", 768)?;
    let head_width = int(vision, "head_width", 64)?;
    if head_width == 0 {
        return Err(bad("`head_width` must be positive".into()));
    }
    let vision_cfg = match vision.get("layers") {
        Some(Value::Array(a)) => {
            let mut layers = [0usize; 4];
            if a.len() != 4 {
                return Err(bad(format!("ResNet layers {a:?} must list 4 stages")));
            }
            for (l, x) in layers.iter_mut().zip(a) {
                *l = x
                    .as_u64()
                    .ok_or_else(|| bad(format!("ResNet layers {a:?}")))?
                    as usize;
            }
            if !(width * 32).is_multiple_of(head_width) {
                return Err(bad(format!(
                    "attention pool width {} is not a multiple of `head_width` {head_width}",
                    width * 32
                )));
            }
            VisionConfig::ResNet {
                layers,
                width,
                heads: width * 32 / head_width,
            }
        }
        _ if !width.is_multiple_of(head_width) => {
            return Err(bad(format!(
                "vision `width` {width} is not a multiple of `head_width` {head_width}"
            )))
        }
        _ => VisionConfig::ViT {
            width,
            layers: int(vision, "layers", 12)?,
            heads: width / head_width,
            patch_size: int(vision, "patch_size", 16)?,
        },
    };
    let quick_gelu = model
        .get("quick_gelu")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let pre = j.get("preprocess_cfg");
    let cfg = ClipConfig {
        embed_dim: int(model, "embed_dim", 512)?,
        image_resolution: image_size,
        vision: vision_cfg,
        context_length: int(text, "context_length", 77)?,
        vocab_size: int(text, "vocab_size", 49408)?,
        text_width: int(text, "width", 512)?,
        text_heads: int(text, "heads", 8)?,
        text_layers: int(text, "layers", 12)?,
        activation: if quick_gelu {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        },
        layer_norm_eps: 1e-5,
        mean: triple(pre.and_then(|p| p.get("mean"))).unwrap_or(OPENAI_MEAN),
        std: triple(pre.and_then(|p| p.get("std"))).unwrap_or(OPENAI_STD),
    };
    cfg.validate(source_name)?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_rn50_config_reads_like_the_preset() {
        // open_clip's model_configs/RN50-quickgelu.json
        let j = json!({"embed_dim": 1024, "quick_gelu": true,
            "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": null},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}});
        assert_eq!(
            parse_config(&j, "t").unwrap(),
            ClipConfig::preset("RN50").unwrap()
        );
    }

    #[test]
    fn architecture_changing_options_are_refused() {
        let j = json!({"model_cfg": {"embed_dim": 512, "vision_cfg": {"ls_init_value": 0.1},
            "text_cfg": {}}});
        let err = parse_config(&j, "t").unwrap_err().to_string();
        assert!(err.contains("ls_init_value"), "{err}");
        let j = json!({"model_cfg": {"embed_dim": 512, "vision_cfg": {"patch_size": 32},
            "text_cfg": {"pool_type": "argmax", "mlp_ratio": 4}}});
        assert_eq!(parse_config(&j, "t").unwrap().activation, Activation::Gelu);
    }

    #[test]
    fn head_width_that_cannot_split_the_width_is_refused_not_clamped() {
        for (head_width, needle) in [(0, "must be positive"), (100, "not a multiple")] {
            let j = json!({"model_cfg": {"embed_dim": 512,
                "vision_cfg": {"width": 768, "head_width": head_width}, "text_cfg": {}}});
            let err = parse_config(&j, "t").unwrap_err().to_string();
            assert!(err.contains("head_width") && err.contains(needle), "{err}");
        }
    }
}
