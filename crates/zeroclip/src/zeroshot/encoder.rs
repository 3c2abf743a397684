//! What the zero-shot classifier needs from a model: the two towers, the logit scale, and an
//! identity for the label cache. [`crate::model::Clip`] is the model; the trait lets the
//! classifier's math and caching be tested against a hand-made encoder.

use crate::Result;
use candle_core::{Device, Tensor};

/// A CLIP-like dual encoder.
pub trait ZeroShotModel {
    /// Image embeddings `[n, embed]`, not normalized, from preprocessed pixels `[n, 3, r, r]`.
    fn encode_image(&self, pixels: &Tensor) -> Result<Tensor>;
    /// Text embeddings `[n, embed]`, not normalized, of these prompts (tokenized as
    /// `clip.tokenize(prompts, truncate=truncate)`).
    fn encode_prompts(&self, prompts: &[String], truncate: bool) -> Result<Tensor>;
    /// `logit_scale.exp()`.
    fn logit_scale(&self) -> f32;
    /// A string that changes whenever the weights do (the checkpoint's SHA-256); part of
    /// every label-cache key.
    fn identity(&self) -> Result<String>;

    /// The precision of the model's linear layers (part of the label cache's key: the same
    /// weights give other text embeddings in bf16).
    fn precision(&self) -> crate::Precision {
        crate::Precision::Fp32
    }
    /// The single checkpoint file the model was loaded from, if any: the label cache then
    /// remembers its digest (see [`crate::zeroshot::LabelCache::checkpoint_sha256`]) instead of
    /// asking [`Self::identity`] to hash it on every run.
    fn weights_file(&self) -> Option<&std::path::Path> {
        None
    }
    /// The text context length prompts are tokenized to.
    fn context_length(&self) -> usize;
    /// Where the model's tensors live.
    fn device(&self) -> Device;
}

macro_rules! forward_impl {
    ($($ty:ty),*) => {$(
        impl<T: ZeroShotModel + ?Sized> ZeroShotModel for $ty {
            fn encode_image(&self, pixels: &Tensor) -> Result<Tensor> {
                (**self).encode_image(pixels)
            }
            fn encode_prompts(&self, prompts: &[String], truncate: bool) -> Result<Tensor> {
                (**self).encode_prompts(prompts, truncate)
            }
            fn logit_scale(&self) -> f32 {
                (**self).logit_scale()
            }
            fn identity(&self) -> Result<String> {
                (**self).identity()
            }
            fn precision(&self) -> crate::Precision {
                (**self).precision()
            }
            fn weights_file(&self) -> Option<&std::path::Path> {
                (**self).weights_file()
            }
            fn context_length(&self) -> usize {
                (**self).context_length()
            }
            fn device(&self) -> Device {
                (**self).device()
            }
        }
    )*};
}
// A classifier can borrow its model or share it (a server holds `Arc<Clip>`).
forward_impl!(&T, std::sync::Arc<T>, Box<T>);

impl ZeroShotModel for crate::Clip {
    fn encode_image(&self, pixels: &Tensor) -> Result<Tensor> {
        let pixels = pixels.to_device(crate::Clip::device(self))?;
        crate::Clip::encode_image(self, &pixels)
    }

    fn encode_prompts(&self, prompts: &[String], truncate: bool) -> Result<Tensor> {
        let batch = crate::tokenizer::tokenize(prompts, self.config().context_length, truncate)?;
        let ids = Tensor::from_vec(
            batch.ids,
            (batch.n, batch.context_length),
            crate::Clip::device(self),
        )?;
        self.encode_text(&ids)
    }

    fn logit_scale(&self) -> f32 {
        crate::Clip::logit_scale(self)
    }

    fn identity(&self) -> Result<String> {
        self.checksum()
    }

    fn precision(&self) -> crate::Precision {
        crate::Clip::precision(self)
    }

    fn weights_file(&self) -> Option<&std::path::Path> {
        crate::Clip::weights_file(self)
    }

    fn context_length(&self) -> usize {
        self.config().context_length
    }

    fn device(&self) -> Device {
        crate::Clip::device(self).clone()
    }
}
