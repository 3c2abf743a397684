//! PyTorch files — OpenAI's TorchScript archives, `torch.save` zip and legacy state dicts, and the
//! `.bin` files of open_clip and transformers — turned into f32 candle tensors.
//!
//! `zeroclip-pt` parses the file without executing its pickle and yields each tensor's name
//! (as `state_dict()` would give it), dtype, shape and row-major little-endian bytes; this module
//! only widens them. The names are kept as they are: for OpenAI's files they are the canonical
//! ones, including the `input_resolution` / `context_length` / `vocab_size` entries that
//! `build_model` deletes (see [`super::IGNORED_KEYS`]).

use crate::error::{Error, Result};
use crate::tensors::load_tensor;
use candle_core::{Device, Tensor};
use std::path::Path;

/// Every tensor of the PyTorch file at `path`, in file order, as f32 on `device`.
pub fn read(path: &Path, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let checkpoint = zeroclip_pt::read(path)?;
    let mut out = Vec::with_capacity(checkpoint.tensors.len());
    for record in &checkpoint.tensors {
        let bytes = record.contiguous_bytes();
        let t = load_tensor(record.dtype, &record.shape, &bytes, device).map_err(|e| {
            Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("tensor `{}`: {e}", record.name),
            }
        })?;
        out.push((record.name.clone(), t));
    }
    Ok(out)
}
