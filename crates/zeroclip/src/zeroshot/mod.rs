//! Zero-shot classification: prompt templates, built-in label sets, template ensembling, the
//! persistent label-embedding cache, and the classifier.
//!
//! Reproduces the zero-shot recipe of OpenAI's CLIP README and ImageNet notebook: classes become
//! prompts ("a photo of a {}."), prompts become unit text embeddings (ensembled over templates),
//! and an image's probabilities are the softmax of `logit_scale * cos(image, class)`.

mod cache;
mod classifier;
mod encoder;
mod labels;
mod templates;

pub use cache::{CacheKey, LabelCache};
pub use classifier::{
    ensemble, normalize, stack_pixels, CacheStats, ClassifierOptions, Prediction,
    ZeroShotClassifier,
};
pub use encoder::ZeroShotModel;
pub use labels::{parse_labels, read_labels_file, LabelSet};
pub use templates::{fill, Templates, DEFAULT_TEMPLATE};
