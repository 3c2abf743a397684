//! The server's one seam with the `zeroclip` model: loading, the two towers on plain `Vec`s, and
//! tokenizing texts. Templates and scoring are the library's `zeroshot` module's.

use crate::error::ApiError;
use candle_core::{DType, Device, Tensor};
use zeroclip::adapter::Adapter;
use zeroclip::image::Preprocess;
use zeroclip::model::Clip;

/// Rows of embeddings, one per input, not normalized.
pub type Embeddings = Vec<Vec<f32>>;

/// What responses and `/readyz` say about the model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Its name: a model name or Hub id as given, a local checkpoint's file or directory name
    /// (never its path; see [`display_name`]).
    pub name: String,
    /// Embedding width.
    pub embed_dim: usize,
    /// Input side of the image tower, in pixels.
    pub image_resolution: usize,
    /// Text context length, in tokens.
    pub context_length: usize,
    /// `exp(logit_scale)`, the factor on cosine similarities.
    pub logit_scale: f32,
    /// The checkpoint's checksum.
    pub checksum: String,
}

/// The model's towers, owned by the batcher's worker thread.
pub struct Encoder {
    clip: Clip,
    device: Device,
    resolution: usize,
}

/// A loaded model, ready to hand to [`crate::AppState::new`].
pub struct LoadedModel {
    /// The towers.
    pub encoder: Encoder,
    /// The image preprocessing that goes with the model.
    pub preprocess: Preprocess,
    /// Facts about the model.
    pub info: ModelInfo,
    /// A few-shot adapter checked against the model ([`Self::with_adapter`]).
    pub(crate) adapter: Option<Adapter>,
}

impl LoadedModel {
    /// Loads a model by name (`ViT-B/32`) or checkpoint path, on the CPU.
    pub fn load(name_or_path: &str) -> Result<Self, Box<zeroclip::Error>> {
        Self::load_with(name_or_path, &zeroclip::LoadOptions::default())
    }

    /// [`Self::load`] with `options` (the precision of the linear layers).
    pub fn load_with(
        name_or_path: &str,
        options: &zeroclip::LoadOptions,
    ) -> Result<Self, Box<zeroclip::Error>> {
        let device = Device::Cpu;
        let (clip, preprocess) = zeroclip::load_with(name_or_path, &device, options)?;
        Self::from_parts(name_or_path, clip, preprocess, device)
    }

    /// Wraps an already loaded model.
    pub fn from_parts(
        name: &str,
        clip: Clip,
        preprocess: Preprocess,
        device: Device,
    ) -> Result<Self, Box<zeroclip::Error>> {
        let config = clip.config();
        let resolution = config.image_resolution;
        let info = ModelInfo {
            name: display_name(name),
            embed_dim: config.embed_dim,
            image_resolution: resolution,
            context_length: config.context_length,
            logit_scale: clip.logit_scale(),
            checksum: clip.checksum()?,
        };
        Ok(LoadedModel {
            encoder: Encoder {
                clip,
                device,
                resolution,
            },
            preprocess,
            info,
            adapter: None,
        })
    }

    /// Serves `adapter` (made by `zeroclip adapt`): requests are classified against its classes
    /// with its scores. Refused with [`zeroclip::Error::AdapterMismatch`] when it was built for
    /// another model (checksum or embedding width).
    pub fn with_adapter(mut self, adapter: Adapter) -> Result<Self, Box<zeroclip::Error>> {
        crate::adapter::check_model(&adapter, &self.info.checksum, self.info.embed_dim)?;
        self.adapter = Some(adapter);
        Ok(self)
    }
}

/// The name responses and the page show for a model given as `name_or_path`: a local file or
/// directory by its own name (clients have no business knowing the server's directories), a
/// model name or Hub id as given.
pub fn display_name(name_or_path: &str) -> String {
    let path = std::path::Path::new(name_or_path);
    match path.file_name() {
        Some(name) if path.exists() => name.to_string_lossy().into_owned(),
        _ => name_or_path.to_string(),
    }
}

/// A model failure: nothing the client can fix.
fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal {
        reason: format!("{what} failed: {e}"),
    }
}

impl Encoder {
    /// Image embeddings (not normalized) of CHW `[3, r, r]` images, in one forward pass.
    pub fn encode_images(&self, images: &[Vec<f32>]) -> Result<Embeddings, ApiError> {
        let r = self.resolution;
        let mut flat = Vec::with_capacity(images.len() * 3 * r * r);
        images.iter().for_each(|i| flat.extend_from_slice(i));
        let x = Tensor::from_vec(flat, (images.len(), 3, r, r), &self.device)
            .map_err(|e| internal("stacking images", e))?;
        let e = self
            .clip
            .encode_image(&x)
            .map_err(|e| internal("encode_image", e))?;
        rows(e).map_err(|e| internal("encode_image", e))
    }

    /// Text embeddings (not normalized) of `n` rows of token ids, in one forward pass.
    pub fn encode_tokens(&self, ids: &[u32], n: usize) -> Result<Embeddings, ApiError> {
        let ctx = ids.len() / n.max(1);
        let x = Tensor::from_slice(ids, (n, ctx), &self.device)
            .map_err(|e| internal("stacking token ids", e))?;
        let e = self
            .clip
            .encode_text(&x)
            .map_err(|e| internal("encode_text", e))?;
        rows(e).map_err(|e| internal("encode_text", e))
    }
}

fn rows(t: Tensor) -> candle_core::Result<Embeddings> {
    t.to_dtype(DType::F32)?.to_vec2()
}

/// Tokenizes texts for the text tower; a text that does not fit is an error naming it, made
/// by `error(text, reason)`. `truncate` cuts long texts instead.
pub fn tokenize(
    texts: &[String],
    context_length: usize,
    truncate: bool,
    error: impl Fn(String, String) -> ApiError,
) -> Result<(Vec<u32>, usize), ApiError> {
    match zeroclip::tokenizer::tokenize(texts, context_length, truncate) {
        Ok(batch) => Ok((batch.ids, batch.n)),
        Err(zeroclip::tokenizer::Error::TooLong {
            text,
            tokens,
            context_length,
        }) => Err(error(
            text,
            format!("has {tokens} tokens, more than the context length {context_length}"),
        )),
        Err(e) => Err(error(String::new(), e.to_string())),
    }
}
