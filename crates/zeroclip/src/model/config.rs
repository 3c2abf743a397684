//! Model hyper-parameters: read from a checkpoint's tensor shapes exactly as the reference
//! `clip.model.build_model` does, or taken from the named presets of OpenAI's nine models.

use crate::error::{Error, Result};
use std::collections::{BTreeSet, HashMap};

/// The MLP activation of both transformers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`: OpenAI's models (the reference's `QuickGELU`).
    QuickGelu,
    /// Exact (erf) GELU: open_clip models trained without `quick_gelu`, HF `hidden_act: gelu`.
    Gelu,
}

/// The image tower's architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VisionConfig {
    /// `VisionTransformer`: patch embedding, class token, transformer, `ln_post`, `proj`.
    ViT {
        /// Transformer width.
        width: usize,
        /// Residual blocks.
        layers: usize,
        /// Attention heads.
        heads: usize,
        /// Side of a square patch, in pixels.
        patch_size: usize,
    },
    /// `ModifiedResNet`: 3-conv stem, anti-aliased Bottlenecks, `AttentionPool2d`.
    ResNet {
        /// Bottleneck blocks per stage.
        layers: [usize; 4],
        /// Stem width; the last stage outputs `width * 32` channels.
        width: usize,
        /// Heads of the attention pool (`width * 32 / 64` in OpenAI's models).
        heads: usize,
    },
}

/// Everything needed to build a [`Clip`](crate::Clip) and to preprocess its inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipConfig {
    /// Size of the joint embedding space.
    pub embed_dim: usize,
    /// Side of the square input image.
    pub image_resolution: usize,
    /// The image tower.
    pub vision: VisionConfig,
    /// Token positions the text transformer accepts (77 for every OpenAI model).
    pub context_length: usize,
    /// Token ids the text tower embeds (49,408 for every OpenAI model).
    pub vocab_size: usize,
    /// Text transformer width.
    pub text_width: usize,
    /// Text transformer attention heads.
    pub text_heads: usize,
    /// Text transformer residual blocks.
    pub text_layers: usize,
    /// The MLP activation of both transformers.
    pub activation: Activation,
    /// Epsilon of every LayerNorm (1e-5 in the reference).
    pub layer_norm_eps: f32,
    /// Per-channel normalization the model was trained with (OpenAI's unless a config says else).
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by, after the mean is subtracted.
    pub std: [f32; 3],
}

pub use zeroclip_image::{OPENAI_MEAN, OPENAI_STD};

/// The smallest per-channel std a configuration may give (see [`ClipConfig::validate`]).
pub(crate) const MIN_STD: f32 = 1e-3;

impl ClipConfig {
    /// The architecture of one of OpenAI's released models (the values `build_model` derives
    /// from its checkpoint). `None` for an unknown name.
    pub fn preset(name: &str) -> Option<ClipConfig> {
        let rn = |embed, res, layers, width, text_width| {
            Self::openai(
                embed,
                res,
                VisionConfig::ResNet {
                    layers,
                    width,
                    heads: width * 32 / 64,
                },
                text_width,
            )
        };
        let vit = |res, layers, width, patch_size, embed, text_width| {
            Self::openai(
                embed,
                res,
                VisionConfig::ViT {
                    width,
                    layers,
                    heads: width / 64,
                    patch_size,
                },
                text_width,
            )
        };
        Some(match name {
            "RN50" => rn(1024, 224, [3, 4, 6, 3], 64, 512),
            "RN101" => rn(512, 224, [3, 4, 23, 3], 64, 512),
            "RN50x4" => rn(640, 288, [4, 6, 10, 6], 80, 640),
            "RN50x16" => rn(768, 384, [6, 8, 18, 8], 96, 768),
            "RN50x64" => rn(1024, 448, [3, 15, 36, 10], 128, 1024),
            "ViT-B/32" => vit(224, 12, 768, 32, 512, 512),
            "ViT-B/16" => vit(224, 12, 768, 16, 512, 512),
            "ViT-L/14" => vit(224, 24, 1024, 14, 768, 768),
            "ViT-L/14@336px" => vit(336, 24, 1024, 14, 768, 768),
            _ => return None,
        })
    }

