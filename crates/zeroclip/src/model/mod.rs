//! The CLIP model: both towers and the logits, as `clip.model.CLIP`.
