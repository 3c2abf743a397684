//! zeroclip: OpenAI CLIP zero-shot image classification in Rust.
//!
//! The pipeline is split along the reference's own seams: [`tokenizer`] (`clip.tokenize`),
//! [`image`] (`preprocess`), [`model`] (`clip.model.CLIP`), [`weights`] (checkpoint formats),
//! [`hub`] (`clip.load`'s download and cache), [`pt`] (PyTorch files) and [`zeroshot`] (templates and classifier).

pub mod error;
pub mod model;
pub mod weights;
pub mod zeroshot;

pub use error::{Error, Result};
pub use zeroclip_hub as hub;
pub use zeroclip_image as image;
pub use zeroclip_pt as pt;
pub use zeroclip_tokenizer as tokenizer;
