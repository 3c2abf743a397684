//! zeroclip: OpenAI CLIP zero-shot image classification in Rust.
//!
//! The pipeline is split along the reference's own seams: [`tokenizer`] (`clip.tokenize`),
//! [`image`] (`preprocess`), [`model`] (`clip.model.CLIP`), [`weights`] (checkpoint formats),
//! [`hub`] (`clip.load`'s download and cache), [`pt`] (PyTorch files) and [`zeroshot`] (templates and classifier);
//! [`eval`] (CLIP_benchmark's metrics and calibration) and [`adapter`] (few-shot, training-free
//! adapters) build on the classifier.

pub mod adapter;
pub mod batch;
pub mod error;
pub mod eval;
pub mod model;
mod tensors;
pub mod weights;
pub mod zeroshot;

pub use error::{Error, Result};
pub use model::{Clip, ClipConfig, LoadOptions, Precision, UnknownPrecision};
pub use zeroclip_hub as hub;
pub use zeroclip_image as image;
pub use zeroclip_pt as pt;
pub use zeroclip_tokenizer as tokenizer;
pub use zeroshot::{
    ClassifierOptions, LabelCache, LabelSet, Prediction, Templates, ZeroShotClassifier,
    ZeroShotModel,
};

use candle_core::{Device, Tensor};

/// The reference's context length (`clip.tokenize`'s default; every OpenAI model's).
pub const CONTEXT_LENGTH: usize = 77;

/// `clip.load(name_or_path)`: one of [`available_models`] (downloaded and verified, or found in
/// the cache), a Hugging Face Hub id, or a local file or directory; returns the model and its
/// preprocessing (resolution, mean and std from the checkpoint).
pub fn load(name_or_path: &str, device: &Device) -> Result<(Clip, image::Preprocess)> {
    load_with(name_or_path, device, &LoadOptions::default())
}

/// [`load`] with `options` (the precision of the linear layers).
pub fn load_with(
    name_or_path: &str,
    device: &Device,
    options: &LoadOptions,
) -> Result<(Clip, image::Preprocess)> {
    let resolved = hub::resolve(name_or_path, &hub::HubOptions::default())?;
    let model = Clip::load_with(&resolved.path, device, options)?;
    let preprocess = preprocess_for(model.config());
    Ok((model, preprocess))
}

/// The preprocessing a model with this configuration expects.
pub fn preprocess_for(config: &ClipConfig) -> image::Preprocess {
    let mut p = image::Preprocess::openai(config.image_resolution as u32);
    p.mean = config.mean;
    p.std = config.std;
    p
}

/// `clip.tokenize(texts, truncate=truncate)`: an `[n, 77]` u32 tensor on the CPU.
pub fn tokenize(texts: &[impl AsRef<str>], truncate: bool) -> Result<Tensor> {
    let batch = tokenizer::tokenize(texts, CONTEXT_LENGTH, truncate)?;
    Ok(Tensor::from_vec(
        batch.ids,
        (batch.n, batch.context_length),
        &Device::Cpu,
    )?)
}

/// `clip.available_models()`: the names [`load`] downloads.
pub fn available_models() -> Vec<&'static str> {
    hub::available_models()
}
