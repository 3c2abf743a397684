//! Tensors between the checkpoint readers and the model: the strict tensor store the layers take
//! their weights from, and the element-type conversions both sides need.
//!
//! A leaf: it imports neither `weights/` nor `model/`. The readers (`weights/`) produce named
//! tensors and a [`crate::ClipConfig`]; the layers (`model/`) take them from a [`TensorStore`];
//! `weights/` builds the [`crate::Clip`], so `model/` never imports `weights/`.

mod dtype;
mod precision;
mod store;
mod stored;

pub(crate) use dtype::{load_tensor, to_f32, widen_le, widen_le_row};
pub use precision::{Precision, UnknownPrecision};
pub use store::{TensorStore, Vb, IGNORED_KEYS};
pub(crate) use stored::LeRows;
pub use stored::StoredTensor;