    fn openai(
        embed_dim: usize,
        image_resolution: usize,
        vision: VisionConfig,
        text_width: usize,
    ) -> Self {
        ClipConfig {
            embed_dim,
            image_resolution,
            vision,
            context_length: 77,
            vocab_size: 49408,
            text_width,
            text_heads: text_width / 64,
            text_layers: 12,
            activation: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
        }
    }

    /// Reads the architecture from tensor shapes under OpenAI's names, as `build_model` does:
    /// ViT if `visual.proj` exists, heads = width / 64, layers counted from the names.
    pub fn from_shapes(shapes: &HashMap<String, Vec<usize>>) -> Result<ClipConfig> {
        let dim = |name: &str, axis: usize| -> Result<usize> {
            let shape = shapes.get(name).ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
            })?;
            shape
                .get(axis)
                .copied()
                .ok_or_else(|| Error::ShapeMismatch {
                    name: name.to_string(),
                    expected: vec![0; axis + 1],
                    got: shape.clone(),
                })
        };
        // Distinct values of the name component that follows `prefix` (block indices).
        let count = |prefix: &str| -> usize {
            shapes
                .keys()
                .filter_map(|k| k.strip_prefix(prefix))
                .filter_map(|rest| rest.split('.').next())
                .collect::<BTreeSet<_>>()
                .len()
        };
        let square_side = |name: &str| -> Result<usize> {
            let tokens = dim(name, 0)?;
            let side = ((tokens.saturating_sub(1)) as f64).sqrt().round() as usize;
            if side * side + 1 != tokens {
                return Err(Error::Config {
                    source_name: "checkpoint tensors".into(),
                    reason: format!("`{name}` has {tokens} positions, not a square grid plus one"),
                });
            }
            Ok(side)
        };

        let (vision, image_resolution) = if shapes.contains_key("visual.proj") {
            let width = dim("visual.conv1.weight", 0)?;
            let patch_size = dim("visual.conv1.weight", 3)?;
            let layers = shapes
                .keys()
                .filter(|k| k.starts_with("visual.") && k.ends_with(".attn.in_proj_weight"))
                .count();
            let grid = square_side("visual.positional_embedding")?;
            let heads = width / 64;
            let v = VisionConfig::ViT {
                width,
                layers,
                heads,
                patch_size,
            };
            (v, patch_size * grid)
        } else {
            let width = dim("visual.layer1.0.conv1.weight", 0)?;
            let mut layers = [0; 4];
            for (i, l) in layers.iter_mut().enumerate() {
                *l = count(&format!("visual.layer{}.", i + 1));
            }
            let grid = square_side("visual.attnpool.positional_embedding")?;
            let v = VisionConfig::ResNet {
                layers,
                width,
                heads: width * 32 / 64,
            };
            (v, grid * 32)
        };
        let text_width = dim("ln_final.weight", 0)?;
        let cfg = ClipConfig {
            embed_dim: dim("text_projection", 1)?,
            image_resolution,
            vision,
            context_length: dim("positional_embedding", 0)?,
            vocab_size: dim("token_embedding.weight", 0)?,
            text_width,
            text_heads: text_width / 64,
            text_layers: count("transformer.resblocks."),
            activation: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
        };
        cfg.validate("checkpoint tensors")?;
        Ok(cfg)
    }

    /// Checks that the numbers describe a buildable model; `source_name` names where they came from.
    pub fn validate(&self, source_name: &str) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Config {
                source_name: source_name.to_string(),
                reason,
            })
        };
        let heads_fit = |what: &str, width: usize, heads: usize| {
            if heads == 0 || !width.is_multiple_of(heads) {
                bad(format!(
                    "{what} width {width} cannot be split into {heads} heads"
                ))
            } else {
                Ok(())
            }
        };
        heads_fit("text", self.text_width, self.text_heads)?;
        // `ToTensor` gives pixel values in [0, 1]: their per-channel mean lies in [0, 1], and a
        // std near 0 (or not a number) turns every input into infinities and the scores into NaN.
        let mean_ok = self.mean.iter().all(|m| (0.0..=1.0).contains(m));
        let std_ok = self.std.iter().all(|s| (MIN_STD..=1.0).contains(s));
        if !mean_ok || !std_ok {
            return bad(format!(
                "pixel normalization mean {:?} / std {:?} cannot be right: for pixel values in \
                 [0, 1] each mean must lie in [0, 1] and each std in [{MIN_STD}, 1]",
                self.mean, self.std
            ));
        }
        if self.embed_dim == 0 || self.context_length == 0 || self.vocab_size == 0 {
            return bad("embed_dim, context_length and vocab_size must be positive".into());
        }
        match &self.vision {
            VisionConfig::ViT {
                width,
                heads,
                patch_size,
                ..
            } => {
                heads_fit("vision", *width, *heads)?;
                if *patch_size == 0 || !self.image_resolution.is_multiple_of(*patch_size) {
                    return bad(format!(
                        "image resolution {} is not a multiple of the patch size {patch_size}",
                        self.image_resolution
                    ));
                }
            }
            VisionConfig::ResNet {
                layers,
                width,
                heads,
            } => {
                heads_fit("attention pool", width * 32, *heads)?;
                if layers.contains(&0) || *width < 2 {
                    return bad(format!(
                        "ResNet layers {layers:?} / width {width} are empty"
                    ));
                }
                if !self.image_resolution.is_multiple_of(32) || self.image_resolution == 0 {
                    return bad(format!(
                        "ResNet image resolution {} is not a positive multiple of 32",
                        self.image_resolution
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_reference_head_rule() {
        // Every name the hub downloads has a preset.
        for name in zeroclip_hub::available_models() {
            let cfg = ClipConfig::preset(name).unwrap();
            cfg.validate(name).unwrap();
            assert_eq!(cfg.text_heads * 64, cfg.text_width, "{name}");
        }
        assert!(ClipConfig::preset("ViT-H/14").is_none());
    }

    #[test]
    fn normalization_that_cannot_be_right_is_refused() {
        let good = ClipConfig::preset("ViT-B/32").unwrap();
        let zero_std = ClipConfig {
            std: [0.0; 3],
            ..good.clone()
        };
        let huge_mean = ClipConfig {
            mean: [1e30, 0.4, 0.4],
            ..good.clone()
        };
        let nan_std = ClipConfig {
            std: [f32::NAN, 0.2, 0.2],
            ..good.clone()
        };
        for cfg in [zero_std, huge_mean, nan_std] {
            let err = cfg
                .validate("preprocessor_config.json")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("preprocessor_config.json") && err.contains("std"),
                "{err}"
            );
        }
        // Identity normalization (mean 0, std 1) and the 0.5 / 0.5 of many models are fine.
        for (mean, std) in [([0.0; 3], [1.0; 3]), ([0.5; 3], [0.5; 3])] {
            let cfg = ClipConfig {
                mean,
                std,
                ..good.clone()
            };
            cfg.validate("t").unwrap();
        }
    }

    #[test]
    fn vit_shapes_give_the_build_model_numbers() {
        let mut s = HashMap::new();
        s.insert("visual.proj".to_string(), vec![128, 64]);
        s.insert("visual.conv1.weight".to_string(), vec![128, 3, 8, 8]);
        s.insert("visual.positional_embedding".to_string(), vec![17, 128]);
        for i in 0..3 {
            let k = format!("visual.transformer.resblocks.{i}.attn.in_proj_weight");
            s.insert(k, vec![384, 128]);
            s.insert(format!("transformer.resblocks.{i}.ln_1.weight"), vec![128]);
        }
        s.insert("ln_final.weight".to_string(), vec![128]);
        s.insert("text_projection".to_string(), vec![128, 64]);
        s.insert("positional_embedding".to_string(), vec![77, 128]);
        s.insert("token_embedding.weight".to_string(), vec![300, 128]);
        let cfg = ClipConfig::from_shapes(&s).unwrap();
        assert_eq!(cfg.image_resolution, 32);
        assert_eq!(
            cfg.vision,
            VisionConfig::ViT {
                width: 128,
                layers: 3,
                heads: 2,
                patch_size: 8
            }
        );
        assert_eq!((cfg.text_layers, cfg.text_heads, cfg.embed_dim), (3, 2, 64));
    }

    #[test]
    fn non_square_grid_is_a_config_error() {
        let mut s = HashMap::new();
        s.insert("visual.proj".to_string(), vec![128, 64]);
        s.insert("visual.conv1.weight".to_string(), vec![128, 3, 8, 8]);
        s.insert("visual.positional_embedding".to_string(), vec![18, 128]);
        let err = ClipConfig::from_shapes(&s).unwrap_err();
        assert!(
            err.to_string().contains("visual.positional_embedding"),
            "{err}"
        );
    }
}
