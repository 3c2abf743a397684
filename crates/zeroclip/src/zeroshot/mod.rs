//! Zero-shot classification: prompt templates, built-in label sets, template ensembling, the
//! persistent label-embedding cache, and the classifier.
//!
//! Reproduces the zero-shot recipe of OpenAI's CLIP README and ImageNet notebook: classes become
//! prompts ("a photo of a {}."), prompts become unit text embeddings (ensembled over templates),
//! and an image's probabilities are the softmax of `logit_scale * cos(image, class)`.
//!
//! ```no_run
//! use zeroclip::{ClassifierOptions, LabelCache, LabelSet, Templates, ZeroShotClassifier};
//! # fn main() -> zeroclip::Result<()> {
//! let device = candle_core::Device::Cpu;
//! let (model, preprocess) = zeroclip::load("ViT-B/32", &device)?;
//! let options = ClassifierOptions {
//!     cache: LabelCache::default_dir().map(LabelCache::new),
//!     top_k: Some(5),
//!     ..Default::default()
//! };
//! let labels = LabelSet::Cifar10.labels();
//! let classifier =
//!     ZeroShotClassifier::with_options(&model, labels, &Templates::ImageNet7, &options)?;
//! let pixels = preprocess.preprocess_path("CLIP.png".as_ref())?;
//! let pixels = zeroclip::zeroshot::stack_pixels(&[pixels], 224, &device)?;
//! for p in classifier.classify(&pixels)? {
//!     println!("{:>8.4}  {}", p.score, p.label);
//! }
//! # Ok(())
//! # }
//! ```

mod cache;
mod classifier;
mod digest;
mod encoder;
mod labels;
mod pack;
pub mod scoring;
mod templates;

pub use cache::{CacheKey, LabelCache};
pub use classifier::{
    ensemble, normalize, stack_pixels, CacheStats, ClassifierOptions, ZeroShotClassifier,
};
pub(crate) use digest::hex;
pub use encoder::ZeroShotModel;
pub use labels::{parse_labels, read_labels_file, validate_labels, LabelSet};
pub use scoring::Prediction;
pub use templates::{fill, Templates, AS_WRITTEN_TEMPLATE, DEFAULT_TEMPLATE};
