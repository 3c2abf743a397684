//! The ViT image tower, `clip.model.VisionTransformer`: patch embedding (`conv1`, a stride-`p`
//! `p`×`p` convolution without bias), class token, positional embedding, `ln_pre`, transformer,
//! `ln_post` of the class token, `proj`.
//!
//! The patch convolution is computed as the matmul it is: non-overlapping patches flattened to
//! `[3·p·p]` rows times the `conv1` weight read as `[width, 3·p·p]` (a bias-free [`Linear`]).

use super::config::ClipConfig;
use super::transformer::{LayerNorm, Linear, Transformer};
use crate::error::Result;
use crate::tensors::Vb;
use candle_core::{Module, Tensor};

/// `clip.model.VisionTransformer`: patch embedding, class token, positional embedding, `ln_pre`,
/// the transformer, `ln_post` on the class token, and `proj`.
#[derive(Clone, Debug)]
pub struct VisionTransformer {
    /// `conv1.weight` as a `[width, 3·p·p]` linear map.
    patch_embed: Linear,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    transformer: Transformer,
    ln_post: LayerNorm,
    proj: Tensor,
    patch_size: usize,
    width: usize,
}

impl VisionTransformer {
    /// Reads the tower under `visual.` (the caller passes `vb.pp("visual")`).
    pub fn new(
        vb: &Vb,
        cfg: &ClipConfig,
        width: usize,
        layers: usize,
        heads: usize,
        patch_size: usize,
    ) -> Result<Self> {
        let p = patch_size;
        let grid = cfg.image_resolution / p;
        let eps = cfg.layer_norm_eps;
        let conv = vb.get_weight(&[width, 3, p, p], "conv1.weight")?;
        Ok(VisionTransformer {
            patch_embed: Linear::from_parts(
                conv.reshape(&[width, 3 * p * p])?,
                None,
                super::gemm::Format::F32, // the patch embedding stays fp32 at any precision
                super::gemm::Codes::Full,
            )?,
            class_embedding: vb.get(&[width], "class_embedding")?,
            positional_embedding: vb.get(&[grid * grid + 1, width], "positional_embedding")?,
            ln_pre: LayerNorm::new(&vb.pp("ln_pre"), width, eps)?,
            transformer: Transformer::new(
                &vb.pp("transformer"),
                width,
                layers,
                heads,
                cfg.activation,
                eps,
            )?,
            ln_post: LayerNorm::new(&vb.pp("ln_post"), width, eps)?,
            proj: vb.get(&[width, cfg.embed_dim], "proj")?,
            patch_size,
            width,
        })
    }

    /// `pixels` `[n, 3, r, r]` f32 (shape checked by the caller) → `[n, embed_dim]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (n, c, r, _) = pixels.dims4()?;
        let (p, w) = (self.patch_size, self.width);
        let g = r / p;
        // [n, 3, g, p, g, p] -> [n, g, g, 3, p, p]: row-major patches in conv1's (c, kh, kw) order.
        let patches = pixels
            .reshape((n, c, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((n * g * g, c * p * p))?;
        let x = self.patch_embed.forward(&patches)?.reshape((n, g * g, w))?;
        let cls = self.class_embedding.reshape((1, 1, w))?.repeat((n, 1, 1))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.positional_embedding)?;
        let x = self.ln_pre.forward(&x)?;
        let cls = self.transformer.forward_at(&x, false, &vec![0; n])?;
        let cls = self.ln_post.forward(&cls)?;
        Ok(cls.matmul(&self.proj)?)
    }
}
